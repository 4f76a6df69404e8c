//! Evaluation of retrieval-based localization on a data set with query ground truth:
//! recall@N (a top-N candidate within 25 m), recall@D (the top-1 within D metres), and the
//! Extended CMU-Seasons accuracies at (0.25 m, 2 deg), (0.5 m, 5 deg), (5 m, 10 deg), each in
//! all and per query condition and camera; a benchmark submission; report.json / report.md;
//! recall curves and a sheet of query / top-1 pairs as PNG.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::sources::SourceImages;
use crate::data::PosedImage;
use crate::error::PipelineError;
use crate::geom::Pose;
use crate::localize::{Filter, Localizer, Outcome, Query, Tally};
use crate::map::{image_name, MapFile};
use crate::plot::{self, Panel, Series};

pub const RECALL_N: [usize; 4] = [1, 5, 10, 20];
pub const RECALL_D: [f64; 8] = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0];
pub const CMU_THRESHOLDS: [(f64, f64); 3] = [(0.25, 2.0), (0.5, 5.0), (5.0, 10.0)];
pub const RECALL_RADIUS: f64 = 25.0;

/// One query's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResult {
    pub name: String,
    pub camera: String,
    pub condition: String,
    /// Position error of the top-1 (m) and its rotation error (deg).
    pub position_error: f64,
    pub rotation_error: f64,
    /// Rank (1-based) of the first candidate within 25 m, if any in the top 20.
    pub first_within_25m: Option<usize>,
    pub top1: String,
    pub distance: f32,
    /// The prior's confidence (1 - d1/d_alt, docs/pose-prior.md) and whether the node, at the same settings, would
    /// publish it (false: withheld as ambiguous).
    #[serde(default)]
    pub confidence: f64,
    #[serde(default = "yes")]
    pub published: bool,
    /// Squared Mahalanobis distance of the true position under the prior's position block
    /// (inside the 95% ellipsoid when <= 7.81); None for a singular block.
    #[serde(default)]
    pub mahalanobis2: Option<f64>,
    /// The longest semi-axis of the prior's 95% position ellipsoid (m).
    #[serde(default)]
    pub radius_95: f64,
    /// Squared Mahalanobis distance of the true orientation under the prior's rotation block
    /// (inside its 95% bound when <= 7.81; `prior::rotation_mahalanobis2`). Older results: None.
    #[serde(default)]
    pub rotation_mahalanobis2: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Scores of a set of queries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    pub queries: usize,
    /// N -> share of queries with a top-N candidate within 25 m.
    pub recall_at_n: BTreeMap<usize, f64>,
    /// D (m, as text) -> share of queries whose top-1 is within D.
    pub recall_at_d: BTreeMap<String, f64>,
    /// "0.25m,2deg" ... -> share within both thresholds.
    pub accuracy: BTreeMap<String, f64>,
    pub median_position_error: f64,
    /// The true position inside the prior's 95% position ellipsoid (docs/pose-prior.md).
    #[serde(default)]
    pub inside_95_ellipsoid: f64,
    /// The median of the 95% ellipsoids' longest semi-axes (m).
    #[serde(default)]
    pub median_radius_95: f64,
    /// The true orientation inside the prior's 95% rotation bound (its rotation block, 3
    /// degrees of freedom: docs/pose-prior.md). Older reports: 0.
    #[serde(default)]
    pub rotation_inside_95: f64,
}

pub fn threshold_name(t: (f64, f64)) -> String {
    format!("{}m,{}deg", t.0, t.1)
}

pub fn score(results: &[&QueryResult]) -> Scores {
    let n = results.len().max(1) as f64;
    let share =
        |f: &dyn Fn(&QueryResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    let mut errs: Vec<f64> = results.iter().map(|r| r.position_error).collect();
    errs.sort_by(|a, b| a.total_cmp(b));
    let mut radii: Vec<f64> = results.iter().map(|r| r.radius_95).collect();
    radii.sort_by(|a, b| a.total_cmp(b));
    Scores {
        queries: results.len(),
        recall_at_n: RECALL_N
            .iter()
            .map(|&k| (k, share(&|r| r.first_within_25m.is_some_and(|f| f <= k))))
            .collect(),
        recall_at_d: RECALL_D
            .iter()
            .map(|&d| (format!("{d}"), share(&|r| r.position_error <= d)))
            .collect(),
        accuracy: CMU_THRESHOLDS
            .iter()
            .map(|&t| {
                (
                    threshold_name(t),
                    share(&|r| r.position_error <= t.0 && r.rotation_error <= t.1),
                )
            })
            .collect(),
        median_position_error: errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN),
        inside_95_ellipsoid: share(&|r| {
            r.mahalanobis2
                .is_some_and(|m| m <= crate::localize::prior::CHI2_3_95)
        }),
        median_radius_95: radii.get(radii.len() / 2).copied().unwrap_or(f64::NAN),
        rotation_inside_95: share(&|r| {
            r.rotation_mahalanobis2
                .is_some_and(|m| m <= crate::localize::prior::CHI2_3_95)
        }),
    }
}

/// A whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    /// The descriptor's encoder layers (`6`, `5,6`; `none` for raw pixels) and its length.
    /// Older reports without them: empty and 0.
    #[serde(default)]
    pub layers: String,
    #[serde(default)]
    pub descriptor_values: usize,
    pub adaptation: String,
    /// The per-image photometric normalisation of map and queries (`--photometric`). Older
    /// reports without the field: none.
    #[serde(default = "photometric_none")]
    pub photometric: String,
    /// Whether map and query images were rectified with their intrinsics and lens
    /// (`--rectify`). Older reports: false.
    #[serde(default)]
    pub rectified: bool,
    /// The map's yaw views (`--yaw-views`: `±3,±6 deg`; `none`). Older reports: none.
    #[serde(default = "views_none")]
    pub yaw_views: String,
    pub metric: String,
    pub map_entries: usize,
    /// Every query frame with ground truth (the node's answer whether or not it would publish
    /// it).
    pub all: Scores,
    /// Listed queries without ground truth: localized and in submission.txt, not scored.
    #[serde(default)]
    pub unscored: usize,
    /// What the node would publish, at the Localizer's defaults (the node's): the scores of the
    /// published frames and the counts of every outcome (withheld frames are not scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
    /// `none` (each query on its own) or `sequence` (the Bayes filter over the map's places).
    #[serde(default = "none")]
    pub filter: String,
    /// What was done: `none` (as encoded), or `running`: descriptors centred by the map's mean
    /// and each camera's recent frames' (`--centring running`, or `auto` where it could be;
    /// `localize::centring`). Reports written before it existed read `none`.
    #[serde(default = "none")]
    pub centring: String,
    /// The sequence filter's relocalizations (a jump beyond the motion's reach) and resets (a
    /// gap long enough to start again), with `filter: sequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceCounts>,
    pub by_condition: BTreeMap<String, Scores>,
    pub by_camera: BTreeMap<String, Scores>,
    /// What the lens check found ([`lens_warnings`]): a line per query camera through another
    /// lens than the map's images, or that the map recorded none. Absent: nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lenses: Vec<String>,
    /// `evaluate --gate-radius`: the gate every scored query was searched in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    pub queries: Vec<QueryResult>,
    /// Per scored query: its true position and its first QUALITY_HITS candidates (descriptor
    /// distance, position) and, with the sequence filter, the belief about the published place
    /// (`belief_profile`, [`crate::localize::sequence::BeliefAt`] nearest first) and the map's
    /// `up`, the probability of being off the map (`off_map`), the motion's `evidence`, how far
    /// the vehicle may have driven past a map's end (`beyond_end`, metres), the
    /// frame's own `frame_confidence`; for every query its `timestamp_us`, whether it was
    /// `published`, and `map_distance` (metres from the true position to the nearest map
    /// place): written as candidates-{adaptation}.jsonl, the input of tools/python/fit_prior.py
    /// (single frames), tools/python/fit_sequence_spread.py and tools/python/fit_off_map.py
    /// (the filter; docs/pose-prior.md, docs/sequence-filter.md).
    #[serde(skip)]
    pub candidates: Vec<serde_json::Value>,
}

/// `; odometry from TOPIC: ...` for the report and the summary.
pub fn odometry_line(o: &OdometryUse) -> String {
    format!(
        "; odometry from {}: {} of its {} message(s) taken ({} left out, {} dropped, {} recorded \
         out of stamp order), {} filter step(s) moved by it",
        o.topic, o.taken, o.messages, o.left_out, o.dropped, o.out_of_order, o.steps_moved
    )
}

