//! Descriptor centring (`centring: running`; `evaluate --centring running`, the node's
//! `centring` parameter): the map's descriptors and each camera's queries are compared after
//! each side's own mean is taken away, so that what every image of one condition shares (the
//! season's look, the light, another renderer's or camera's way of drawing) does not count as
//! likeness between places. Chosen on the validation worlds (maps/models/MODEL_CARD.md,
//! "Descriptor centring"); the default (`auto`: running wherever it can be) since session 72,
//! when the filter's and the prior's constants were checked with it (docs/pose-prior.md).
//!
//! - Map: every row r (each image's descriptor and its yaw views) becomes r/|r| - m, where m is
//!   the mean of the map images' unit descriptors (images only, not views); done once, in
//!   memory, when the Localizer is made (the file is not changed).
//! - Query: a frame's descriptor q becomes q/|q| - w, where w is the mean of the unit
//!   descriptors of the last [`WINDOW`] frames of the same camera, this one included, with m
//!   standing in for the frames not seen yet: w = (sum of the n frames + (WINDOW - n) m) /
//!   WINDOW. The first frame of a camera is thus centred almost as a map image is.
//! - A frame joins its camera's window only when its unit descriptor lies far enough (cosine
//!   distance) from the newest one there: at least [`GATE_SHARE`] of the window's usual step
//!   (the median distance between consecutive frames in it: the queries' own scale, as a look
//!   that draws every place alike makes all their distances small) and at least
//!   [`FLOOR_SHARE`] of the map's (the median distance between consecutive images of one
//!   camera). A stopped robot's frames, or a fast camera's at a walking pace, would otherwise
//!   fill the window with one place and centre that place away; the floor also holds for a
//!   robot that starts parked (its first frames have no steps of their own to compare with).
//!   A look that makes the queries' steps smaller than the floor lets few frames join: the
//!   map's mean then stands in for the rest, which is centring by the map alone.
//! - Frames older than [`MAX_AGE_S`] seconds leave the window, and a stamp earlier than the
//!   camera's previous frame (a recording played again) empties it: a traversal on another
//!   day starts again from m.
//! - A descriptor of zero length (nothing to compare) is searched as it is and never joins.
//!
//! Searched with the cosine metric only (the centred rows are no longer unit vectors; cosine
//! compares their directions). A compressed map is refused (its codes are of the rows before
//! centring).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::map::file::MapFile;
use crate::retrieval::row_f32;

/// Frames per camera whose mean is taken from a query (this one included); chosen on the
/// validation worlds (10, 20, 30 and 60 tried: MODEL_CARD.md).
pub const WINDOW: usize = 30;
/// Seconds a frame stays in its camera's window.
pub const MAX_AGE_S: f64 = 600.0;
/// The gate a frame must pass to join the window, as a share of the window's median step.
pub const GATE_SHARE: f64 = 0.25;
/// The gate's floor, as a share of the map's median step between consecutive images.
pub const FLOOR_SHARE: f64 = 0.1;

/// Whether descriptors are centred ([`self`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Centring {
    /// Compared as encoded (the paper's retrieval).
    None,
    /// The map by its mean, each camera's queries by the mean of their recent frames; a map
    /// or queries that cannot be centred are refused.
    Running,
    /// The default (since session 72): `running` where the map and the queries allow it (the
    /// cosine metric, a map not built with --compress, at least one image; `evaluate`: query
    /// timestamps), else `none`, said in the log and in evaluate's report.
    #[default]
    Auto,
}

impl Centring {
    pub fn name(self) -> &'static str {
        match self {
            Centring::None => "none",
            Centring::Running => "running",
            Centring::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Centring {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Centring::None),
            "running" => Ok(Centring::Running),
            "auto" => Ok(Centring::Auto),
            _ => Err(format!("expected auto, running or none, found `{s}`")),
        }
    }
}

/// `v / |v|` (a zero vector stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter().map(|x| (*x as f64 / n) as f32).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// 1 - cos of two unit vectors.
fn unit_distance(a: &[f32], b: &[f32]) -> f64 {
    1.0 - a
        .iter()
        .zip(b)
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum::<f64>()
}

