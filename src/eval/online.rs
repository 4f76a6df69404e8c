//! Scoring the pose priors a running node published for replayed query frames (the ROS side is
//! `node::replay`): accuracy against the ground truth, per query condition, image-to-prior
//! latency, frames dropped, how often the truth lies inside the published 95% position
//! ellipsoid; `priors.csv`, `summary.json` and `route.png` (the route from above with the map
//! poses, the true query poses and the priors with their covariance ellipses, and a few query /
//! matched map image pairs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use nalgebra::{Matrix2, Matrix3, Vector3};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::sources::SourceImages;
use crate::error::PipelineError;
use crate::geom::Pose;
use crate::map::file::MapFile;
use crate::map::image_name;
use crate::plot;

/// chi-square 95% quantiles: 3 degrees of freedom (position ellipsoid) and 2 (its ground-plane
/// ellipse in the picture).
pub use crate::localize::prior::CHI2_3_95;
pub const CHI2_2_95: f64 = 5.991_464_547;

/// A frame the replay published.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The frame's header stamp (what the node's prior carries back).
    pub stamp_ns: i64,
    /// Wall clock when it was published (ns since the Unix epoch): latency is measured from
    /// here, whatever the stamp says.
    pub sent_ns: i64,
    /// Index into the source's queries.
    pub query: usize,
}

/// A prior the node published.
#[derive(Debug, Clone)]
pub struct Received {
    pub stamp_ns: i64,
    pub received_ns: i64,
    pub frame_id: String,
    pub pose: Pose,
    pub covariance: [f64; 36],
}

/// One sent frame's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameResult {
    pub name: String,
    pub camera: String,
    pub condition: String,
    pub stamp_ns: i64,
    /// None: no prior came back for this frame.
    pub latency_ms: Option<f64>,
    pub position_error: Option<f64>,
    pub rotation_error: Option<f64>,
    /// Squared Mahalanobis distance of the true position under the prior's position covariance.
    pub mahalanobis2: Option<f64>,
    /// The longest semi-axis of the prior's 95% position ellipsoid (m).
    #[serde(default)]
    pub radius_95: Option<f64>,
    /// The map image whose pose the prior is (when it is one of the map's, or one of its yaw
    /// views: the same position, turned by at most [`VIEW_MATCH_DEG`]).
    pub matched: Option<String>,
    /// The map's camera of that image.
    #[serde(default)]
    pub matched_camera: Option<String>,
}

/// A prior at a map image's position turned by at most this from its orientation is that
/// image's (a yaw view, build-map --yaw-views, turns it by a few degrees).
pub const VIEW_MATCH_DEG: f64 = 25.0;

/// Shares and counts over a set of frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    pub frames: usize,
    pub priors: usize,
    /// Of the priors: within (5 m, 10 deg) and within 25 m.
    pub within_5m_10deg: f64,
    pub within_25m: f64,
    pub median_position_error: f64,
    /// Of the priors: the true position inside the 95% position ellipsoid.
    pub inside_95_ellipsoid: f64,
    /// Of the priors: the median longest semi-axis of the 95% position ellipsoid (m).
    #[serde(default)]
    pub median_radius_95: f64,
    /// Of the frames: a prior within (5 m, 10 deg); a frame without a prior is a miss. The
    /// figure to compare filters by (docs/sequence-filter.md, "Which filter").
    #[serde(default)]
    pub correct_per_frame: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub frames_sent: usize,
    pub priors_received: usize,
    /// Sent frames with no prior (dropped by the node, ambiguous, or lost).
    pub frames_without_prior: usize,
    /// Priors whose stamp was never sent (must be 0).
    pub unknown_stamps: usize,
    /// Priors in a frame other than the expected one.
    pub wrong_frame_id: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub all: Tally,
    pub by_condition: BTreeMap<String, Tally>,
    pub by_camera: BTreeMap<String, Tally>,
    pub frames: Vec<FrameResult>,
    /// The node's filter during the replay, from its /diagnostics (None: no diagnostics came).
    #[serde(default)]
    pub node_filter: Option<NodeFilter>,
    /// What the frames' header stamps were (`replay --stamps`): "data" (each frame's timestamp
    /// in the data set, moved to the replay's start) or "send" (the time of sending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamps: Option<String>,
    /// What the node did with the frames it did not answer, from its /diagnostics (every
    /// camera's counts, the last minus those before the first frame; None: no diagnostics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_outcomes: Option<NodeOutcomes>,
    /// Ctrl-C or SIGTERM stopped the replay: its last frames may still have been on their way.
    #[serde(default)]
    pub interrupted: bool,
    /// The cameras of the map given (`--map`; empty without one).
    #[serde(default)]
    pub map_cameras: Vec<String>,
    /// The node's cameras whose frames look like another map camera's images, in words (its
    /// /diagnostics `map_camera_nearest`; `frame_player::node_crossed`).
    #[serde(default)]
    pub node_crossed: Vec<String>,
}

/// The value of `key` among one diagnostic status's key-value pairs.
pub fn status_value<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The node's count of frames it withheld (`frames_ambiguous`: below `min_confidence` or off
/// the map), of those off the map (`frames_off_map`), skipped as stale (`frames_dropped`: a
/// newer frame of the camera came first, or `max_rate`), rejected (`frames_rejected`) and
/// left without a map image to match (`frames_no_candidates`: none in the gate around its
/// `prior_topic` position), over a replay.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeOutcomes {
    pub withheld: u64,
    pub off_the_map: u64,
    pub skipped: u64,
    pub rejected: u64,
    /// 0 from a node that does not report it.
    #[serde(default)]
    pub no_candidates: u64,
    /// Frames the node received (`frames_received`; None: a node that does not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
}