/// The serde default of `filter` and `centring` in reports written before they existed.
fn none() -> String {
    "none".into()
}

/// What the sequence filter did over a query set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SequenceCounts {
    pub relocalizations: u64,
    pub resets: u64,
    /// With a recording's odometry (`--odometry-topic`): what the filter took from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odometry: Option<OdometryUse>,
}

/// A recording's odometry as the sequence filter used it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OdometryUse {
    pub topic: String,
    /// Messages read; left out (stamp 0, not decodable: the node drops the first and cannot
    /// read the second); taken by the filter's track; dropped by it (not finite, or a stamp
    /// repeated); recorded out of stamp order (used in stamp order here: the node, taking
    /// them as they arrive, would drop those older than the newest).
    pub messages: u64,
    pub left_out: u64,
    pub taken: u64,
    pub dropped: u64,
    pub out_of_order: u64,
    /// The filter's steps moved by the odometry: each capture after the first of a drive
    /// (the cameras of one capture are one step), where the odometry covered the interval.
    pub steps_moved: u64,
}

/// The node's view of a query set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub min_confidence: f64,
    /// With the sequence filter: the off-the-map threshold the run used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_map_threshold: Option<f64>,
    pub outcomes: Tally,
    /// None when the node would publish nothing.
    pub scores: Option<Scores>,
}

impl Published {
    /// The published priors within (5 m, 10 deg): over every scored query (a withheld one counts
    /// as a miss) it is what `replay` calls the correct priors per frame sent.
    pub fn correct(&self) -> usize {
        self.scores.as_ref().map_or(0, |s| {
            (s.accuracy[&threshold_name((5.0, 10.0))] * s.queries as f64).round() as usize
        })
    }
}

/// `evaluate --gate-radius`: each scored query is searched only among the map images in a gate
/// around a gating position, its true camera centre moved by a horizontal error (the map's
/// ground plane, perpendicular to its up) of `error` metres standard deviation per axis: what
/// the node does with a position prior on its `prior_topic` (`gate_radius`, `gate_sigmas`),
/// e.g. a GNSS fix whose covariance says that error. The gate is the node's for such a prior
/// ([`crate::localize::gate::Gate::around`]): `radius` along up, sqrt(radius^2 + (sigmas
/// error)^2) across.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateSettings {
    /// Metres: `--gate-radius`, the node's `gate_radius`.
    pub radius: f64,
    /// Metres, the standard deviation of each horizontal axis of the gating position's error.
    pub error: f64,
    /// The seed of the errors' draw (one draw per scored query, in the list's order; with
    /// `drift`, in time order).
    pub seed: u64,
    /// `--gate-drift` (seconds): the errors' correlation time, a first-order Gauss-Markov
    /// process over the queries in time order (a GNSS error drifts: consecutive frames share
    /// most of it; the cameras of one capture all of it); 0: drawn for each query
    /// independently. Reports before 2026-12-05: 0.
    #[serde(default)]
    pub drift: f64,
    /// `--gate-sigmas` (the node's `gate_sigmas`): the standard deviations of the gating
    /// position's error the gate adds to `radius` in quadrature. Reports before 2026-12-05: 0
    /// (the sphere of `radius`).
    #[serde(default)]
    pub sigmas: f64,
}

impl GateSettings {
    /// The gate's semi-axis across (metres), in the map's ground plane: sqrt(radius^2 +
    /// (sigmas error)^2); along up it is `radius`.
    pub fn searched_radius(&self) -> f64 {
        self.radius.hypot(self.sigmas * self.error)
    }

    /// The gate around a gating position, for a map whose up is `up`: the node's gate for a
    /// prior whose covariance is `error`^2 along each horizontal axis and 0 along up. None:
    /// wider than [`crate::localize::gate::MAX_GATE_RADIUS`] (the CLI refuses such settings).
    pub fn gate(
        &self,
        centre: [f64; 3],
        up: &nalgebra::Vector3<f64>,
    ) -> Option<crate::localize::gate::Gate> {
        let u = if up.norm() > 0.0 {
            up.normalize()
        } else {
            nalgebra::Vector3::z()
        };
        let horizontal = nalgebra::Matrix3::identity() - u * u.transpose();
        let cov = horizontal * (self.error * self.error);
        crate::localize::gate::Gate::around(centre, self.radius, self.sigmas, Some(&cov))
    }
}

/// What `evaluate --gate-radius` did (report.json `gate`: the settings, then the results).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    #[serde(flatten)]
    pub settings: GateSettings,
    /// Metres: [`GateSettings::searched_radius`], the gate's semi-axis across (along up:
    /// `radius`). Older reports: 0 (their gate was the sphere of `radius`).
    #[serde(default)]
    pub searched_radius: f64,
    /// Scored queries whose gate held no map image (of their camera; of any camera with
    /// `--shared`): nothing published, as the node publishes nothing then; their line in
    /// submission.txt, their `all` scores and their row in candidates-*.jsonl (`gate_empty`:
    /// true) come from a single-frame search of the whole map, with `--filter sequence` too.
    #[serde(default)]
    pub empty: u64,
    /// The median number of map images (of the query's camera; of any with `--shared`) the
    /// scored queries' gates held, and of the whole map searched without a gate: how much the
    /// gate narrowed the search.
    #[serde(default)]
    pub median_held: f64,
    #[serde(default)]
    pub median_searched_ungated: f64,
}

impl GateSettings {
    /// The gating position of each query (None for a query without ground truth: searched
    /// ungated), `up` the map's up direction. With `drift` every query has a timestamp (the
    /// caller checks): the error of a query `dt` seconds after the one before it in time is
    /// a e_prev + sqrt(1 - a^2) n, a = exp(-dt / drift), n a fresh draw, so each error has the
    /// same spread, `error` per horizontal axis.
    pub fn centres(
        &self,
        queries: &[PosedImage],
        up: &nalgebra::Vector3<f64>,
    ) -> Vec<Option<[f64; 3]>> {
        use rand::{Rng, SeedableRng};
        let up = if up.norm() > 0.0 {
            up.normalize()
        } else {
            nalgebra::Vector3::z()
        };
        let other = if up.x.abs() < 0.9 {
            nalgebra::Vector3::x()
        } else {
            nalgebra::Vector3::y()
        };
        let u1 = up.cross(&other).normalize();
        let u2 = up.cross(&u1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        // The order errors are drawn in: the list's; with drift, time's (ties in list order).
        let mut order: Vec<usize> = (0..queries.len()).collect();
        if self.drift > 0.0 {
            order.sort_by_key(|&i| queries[i].timestamp_us.unwrap_or(i64::MIN));
        }
        let mut out = vec![None; queries.len()];
        // The previous error (in standard deviations) and its time, with drift.
        let mut previous: Option<(i64, [f64; 2])> = None;
        for i in order {
            let q = &queries[i];
            let Some(pose) = &q.world_from_cam else {
                continue;
            };
            let n: [f64; 2] = [
                rng.sample(rand_distr::StandardNormal),
                rng.sample(rand_distr::StandardNormal),
            ];
            let e = match (self.drift > 0.0, previous, q.timestamp_us) {
                (true, Some((t0, e0)), Some(t)) => {
                    let a = (-((t - t0) as f64 * 1e-6) / self.drift).exp();
                    let b = (1.0 - a * a).max(0.0).sqrt();
                    [a * e0[0] + b * n[0], a * e0[1] + b * n[1]]
                }
                _ => n,
            };
            if let Some(t) = q.timestamp_us {
                previous = Some((t, e));
            }
            let c = pose.translation.vector + (u1 * e[0] + u2 * e[1]) * self.error;
            out[i] = Some([c.x, c.y, c.z]);
        }
        out
    }
}

impl<'de> Deserialize<'de> for Tally {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct T {
            localized: u64,
            ambiguous: u64,
            rejected: u64,
            no_candidates: u64,
            #[serde(default)]
            off_the_map: u64,
        }
        let t = T::deserialize(d)?;
        Ok(Tally {
            localized: t.localized,
            ambiguous: t.ambiguous,
            rejected: t.rejected,
            no_candidates: t.no_candidates,
            off_the_map: t.off_the_map,
        })
    }
}

/// Condition labels of query images: the synthetic slice's `query-conditions.txt` when present,
/// else the query's date (each Extended CMU-Seasons traversal is one day).
/// The slice folder is the one above the queries' folder.
pub fn condition_labels(src: &SourceImages) -> BTreeMap<String, String> {
    let queries = &src.queries;
    let slice_dir = queries
        .first()
        .and_then(|q| q.path.parent())
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut labels = synthetic_conditions(&slice_dir);
    for q in queries {
        let name = image_name(q);
        labels
            .entry(name)
            .or_insert_with(|| date_label(q.timestamp_us));
    }
    labels
}