/// The map's side of the centring: its mean unit descriptor and the gate's floor.
#[derive(Debug, Clone, PartialEq)]
pub struct MapCentre {
    pub mean: Vec<f32>,
    /// A frame joins its camera's window only when it lies at least this far (1 - cos) from
    /// the newest frame there: [`FLOOR_SHARE`] of the map's median step.
    pub floor: f64,
}

impl MapCentre {
    /// Of a map's rows as stored (before [`MapFile::centre_rows`]); `by_camera`: each camera's
    /// rows in map order (every row in one camera's list). None for a map without images.
    /// One pass: each row is made a unit vector once, for the mean and the step from the
    /// camera's row before it.
    pub fn of(map: &MapFile, by_camera: &BTreeMap<String, Vec<usize>>) -> Option<Self> {
        let (n, dim) = (map.len(), map.dim());
        if n == 0 || dim == 0 {
            return None;
        }
        let descs = map.descriptors();
        let mut buf = Vec::new();
        let mut mean = vec![0f64; dim];
        let mut steps: Vec<f64> = Vec::new();
        for rows in by_camera.values() {
            let mut before: Option<Vec<f32>> = None;
            for &i in rows {
                let u = unit(row_f32(&descs, dim, i, &mut buf));
                for (m, x) in mean.iter_mut().zip(&u) {
                    *m += *x as f64;
                }
                if let Some(b) = &before {
                    steps.push(unit_distance(b, &u));
                }
                before = Some(u);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        steps.sort_by(f64::total_cmp);
        let median = steps.get(steps.len() / 2).copied().unwrap_or(0.0);
        Some(Self {
            mean,
            floor: FLOOR_SHARE * median.max(0.0),
        })
    }
}

/// One camera's recent frames (stamp in seconds, unit descriptor, distance from the frame
/// before it in the window), oldest first, and the stamp of its last frame seen (joined or
/// not).
#[derive(Debug, Default, Clone)]
struct Window {
    frames: VecDeque<(f64, Vec<f32>, f64)>,
    last_seen: Option<f64>,
}

impl Window {
    /// The median distance between consecutive frames in the window (None below 2 frames).
    fn usual_step(&self) -> Option<f64> {
        let mut steps: Vec<f64> = self.frames.iter().skip(1).map(|f| f.2).collect();
        steps.sort_by(f64::total_cmp);
        steps.get(steps.len() / 2).copied()
    }
}

/// The queries' side: every camera's window. One per vehicle (the node's, or one per
/// `evaluate` run, fed in time order).
#[derive(Debug, Default, Clone)]
pub struct QueryCentring {
    windows: HashMap<String, Window>,
}

impl QueryCentring {
    /// Forgets every camera's frames (a new map: its descriptors may be of another encoder).
    pub fn clear(&mut self) {
        self.windows.clear();
    }

    /// Frames in `source`'s window now.
    pub fn frames(&self, source: &str) -> usize {
        self.windows.get(source).map_or(0, |w| w.frames.len())
    }

    /// `desc` (a frame of camera `source` at `time` seconds) centred; the frame then joins the
    /// window when it passes the gate.
    pub fn centre(&mut self, map: &MapCentre, source: &str, time: f64, desc: &[f32]) -> Vec<f32> {
        let u = unit(desc);
        if u.iter().all(|x| *x == 0.0) {
            return desc.to_vec();
        }
        let window = self.windows.entry(source.to_string()).or_default();
        if window.last_seen.is_some_and(|t| t > time) {
            window.frames.clear();
        }
        window.last_seen = Some(time);
        while window
            .frames
            .front()
            .is_some_and(|(t, _, _)| time - t > MAX_AGE_S)
        {
            window.frames.pop_front();
        }
        let n = window.frames.len();
        let mut sum: Vec<f64> = map
            .mean
            .iter()
            .zip(&u)
            .map(|(m, x)| *m as f64 * (WINDOW - 1 - n) as f64 + *x as f64)
            .collect();
        for (_, f, _) in &window.frames {
            for (s, x) in sum.iter_mut().zip(f) {
                *s += *x as f64;
            }
        }
        let centred = u
            .iter()
            .zip(&sum)
            .map(|(x, s)| (*x as f64 - s / WINDOW as f64) as f32)
            .collect();
        let step = window
            .frames
            .back()
            .map_or(0.0, |(_, last, _)| unit_distance(&u, last));
        let joins = window.frames.is_empty()
            || (step >= map.floor
                && step > 0.0
                && window
                    .usual_step()
                    .is_none_or(|usual| step >= GATE_SHARE * usual));
        if joins {
            window.frames.push_back((time, u, step));
            if window.frames.len() > WINDOW - 1 {
                window.frames.pop_front();
            }
        }
        centred
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre(mean: Vec<f32>) -> MapCentre {
        MapCentre { mean, floor: 0.0 }
    }

    #[test]
    fn a_first_frame_is_centred_mostly_by_the_map_s_mean() {
        let map = centre(vec![0.5, 0.5, 0.0]);
        let mut q = QueryCentring::default();
        let got = q.centre(&map, "c0", 0.0, &[2.0, 0.0, 0.0]);
        let w = WINDOW as f32;
        let want = [
            1.0 - (1.0 + 0.5 * (w - 1.0)) / w,
            -(0.5 * (w - 1.0)) / w,
            0.0,
        ];
        for (g, e) in got.iter().zip(want) {
            assert!((g - e).abs() < 1e-6, "{got:?} against {want:?}");
        }
        assert_eq!(q.frames("c0"), 1);
    }

    /// After WINDOW frames of one condition, what they share is gone: two places that differ
    /// by a small part and share a large offset come out as the small part alone.
    #[test]
    fn a_full_window_takes_away_what_a_condition_s_frames_share() {
        let map = centre(vec![0.0; 4]);
        let mut q = QueryCentring::default();
        let offset = [0.0, 0.0, 0.0, 10.0];
        let mut last = Vec::new();
        for i in 0..3 * WINDOW {
            let place = if i % 2 == 0 {
                [1.0, 0.0, 0.0]
            } else {
                [0.0, 1.0, 0.0]
            };
            let d = [
                place[0] + offset[0],
                place[1] + offset[1],
                place[2],
                offset[3],
            ];
            last = q.centre(&map, "c0", i as f64, &d);
        }
        // The last frame (odd: place [0, 1, 0]): its centred descriptor points along
        // +y - x, the offset's axis gone.
        let u = unit(&last);
        assert!(u[3].abs() < 1e-3, "{u:?}");
        assert!(u[1] > 0.6 && u[0] < -0.6, "{u:?}");
    }

    /// A stopped robot: the same frame again and again joins the window once, so the place
    /// it shows is not centred away.
    #[test]
    fn a_repeated_frame_joins_the_window_once() {
        let map = centre(vec![0.0, 0.0, 0.0]);
        let mut q = QueryCentring::default();
        // Moving, then stopped: the same frame again and again (with a little sensor noise).
        q.centre(&map, "c0", 0.0, &[0.0, 1.0, 0.0]);
        for i in 1..100 {
            let noise = 1e-3 * (i % 3) as f32;
            q.centre(&map, "c0", i as f64 * 0.1, &[1.0, noise, 0.0]);
        }
        assert_eq!(q.frames("c0"), 2);
        let got = unit(&q.centre(&map, "c0", 10.0, &[1.0, 0.0, 0.0]));
        assert!(got[0] > 0.9, "the place stays: {got:?}");
        // Another camera has its own window.
        assert_eq!(q.frames("c1"), 0);
    }

    #[test]
    fn old_frames_and_a_stamp_going_back_empty_the_window() {
        let map = centre(vec![0.0; 5]);
        let mut q = QueryCentring::default();
        for i in 0..5 {
            let mut d = [0.0f32; 5];
            d[i] = 1.0;
            q.centre(&map, "c0", i as f64, &d);
        }
        assert_eq!(q.frames("c0"), 5);
        q.centre(
            &map,
            "c0",
            4.0 + MAX_AGE_S + 0.5,
            &[1.0, 1.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(q.frames("c0"), 1, "frames older than MAX_AGE_S leave");
        q.centre(&map, "c0", 1.0, &[1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(q.frames("c0"), 1, "a stamp going back starts again");
    }

    /// The gate follows the queries' own steps: in a look that draws every place alike (all
    /// distances a hundred times smaller than the map's), frames still join.
    #[test]
    fn frames_join_whatever_the_scale_of_their_distances() {
        let map = centre(vec![0.0; 3]);
        let mut q = QueryCentring::default();
        for i in 0..10 {
            let wobble = 0.01 * if i % 2 == 0 { 1.0 } else { -1.0 };
            q.centre(&map, "c0", i as f64, &[1.0, wobble, 0.001 * i as f32]);
        }
        assert_eq!(q.frames("c0"), 10);
    }

    /// Through the Localizer: a map of 40 places in one look (each place its own pattern plus
    /// that look's shared part, larger than the pattern), queries of the same places in
    /// another look, driven twice. Compared as encoded most queries find the wrong place, the
    /// one whose own pattern leans most towards the new look; centred, every query of the
    /// second lap (a full window) finds its own, whether centred as evaluate does (all frames
    /// at once, in time order) or as the node does (frame by frame in its `Sequence`); a
    /// reloaded map starts the node's windows again. A metric other than cosine is refused,
    /// naming the map.
    #[test]
    fn centring_finds_places_across_a_change_of_look_that_plain_retrieval_misses() {
        use crate::extract::MapEncoder;
        use crate::localize::{Localizer, Options, Query};
        use crate::map::file::{write_map, MapFile, MapMeta, RawTensor};
        use crate::retrieval::Metric;
        use safetensors::tensor::Dtype;
        use std::sync::Arc;

        let enc = MapEncoder::raw_pixels();
        let dim = enc.dim();
        let n = 40;
        // A deterministic pseudo-random pattern per place (xorshift), values in [-1, 1).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 52) as f32 - 1.0
        };
        let places: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let summer: Vec<f32> = (0..dim).map(|_| 60.0 * next()).collect();
        let winter: Vec<f32> = (0..dim).map(|_| 60.0 * next()).collect();
        let look =
            |p: &[f32], l: &[f32]| -> Vec<f32> { p.iter().zip(l).map(|(a, b)| a + b).collect() };
        let desc: Vec<f32> = places.iter().flat_map(|p| look(p, &summer)).collect();
        let poses: Vec<f64> = (0..n)
            .flat_map(|i| [10.0 * i as f64, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
            .collect();
        let tensors = vec![
            RawTensor::new("descriptors", Dtype::F32, vec![n, dim], &desc),
            RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
            RawTensor::new("timestamps_us", Dtype::I64, vec![n], &vec![-1i64; n]),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("looks.map");
        let mut meta = MapMeta {
            encoder: enc.meta.clone(),
            metric: "cosine".into(),
            ..MapMeta::by_hand(n, "test")
        };
        write_map(&path, &tensors, &mut meta).unwrap();
        // Winter queries: each place in order, a second apart, two laps.
        let queries: Vec<f32> = places
            .iter()
            .chain(&places)
            .flat_map(|p| look(p, &winter))
            .collect();
        // Of the second lap's queries, those whose first hit is their own place.
        let right = |loc: &Localizer, q: &[f32]| -> usize {
            (0..n)
                .filter(|&i| {
                    let d = &q[(n + i) * dim..(n + i + 1) * dim];
                    let o = loc.localize_descriptor(d, &Query::default(), 1);
                    o.answer().is_some_and(|a| a.hits[0].index == i)
                })
                .count()
        };
        // The map searched with its own metric (cosine), or with `metric` when given.
        let open_with = |centring, metric| {
            Localizer::new(
                MapEncoder::raw_pixels(),
                Arc::new(MapFile::open(&path).unwrap()),
                Options {
                    centring,
                    metric,
                    ..Default::default()
                },
            )
        };
        let open = |centring| open_with(centring, None);
        let plain = open(Centring::None).unwrap();
        let plain_right = right(&plain, &queries);
        let centred = open(Centring::Running).unwrap();
        let mut q = queries.clone();
        let times: Vec<f64> = (0..2 * n).map(|i| i as f64).collect();
        centred.centre_descriptors(&mut q, &vec!["c0"; 2 * n], &times);
        let centred_right = right(&centred, &q);
        // The node's path gives the same descriptors, frame by frame.
        let mut node = crate::localize::Sequence::default();
        for (i, t) in times.iter().enumerate() {
            let d = queries[i * dim..(i + 1) * dim].to_vec();
            let c = centred.centre_frame(&mut node, "c0", *t, d);
            assert_eq!(c, q[i * dim..(i + 1) * dim], "frame {i}");
        }
        // A reloaded map (a new Localizer) starts the windows again: its first frame is
        // centred as a first frame, not as the 81st.
        let reloaded = open(Centring::Running).unwrap();
        let d = queries[..dim].to_vec();
        let again = reloaded.centre_frame(&mut node, "c0", 200.0, d.clone());
        let first = reloaded.centre_frame(&mut Default::default(), "c0", 200.0, d);
        assert_eq!(again, first);
        assert!(
            plain_right <= n / 4 && centred_right == n,
            "right places of {n}: as encoded {plain_right}, centred {centred_right}"
        );
        // The file on disk is unchanged (centred in memory only).
        let reopened = MapFile::open(&path).unwrap();
        let (crate::map::file::Descriptors::F32(on_disk), crate::map::file::Descriptors::F32(c)) =
            (reopened.descriptors(), centred.map.descriptors())
        else {
            panic!("an f32 map");
        };
        assert_eq!(on_disk, &desc[..]);
        assert_ne!(on_disk, c, "the Localizer's rows are centred");

        // auto (the default): the same as running on this cosine map ...
        let auto = open(Centring::Auto).unwrap();
        assert_eq!(auto.centring_used(), Centring::Running);
        assert_eq!(auto.centre, centred.centre);
        let mut a = queries.clone();
        auto.centre_descriptors(&mut a, &vec!["c0"; 2 * n], &times);
        assert_eq!(a, q);
        assert_eq!(plain.centring_used(), Centring::None);
        // ... and as encoded when searched with l1, which running refuses.
        let auto_l1 = open_with(Centring::Auto, Some(Metric::L1)).unwrap();
        assert_eq!(auto_l1.centring_used(), Centring::None);
        let crate::map::file::Descriptors::F32(rows) = auto_l1.map.descriptors() else {
            panic!("an f32 map");
        };
        assert_eq!(rows, &desc[..], "not centred");
        let e = open_with(Centring::Running, Some(Metric::L1))
            .err()
            .expect("l1 refused")
            .to_string();
        assert!(
            e.contains("looks.map") && e.contains("l1 metric") && e.contains("--metric cosine"),
            "{e}"
        );
    }

    /// A robot that starts parked: its first frame joins, the same view again (sensor noise
    /// only, far below the map's steps) does not, however long it waits; once it drives, its
    /// frames join. A zero descriptor is searched as it is and never joins.
    #[test]
    fn a_robot_that_starts_parked_keeps_its_place() {
        let map = MapCentre {
            mean: vec![0.0; 3],
            floor: 0.01,
        };
        let mut q = QueryCentring::default();
        for i in 0..200 {
            let noise = 1e-3 * (i % 3) as f32;
            q.centre(&map, "c0", i as f64 * 0.1, &[1.0, noise, 0.0]);
        }
        assert_eq!(q.frames("c0"), 1);
        q.centre(&map, "c0", 20.0, &[0.0, 1.0, 0.0]);
        q.centre(&map, "c0", 20.5, &[0.0, 0.0, 1.0]);
        assert_eq!(q.frames("c0"), 3);
        assert_eq!(q.centre(&map, "c0", 21.0, &[0.0; 3]), vec![0.0; 3]);
        assert_eq!(q.frames("c0"), 3);
    }

    #[test]
    fn names_parse_and_print() {
        for c in [Centring::None, Centring::Running, Centring::Auto] {
            assert_eq!(c.name().parse::<Centring>(), Ok(c));
        }
        assert_eq!(Centring::default(), Centring::Auto);
        assert_eq!(
            "mean".parse::<Centring>(),
            Err("expected auto, running or none, found `mean`".to_string())
        );
    }
}