impl NodeOutcomes {
    /// The sums over the node's cameras of `frames_ambiguous`, `frames_off_map`,
    /// `frames_dropped` and `frames_rejected` in one /diagnostics message (None: no status has
    /// them all).
    pub fn from_diagnostics<'a>(
        values: impl Iterator<Item = &'a [(String, String)]>,
    ) -> Option<NodeOutcomes> {
        let mut total: Option<NodeOutcomes> = None;
        for kv in values {
            let get = |k: &str| -> Option<u64> { status_value(kv, k)?.parse().ok() };
            let (Some(w), Some(o), Some(s), Some(r)) = (
                get("frames_ambiguous"),
                get("frames_off_map"),
                get("frames_dropped"),
                get("frames_rejected"),
            ) else {
                continue;
            };
            let first = total.is_none();
            let t = total.get_or_insert_with(NodeOutcomes::default);
            t.withheld += w;
            t.off_the_map += o;
            t.skipped += s;
            t.rejected += r;
            t.no_candidates += get("frames_no_candidates").unwrap_or(0);
            // Summed over the cameras; unknown if any camera does not say.
            let received = get("frames_received");
            t.received = if first {
                received
            } else {
                t.received.zip(received).map(|(a, b)| a + b)
            };
        }
        total
    }

    /// What happened between `before` (the counts before the first frame) and `after`; the
    /// after counts alone when a count went down (the node restarted, or reloaded its map).
    pub fn during(before: Option<NodeOutcomes>, after: NodeOutcomes) -> NodeOutcomes {
        match before {
            Some(b)
                if b.withheld <= after.withheld
                    && b.off_the_map <= after.off_the_map
                    && b.skipped <= after.skipped
                    && b.rejected <= after.rejected
                    && b.no_candidates <= after.no_candidates
                    && b.received.zip(after.received).is_none_or(|(b, a)| b <= a) =>
            {
                NodeOutcomes {
                    withheld: after.withheld - b.withheld,
                    off_the_map: after.off_the_map - b.off_the_map,
                    skipped: after.skipped - b.skipped,
                    rejected: after.rejected - b.rejected,
                    no_candidates: after.no_candidates - b.no_candidates,
                    received: b.received.zip(after.received).map(|(b, a)| a - b),
                }
            }
            // The node restarted (or reloaded its map): what it received since is not what
            // was sent during the replay.
            _ => NodeOutcomes {
                received: None,
                ..after
            },
        }
    }
}

/// Which filter the node ran during a replay, and what the sequence filter reported meanwhile
/// (/diagnostics `filter_relocalizations` and `filter_resets`, the last values minus those
/// before the first frame; docs/sequence-filter.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeFilter {
    /// `sequence` when the node reported filter counts, else `none`.
    pub filter: String,
    pub relocalizations: u64,
    pub resets: u64,
}

impl NodeFilter {
    /// From the node's `filter` and the counts seen before the first frame and after the last
    /// prior (None: "-" in /diagnostics, no frame through the filter on the node's map yet).
    pub fn from_counts(
        filter: &str,
        before: Option<(u64, u64)>,
        after: Option<(u64, u64)>,
    ) -> NodeFilter {
        match after {
            None => NodeFilter {
                filter: filter.into(),
                relocalizations: 0,
                resets: 0,
            },
            Some((r1, s1)) => {
                // A map reload during the replay starts the counts again: then the last ones.
                let (r0, s0) = before.filter(|b| b.0 <= r1 && b.1 <= s1).unwrap_or((0, 0));
                NodeFilter {
                    filter: filter.into(),
                    relocalizations: r1 - r0,
                    resets: s1 - s0,
                }
            }
        }
    }
}

fn rotation_error_deg(a: &Pose, b: &Pose) -> f64 {
    (a.rotation.inverse() * b.rotation).angle().to_degrees()
}

fn tally(rs: &[&FrameResult]) -> Tally {
    let with: Vec<&&FrameResult> = rs.iter().filter(|r| r.position_error.is_some()).collect();
    let n = with.len().max(1) as f64;
    let share = |f: &dyn Fn(&FrameResult) -> bool| with.iter().filter(|r| f(r)).count() as f64 / n;
    let mut errs: Vec<f64> = with.iter().filter_map(|r| r.position_error).collect();
    errs.sort_by(f64::total_cmp);
    let mut radii: Vec<f64> = with.iter().filter_map(|r| r.radius_95).collect();
    radii.sort_by(f64::total_cmp);
    // Priors within (5 m, 10 deg): of the priors and of all frames.
    let correct = with
        .iter()
        .filter(|r| {
            r.position_error.unwrap_or(f64::INFINITY) <= 5.0
                && r.rotation_error.unwrap_or(f64::INFINITY) <= 10.0
        })
        .count() as f64;
    Tally {
        frames: rs.len(),
        priors: with.len(),
        within_5m_10deg: correct / n,
        within_25m: share(&|r| r.position_error.unwrap_or(f64::INFINITY) <= 25.0),
        median_position_error: errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN),
        inside_95_ellipsoid: share(&|r| r.mahalanobis2.unwrap_or(f64::INFINITY) <= CHI2_3_95),
        median_radius_95: radii.get(radii.len() / 2).copied().unwrap_or(f64::NAN),
        correct_per_frame: correct / rs.len().max(1) as f64,
    }
}

/// The q-quantile (nearest rank) of sorted values; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