/// A synthetic slice's `query-conditions.txt` (image name -> condition); empty when the slice
/// has none (real data).
pub fn synthetic_conditions(slice_dir: &Path) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(slice_dir.join(crate::synth::cmu::QUERY_CONDITIONS)) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, cond)) = line.split_once(' ') {
                labels.insert(name.to_string(), cond.trim().to_string());
            }
        }
    }
    labels
}

/// A query's condition when nothing names it: the UTC date of its timestamp (a RobotCar
/// traversal, a recording), or `day N` for a clock that starts near 0 (KITTI's seconds since
/// the sequence start: before 2000), `unknown` without one.
fn date_label(timestamp_us: Option<i64>) -> String {
    const YEAR_2000_S: i64 = 946_684_800;
    match timestamp_us {
        Some(us) if us.div_euclid(1_000_000) >= YEAR_2000_S => {
            time::OffsetDateTime::from_unix_timestamp(us.div_euclid(1_000_000))
                .map(|t| t.date().to_string())
                .unwrap_or_else(|_| format!("day {}", us.div_euclid(86_400_000_000)))
        }
        Some(us) => format!("day {}", us.div_euclid(86_400_000_000)),
        None => "unknown".into(),
    }
}

fn rotation_error_deg(a: &Pose, b: &Pose) -> f64 {
    (a.rotation.inverse() * b.rotation).angle().to_degrees()
}

/// A query's prior as `evaluate` found it: for submission.txt and the TUM trajectories.
#[derive(Debug, Clone)]
pub struct Localized {
    pub name: String,
    pub camera: String,
    pub timestamp_us: Option<i64>,
    /// The prior (the camera's pose in the map's world frame).
    pub world_from_cam: Pose,
    /// Whether the node would publish it (confidence at least min_confidence).
    pub published: bool,
    pub truth: Option<Pose>,
}

/// `evaluate` warns when the queries' true positions lie a median of more than this (metres)
/// from the nearest map image: a map of another place, or truth in another frame.
pub const OFF_MAP_WARNING: f64 = 2.0 * RECALL_RADIUS;

/// The median, over up to 200 queries with a true pose (evenly spread), of the distance from the
/// query's true position to the nearest map image's (metres); None without such queries or an
/// empty map.
pub fn median_distance_to_map(map: &MapFile, queries: &[PosedImage]) -> Option<f64> {
    let truths: Vec<_> = queries.iter().filter_map(|q| q.world_from_cam).collect();
    if truths.is_empty() || map.is_empty() {
        return None;
    }
    let rows: Vec<_> = (0..map.len())
        .map(|i| map.pose(i).translation.vector)
        .collect();
    let n = truths.len().min(200);
    let mut d: Vec<f64> = (0..n)
        .map(|j| {
            let t = truths[j * truths.len() / n].translation.vector;
            rows.iter()
                .map(|r| (r - t).norm())
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    d.sort_by(f64::total_cmp);
    Some(d[n / 2])
}

/// What [`lens_warnings`] says when the map recorded no lens to compare with.
pub const LENS_UNKNOWN: &str = "records no lens";

/// One line per query camera whose lens differs from the map's
/// ([`crate::map::views::lens_mismatch`]: compared with the same map camera with `per_camera`,
/// with every camera otherwise), as each side is encoded: a rectified map's images and queries
/// count as pinholes; one line when the map recorded no lens for a query camera with
/// intrinsics (an older map, a source without intrinsics: [`LENS_UNKNOWN`]). Cameras without
/// intrinsics are not judged.
pub fn lens_warnings(
    map: &crate::map::file::MapMeta,
    queries: &[PosedImage],
    per_camera: bool,
) -> Vec<String> {
    use crate::map::views::{lens_mismatch, Lens, LensCompare};
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for q in queries {
        let Some(k) = q.intrinsics.as_ref() else {
            continue;
        };
        if !seen.insert(q.camera.as_str()) {
            continue;
        }
        let rectified = map.encoder.rectified;
        match lens_mismatch(
            &map.lenses,
            rectified,
            &q.camera,
            k,
            &Lens::Brown(q.distortion.unwrap_or([0.0; 5])),
            rectified,
            per_camera,
        ) {
            LensCompare::Same => {}
            LensCompare::Unknown => unknown.push(q.camera.clone()),
            LensCompare::Other(m) => out.push(format!(
                "camera {}: queries (e.g. {}) {}; {}",
                q.camera,
                q.path.display(),
                m.describe(),
                if rectified {
                    "give the queries rectified (evaluate --map rectifies them itself)"
                } else {
                    "rebuild the map with build-map --rectify (evaluate --map then rectifies \
                     the queries itself), or from images of the queries' camera"
                }
            )),
        }
    }
    if !unknown.is_empty() {
        out.push(format!(
            "the map {LENS_UNKNOWN} for camera(s) {} (built before maps recorded lenses, or from \
             a source without intrinsics): the queries' lens is not checked against it; \
             rebuild the map to check it",
            unknown.join(", ")
        ));
    }
    out
}

/// What the map and the queries say about each other before any is searched (logged and
/// returned by [`evaluate`] for the report's notes): queries whose truth lies off the map, and
/// (recordings, each camera searched among its own map images) a camera whose frames are
/// another camera's in the map.
pub fn source_warnings(map: &MapFile, src: &SourceImages, per_camera: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = median_distance_to_map(map, &src.queries) {
        if d > OFF_MAP_WARNING {
            out.push(format!(
                "the queries' true positions lie a median {d:.1} m from the nearest map image: \
                 this map does not show where they were taken (another place's map, or another \
                 world frame?); every figure is of queries off the map"
            ));
        }
    }
    if let (true, Some(m), Some(q)) = (per_camera, &map.meta.source.bag, &src.source.bag) {
        for id in &q.camera_ids {
            for frame in q.frames_of(id).unwrap_or_default() {
                out.extend(m.crossed(id, frame));
            }
        }
    }
    out
}

/// Runs every listed query through `loc` (its map built from `src.database`): each gets a line in
/// the submission; those with ground truth are scored, the others counted (`Report::unscored`).
/// Also returns what it warned about the map and the queries ([`source_warnings`]), for the
/// report's notes.
///
/// A `loc` that centres descriptors (`Centring::Running`, or `Auto` where the map allows it)
/// needs every query's timestamp ([`PipelineError::CentringTimestamp`] otherwise): its map rows
/// are centred when it is made, so the fallback of `Auto` for unstamped queries happens before
/// that, in [`super::centring_for_queries`] (which [`super::run`] and [`super::run_on_map`]
/// call); make `loc` with the options it returns.
pub fn evaluate(
    loc: &Localizer,
    src: &SourceImages,
    labels: &BTreeMap<String, String>,
    per_camera: bool,
    model: &str,
    gate: Option<GateSettings>,
) -> Result<(Report, Vec<Localized>, Vec<String>), PipelineError> {
    if src.queries.is_empty() {
        return Err(PipelineError::NoQueries {
            root: src.source.root.clone(),
        });
    }
    let map = &loc.map;
    let owned: &[PosedImage] = &src.queries;
    // A query the map cannot answer stops the run before any warning about the rest or any work.
    for q in owned {
        if per_camera && !loc.index.by_camera.contains_key(&q.camera) {
            return Err(PipelineError::QueryCamera {
                path: q.path.clone(),
                camera: q.camera.clone(),
                have: loc.cameras().join(", "),
            });
        }
    }
    let warnings = source_warnings(map, src, per_camera);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let lenses = lens_warnings(&map.meta, owned, per_camera);
    for w in &lenses {
        if w.contains(LENS_UNKNOWN) {
            tracing::info!("{w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    if loc.options.filter == Filter::Sequence {
        if let Some(q) = owned.iter().find(|q| q.timestamp_us.is_none()) {
            return Err(PipelineError::NoTimestamp {
                path: q.path.clone(),
            });
        }
    }
    // Centring follows each camera's frames in time order: every query's stamp, in seconds.
    let centring_times = match loc.centre {
        Some(_) => Some(
            owned
                .iter()
                .map(|q| {
                    q.timestamp_us.map(|t| t as f64 * 1e-6).ok_or_else(|| {
                        PipelineError::CentringTimestamp {
                            path: q.path.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<f64>, _>>()?,
        ),
        None => None,
    };
    if gate.is_some_and(|g| g.drift > 0.0) {
        // Queries without ground truth are searched ungated: they need no time.
        if let Some(q) = owned
            .iter()
            .find(|q| q.world_from_cam.is_some() && q.timestamp_us.is_none())
        {
            return Err(PipelineError::GateDriftTimestamp {
                path: q.path.clone(),
            });
        }
    }
    let progress = crate::progress::Progress::new("evaluate", "queries", owned.len() as u64, 0);
    // Batched encoding of the query files, decoded by the map's recipe and, for a rectified
    // map, rectified with each file's intrinsics (Localizer::describe per frame gives the same
    // descriptors for an unrectified map; it encodes frames as they are).
    let desc = loc
        .encoder
        .encode_images(owned, map.meta.image_decoding(), Some(&progress))?;
    progress.finish();
    let dim = loc.encoder.dim();
    let mut desc = desc;
    if let Some(times) = &centring_times {
        let sources: Vec<&str> = owned.iter().map(|q| q.camera.as_str()).collect();
        loc.centre_descriptors(&mut desc, &sources, times);
    }
    let mut results = Vec::with_capacity(owned.len());
    let mut submission = Vec::with_capacity(owned.len());
    let mut tally = Tally::default();
    let mut unscored = 0;
    let mut candidates = Vec::new();
    let centres = gate.map(|g| g.centres(owned, &loc.places.up));
    if gate.is_some() {
        let without_truth = owned.iter().filter(|q| q.world_from_cam.is_none()).count();
        if without_truth > 0 {
            tracing::warn!(
                "--gate-radius: {without_truth} of the {} listed queries have no ground truth to draw \
                 a gate around: they are searched in the whole map",
                owned.len()
            );
        }
    }
    // Each query's gate, made once (the search, the fallback and the gate's report use it).
    let gates: Vec<Option<crate::localize::gate::Gate>> = match (gate, &centres) {
        (Some(g), Some(cs)) => cs
            .iter()
            .map(|c| c.and_then(|c| g.gate(c, &loc.places.up)))
            .collect(),
        _ => vec![None; owned.len()],
    };
    let near = |i: usize| gates[i];
    let query = |i: usize, gated: bool| -> Query<'_> {
        Query {
            camera: per_camera.then_some(owned[i].camera.as_str()),
            near: if gated { near(i) } else { None },
            source: owned[i].camera.as_str(),
            ..Default::default()
        }
    };
    let want = RECALL_N[RECALL_N.len() - 1];
    // A gate that holds no map image publishes nothing (the node's outcome, counted); the
    // submission line and the `all` scores take the whole map's answer instead.
    let ungated = |i: usize, o: &Outcome| -> Option<Outcome> {
        (matches!(o, Outcome::NoCandidates(_)) && near(i).is_some())
            .then(|| loc.localize_descriptor(&desc[i * dim..(i + 1) * dim], &query(i, false), want))
    };
    let mut sequence = None;
    let outcomes: Vec<Outcome> = match loc.options.filter {
        Filter::None => (0..owned.len())
            .map(|i| loc.localize_descriptor(&desc[i * dim..(i + 1) * dim], &query(i, true), want))
            .collect(),
        Filter::Sequence => {
            // Every camera's queries in time order (ties in list order) through one filter.
            let mut stamps = Vec::with_capacity(owned.len());
            for q in owned {
                stamps.push(q.timestamp_us.ok_or_else(|| PipelineError::NoTimestamp {
                    path: q.path.clone(),
                })?);
            }
            let mut order: Vec<usize> = (0..owned.len()).collect();
            order.sort_by_key(|&i| stamps[i]);
            let mut filter = crate::localize::sequence::SequenceFilter::new(&loc.places);
            let mut out: Vec<Option<Outcome>> = vec![None; owned.len()];
            // A recording's odometry reaches the filter as the node's subscription hands it on.
            let mut odometry = src
                .odometry
                .as_ref()
                .map(crate::localize::odometry::OdometryReplay::new);
            for i in order {
                let time = stamps[i] as f64 * 1e-6;
                let travel = odometry
                    .as_mut()
                    .and_then(|o| o.travelled(filter.last_time(), time));
                let outcome = loc.localize_in_sequence(
                    &mut filter,
                    &desc[i * dim..(i + 1) * dim],
                    &query(i, true),
                    time,
                    travel,
                    want,
                );
                out[i] = Some(outcome);
            }
            if let Some(o) = odometry.as_mut() {
                o.finish();
            }
            sequence = Some(SequenceCounts {
                relocalizations: filter.relocalizations,
                resets: filter.resets,
                odometry: src
                    .odometry
                    .as_ref()
                    .zip(odometry)
                    .map(|(r, o)| OdometryUse {
                        topic: r.topic.clone(),
                        messages: r.samples.len() as u64 + r.left_out,
                        left_out: r.left_out,
                        taken: o.track.taken,
                        dropped: o.track.dropped,
                        out_of_order: r.out_of_order,
                        steps_moved: filter.odometry_moves,
                    }),
            });
            out.into_iter().map(|o| o.expect("every query")).collect()
        }
    };
    let fallbacks: Vec<Option<Outcome>> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| ungated(i, o))
        .collect();
    for ((q, outcome), fallback) in owned.iter().zip(outcomes).zip(fallbacks) {
        let gate_empty = outcome.answer().is_none() && fallback.is_some();
        let Some(answer) = outcome
            .answer()
            .or_else(|| fallback.as_ref().and_then(Outcome::answer))
        else {
            return Err(PipelineError::NoPrior {
                path: q.path.clone(),
                why: match &outcome {
                    Outcome::Rejected(why) | Outcome::NoCandidates(why) => why.clone(),
                    _ => String::new(),
                },
            });
        };
        let hits = &answer.hits;
        let best = answer.prior.pose;
        let name = image_name(q);
        submission.push(Localized {
            name: name.clone(),
            camera: q.camera.clone(),
            timestamp_us: q.timestamp_us,
            world_from_cam: best,
            published: matches!(outcome, Outcome::Prior(_)),
            truth: q.world_from_cam,
        });
        let Some(truth) = q.world_from_cam else {
            unscored += 1;
            continue;
        };
        tally.record(&outcome);
        let err = |p: &Pose| (p.translation.vector - truth.translation.vector).norm();
        let first = hits
            .iter()
            .take(RECALL_N[RECALL_N.len() - 1])
            .position(|h| err(&map.pose(h.index)) <= RECALL_RADIUS)
            .map(|r| r + 1);
        results.push(QueryResult {
            condition: labels
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
            name,
            camera: q.camera.clone(),
            position_error: err(&best),
            rotation_error: rotation_error_deg(&best, &truth),
            first_within_25m: first,
            top1: map.meta.names[hits[0].index].clone(),
            distance: hits[0].distance,
            confidence: answer.prior.confidence,
            published: matches!(outcome, Outcome::Prior(_)),
            mahalanobis2: crate::localize::prior::mahalanobis2(
                &answer.prior.covariance,
                &best.translation.vector,
                &truth.translation.vector,
            ),
            radius_95: crate::localize::prior::radius_95(&answer.prior.covariance),
            rotation_mahalanobis2: crate::localize::prior::rotation_mahalanobis2(
                &answer.prior.covariance,
                &best,
                &truth,
            ),
        });
        let ranked: Vec<(Pose, f64)> = hits
            .iter()
            .map(|h| (map.pose(h.index), h.distance as f64))
            .collect();
        let used = crate::localize::prior::hits_used(&ranked, loc.options.top_k);
        let r = results.last().expect("just pushed");
        candidates.push(serde_json::json!({
            "name": r.name,
            "camera": q.camera,
            "truth": truth.translation.vector.as_slice(),
            "candidates": ranked[..used].iter().map(|(p, d)| {
                let t = p.translation.vector;
                serde_json::json!([d, t.x, t.y, t.z])
            }).collect::<Vec<_>>(),
            "filter": loc.options.filter.name(),
            "top_k": loc.options.top_k,
            "confidence": r.confidence,
            "radius_95": r.radius_95,
            "mahalanobis2": r.mahalanobis2,
            "rotation_residual": crate::localize::prior::rotation_residual(&best, &truth).as_slice(),
            "rotation_block": crate::localize::prior::rotation_block(&answer.prior.covariance)
                .transpose()
                .as_slice(),
            "rotation_floor": crate::localize::prior::SIGMA_ROTATION,
            "rotation_unsure": crate::localize::prior::ROTATION_UNSURE_CALIBRATION,
            "belief_profile": answer.belief_profile,
            "off_map": answer.off_map,
            "frame_confidence": answer.frame_confidence,
            "evidence": answer.evidence,
            "mean_likelihood": answer.mean_likelihood,
            "beyond_end": answer.beyond_end,
            "camera_weight": answer.camera_weight,
            "view_yaw_deg": answer.view_yaw_deg,
            "timestamp_us": q.timestamp_us,
            "map_distance": loc.places.nearest_distance({
                let t = truth.translation.vector;
                [t.x, t.y, t.z]
            }),
            "published": r.published,
            "gate_empty": gate_empty,
            "up": loc.places.up.as_slice(),
            "map_spacing": loc.places.spacing,
        }));
    }
    let group = |key: &dyn Fn(&QueryResult) -> String| -> BTreeMap<String, Scores> {
        let mut groups: BTreeMap<String, Vec<&QueryResult>> = BTreeMap::new();
        for r in &results {
            groups.entry(key(r)).or_default().push(r);
        }
        groups.into_iter().map(|(k, v)| (k, score(&v))).collect()
    };
    if gate.is_some() && 2 * tally.no_candidates > results.len() as u64 {
        tracing::warn!(
            "--gate-radius: {} of the {} gates held no map image (a gate narrower than its \
             error, or a map that does not show where the queries are): nothing is published \
             for them, and the `all` figures are mostly those of a search of the whole map",
            tally.no_candidates,
            results.len()
        );
    }
    let report = Report {
        lenses,
        model: model.to_string(),
        layers: map.meta.encoder.layers_name(),
        descriptor_values: map.dim(),
        adaptation: map.meta.encoder.adaptation.name().into(),
        photometric: map.meta.encoder.photometric_name(),
        rectified: map.meta.encoder.rectified,
        yaw_views: crate::map::views::describe(&map.meta.yaw_views_deg),
        metric: loc.metric.name().into(),
        map_entries: map.len(),
        all: score(&results.iter().collect::<Vec<_>>()),
        unscored,
        filter: loc.options.filter.name().into(),
        centring: loc.centring_used().name().into(),
        sequence,
        published: Some(Published {
            min_confidence: loc.options.min_confidence,
            off_map_threshold: (loc.options.filter == Filter::Sequence)
                .then_some(loc.options.off_map_threshold),
            outcomes: tally,
            scores: {
                let published: Vec<&QueryResult> = results.iter().filter(|r| r.published).collect();
                (!published.is_empty()).then(|| score(&published))
            },
        }),
        by_condition: group(&|r| r.condition.clone()),
        by_camera: group(&|r| r.camera.clone()),
        gate: gate.map(|g| {
            // The median (sorted[len / 2], as the other medians here) of the map images each
            // gated query's gate held, and of those it would search without one.
            let median = |size: &dyn Fn(usize) -> usize| -> f64 {
                let mut n: Vec<usize> = (0..owned.len())
                    .filter(|&i| near(i).is_some())
                    .map(size)
                    .collect();
                n.sort_unstable();
                n.get(n.len() / 2).map_or(0.0, |&k| k as f64)
            };
            let held = |i: usize| {
                let q = query(i, true);
                loc.index
                    .candidates(q.camera, q.near.as_ref())
                    .map_or(map.len(), |c| c.len())
            };
            let ungated = |i: usize| {
                query(i, false)
                    .camera
                    .and_then(|c| loc.index.by_camera.get(c))
                    .map_or(map.len(), Vec::len)
            };
            Gate {
                settings: g,
                searched_radius: g.searched_radius(),
                empty: tally.no_candidates,
                median_held: median(&held),
                median_searched_ungated: median(&ungated),
            }
        }),
        queries: results,
        candidates,
    };
    Ok((report, submission, warnings))
}

fn photometric_none() -> String {
    crate::data::preprocess::Photometric::None.name().into()
}

fn views_none() -> String {
    crate::map::views::describe(&[])
}

fn pct(v: f64) -> String {
    format!("{:.1}", v * 100.0)
}

/// Why priors were withheld, in words: `withheld` frames (the tally's `ambiguous`), of which
/// `off_map` as off the map (the filter's `off_map_threshold`) and the rest below
/// `min_confidence`; `filter` says whether the off-the-map test ran.
pub fn withheld_words(withheld: u64, off_map: u64, filter: bool) -> String {
    let why = withheld_reasons(withheld, off_map, filter);
    if filter {
        format!("{withheld} withheld: {why}")
    } else {
        format!("{withheld} withheld {why}")
    }
}

/// The reasons of [`withheld_words`] alone ("3 as off the map, 9 below min_confidence", or
/// "below min_confidence" without the off-the-map test), as replay's summary says them too.
pub fn withheld_reasons(withheld: u64, off_map: u64, filter: bool) -> String {
    if filter {
        format!(
            "{off_map} as off the map, {} below min_confidence",
            withheld.saturating_sub(off_map)
        )
    } else {
        "below min_confidence".to_string()
    }
}

/// What `evaluate --gate-radius` did, in words (report.md and the summary).
pub fn gate_line(g: &Gate, scored: usize) -> String {
    let s = &g.settings;
    let around = if s.error > 0.0 {
        let drift = if s.drift > 0.0 {
            format!(", drifting with a correlation time of {} s", s.drift)
        } else {
            String::new()
        };
        format!(
            "its true position moved by a horizontal error of {} m per axis{drift} (seed {})",
            s.error, s.seed
        )
    } else {
        "its true position".into()
    };
    // Older reports have no searched radius: their gate was the sphere of `radius`.
    let across = if g.searched_radius > 0.0 {
        g.searched_radius
    } else {
        s.radius
    };
    let within = if across > s.radius {
        format!(
            "in a gate reaching {across:.1} m horizontally and {} m along up (--gate-radius and \
             {} standard deviations of the error in quadrature, the node's gate for a prior whose \
             covariance gives that error; --gate-sigmas 0: the sphere of {} m) around",
            s.radius, s.sigmas, s.radius
        )
    } else {
        format!("within {} m of", s.radius)
    };
    let empty = if g.empty == 0 {
        format!("no gate of the {scored} was empty")
    } else {
        format!(
            "{} of the {scored} gates held no map image: nothing published for them, and their \
             `all` figures and submission lines come from a single-frame search of the whole map",
            g.empty
        )
    };
    format!(
        "each scored query searched only {within} {around}, as the node's `prior_topic` gates: \
         a gate held a median of {} map images that the query may match ({} without a gate); \
         {empty}",
        g.median_held, g.median_searched_ungated
    )
}

/// report.md: the tables a person reads.
pub fn markdown(reports: &[&Report], notes: &[&String]) -> String {
    let mut s = String::from("# Localization report\n\n");
    // What the data set, the scoring and the Localizer said about the run, before the figures.
    for n in notes {
        s.push_str(&format!("Note: {n}\n\n"));
    }
    for r in reports {
        s.push_str(&format!(
            "## {} (layers: {}, {} values; adaptation: {}, photometric: {}{}, yaw views: {}, metric: {}, {} map images, {} queries)\n\n",
            r.model,
            r.layers,
            r.descriptor_values,
            r.adaptation,
            r.photometric,
            if r.rectified { ", rectified" } else { "" },
            r.yaw_views,
            r.metric,
            r.map_entries,
            r.all.queries
        ));
        s.push_str(&format!(
            "Centring: {}; docs/pose-prior.md, \"Descriptor centring\".\n\n",
            if r.centring == "running" {
                "running (the map's rows minus their mean, each camera's queries minus the mean \
                 of its recent ones)"
            } else {
                "none (descriptors compared as encoded)"
            }
        ));
        match &r.sequence {
            Some(c) => s.push_str(&format!(
                "Filter: sequence (the queries in time order through the Bayes filter over the \
                 map's places, docs/sequence-filter.md): {} relocalization(s), {} reset(s){}.\n\n",
                c.relocalizations,
                c.resets,
                c.odometry.as_ref().map(odometry_line).unwrap_or_default()
            )),
            None => s.push_str("Filter: none (each query on its own).\n\n"),
        }
        for l in &r.lenses {
            s.push_str(&format!("Lens: {l}\n\n"));
        }
        if let Some(g) = &r.gate {
            s.push_str(&format!("Gate: {}.\n\n", gate_line(g, r.all.queries)));
        }
        if r.unscored > 0 {
            s.push_str(&format!(
                "{} of the {} listed queries have no ground truth: they are in submission.txt \
                 and not scored{}.\n\n",
                r.unscored,
                r.unscored + r.all.queries,
                if r.all.queries == 0 {
                    " (no scores computed)"
                } else {
                    ""
                }
            ));
            if r.all.queries == 0 {
                continue;
            }
        }
        s.push_str("| queries | n | (0.25 m, 2°) % | (0.5 m, 5°) % | (5 m, 10°) % | R@1 25 m % | R@5 % | R@10 % | R@20 % | median error m | in 95% ellipsoid % | median 95% radius m | orientation in 95% bound % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut rows: Vec<(String, Option<&Scores>)> = vec![("all".into(), Some(&r.all))];
        // The published row also when nothing was published (its reasons; no scores).
        if let Some((p, sc)) = r.published.as_ref().map(|p| (p, p.scores.as_ref())) {
            rows.push((
                match p.off_map_threshold {
                    Some(t) => format!(
                        "published by the node (min_confidence {}, off_map_threshold {t}: {}; \
                         correct priors per query {} of {})",
                        p.min_confidence,
                        withheld_words(p.outcomes.ambiguous, p.outcomes.off_the_map, true),
                        p.correct(),
                        p.outcomes.total()
                    ),
                    None => format!(
                        "published by the node (min_confidence {}: {}; correct priors per \
                         query {} of {})",
                        p.min_confidence,
                        withheld_words(p.outcomes.ambiguous, 0, false),
                        p.correct(),
                        p.outcomes.total()
                    ),
                },
                sc,
            ));
        }
        rows.extend(
            r.by_condition
                .iter()
                .map(|(k, v)| (format!("condition {k}"), Some(v))),
        );
        rows.extend(
            r.by_camera
                .iter()
                .map(|(k, v)| (format!("camera {k}"), Some(v))),
        );
        for (name, sc) in rows {
            let Some(sc) = sc else {
                s.push_str(&format!("| {name} | 0 |{}\n", " - |".repeat(11)));
                continue;
            };
            let acc: Vec<String> = CMU_THRESHOLDS
                .iter()
                .map(|t| pct(sc.accuracy[&threshold_name(*t)]))
                .collect();
            let rn: Vec<String> = RECALL_N.iter().map(|n| pct(sc.recall_at_n[n])).collect();
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {:.1} | {} | {:.1} | {} |\n",
                sc.queries,
                acc.join(" | "),
                rn.join(" | "),
                sc.median_position_error,
                pct(sc.inside_95_ellipsoid),
                sc.median_radius_95,
                pct(sc.rotation_inside_95)
            ));
        }
        s.push_str(if r.published.is_some() {
            "\nEvery row but \"published by the node\" scores each query's prior whether the node \
             would publish it or withhold it."
        } else {
            "\nEvery row scores each query's prior."
        });
        // How far a share of n priors can read from 95% when the ellipsoids are right.
        let (n, which, inside) = match r.published.as_ref().and_then(|p| p.scores.as_ref()) {
            Some(p) => (p.queries, "published priors", p.inside_95_ellipsoid),
            None => (r.all.queries, "priors", r.all.inside_95_ellipsoid),
        };
        if let Some((lo, hi)) = coverage_band(n) {
            s.push_str(&format!(
                " With {n} {which}, ellipsoids that hold the truth 95% of the time read between \
                 {:.1}% and {:.1}% in 95 of 100 such runs: a share in that band is no evidence \
                 against them.",
                100.0 * lo,
                100.0 * hi
            ));
            if let Some(w) = coverage_verdict(inside, n) {
                s.push_str(&format!(" **{w}**"));
            }
        }
        s.push_str("\n\n");
    }
    s
}

/// What a share `inside` of `n` priors' 95% ellipsoids holding the truth says when it lies
/// outside [`coverage_band`]; None inside it.
pub fn coverage_verdict(inside: f64, n: usize) -> Option<String> {
    let (lo, hi) = coverage_band(n)?;
    // Shares are k/n: compared in whole priors, so rounding never moves one across the band.
    let k = (inside * n as f64).round();
    if k < (lo * n as f64).round() {
        Some(format!(
            "{:.1}% is below that band: on this world the ellipsoids are too tight (the prior's \
             constants were fitted on other worlds; docs/pose-prior.md): a filter fusing these \
             priors would trust wrong ones",
            100.0 * inside
        ))
    } else if k > (hi * n as f64).round() {
        Some(format!(
            "{:.1}% is above that band: on this world the ellipsoids are wider than they need be",
            100.0 * inside
        ))
    } else {
        None
    }
}

/// The central 95% range of the share k/n when each of n priors holds the truth with
/// probability 0.95 (binomial quantiles at 2.5% and 97.5%); None for n = 0.
pub fn coverage_band(n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let p: f64 = 0.95;
    // ln k! for k = 0..=n.
    let mut ln_fact = vec![0.0f64; n + 1];
    for k in 1..=n {
        ln_fact[k] = ln_fact[k - 1] + (k as f64).ln();
    }
    let pmf = |k: usize| {
        (ln_fact[n] - ln_fact[k] - ln_fact[n - k]
            + k as f64 * p.ln()
            + (n - k) as f64 * (1.0 - p).ln())
        .exp()
    };
    let (mut cdf, mut lo, mut hi) = (0.0, None, n);
    for k in 0..=n {
        cdf += pmf(k);
        if lo.is_none() && cdf >= 0.025 {
            lo = Some(k);
        }
        if cdf >= 0.975 {
            hi = k;
            break;
        }
    }
    Some((lo.unwrap_or(0) as f64 / n as f64, hi as f64 / n as f64))
}

/// recall_curves.png: recall@D of the top-1 and recall@N at 25 m, one series per report.
pub fn recall_curves(path: &Path, reports: &[&Report]) -> Result<(), PipelineError> {
    let label = |r: &Report| format!("{} ({})", r.model, run_settings(r));
    let by_d: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: label(r),
            points: RECALL_D
                .iter()
                .map(|d| (*d, 100.0 * r.all.recall_at_d[&format!("{d}")]))
                .collect(),
        })
        .collect();
    let by_n: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: label(r),
            points: RECALL_N
                .iter()
                .map(|n| (*n as f64, 100.0 * r.all.recall_at_n[n]))
                .collect(),
        })
        .collect();
    let (by_d, by_n) = (merge_identical(by_d), merge_identical(by_n));
    plot::charts(
        path,
        &[
            Panel {
                title: "top-1 within D metres",
                x_label: "D (m)",
                y_label: "queries (%)",
                series: &by_d,
                log_y: false,
                y_range: Some((0.0, 100.0)),
            },
            Panel {
                title: "a top-N candidate within 25 m",
                x_label: "N",
                y_label: "queries (%)",
                series: &by_n,
                log_y: false,
                y_range: Some((0.0, 100.0)),
            },
        ],
        2,
        1200,
        500,
    )?;
    Ok(())
}

/// Series with the same points as an earlier one are drawn once, under both names ("shipped
/// (none) = shipped (adabn)"), so one curve never hides another unnamed.
fn merge_identical(series: Vec<Series>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for s in series {
        match out.iter_mut().find(|o| o.points == s.points) {
            Some(o) => o.name = format!("{} = {}", o.name, s.name),
            None => out.push(s),
        }
    }
    out
}

/// How a report's figures were made, for the pictures' labels: the adaptation, and the filter
/// and the gate when they were used ("adaptation none, filter sequence, gate 50 m").
fn run_settings(r: &Report) -> String {
    let mut s = format!("adaptation {}", r.adaptation);
    if r.filter != "none" {
        s.push_str(&format!(", filter {}", r.filter));
    }
    if r.centring != "none" {
        s.push_str(&format!(", centring {}", r.centring));
    }
    if let Some(g) = &r.gate {
        s.push_str(&format!(", gate {} m", g.settings.radius));
        let g = &g.settings;
        if g.error > 0.0 {
            s.push_str(&format!(", error {} m", g.error));
            if g.sigmas > 0.0 {
                s.push_str(&format!(", {} sigmas", g.sigmas));
            }
            if g.drift > 0.0 {
                s.push_str(&format!(", drift {} s", g.drift));
            }
        }
    }
    s
}

/// matches.png: query / top-1 map image pairs, the first right and wrong ones of each condition.
pub fn match_sheet(path: &Path, report: &Report, src: &SourceImages) -> Result<(), PipelineError> {
    let db: BTreeMap<String, &PosedImage> =
        src.database.iter().map(|p| (image_name(p), p)).collect();
    let qs: BTreeMap<String, &PosedImage> =
        src.queries.iter().map(|p| (image_name(p), p)).collect();
    let mut picked: Vec<&QueryResult> = Vec::new();
    for cond in report.by_condition.keys() {
        for right in [true, false] {
            if let Some(r) = report
                .queries
                .iter()
                .find(|r| &r.condition == cond && (r.position_error <= 5.0) == right)
            {
                picked.push(r);
            }
        }
    }
    let mut rows = Vec::new();
    for r in picked.iter().take(10) {
        let (Some(q), Some(m)) = (qs.get(&r.name), db.get(&r.top1)) else {
            continue;
        };
        let (Ok(qi), Ok(mi)) = (q.load_rgb(src.decode), m.load_rgb(src.decode)) else {
            continue;
        };
        // Within 5 m of the truth, position only (not "to the right").
        let verdict = if r.position_error <= 5.0 {
            "within 5 m,"
        } else {
            "WRONG,"
        };
        rows.push(vec![
            (
                format!("query {} ({}, {})", r.name, r.condition, r.camera),
                qi,
            ),
            (
                format!(
                    "{}: {verdict} {:.1} m / {:.0} deg off, conf {:.2}, {}",
                    if report.filter == "none" {
                        "top-1"
                    } else {
                        "prior"
                    },
                    r.position_error,
                    r.rotation_error,
                    r.confidence,
                    if r.published { "published" } else { "withheld" }
                ),
                mi,
            ),
        ]);
    }
    plot::image_sheet(
        path,
        &format!(
            "{} ({}): query and {}",
            report.model,
            run_settings(report),
            if report.filter == "none" {
                "its top-1 map image"
            } else {
                "the map image of its prior (the filter's choice)"
            }
        ),
        &rows,
        420,
    )?;
    Ok(())
}

/// TUM trajectory lines (`stamp tx ty tz qx qy qz qw`, stamp in seconds) of `poses`, in time
/// order: what `evo_ape tum truth.tum priors.tum` reads.
///
/// ```
/// let p = dasgil::geom::Pose::identity();
/// assert_eq!(
///     dasgil::eval::offline::tum(&[(-1, p), (1_500_000, p)]),
///     "# timestamp tx ty tz qx qy qz qw\n\
///      -0.000001 0.000000 0.000000 0.000000 0.000000000 0.000000000 0.000000000 1.000000000\n\
///      1.500000 0.000000 0.000000 0.000000 0.000000000 0.000000000 0.000000000 1.000000000\n"
/// );
/// ```
pub fn tum(poses: &[(i64, Pose)]) -> String {
    let mut rows: Vec<&(i64, Pose)> = poses.iter().collect();
    rows.sort_by_key(|r| r.0);
    let mut out = String::from("# timestamp tx ty tz qx qy qz qw\n");
    for (us, p) in rows {
        let t = p.translation.vector;
        let q = p.rotation.coords;
        out.push_str(&format!(
            "{}{}.{:06} {:.6} {:.6} {:.6} {:.9} {:.9} {:.9} {:.9}\n",
            if *us < 0 { "-" } else { "" },
            us.unsigned_abs() / 1_000_000,
            us.unsigned_abs() % 1_000_000,
            t.x,
            t.y,
            t.z,
            q.x,
            q.y,
            q.z,
            q.w
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion, Vector3};

    #[test]
    fn the_coverage_band_is_the_binomials_central_95_percent() {
        // Binomial(n, 0.95) quantiles at 2.5% and 97.5% (Python's math.comb, summed).
        for (n, lo, hi) in [
            (1, 0, 1),
            (20, 17, 20),
            (41, 36, 41),
            (240, 221, 234),
            (1000, 936, 963),
        ] {
            let (a, b) = coverage_band(n).unwrap();
            assert_eq!((a * n as f64).round() as usize, lo, "n {n}");
            assert_eq!((b * n as f64).round() as usize, hi, "n {n}");
        }
        assert_eq!(coverage_band(0), None);
        // 240 priors: 221 to 234 inside is the band.
        assert!(coverage_verdict(220.0 / 240.0, 240)
            .is_some_and(|w| w.starts_with("91.7% is below that band")));
        assert_eq!(coverage_verdict(221.0 / 240.0, 240), None);
        assert_eq!(coverage_verdict(234.0 / 240.0, 240), None);
        assert!(coverage_verdict(235.0 / 240.0, 240)
            .is_some_and(|w| w.starts_with("97.9% is above that band")));
    }

    #[test]
    fn withheld_priors_are_split_by_why() {
        assert_eq!(
            withheld_words(12, 3, true),
            "12 withheld: 3 as off the map, 9 below min_confidence"
        );
        assert_eq!(
            withheld_words(5, 0, false),
            "5 withheld below min_confidence"
        );
        // The reasons alone, as replay's summary puts them in parentheses.
        assert_eq!(
            withheld_reasons(12, 3, true),
            "3 as off the map, 9 below min_confidence"
        );
        assert_eq!(withheld_reasons(5, 0, false), "below min_confidence");
    }

    /// `--gate-drift`: errors drawn in time order, each from the one before it; the cameras of
    /// one capture share theirs; a long correlation time keeps one error, a short one draws
    /// them independently, and each has the spread `error` whatever the correlation time.
    #[test]
    fn gate_errors_drift_in_time_order_with_the_same_spread() {
        let query = |i: usize, t: i64| PosedImage {
            path: format!("q{i}.jpg").into(),
            camera: format!("c{}", i % 2),
            timestamp_us: Some(t),
            world_from_cam: Some(Pose::identity()),
            intrinsics: None,
            distortion: None,
        };
        // 2000 captures 1 s apart, two cameras each (queries 2k and 2k + 1), listed out of
        // time order; pos[i]: where query i is listed.
        let listed: Vec<usize> = (0..4000).map(|j| (j * 7919) % 4000).collect();
        let queries: Vec<PosedImage> = listed
            .iter()
            .map(|&i| query(i, (i / 2) as i64 * 1_000_000))
            .collect();
        let mut pos = vec![0; 4000];
        for (j, &i) in listed.iter().enumerate() {
            pos[i] = j;
        }
        let up = Vector3::z();
        let gate = |drift: f64| GateSettings {
            radius: 10.0,
            error: 5.0,
            seed: 3,
            sigmas: 0.0,
            drift,
        };
        let xy = |c: &Option<[f64; 3]>| {
            let c = c.unwrap();
            assert!(c[2].abs() < 1e-12, "horizontal only: {c:?}");
            [c[0], c[1]]
        };
        let spread = |cs: &[Option<[f64; 3]>]| {
            let v: Vec<f64> = cs.iter().flat_map(&xy).collect();
            (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
        };
        for drift in [0.0, 0.001, 10.0] {
            let cs = gate(drift).centres(&queries, &up);
            let s = spread(&cs);
            assert!((s - 5.0).abs() < 0.35, "drift {drift}: spread {s}");
        }
        // A capture's two cameras share its error.
        let pairs_equal =
            |cs: &[Option<[f64; 3]>]| (0..2000).all(|k| cs[pos[2 * k]] == cs[pos[2 * k + 1]]);
        let drifting = gate(10.0).centres(&queries, &up);
        assert!(pairs_equal(&drifting));
        assert!(!pairs_equal(&gate(0.0).centres(&queries, &up)));
        // Consecutive captures 1 s apart: correlated by exp(-1/10) = 0.905 with drift 10 s,
        // about 0 with drift 1 ms.
        let corr = |cs: &[Option<[f64; 3]>]| {
            let (mut num, mut den) = (0.0, 0.0);
            for k in 0..1999 {
                let (a, b) = (xy(&cs[pos[2 * k]]), xy(&cs[pos[2 * k + 2]]));
                num += a[0] * b[0] + a[1] * b[1];
                den += a[0] * a[0] + a[1] * a[1];
            }
            num / den
        };
        assert!(
            (corr(&drifting) - (-0.1f64).exp()).abs() < 0.03,
            "{}",
            corr(&drifting)
        );
        assert!(corr(&gate(0.001).centres(&queries, &up)).abs() < 0.06);
        // A correlation time far beyond the drive: one error for all.
        let one = gate(1e12).centres(&queries, &up);
        assert!(one.iter().all(|c| (xy(c)[0] - xy(&one[0])[0]).abs() < 1e-3));
        // Without drift, the list order's independent draws, two per query with ground truth,
        // as before --gate-drift: the truth moved along the plane's two axes (z up: u1 = up x
        // x = y, u2 = up x u1 = -x); a query without ground truth gets none and takes no draw.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for c in gate(0.0).centres(&queries, &up) {
            let a: f64 = rng.sample(rand_distr::StandardNormal);
            let b: f64 = rng.sample(rand_distr::StandardNormal);
            let want = [-b * 5.0, a * 5.0];
            let got = xy(&c);
            assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12);
        }
        let mut some = queries[..3].to_vec();
        some[1].world_from_cam = None;
        let cs = gate(0.0).centres(&some, &up);
        assert_eq!(cs[1], None);
        assert_eq!(cs[2], gate(0.0).centres(&queries[..2], &up)[1]);
        // Without drift the draws follow the list, not time: the list's first query keeps its
        // draw when the others are left out.
        assert_eq!(
            gate(0.0).centres(&queries[..1], &up)[0],
            gate(0.0).centres(&queries, &up)[0]
        );
    }

    /// A RobotCar traversal's or a recording's queries are labelled by their UTC date; KITTI's
    /// clock from the sequence start by day.
    #[test]
    fn queries_without_a_named_condition_are_labelled_by_date() {
        // 2014-11-25 09:18:32 UTC, the synthetic traversal 2014-11-25-09-18-32.
        assert_eq!(date_label(Some(1_416_907_112_000_000)), "2014-11-25");
        assert_eq!(date_label(Some(1_416_959_999_999_999)), "2014-11-25");
        assert_eq!(date_label(Some(1_416_960_000_000_000)), "2014-11-26");
        assert_eq!(date_label(Some(12_500_000)), "day 0");
        assert_eq!(date_label(None), "unknown");
    }

    #[test]
    fn queries_through_another_lens_than_the_map_s_are_warned_about_once_per_camera() {
        let cmu = [-0.399431, 0.188924, 0.000153, 0.000571, 0.0];
        let k = crate::geom::Pinhole {
            width: 128,
            height: 96,
            fx: 100.0,
            fy: 100.0,
            cx: 64.0,
            cy: 48.0,
        };
        let q = |camera: &str, i: usize, lens: Option<[f64; 5]>, known: bool| PosedImage {
            path: format!("query/{camera}_{i}.jpg").into(),
            camera: camera.into(),
            timestamp_us: None,
            world_from_cam: None,
            intrinsics: known.then_some(k),
            distortion: lens,
        };
        let map = |lenses: &[(&str, [f64; 5])], rectified: bool| {
            let mut m = crate::map::file::MapMeta::by_hand(2, "test");
            m.lenses = lenses.iter().map(|(c, d)| (c.to_string(), *d)).collect();
            m.encoder.rectified = rectified;
            m
        };
        let lensed = [q("c0", 0, Some(cmu), true), q("c0", 1, Some(cmu), true)];
        // A pinhole map: one line for camera c0, naming a query, both lenses and the shift.
        let w = lens_warnings(&map(&[("c0", [0.0; 5])], false), &lensed, true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "camera c0: queries (e.g. query/c0_0.jpg) taken through a distorting lens (k1 \
                 -0.399, k2 0.189), map images through c0: a pinhole (no distortion): one puts \
                 rays up to 21.7% further out than the other."
            ) && w[0].ends_with(
                "rebuild the map with build-map --rectify (evaluate --map then rectifies the \
                 queries itself), or from images of the queries' camera"
            ),
            "{w:?}"
        );
        // The same lens; a rectified map (its queries are rectified too); no intrinsics:
        // nothing to say. A map that recorded no lens: said once, for the cameras unchecked.
        assert!(lens_warnings(&map(&[("c0", cmu)], false), &lensed, true).is_empty());
        assert!(lens_warnings(&map(&[("c0", [0.0; 5])], true), &lensed, true).is_empty());
        let unknown = [q("c0", 0, Some(cmu), false)];
        assert!(lens_warnings(&map(&[("c0", [0.0; 5])], false), &unknown, true).is_empty());
        assert_eq!(
            lens_warnings(&map(&[], false), &lensed, true),
            [
                "the map records no lens for camera(s) c0 (built before maps recorded lenses, or \
              from a source without intrinsics): the queries' lens is not checked against it; \
              rebuild the map to check it"
            ]
        );
        // Searched against every camera, a map camera with the queries' lens is enough; per
        // camera, c0's own lens counts.
        let two = map(&[("c0", [0.0; 5]), ("c1", cmu)], false);
        assert!(lens_warnings(&two, &lensed, false).is_empty());
        assert_eq!(lens_warnings(&two, &lensed, true).len(), 1);
        // A pinhole query (intrinsics, no distortion) against a lens map.
        let pinhole = [q("c1", 0, None, true)];
        let w = lens_warnings(&two, &pinhole, true);
        assert!(
            w.len() == 1
                && w[0].contains("taken through a pinhole (no distortion), map images")
                && w[0].contains("c1: a distorting lens (k1 -0.399"),
            "{w:?}"
        );
    }

    #[test]
    fn identical_curves_are_drawn_once_under_both_names() {
        let s = |name: &str, y: f64| Series {
            name: name.into(),
            points: vec![(5.0, 50.0), (10.0, y)],
        };
        let merged = merge_identical(vec![
            s("a (none)", 90.0),
            s("b", 80.0),
            s("a (adabn)", 90.0),
        ]);
        let names: Vec<&str> = merged.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a (none) = a (adabn)", "b"]);
    }

    fn result(position_error: f64, rotation_error: f64, first: Option<usize>) -> QueryResult {
        QueryResult {
            name: "q".into(),
            camera: "c0".into(),
            condition: "snow".into(),
            position_error,
            rotation_error,
            first_within_25m: first,
            top1: "m".into(),
            distance: 1.0,
            confidence: 0.5,
            published: true,
            mahalanobis2: Some(position_error * position_error),
            radius_95: position_error * 2.0,
            // As the position's: rotation_error^2 (so 1.9^2 and 1^2 within 7.81, 4^2 not).
            rotation_mahalanobis2: Some(rotation_error * rotation_error),
        }
    }

    #[test]
    fn the_rotation_error_is_the_relative_rotations_angle_in_degrees() {
        let at = |yaw_deg: f64, x: f64| {
            Pose::from_parts(
                Translation3::new(x, 0.0, 0.0),
                UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw_deg.to_radians()),
            )
        };
        let e = rotation_error_deg(&at(30.0, 0.0), &at(-15.0, 9.0));
        assert!(
            (e - 45.0).abs() < 1e-9,
            "rotation error {e}, expected 45 deg"
        );
        let e = rotation_error_deg(&at(170.0, 0.0), &at(-170.0, 0.0));
        assert!(
            (e - 20.0).abs() < 1e-9,
            "rotation error {e} across +-180, expected 20 deg"
        );
    }

    /// Each threshold needs both the position and the rotation within it, inclusive; recall@N
    /// counts a first hit within 25 m at rank <= N; the median is the middle error; inside the
    /// ellipsoid is Mahalanobis^2 <= 7.81.
    #[test]
    fn scores_count_both_thresholds_ranks_and_the_ellipsoid() {
        let rs = [
            result(5.0, 10.0, Some(1)), // (5 m, 10 deg) exactly: counted
            result(4.0, 10.5, Some(2)), // rotation just out
            result(5.5, 3.0, Some(5)),  // position just out
            result(0.2, 1.9, Some(20)), // every threshold
            result(30.0, 1.0, None),    // nothing within 25 m in the top 20
        ];
        let refs: Vec<&QueryResult> = rs.iter().collect();
        let s = score(&refs);
        assert_eq!(s.queries, 5);
        let acc = |t: &str| s.accuracy[t];
        assert_eq!(acc("5m,10deg"), 2.0 / 5.0, "5 m, 10 deg");
        assert_eq!(acc("0.5m,5deg"), 1.0 / 5.0, "0.5 m, 5 deg");
        assert_eq!(acc("0.25m,2deg"), 1.0 / 5.0, "0.25 m, 2 deg");
        assert_eq!(s.recall_at_n[&1], 1.0 / 5.0, "recall@1");
        assert_eq!(s.recall_at_n[&5], 3.0 / 5.0, "recall@5");
        assert_eq!(s.recall_at_n[&20], 4.0 / 5.0, "recall@20");
        assert_eq!(s.recall_at_d["5"], 3.0 / 5.0, "recall at 5 m");
        assert_eq!(s.median_position_error, 5.0, "median position error");
        assert_eq!(s.median_radius_95, 10.0, "median 95% radius");
        // Mahalanobis^2 = error^2 here: only 0.2^2 is within 7.81 (4^2 = 16 is not).
        assert_eq!(s.inside_95_ellipsoid, 1.0 / 5.0, "inside the 95% ellipsoid");
        let inside_rotation = rs
            .iter()
            .filter(|r| r.rotation_error.powi(2) <= 7.81)
            .count();
        assert_eq!(
            s.rotation_inside_95,
            inside_rotation as f64 / 5.0,
            "orientation inside its 95% bound"
        );
        assert!(inside_rotation > 0 && inside_rotation < 5);
    }
}