/// Matches priors to sent frames by stamp and scores them against the queries' ground truth.
/// `labels`: query name -> condition.
pub fn score(
    src: &SourceImages,
    labels: &BTreeMap<String, String>,
    map: Option<&MapFile>,
    sent: &[Sent],
    received: &[Received],
    frame_id: &str,
) -> ReplaySummary {
    let by_stamp: BTreeMap<i64, &Received> = received.iter().map(|r| (r.stamp_ns, r)).collect();
    let sent_stamps: std::collections::BTreeSet<i64> = sent.iter().map(|s| s.stamp_ns).collect();
    let map_poses: Vec<(Pose, String, String)> = map
        .map(|m| {
            (0..m.len())
                .map(|i| {
                    (
                        m.pose(i),
                        m.meta.names.get(i).cloned().unwrap_or_default(),
                        m.meta.cameras.get(i).cloned().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut frames = Vec::new();
    for s in sent {
        let q = &src.queries[s.query];
        let name = image_name(q);
        let mut fr = FrameResult {
            condition: labels
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
            name,
            camera: q.camera.clone(),
            stamp_ns: s.stamp_ns,
            latency_ms: None,
            position_error: None,
            rotation_error: None,
            mahalanobis2: None,
            radius_95: None,
            matched: None,
            matched_camera: None,
        };
        if let Some(r) = by_stamp.get(&s.stamp_ns) {
            fr.latency_ms = Some((r.received_ns - s.sent_ns) as f64 / 1e6);
            if let Some(gt) = &q.world_from_cam {
                let d: Vector3<f64> = gt.translation.vector - r.pose.translation.vector;
                fr.position_error = Some(d.norm());
                fr.rotation_error = Some(rotation_error_deg(gt, &r.pose));
                fr.mahalanobis2 = crate::localize::prior::mahalanobis2(
                    &r.covariance,
                    &r.pose.translation.vector,
                    &gt.translation.vector,
                );
                fr.radius_95 = Some(crate::localize::prior::radius_95(&r.covariance));
            }
            // At the prior's position, the map image (or yaw view) turned least from it (the
            // cameras of one capture may share a position).
            if let Some((_, n, c)) = map_poses
                .iter()
                .filter(|(p, _, _)| {
                    (p.translation.vector - r.pose.translation.vector).norm() < 1e-6
                })
                .map(|e| (rotation_error_deg(&e.0, &r.pose), e))
                .filter(|(turn, _)| *turn < VIEW_MATCH_DEG)
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, e)| e)
            {
                fr.matched = Some(n.clone());
                fr.matched_camera = Some(c.clone());
            }
        }
        frames.push(fr);
    }
    let mut lat: Vec<f64> = frames.iter().filter_map(|f| f.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let all: Vec<&FrameResult> = frames.iter().collect();
    let group = |key: &dyn Fn(&FrameResult) -> String| {
        let mut g: BTreeMap<String, Vec<&FrameResult>> = BTreeMap::new();
        for f in &frames {
            g.entry(key(f)).or_default().push(f);
        }
        g.into_iter()
            .map(|(k, v)| (k, tally(&v)))
            .collect::<BTreeMap<_, _>>()
    };
    ReplaySummary {
        frames_sent: sent.len(),
        priors_received: received.len(),
        frames_without_prior: frames.iter().filter(|f| f.latency_ms.is_none()).count(),
        unknown_stamps: received
            .iter()
            .filter(|r| !sent_stamps.contains(&r.stamp_ns))
            .count(),
        wrong_frame_id: received.iter().filter(|r| r.frame_id != frame_id).count(),
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        all: tally(&all),
        by_condition: group(&|f| f.condition.clone()),
        by_camera: group(&|f| f.camera.clone()),
        frames,
        node_filter: None,
        stamps: None,
        node_outcomes: None,
        interrupted: false,
        map_cameras: map
            .map(|m| {
                let set: std::collections::BTreeSet<&String> = m.meta.cameras.iter().collect();
                set.into_iter().cloned().collect()
            })
            .unwrap_or_default(),
        node_crossed: Vec::new(),
    }
}

fn pct(x: f64) -> String {
    format!("{:5.1}%", 100.0 * x)
}

/// Priors whose median orientation lies this far (degrees) from the truth are taken for poses
/// of another frame than the camera's: a node with `base_from_camera` publishes base_link
/// (REP 103: z up, x forward), about 120 degrees from the optical frame (z forward, y down).
pub const ORIENTATION_MISMATCH_DEG: f64 = 60.0;

/// When the received priors face about another way than the truth for most frames (their
/// median rotation error above [`ORIENTATION_MISMATCH_DEG`]): the likely reason, said in the
/// summary. replay scores poses of the camera's optical frame (the truth it has); a node that
/// publishes base_link cannot be scored by it.
pub fn orientation_mismatch(s: &ReplaySummary) -> Option<String> {
    let mut rot: Vec<f64> = s.frames.iter().filter_map(|f| f.rotation_error).collect();
    if rot.len() < 3 {
        return None;
    }
    rot.sort_by(f64::total_cmp);
    let median = percentile(&rot, 0.5);
    (median > ORIENTATION_MISMATCH_DEG).then(|| {
        format!(
            "the priors' orientations lie a median {median:.0} degrees from the truth's: \
             replay scores the camera's optical frame (z forward, y down), so a node publishing \
             base_link (its parameter `base_from_camera` set) scores as wrong here; run it \
             without base_from_camera to score it, check the node's `camera_ids` name its \
             topics in the order these frames are played (give replay --map to have it \
             checked), or check the data set's poses are world_from_cam"
        )
    })
}

/// Cameras whose frames got their priors mostly from another camera's map images (at least
/// 3 priors matched to map images, more than half of them another camera's), when the frames'
/// camera ids are the map's: the node's `camera_ids` name its topics in another order than
/// the frames are played (or than build-map's cameras). One warning per such camera.
pub fn crossed_cameras(s: &ReplaySummary) -> Vec<String> {
    // The map's cameras (those the priors matched, for a summary without them).
    let map_cameras: std::collections::BTreeSet<&str> = s
        .map_cameras
        .iter()
        .map(String::as_str)
        .chain(s.frames.iter().filter_map(|f| f.matched_camera.as_deref()))
        .collect();
    let mut by_camera: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for f in &s.frames {
        if let Some(m) = f.matched_camera.as_deref() {
            *by_camera
                .entry(f.camera.as_str())
                .or_default()
                .entry(m)
                .or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (camera, got) in by_camera {
        if !map_cameras.contains(camera) {
            continue; // the frames' ids are not the map's (a recording's topics): not comparable
        }
        let total: usize = got.values().sum();
        let own = got.get(camera).copied().unwrap_or(0);
        let Some((other, n)) = got
            .iter()
            .filter(|(c, _)| **c != camera)
            .max_by_key(|(_, n)| **n)
        else {
            continue;
        };
        if total >= 3 && 2 * (total - own) > total {
            out.push(format!(
                "camera {camera}'s frames got priors from map images of camera {other} ({n} of \
                 {total} matched to map images; {own} of its own): the node's `camera_ids` name \
                 its topics in another order than these frames are played (--topics and \
                 --camera-ids), or than the map's cameras were built (build-map --camera-id); \
                 each prior is then another camera's pose, turned by the angle between the two"
            ));
        }
    }
    out
}

/// The summary a user reads.
pub fn summary_text(s: &ReplaySummary) -> String {
    let mut t = String::new();
    // The node's own check first (it holds with no prior back: every frame withheld); the
    // priors' map images when it has none.
    let crossed = if s.node_crossed.is_empty() {
        crossed_cameras(s)
    } else {
        s.node_crossed.clone()
    };
    for note in &crossed {
        let _ = writeln!(t, "warning: {note}");
    }
    // Crossed cameras turn every prior too: said once, by its cause.
    if let Some(note) = orientation_mismatch(s).filter(|_| crossed.is_empty()) {
        let _ = writeln!(t, "warning: {note}");
    }
    let _ = writeln!(
        t,
        "frames sent {}, priors received {} ({} frames without a prior, {} unknown stamps)",
        s.frames_sent, s.priors_received, s.frames_without_prior, s.unknown_stamps
    );
    if let Some(o) = &s.node_outcomes {
        let gated = if o.no_candidates > 0 {
            format!(
                ", {} with no map image in the gate of its prior_topic position",
                o.no_candidates
            )
        } else {
            String::new()
        };
        // Why, as evaluate says it: off the map (the filter's test) or below min_confidence.
        let why = match o.withheld {
            0 => String::new(),
            w => format!(
                " ({})",
                crate::eval::offline::withheld_reasons(w, o.off_the_map, o.off_the_map > 0)
            ),
        };
        let _ = writeln!(
            t,
            "the node: {} frame(s) withheld{why}; {} skipped as stale, {} rejected{gated} \
             (/diagnostics)",
            o.withheld, o.skipped, o.rejected
        );
        // The node's count comes with its /diagnostics, which can lag the last frames (a
        // replay stopped early): every sent frame a prior came back for was received.
        let answered = s.frames_sent.saturating_sub(s.frames_without_prior) as u64;
        let received = o.received.map(|r| r.max(answered));
        if let Some(r) = received.filter(|&r| r < s.frames_sent as u64 && s.interrupted) {
            let _ = writeln!(
                t,
                "the node had received {r} of the {} frames sent when the replay was \
                 interrupted (the last ones may still have been on their way, or its \
                 /diagnostics had not counted them yet)",
                s.frames_sent
            );
        } else if let Some(r) = received.filter(|&r| r < s.frames_sent as u64) {
            let _ = writeln!(
                t,
                "the node received {r} of the {} frames sent: the others were lost before it \
                 took them (on the way, or in its subscription's queue; e.g. raw images over \
                 ~512 KiB do not pass Fast DDS's default shared memory: \
                 FASTRTPS_DEFAULT_PROFILES_FILE with the dasgil package's \
                 config/fastdds-large-images.xml for the node, or --transport compressed; \
                 README, \"Troubleshooting\")",
                s.frames_sent
            );
        }
    }
    if s.latency_p50_ms.is_finite() {
        let _ = writeln!(
            t,
            "image-to-prior latency: p50 {:.1} ms, p99 {:.1} ms",
            s.latency_p50_ms, s.latency_p99_ms
        );
    } else {
        let _ = writeln!(t, "image-to-prior latency: - (no prior came back)");
    }
    let _ = writeln!(
        t,
        "{:<12} {:>7} {:>7} {:>13} {:>9} {:>13} {:>12} {:>12}",
        "condition",
        "frames",
        "priors",
        "(5 m, 10 deg)",
        "<= 25 m",
        "median error",
        "in 95% ellip.",
        "95% radius"
    );
    let row = |t: &mut String, name: &str, x: &Tally| {
        // No prior, no figure (a dash, not NaN).
        let [within, near, median, inside, radius] = if x.priors == 0 {
            [
                "-".to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]
        } else {
            [
                pct(x.within_5m_10deg),
                pct(x.within_25m),
                format!("{:.2} m", x.median_position_error),
                pct(x.inside_95_ellipsoid),
                format!("{:.1} m", x.median_radius_95),
            ]
        };
        let _ = writeln!(
            t,
            "{:<12} {:>7} {:>7} {:>13} {:>9} {:>13} {:>12} {:>12}",
            name, x.frames, x.priors, within, near, median, inside, radius
        );
    };
    for (c, x) in &s.by_condition {
        row(&mut t, c, x);
    }
    row(&mut t, "all", &s.all);
    let _ = writeln!(
        t,
        "correct priors per frame sent: {} of {} ({:.1}%; within (5 m, 10 deg), a frame without \
         a prior counts as a miss)",
        (s.all.correct_per_frame * s.all.frames as f64).round() as usize,
        s.all.frames,
        100.0 * s.all.correct_per_frame
    );
    let _ = match &s.node_filter {
        Some(f) if f.filter == "sequence" => writeln!(
            t,
            "node filter: sequence ({} relocalization(s), {} reset(s) during the replay; \
             /diagnostics)",
            f.relocalizations, f.resets
        ),
        Some(f) if f.filter == "none" => {
            writeln!(t, "node filter: none (single frames; /diagnostics)")
        }
        Some(f) => writeln!(t, "node filter: {} (/diagnostics)", f.filter),
        None => writeln!(
            t,
            "node filter: unknown (no /diagnostics from a dasgil node during the replay)"
        ),
    };
    t
}

/// priors.csv: one row per sent frame.
pub fn priors_csv(s: &ReplaySummary) -> String {
    let mut t = String::from(
        "name,camera,condition,stamp_ns,latency_ms,position_error_m,rotation_error_deg,mahalanobis2,radius_95_m,matched\n",
    );
    let o = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for f in &s.frames {
        let _ = writeln!(
            t,
            "{},{},{},{},{},{},{},{},{},{}",
            f.name,
            f.camera,
            f.condition,
            f.stamp_ns,
            o(f.latency_ms),
            o(f.position_error),
            o(f.rotation_error),
            o(f.mahalanobis2),
            o(f.radius_95),
            f.matched.as_deref().unwrap_or("")
        );
    }
    t
}

/// Points of the 95% ground-plane ellipse of a position covariance around (x, y).
fn ellipse(x: f64, y: f64, cov: &Matrix3<f64>) -> Vec<(f64, f64)> {
    let c2 = Matrix2::new(cov[(0, 0)], cov[(0, 1)], cov[(1, 0)], cov[(1, 1)]);
    let eig = c2.symmetric_eigen();
    let k = CHI2_2_95.sqrt();
    (0..=48)
        .map(|i| {
            let a = i as f64 / 48.0 * std::f64::consts::TAU;
            let (u, v) = (
                k * eig.eigenvalues[0].max(0.0).sqrt() * a.cos(),
                k * eig.eigenvalues[1].max(0.0).sqrt() * a.sin(),
            );
            let e0 = eig.eigenvectors.column(0);
            let e1 = eig.eigenvectors.column(1);
            (x + u * e0[0] + v * e1[0], y + u * e0[1] + v * e1[1])
        })
        .collect()
}

/// route.png draws at most this many right priors' ellipses (every wrong prior's is drawn;
/// right: within (5 m, 10 deg)).
const MAX_RIGHT_ELLIPSES: usize = 40;

/// A prior within (5 m, 10 deg) of the truth (false without one).
fn is_right(f: &FrameResult) -> bool {
    f.position_error.is_some_and(|e| e <= 5.0) && f.rotation_error.is_some_and(|e| e <= 10.0)
}

/// route.png: the route from above, and query / matched map image pairs below it.
pub fn route_png(
    path: &Path,
    s: &ReplaySummary,
    src: &SourceImages,
    received: &[Received],
) -> Result<(), PipelineError> {
    let text = plot::fonts();
    let (w, h) = (1400u32, 620u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let by_stamp: BTreeMap<i64, &Received> = received.iter().map(|r| (r.stamp_ns, r)).collect();
    let qs: BTreeMap<String, &crate::data::PosedImage> =
        src.queries.iter().map(|q| (image_name(q), q)).collect();
    // The longer extent of the route runs across the picture (equal scale on both axes).
    let ext = |f: &dyn Fn(&Pose) -> f64| {
        let v: Vec<f64> = src
            .database
            .iter()
            .chain(&src.queries)
            .filter_map(|p| p.world_from_cam.as_ref().map(f))
            .collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    let swap = ext(&|p| p.translation.vector.y) > ext(&|p| p.translation.vector.x);
    let xy = move |p: &Pose| {
        let t = p.translation.vector;
        if swap {
            (t.y, t.x)
        } else {
            (t.x, t.y)
        }
    };
    let db: Vec<(f64, f64)> = src
        .database
        .iter()
        .filter_map(|p| p.world_from_cam.as_ref().map(xy))
        .collect();
    let truth: Vec<(f64, f64)> = s
        .frames
        .iter()
        .filter_map(|f| {
            qs.get(&f.name)
                .and_then(|q| q.world_from_cam.as_ref().map(xy))
        })
        .collect();
    let priors: Vec<(&FrameResult, &Received)> = s
        .frames
        .iter()
        .filter_map(|f| by_stamp.get(&f.stamp_ns).map(|r| (f, *r)))
        .collect();
    let all: Vec<(f64, f64)> = db
        .iter()
        .chain(&truth)
        .copied()
        .chain(priors.iter().map(|(_, r)| xy(&r.pose)))
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    // Equal scale on both axes, with a margin.
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let half = ((x1 - x0) / 2.0)
        .max((y1 - y0) / 2.0 * w as f64 / h as f64)
        .max(10.0)
        * 1.08;
    let half_y = half * h as f64 / w as f64;
    // The legend goes in the corner with the fewest points under it (a box of 45% x 40% of
    // the chart), so it hides as little of the route as it can.
    let legend_at = {
        let under = |right: bool, top: bool| {
            all.iter()
                .filter(|&&(x, y)| {
                    let fx = (x - (cx - half)) / (2.0 * half);
                    let fy = (y - (cy - half_y)) / (2.0 * half_y);
                    (if right { fx > 0.55 } else { fx < 0.45 })
                        && (if top { fy > 0.6 } else { fy < 0.4 })
                })
                .count()
        };
        [
            (SeriesLabelPosition::UpperLeft, under(false, true)),
            (SeriesLabelPosition::UpperRight, under(true, true)),
            (SeriesLabelPosition::LowerLeft, under(false, false)),
            (SeriesLabelPosition::LowerRight, under(true, false)),
        ]
        .into_iter()
        .min_by_key(|(_, n)| *n)
        .map(|(p, _)| p)
        .unwrap_or(SeriesLabelPosition::UpperLeft)
    };
    let draw = |buf: &mut Vec<u8>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut b = ChartBuilder::on(&root);
        b.margin(14);
        if text {
            // Why frames have no prior, when the node said (its /diagnostics counts).
            let why = match s.node_outcomes {
                Some(o) if s.frames_without_prior > 0 => {
                    let mut parts = vec![format!("{} withheld", o.withheld)];
                    if o.off_the_map > 0 {
                        parts[0] += &format!(", {} off the map", o.off_the_map);
                    }
                    for (n, what) in [
                        (o.skipped, "skipped"),
                        (o.rejected, "rejected"),
                        (o.no_candidates, "outside the gate"),
                    ] {
                        if n > 0 {
                            parts.push(format!("{n} {what}"));
                        }
                    }
                    format!(" ({})", parts.join("; "))
                }
                _ => String::new(),
            };
            b.caption(
                format!(
                    "{} priors for {} frames{why}: {:.1}% within (5 m, 10 deg), median {:.2} m, \
                     truth in the 95% ellipsoid {:.1}%",
                    s.all.priors,
                    s.frames_sent,
                    100.0 * s.all.within_5m_10deg,
                    s.all.median_position_error,
                    100.0 * s.all.inside_95_ellipsoid
                ),
                ("sans-serif", 18),
            )
            .x_label_area_size(36)
            .y_label_area_size(56);
        }
        let mut chart = b.build_cartesian_2d(cx - half..cx + half, cy - half_y..cy + half_y)?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(245, 245, 245));
        if text {
            let (a, b) = if swap { ("y", "x") } else { ("x", "y") };
            mesh.x_desc(format!("{a} (m, map frame)"))
                .y_desc(format!("{b} (m)"))
                .x_label_formatter(&plot::tick_label)
                .y_label_formatter(&plot::tick_label);
        }
        mesh.draw()?;
        let grey = RGBColor(120, 120, 120);
        let green = RGBColor(44, 160, 44);
        let red = RGBColor(214, 39, 40);
        let blue = RGBColor(31, 119, 180);
        // Right: within (5 m, 10 deg), as every summary counts; wrong: scored and not; frames
        // without a true pose are neither (a grey cross, no ellipse).
        let scored = |f: &FrameResult| f.position_error.is_some();
        let outline = |r: &Received| {
            let cov = crate::localize::prior::position_block(&r.covariance);
            let (px, py) = xy(&r.pose);
            let cov = if swap {
                let mut c = cov;
                c.swap_rows(0, 1);
                c.swap_columns(0, 1);
                c
            } else {
                cov
            };
            ellipse(px, py, &cov)
        };
        // The right priors' ellipses, at most MAX_RIGHT_ELLIPSES of them spread evenly along
        // the drive (hundreds overlap into a blur; an uneven stride mixes the cameras, whose
        // frames alternate); every wrong prior's on top, stronger.
        let rights: Vec<&Received> = priors
            .iter()
            .filter(|(f, _)| is_right(f))
            .map(|(_, r)| *r)
            .collect();
        let drawn = rights.len().min(MAX_RIGHT_ELLIPSES);
        let a = chart.draw_series((0..drawn).map(|j| {
            PathElement::new(
                outline(rights[j * rights.len() / drawn]),
                blue.mix(0.35).stroke_width(1),
            )
        }))?;
        if text && drawn > 0 {
            let which = if drawn < rights.len() {
                format!(
                    "95% ellipses of {drawn} of the {} right priors, spread along the drive",
                    rights.len()
                )
            } else {
                "95% ellipse of each right prior".to_string()
            };
            a.label(which).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 16, y)], blue.mix(0.35).stroke_width(1))
            });
        }
        let wrong = |f: &FrameResult| scored(f) && !is_right(f);
        let a = chart.draw_series(
            priors
                .iter()
                .filter(|(f, _)| wrong(f))
                // Thin: a wrong prior's ellipse is wide when the prior is honest, and a few of
                // them would hide the route; the red line to its truth says where it went.
                .map(|(_, r)| PathElement::new(outline(r), red.mix(0.45).stroke_width(1))),
        )?;
        if text && priors.iter().any(|(f, _)| wrong(f)) {
            a.label("95% ellipse of each wrong prior; a red line joins it to its truth")
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], red.mix(0.45).stroke_width(1))
                });
        }
        let a = chart.draw_series(
            truth
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, green.filled())),
        )?;
        if text {
            a.label("queries: true pose")
                .legend(move |(x, y)| Circle::new((x + 3, y), 3, green.filled()));
        }
        let a = chart.draw_series(priors.iter().map(|(f, r)| {
            let c = match (is_right(f), scored(f)) {
                (true, _) => blue,
                (false, true) => red,
                (false, false) => grey,
            };
            Cross::new(xy(&r.pose), 5, c.stroke_width(2))
        }))?;
        if text {
            a.label("published prior (blue: within (5 m, 10 deg), red: not)")
                .legend(move |(x, y)| Cross::new((x + 3, y), 5, blue.stroke_width(2)));
        }
        // Hollow squares a little larger than a prior's cross, drawn after the priors and the
        // queries' dots: a prior lies on a map image's pose, and both must stay visible there.
        let square = move |(x, y): (f64, f64)| {
            EmptyElement::at((x, y)) + Rectangle::new([(-7, -7), (7, 7)], grey.stroke_width(1))
        };
        let a = chart.draw_series(db.iter().map(|&p| square(p)))?;
        if text {
            a.label("map images (database poses)")
                .legend(move |(x, y)| {
                    EmptyElement::at((x + 3, y))
                        + Rectangle::new([(-5, -5), (5, 5)], grey.stroke_width(1))
                });
        }
        // Wrong priors: a line from the truth to the prior.
        for (f, r) in &priors {
            if wrong(f) {
                if let Some(gt) = qs.get(&f.name).and_then(|q| q.world_from_cam.as_ref()) {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![xy(gt), xy(&r.pose)],
                        red.mix(0.8).stroke_width(2),
                    )))?;
                }
            }
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .position(legend_at)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw(&mut buf).map_err(|e| plot::draw_err(path, e))?;
    let route =
        image::RgbImage::from_raw(w, h, buf).ok_or_else(|| plot::draw_err(path, "buffer"))?;
    // A few pairs: per condition the first right and the first wrong prior.
    let db_by_name: BTreeMap<String, &crate::data::PosedImage> =
        src.database.iter().map(|p| (image_name(p), p)).collect();
    // img_00040_c0_1291724590000000us.jpg -> img_00040_c0
    let short = |n: &str| match n.rsplit_once('_') {
        Some((head, tail)) if tail.contains("us.") => head.to_string(),
        _ => n.to_string(),
    };
    let mut cells = Vec::new();
    for cond in s.by_condition.keys() {
        for right in [true, false] {
            // Right as the plot above and every summary count it: within (5 m, 10 deg).
            let Some(f) = s.frames.iter().find(|f| {
                &f.condition == cond
                    && f.matched.is_some()
                    && f.position_error.is_some()
                    && f.rotation_error.is_some()
                    && is_right(f) == right
            }) else {
                continue;
            };
            let (Some(q), Some(m)) = (
                qs.get(&f.name),
                f.matched.as_ref().and_then(|n| db_by_name.get(n)),
            ) else {
                continue;
            };
            let (Ok(qi), Ok(mi)) = (q.load_rgb(src.decode), m.load_rgb(src.decode)) else {
                continue;
            };
            let verdict = if right { "correct" } else { "WRONG" };
            cells.push((format!("query {} ({cond})", short(&f.name)), qi));
            cells.push((
                format!(
                    "map {}: {verdict}, {:.2} m, {:.1} deg off",
                    short(f.matched.as_deref().unwrap_or("?")),
                    f.position_error.unwrap_or(f64::NAN),
                    f.rotation_error.unwrap_or(f64::NAN),
                ),
                mi,
            ));
        }
    }
    cells.truncate(16);
    let rows: Vec<Vec<(String, image::RgbImage)>> = cells.chunks(4).map(|c| c.to_vec()).collect();
    let mut parts = vec![route];
    if !rows.is_empty() {
        parts.push(plot::sheet_image(
            path,
            "replayed query frames, each beside the map image its prior came from, and how far \
             that is from the truth (correct: within (5 m, 10 deg))",
            &rows,
            330,
        )?);
    }
    plot::save_png(path, &plot::stack(&parts))?;
    Ok(())
}

/// Writes priors.csv, summary.json and route.png into `out`; returns the PNG's path.
pub fn write_outputs(
    out: &Path,
    s: &ReplaySummary,
    src: &SourceImages,
    received: &[Received],
) -> Result<std::path::PathBuf, PipelineError> {
    std::fs::create_dir_all(out)
        .map_err(|e| crate::atomic::PathIoError::new("cannot create folder", out, e))?;
    crate::atomic::write_atomic(&out.join("priors.csv"), priors_csv(s).as_bytes())?;
    crate::atomic::write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(s)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let png = out.join("route.png");
    route_png(&png, s, src, received)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_filter_counts_only_what_happened_during_the_replay() {
        let f = NodeFilter::from_counts("sequence", Some((4, 1)), Some((7, 3)));
        assert_eq!(
            (f.filter.as_str(), f.relocalizations, f.resets),
            ("sequence", 3, 2)
        );
        // A fresh node ("-" before its first frame).
        let f = NodeFilter::from_counts("sequence", None, Some((2, 0)));
        assert_eq!((f.relocalizations, f.resets), (2, 0));
        // A map reload during the replay started the counts again: the last ones.
        let f = NodeFilter::from_counts("sequence", Some((9, 2)), Some((1, 0)));
        assert_eq!((f.relocalizations, f.resets), (1, 0));
        // Every frame rejected: the filter is still named, with nothing counted.
        let f = NodeFilter::from_counts("sequence", None, None);
        assert_eq!((f.filter.as_str(), f.relocalizations), ("sequence", 0));
        assert_eq!(NodeFilter::from_counts("none", None, None).filter, "none");
    }

    #[test]
    fn the_summary_says_when_frames_were_lost_before_the_node_or_gated_out() {
        let summary = |received: Option<u64>, no_candidates: u64| ReplaySummary {
            frames_sent: 40,
            priors_received: 9,
            frames_without_prior: 31,
            unknown_stamps: 0,
            wrong_frame_id: 0,
            latency_p50_ms: 1.0,
            latency_p99_ms: 2.0,
            all: tally(&[]),
            by_condition: Default::default(),
            by_camera: Default::default(),
            frames: vec![],
            node_filter: None,
            stamps: None,
            node_outcomes: Some(NodeOutcomes {
                received,
                no_candidates,
                ..Default::default()
            }),
            interrupted: false,
            map_cameras: vec![],
            node_crossed: vec![],
        };
        let text = summary_text(&summary(Some(9), 0));
        assert!(
            text.contains("the node received 9 of the 40 frames sent: the others were lost")
                && text.contains("fastdds-large-images.xml"),
            "{text}"
        );
        assert!(!text.contains("in the gate"), "{text}");
        // Stopped by Ctrl-C: the last frames may have been on their way, no transport blamed.
        let mut stopped = summary(Some(9), 0);
        stopped.interrupted = true;
        let text = summary_text(&stopped);
        assert!(
            text.contains(
                "the node had received 9 of the 40 frames sent when the replay was interrupted"
            ) && !text.contains("Fast DDS"),
            "{text}"
        );
        let text = summary_text(&summary(Some(40), 31));
        assert!(!text.contains("the node received"), "{text}");
        assert!(
            text.contains("0 rejected, 31 with no map image in the gate of its prior_topic"),
            "{text}"
        );
        // A node that does not count what it received: nothing said.
        assert!(!summary_text(&summary(None, 0)).contains("the node received"));
        // A count that lags the priors (its last /diagnostics before the last frames): the
        // priors that came back were received.
        let text = summary_text(&summary(Some(5), 0));
        assert!(
            text.contains("the node received 9 of the 40 frames"),
            "{text}"
        );
        let mut all_back = summary(Some(30), 0);
        all_back.frames_without_prior = 0;
        assert!(!summary_text(&all_back).contains("the node received"));
        // Priors of other frames (unknown stamps) are no sign that frames arrived.
        let mut strangers = summary(Some(5), 0);
        strangers.priors_received = 40;
        strangers.unknown_stamps = 31;
        assert!(
            summary_text(&strangers).contains("the node received 9 of the 40 frames"),
            "{}",
            summary_text(&strangers)
        );
        // No prior: dashes in the table, never NaN.
        let mut none_back = summary(Some(40), 0);
        none_back.latency_p50_ms = f64::NAN;
        none_back.latency_p99_ms = f64::NAN;
        let text = summary_text(&none_back);
        assert!(
            text.contains("image-to-prior latency: - (no prior came back)"),
            "{text}"
        );
        assert!(!text.contains("NaN"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("all ") && l.trim_end().ends_with("-            -")),
            "{text}"
        );
    }

    #[test]
    fn priors_of_base_link_scored_against_the_camera_are_said_to_be_so() {
        use nalgebra::{Translation3, UnitQuaternion};
        // A camera optical frame (z forward, y down) looking along the world's x, and
        // base_link (x forward, z up) 1.5 m behind and 1 m under it: REP 103's optical
        // rotation (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5) from base_link's axes.
        let optical =
            UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(0.5, -0.5, 0.5, -0.5));
        let base_from_cam = Pose::from_parts(Translation3::new(1.5, 0.0, 1.0), optical);
        let frames = |published_base: bool| -> Vec<FrameResult> {
            (0..6)
                .map(|i| {
                    let truth =
                        Pose::from_parts(Translation3::new(i as f64 * 2.0, 0.0, 1.0), optical);
                    let prior = if published_base {
                        truth * base_from_cam.inverse()
                    } else {
                        truth
                    };
                    FrameResult {
                        name: format!("f{i}"),
                        camera: "c0".into(),
                        condition: "sunny".into(),
                        stamp_ns: i,
                        latency_ms: Some(1.0),
                        position_error: Some(
                            (truth.translation.vector - prior.translation.vector).norm(),
                        ),
                        rotation_error: Some(rotation_error_deg(&truth, &prior)),
                        mahalanobis2: None,
                        radius_95: None,
                        matched: None,
                        matched_camera: None,
                    }
                })
                .collect()
        };
        let summary = |frames: Vec<FrameResult>| summary_of(frames, &[]);
        let text = summary_text(&summary(frames(true)));
        assert!(
            text.starts_with("warning: the priors' orientations lie a median 120 degrees")
                && text.contains("base_from_camera"),
            "{text}"
        );
        assert!(orientation_mismatch(&summary(frames(false))).is_none());
        // Too few frames to tell: nothing said.
        let few: Vec<FrameResult> = frames(true).into_iter().take(2).collect();
        assert!(orientation_mismatch(&summary(few)).is_none());
    }

    /// A replay's summary of `frames`, every one sent and answered, on a map of `map_cameras`.
    fn summary_of(frames: Vec<FrameResult>, map_cameras: &[&str]) -> ReplaySummary {
        ReplaySummary {
            frames_sent: frames.len(),
            priors_received: frames.len(),
            frames_without_prior: 0,
            unknown_stamps: 0,
            wrong_frame_id: 0,
            latency_p50_ms: 1.0,
            latency_p99_ms: 1.0,
            all: tally(&frames.iter().collect::<Vec<_>>()),
            by_condition: Default::default(),
            by_camera: Default::default(),
            frames,
            node_filter: None,
            stamps: None,
            node_outcomes: None,
            interrupted: false,
            map_cameras: map_cameras.iter().map(|c| c.to_string()).collect(),
            node_crossed: vec![],
        }
    }

    #[test]
    fn frames_answered_from_another_cameras_map_images_are_said_to_be_crossed() {
        // (frame camera, matched map camera) per prior.
        let summary = |pairs: &[(&str, Option<&str>)]| {
            let frames: Vec<FrameResult> = pairs
                .iter()
                .enumerate()
                .map(|(i, (cam, matched))| FrameResult {
                    name: format!("f{i}"),
                    camera: cam.to_string(),
                    condition: "sunny".into(),
                    stamp_ns: i as i64,
                    latency_ms: Some(1.0),
                    position_error: Some(1.0),
                    rotation_error: Some(60.0),
                    mahalanobis2: None,
                    radius_95: None,
                    matched: matched.map(|m| format!("img_{i}_{m}")),
                    matched_camera: matched.map(str::to_string),
                })
                .collect();
            summary_of(frames, &["c0", "c1"])
        };
        // Swapped: c0's frames answered by c1's images and the other way round.
        let swapped = summary(&[
            ("c0", Some("c1")),
            ("c1", Some("c0")),
            ("c0", Some("c1")),
            ("c1", Some("c0")),
            ("c0", Some("c1")),
            ("c1", Some("c0")),
            ("c0", Some("c0")),
        ]);
        let said = crossed_cameras(&swapped);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0]
                .starts_with("camera c0's frames got priors from map images of camera c1 (3 of 4")
                && said[0].contains("`camera_ids`"),
            "{said:?}"
        );
        // Said instead of the orientation warning, which it explains.
        let text = summary_text(&swapped);
        assert!(text.contains("camera c1's frames got priors"), "{text}");
        assert!(!text.contains("base_from_camera"), "{text}");
        // One camera played, named as the map's other one: every prior from c1's images.
        let said = crossed_cameras(&summary(&[("c0", Some("c1")); 4]));
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0]
            .starts_with("camera c0's frames got priors from map images of camera c1 (4 of 4"));
        // Each camera on its own images, or too few matched, or ids the map does not use (a
        // recording's topics): nothing said.
        for pairs in [
            vec![
                ("c0", Some("c0")),
                ("c1", Some("c1")),
                ("c0", Some("c0")),
                ("c0", Some("c1")),
            ],
            vec![
                ("c0", Some("c1")),
                ("c0", Some("c1")),
                ("c0", None),
                ("c0", None),
            ],
            vec![("/cam0/image_raw", Some("c1")); 5],
        ] {
            assert!(crossed_cameras(&summary(&pairs)).is_empty(), "{pairs:?}");
        }
    }

    #[test]
    fn the_node_outcomes_sum_the_cameras_and_count_only_the_replay() {
        let cam = |w: u64, o: u64, s: u64, r: u64| -> Vec<(String, String)> {
            [
                ("frames_ambiguous", w),
                ("frames_off_map", o),
                ("frames_dropped", s),
                ("frames_rejected", r),
                ("frames_no_candidates", w + r),
                ("frames_received", 10 * w),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        // Two cameras and a status without the keys (another node's).
        let other = vec![("frames_ambiguous".to_string(), "x".to_string())];
        let m = [cam(3, 2, 1, 0), cam(4, 0, 5, 1), other];
        let after = NodeOutcomes::from_diagnostics(m.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(
            after,
            NodeOutcomes {
                withheld: 7,
                off_the_map: 2,
                skipped: 6,
                rejected: 1,
                no_candidates: 8,
                received: Some(70)
            }
        );
        let before = NodeOutcomes::from_diagnostics([cam(1, 1, 0, 0)].iter().map(Vec::as_slice));
        let d = NodeOutcomes::during(before, after);
        assert_eq!(
            (
                d.withheld,
                d.off_the_map,
                d.skipped,
                d.rejected,
                d.no_candidates,
                d.received
            ),
            (6, 1, 6, 1, 7, Some(60))
        );
        // An older node without frames_no_candidates and frames_received: 0 and unknown.
        let old: Vec<(String, String)> = cam(1, 0, 0, 0)
            .into_iter()
            .filter(|(k, _)| k != "frames_no_candidates" && k != "frames_received")
            .collect();
        let o = NodeOutcomes::from_diagnostics([old.clone()].iter().map(Vec::as_slice)).unwrap();
        assert_eq!((o.withheld, o.no_candidates, o.received), (1, 0, None));
        // One camera that does not say how many it received: the sum is unknown.
        let o = NodeOutcomes::from_diagnostics([cam(1, 0, 0, 0), old].iter().map(Vec::as_slice));
        assert_eq!(o.unwrap().received, None);
        // A count that went down (the node restarted): the counts after alone, and what it
        // received unknown.
        let before = NodeOutcomes::from_diagnostics([cam(9, 0, 0, 0)].iter().map(Vec::as_slice));
        let d = NodeOutcomes::during(before, after);
        assert_eq!((d.withheld, d.received), (after.withheld, None));
        // Counts before without frames_received, after with it: the others still subtract.
        let mut before =
            NodeOutcomes::from_diagnostics([cam(1, 1, 0, 0)].iter().map(Vec::as_slice));
        before.as_mut().unwrap().received = None;
        let d = NodeOutcomes::during(before, after);
        assert_eq!((d.withheld, d.received), (6, None));
        assert_eq!(NodeOutcomes::from_diagnostics(std::iter::empty()), None);
    }
}
