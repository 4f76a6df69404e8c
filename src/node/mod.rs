//! The DASGIL ROS 2 node (cargo feature `ros`): subscribes to camera images (raw or
//! compressed), encodes each frame exactly as the map was built (the same code as
//! `dasgil-tools localize`), retrieves the nearest map images and publishes `pose_prior`
//! (geometry_msgs/PoseWithCovarianceStamped) and `pose_candidates` (geometry_msgs/PoseArray, best
//! first), both stamped with the source image's stamp, and /diagnostics.
//!
//! Parts: `params` (declared, validated, served to `ros2 param`), `localizer` (frame -> prior),
//! the subscriptions (one latest-frame slot per camera), the worker (off the executor, newest
//! frame of each camera first-come first-served), the publishers, diagnostics, `~/reload_map`.
//! A bad frame is counted and reported, never fatal.

pub mod frame_player;
pub mod localizer;
pub mod log;
pub mod params;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use r2r::QosProfile;

use crate::eval::online::percentile;
use crate::localize::{Localizer, Outcome, Query};
use localizer::Incoming;
pub use params::{check_params_files, known_params, NodeParams};

type PriorMsg = r2r::geometry_msgs::msg::PoseWithCovarianceStamped;
type MarkerMsg = r2r::visualization_msgs::msg::Marker;
type PoseArrayMsg = r2r::geometry_msgs::msg::PoseArray;
type DiagArray = r2r::diagnostic_msgs::msg::DiagnosticArray;

/// Latencies kept per camera for the percentiles.
const LATENCY_WINDOW: usize = 1000;
/// Matched frames (published or withheld) per camera that /diagnostics' match-quality figures
/// cover.
const QUALITY_WINDOW: usize = 30;
/// Every this many frames of a camera (every frame of its first [`CAMERA_CHECK_WINDOW`]), the
/// node also finds which map camera's image is nearest the frame among all cameras'
/// ([`Localizer::nearest_camera`]): a check that `camera_ids` name each topic's camera.
const CAMERA_CHECK_EVERY: u64 = 5;
/// The checks a camera's verdict is made from (the last ones, after a map is loaded).
const CAMERA_CHECK_WINDOW: usize = 24;
/// Crossed: another map camera is nearest in at least this many of the window's checks, and
/// the camera `camera_ids` names in at most [`CAMERA_CHECK_OWN`] (cameras whose views overlap,
/// a stereo pair, share their matches and stay far from it).
const CAMERA_CHECK_OTHER: usize = 18;
const CAMERA_CHECK_OWN: usize = 1;
/// A camera whose last QUALITY_WINDOW matched frames (at least QUALITY_MIN_FRAMES of them) were
/// withheld this often, or whose median single-frame confidence (the frames' own, whatever the
/// filter: with `filter: sequence` another camera can keep the posterior up) is below the
/// default min_confidence (so that min_confidence 0 does not switch the alarm off), is a WARN: it has stopped matching the map
/// (another place, weather or look than the map's, a covered or misaimed lens).
const QUALITY_WARN_WITHHELD: f64 = 0.5;
const QUALITY_MIN_FRAMES: usize = 10;
/// Rejected-frame warnings: at most one log line per camera this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Counters of one camera, as /diagnostics reports them.
#[derive(Debug, Default, Clone)]
struct CameraStats {
    received: u64,
    localized: u64,
    /// Unusable frames (decoding, size, encoding).
    rejected: u64,
    /// Below `min_confidence`, or off the map: no prior published.
    ambiguous: u64,
    /// Of `ambiguous`: withheld because the sequence filter believed the vehicle off the map.
    off_map: u64,
    /// No map image to match (geo-gating).
    no_candidates: u64,
    /// Why the last frame without candidates had none.
    last_no_candidates: Option<String>,
    /// Whether a run of frames without candidates has been logged (reset by a frame that
    /// matches the map).
    no_candidates_logged: bool,
    /// `no_candidates` and `localized + ambiguous` at the last diagnostics message: frames
    /// without candidates and none matched since means WARN.
    no_candidates_reported: u64,
    matched_reported: u64,
    /// Replaced by a newer frame of the same camera before the worker got to them.
    replaced: u64,
    /// Over `max_rate`.
    throttled: u64,
    last_error: Option<String>,
    /// Whether the last frame processed was bad.
    last_bad: bool,
    /// `rejected` at the last diagnostics message (a rise means WARN).
    rejected_reported: u64,
    last_warned: Option<Instant>,
    suppressed: u64,
    /// Arrival -> published, milliseconds.
    latencies: VecDeque<f64>,
    last_accepted: Option<Instant>,
    /// When the last frame arrived (accepted or not).
    last_arrival: Option<Instant>,
    /// Whether the current silence (no frame for `frame_timeout`) was logged.
    silence_logged: bool,
    /// The last QUALITY_WINDOW matched frames: (the frame's own single-frame confidence,
    /// withheld).
    recent: VecDeque<(f64, bool)>,
    /// The map (its Localizer's generation) those frames and `camera_checks` were matched
    /// against.
    quality_map: Option<usize>,
    /// The camera's intrinsics and lens as its latest camera_info gives them (and whether its
    /// frames are rectified), or why they cannot be read; None: no camera_info yet. Compared
    /// with the current map's lenses at each /diagnostics message (`lens`).
    lens: Option<Result<CameraLens, String>>,
    /// The match state last logged (off the map, stopped matching, past the map's end), so
    /// that the log says when a camera enters and leaves one, not only /diagnostics.
    state_logged: Option<&'static str>,
    /// The `lens` value last logged.
    lens_logged: Option<String>,
    /// Under `filter: sequence`, the say the camera's last matched frame had in the belief
    /// (`localize::Answer::camera_weight`: 1 for the most trusted camera).
    filter_weight: Option<f64>,
    /// The map camera nearest each of the last [`CAMERA_CHECK_WINDOW`] checked frames (on a map
    /// of several cameras; against `quality_map`, like `recent`).
    camera_checks: VecDeque<String>,
    /// Whether crossed camera ids were logged for this map.
    crossed_logged: bool,
}

/// The match state of a camera whose frames look like another map camera's images
/// ([`crossed_camera`]).
const CROSSED: &str = "crossed camera ids";

/// The map camera nearest most of a camera's checked frames, and how many of them, out of
/// how many.
fn camera_check_summary(checks: &VecDeque<String>) -> Option<(&str, usize, usize)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in checks {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(c, n)| (c, n, checks.len()))
}

/// With a full window: the other map camera a camera's frames look like, when
/// [`CAMERA_CHECK_OTHER`] of them or more are nearest it and at most [`CAMERA_CHECK_OWN`] are
/// nearest the camera's own (`own`).
fn crossed_camera<'a>(checks: &'a VecDeque<String>, own: &str) -> Option<(&'a str, usize)> {
    if checks.len() < CAMERA_CHECK_WINDOW {
        return None;
    }
    let own_n = checks.iter().filter(|c| c.as_str() == own).count();
    let (best, n, _) = camera_check_summary(checks)?;
    (best != own && n >= CAMERA_CHECK_OTHER && own_n <= CAMERA_CHECK_OWN).then_some((best, n))
}

/// A camera's lens from its camera_info (any model ROS names: `bag::lens::camera_lens`):
/// intrinsics, lens, rectified frames.
type CameraLens = (crate::geom::Pinhole, crate::map::views::Lens, bool);

/// Match quality over a camera's recent matched frames.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MatchQuality {
    frames: usize,
    /// Share withheld as ambiguous (confidence below min_confidence).
    withheld: f64,
    /// Median single-frame confidence (docs/pose-prior.md).
    median_confidence: f64,
}

impl MatchQuality {
    fn of(recent: &VecDeque<(f64, bool)>) -> Option<Self> {
        if recent.is_empty() {
            return None;
        }
        let mut c: Vec<f64> = recent.iter().map(|r| r.0).collect();
        c.sort_by(f64::total_cmp);
        Some(Self {
            frames: recent.len(),
            withheld: recent.iter().filter(|r| r.1).count() as f64 / recent.len() as f64,
            median_confidence: c[c.len() / 2],
        })
    }

    /// Whether an operator should look at the camera.
    fn stopped_matching(&self) -> bool {
        self.frames >= QUALITY_MIN_FRAMES
            && (self.withheld > QUALITY_WARN_WITHHELD
                || self.median_confidence < crate::localize::prior::DEFAULT_MIN_CONFIDENCE)
    }
}

impl CameraStats {
    fn matched(&mut self, confidence: f64, withheld: bool) {
        self.recent.push_back((confidence, withheld));
        if self.recent.len() > QUALITY_WINDOW {
            self.recent.pop_front();
        }
    }
}

/// One camera: where its frames come from and what it is in the map.
struct Camera {
    topic: String,
    /// `topic` resolved in the node's namespace (before remapping), for /diagnostics.
    resolved_topic: String,
    id: Option<String>,
    base_from_cam: Option<crate::geom::Pose>,
    /// Its `camera_info` topic (image_transport's convention).
    info_topic: String,
}

struct Pending {
    msg: Incoming,
    arrived: Instant,
}

/// State the subscriptions, worker, diagnostics and service share.
struct Shared {
    slots: Vec<Option<Pending>>,
    stats: Vec<CameraStats>,
    /// The gate the latest `prior_topic` message sets (`gate_radius` and `gate_sigmas` of its
    /// covariance, [`crate::localize::gate`]; None: a covariance too wide to gate), and when it
    /// arrived.
    gate_center: Option<(Option<crate::localize::gate::Gate>, Instant)>,
    /// `prior_timeout`: a prior older than this no longer gates (None: never expires).
    prior_timeout: Option<Duration>,
    /// `prior_topic` messages whose covariance was not one (NaN, asymmetric, negative).
    prior_covariance_invalid: u64,
    /// `prior_topic` messages not used at all (another frame than `frame_id`, a position that
    /// is no number), and why the last one was not.
    priors_ignored: u64,
    prior_ignored_why: Option<String>,
    /// Whether `prior_gate`'s latest marker draws a gate (an ADD not yet deleted): the
    /// diagnostics tick deletes it once the prior expires, so that an RViz joining later is
    /// not handed a stale gate by the transient-local topic.
    gate_marker_shown: bool,
    /// When the subscriptions were made.
    started: Instant,
    /// `frame_timeout`: a camera without a frame this long is a WARN (None: never).
    frame_timeout: Option<Duration>,
    /// The `filter` parameter (none, sequence).
    filter: &'static str,
    /// With `filter: sequence`: the filter's relocalizations and resets, and the probability
    /// that the vehicle is off the map (all cameras share it).
    filter_counts: Option<(u64, u64, f64)>,
    /// With `filter: sequence`: how far (metres) the vehicle may have driven past the end of a
    /// road on the map, as of the last frame the filter answered (0 away from an end).
    filter_beyond_end: Option<f64>,
    /// `odometry_topic`'s positions (None: no odometry topic).
    odometry: Option<crate::localize::odometry::OdometryTrack>,
    /// Frames whose motion in the sequence filter came from odometry.
    odometry_frames: u64,
}

impl Shared {
    /// Whether a prior that arrived at `at` still gates (`prior_timeout`).
    fn prior_fresh(&self, at: Instant) -> bool {
        self.prior_timeout.is_none_or(|t| at.elapsed() <= t)
    }
}

/// The error of a subscription a parameter named: its value is no topic name r2r takes.
fn cannot_subscribe(param: &str, topic: &str, example: &str) -> String {
    format!(
        "parameter `{param}`: cannot subscribe `{topic}` (a valid ROS 2 topic name, such as \
         {example}?)"
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ros_pose(p: &crate::geom::Pose) -> r2r::geometry_msgs::msg::Pose {
    let t = p.translation.vector;
    let q = p.rotation;
    r2r::geometry_msgs::msg::Pose {
        position: r2r::geometry_msgs::msg::Point {
            x: t.x,
            y: t.y,
            z: t.z,
        },
        orientation: r2r::geometry_msgs::msg::Quaternion {
            x: q.i,
            y: q.j,
            z: q.k,
            w: q.w,
        },
    }
}

/// diagnostic_msgs/DiagnosticStatus levels.
const LEVEL_OK: u8 = 0;
const LEVEL_WARN: u8 = 1;

struct MapInfo {
    path: String,
    entries: usize,
    fingerprint: String,
    /// Each map camera's lens (`MapMeta::lenses`) and whether its images were rectified.
    lenses: std::collections::BTreeMap<String, crate::map::views::Distortion>,
    rectified: bool,
}

fn diagnostics(
    shared: &mut Shared,
    cameras: &[Camera],
    map: &MapInfo,
    node_name: &str,
    node_fqn: &str,
    min_confidence: f64,
    off_map_threshold: f64,
    now: r2r::builtin_interfaces::msg::Time,
) -> DiagArray {
    use r2r::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: v,
    };
    let mut status = Vec::new();
    let (started, timeout, filter_counts, filter_name, beyond_end) = (
        shared.started,
        shared.frame_timeout,
        shared.filter_counts,
        shared.filter,
        shared.filter_beyond_end,
    );
    // The gate frames are searched in now: its longest (and shortest) semi-axis in metres;
    // "none": the latest prior's covariance is too wide to gate; "-": no prior, or it expired
    // (prior_timeout).
    let (gate, gate_narrowest) = match shared.gate_center {
        Some((g, at)) if shared.prior_fresh(at) => g
            .map_or(("none".to_string(), "none".to_string()), |g| {
                (format!("{:.1}", g.reach), format!("{:.1}", g.narrowest))
            }),
        _ => ("-".to_string(), "-".to_string()),
    };
    let covariance_invalid = shared.prior_covariance_invalid;
    let (priors_ignored, prior_ignored_why) = (
        shared.priors_ignored,
        shared
            .prior_ignored_why
            .clone()
            .unwrap_or_else(|| "-".into()),
    );
    let odometry = shared
        .odometry
        .as_ref()
        .map(|o| (o.taken, o.dropped, shared.odometry_frames, o.newest()));
    for (cam, s) in cameras.iter().zip(shared.stats.iter_mut()) {
        let new_rejections = s.rejected - s.rejected_reported;
        s.rejected_reported = s.rejected;
        let new_no_candidates = s.no_candidates - s.no_candidates_reported;
        s.no_candidates_reported = s.no_candidates;
        let new_matched = (s.localized + s.ambiguous) - s.matched_reported;
        s.matched_reported = s.localized + s.ambiguous;
        let silent = s.last_arrival.unwrap_or(started).elapsed();
        let silence = timeout.filter(|t| silent >= *t).map(|_| {
            if s.received == 0 {
                format!(
                    "no frame in {:.0} s since the node started: check the topic and transport \
                     (`ros2 topic info -v {}`); raw images over ~512 KiB do not pass Fast DDS's \
                     default shared memory: use the README's FASTRTPS_DEFAULT_PROFILES_FILE or \
                     `transport: compressed`",
                    silent.as_secs_f64(),
                    cam.topic
                )
            } else {
                format!(
                    "no frame for {:.0} s (after {} received): the camera stopped, or its frames \
                     stopped passing DDS",
                    silent.as_secs_f64(),
                    s.received
                )
            }
        });
        if let Some(m) = &silence {
            if !s.silence_logged {
                tracing::warn!("{}: {m}", cam.topic);
                s.silence_logged = true;
            }
        }
        let quality = MatchQuality::of(&s.recent);
        let (lens, lens_warning) = match &s.lens {
            None => ("-".to_string(), None),
            Some(Err(why)) => (format!("cannot compare: {why}"), None),
            Some(Ok((k, l, rectified))) => match crate::map::views::lens_mismatch(
                &map.lenses,
                map.rectified,
                cam.id.as_deref().unwrap_or_default(),
                k,
                l,
                *rectified,
                cam.id.is_some(),
            ) {
                crate::map::views::LensCompare::Same => ("as the map's".to_string(), None),
                crate::map::views::LensCompare::Unknown => {
                    ("map records no lens".to_string(), None)
                }
                crate::map::views::LensCompare::Other(m) => (
                    format!(
                        "another than the map's (rays up to {:.1}% further out)",
                        100.0 * m.shift
                    ),
                    Some(format!("frames {}", m.explain())),
                ),
            },
        };
        if s.lens_logged.as_deref() != Some(lens.as_str()) {
            let info_topic = &cam.info_topic;
            match (&lens_warning, &s.lens) {
                (Some(w), _) => tracing::warn!("{}: per {info_topic}, its {w}", cam.topic),
                (None, Some(Err(_))) => {
                    tracing::warn!("{}: per {info_topic}, the lens {lens}", cam.topic)
                }
                (None, Some(Ok(_))) => {
                    tracing::info!("{}: per {info_topic}, lens {lens}", cam.topic)
                }
                (None, None) => {}
            }
            s.lens_logged = Some(lens.clone());
        }
        // The camera's match state (off the map, stopped matching, past the map's end), from
        // its own conditions: /diagnostics shows it unless a louder message (silence,
        // rejections, an empty gate) takes its place; the log says when it begins and ends.
        // Crossed camera ids come first: they explain the others (the camera's frames are
        // searched among another camera's images, so they match poorly and the filter may
        // believe the vehicle off the map). The frame callback logs when they begin and end.
        let own = cam.id.as_deref().unwrap_or_default();
        let state: Option<(&'static str, String)> = if let Some((other, n)) =
            crossed_camera(&s.camera_checks, own)
        {
            Some((
                CROSSED,
                format!(
                    "its frames look like map camera {other}'s images, not {own}'s ({n} of the \
                     last {} checked frames nearest camera {other}'s images among every \
                     camera's): `camera_ids` may name the topics in another order than the \
                     map's cameras; its priors are then {own}'s poses of another view",
                    s.camera_checks.len()
                ),
            ))
        } else if let Some(p) = filter_counts
            .map(|c| c.2)
            .filter(|&p| crate::localize::off_map_withheld(Some(p), off_map_threshold))
        {
            Some((
                "off the map",
                format!(
                    "off the map: the sequence filter gives {p:.2} to the vehicle being where \
                     the map does not reach (its frames neither follow a path on the map nor \
                     stand out from its other places); priors are withheld until they do"
                ),
            ))
        } else if let Some(q) = quality.filter(|q| q.stopped_matching()) {
            Some((
                "stopped matching the map",
                format!(
                    "stopped matching the map: {:.0}% of the last {} matched frames withheld as \
                     ambiguous, median single-frame confidence {:.3} (min_confidence {}): the camera sees \
                     another place, weather or look than the map's, or its view is blocked",
                    100.0 * q.withheld,
                    q.frames,
                    q.median_confidence,
                    min_confidence
                ),
            ))
        } else if let Some(b) =
            beyond_end.filter(|&b| b > crate::localize::sequence::REGION_RADIUS && s.received > 0)
        {
            Some((
                "past the map's end",
                format!(
                    "past the map's end: the vehicle reached the end of a road on the map and \
                     may have driven on; the truth may lie up to {b:.0} m from the published \
                     place, and the priors' 95% ellipsoids are widened by that until it turns \
                     back (a map that covers the route gives tight priors again; without \
                     odometry_topic a vehicle parked at the end looks the same and keeps \
                     growing)"
                ),
            ))
        } else {
            None
        };
        let kind = state.as_ref().map(|(k, _)| *k);
        if kind != s.state_logged {
            match (&state, s.state_logged) {
                // Crossed ids are logged by the frame callback, as they are found; a state
                // logged before them is closed, as they explain it.
                (Some((CROSSED, _)), Some(was)) if was != CROSSED => tracing::info!(
                    "{}: no longer {was}: its frames look like another map camera's images \
                     (crossed camera ids, logged above)",
                    cam.topic
                ),
                (Some((CROSSED, _)), _) | (None, Some(CROSSED)) => {}
                (Some((_, m)), _) => tracing::warn!("{}: {m}", cam.topic),
                (None, Some(was)) => tracing::info!("{}: no longer {was}", cam.topic),
                (None, None) => {}
            }
            s.state_logged = kind;
        }
        let (level, message) = if let Some(m) = silence {
            (LEVEL_WARN, m)
        } else if s.last_bad || new_rejections > 0 {
            (
                LEVEL_WARN,
                format!(
                    "{new_rejections} frame(s) rejected since the last report; last: {}",
                    s.last_error.as_deref().unwrap_or("?")
                ),
            )
        } else if new_no_candidates > 0 && new_matched == 0 {
            (
                LEVEL_WARN,
                format!(
                    "{new_no_candidates} frame(s) since the last report found no map image to \
                     match and got no prior; last: {}. With prior_topic: is its position in \
                     frame_id's coordinates and near the map, and is the gate (gate_radius, the \
                     prior's covariance times gate_sigmas) as wide as its error?",
                    s.last_no_candidates.as_deref().unwrap_or("?")
                ),
            )
        } else if let Some((_, m)) = &state {
            (LEVEL_WARN, m.clone())
        } else if let Some(w) = lens_warning {
            (LEVEL_WARN, w)
        } else if s.received == 0 {
            (LEVEL_OK, "waiting for images".to_string())
        } else {
            (LEVEL_OK, "localizing".to_string())
        };
        let mut lat: Vec<f64> = s.latencies.iter().copied().collect();
        lat.sort_by(f64::total_cmp);
        status.push(DiagnosticStatus {
            level,
            name: format!("{node_name}: {}", cam.topic),
            message,
            hardware_id: cam.id.clone().unwrap_or_default(),
            values: vec![
                // Which node and camera the counts are of (replay keeps its own node's).
                kv("node", node_fqn.to_string()),
                kv("image_topic", cam.resolved_topic.clone()),
                kv("camera_id", cam.id.clone().unwrap_or_else(|| "-".into())),
                kv("frames_received", s.received.to_string()),
                kv("frames_localized", s.localized.to_string()),
                kv("frames_rejected", s.rejected.to_string()),
                kv("frames_ambiguous", s.ambiguous.to_string()),
                kv("frames_off_map", s.off_map.to_string()),
                kv("frames_no_candidates", s.no_candidates.to_string()),
                kv("prior_gate_m", gate.clone()),
                // Its shortest semi-axis: the horizontal one of a GNSS fix without its height.
                kv("prior_gate_narrowest_m", gate_narrowest.clone()),
                kv("prior_covariance_invalid", covariance_invalid.to_string()),
                kv("priors_ignored", priors_ignored.to_string()),
                kv("prior_ignored_reason", prior_ignored_why.clone()),
                kv("frames_dropped", (s.replaced + s.throttled).to_string()),
                kv("frames_replaced", s.replaced.to_string()),
                kv("frames_throttled", s.throttled.to_string()),
                kv(
                    "recent_matched_frames",
                    quality.map_or(0, |q| q.frames).to_string(),
                ),
                kv(
                    "recent_withheld_share",
                    quality.map_or("-".into(), |q| format!("{:.3}", q.withheld)),
                ),
                kv(
                    "recent_median_confidence",
                    quality.map_or("-".into(), |q| format!("{:.3}", q.median_confidence)),
                ),
                kv("latency_p50_ms", format!("{:.2}", percentile(&lat, 0.5))),
                kv("latency_p99_ms", format!("{:.2}", percentile(&lat, 0.99))),
                kv("map_entries", map.entries.to_string()),
                kv("filter", filter_name.to_string()),
                kv(
                    "filter_relocalizations",
                    filter_counts.map_or("-".into(), |c| c.0.to_string()),
                ),
                kv(
                    "filter_resets",
                    filter_counts.map_or("-".into(), |c| c.1.to_string()),
                ),
                kv(
                    "filter_off_map",
                    filter_counts.map_or("-".into(), |c| format!("{:.3}", c.2)),
                ),
                kv(
                    "map_camera_nearest",
                    camera_check_summary(&s.camera_checks)
                        .map_or("-".into(), |(c, n, of)| format!("{c} {n}/{of}")),
                ),
                kv(
                    "filter_camera_weight",
                    s.filter_weight.map_or("-".into(), |w| format!("{w:.3}")),
                ),
                kv(
                    "filter_beyond_end_m",
                    beyond_end.map_or("-".into(), |b| format!("{b:.1}")),
                ),
                kv(
                    "odometry_samples",
                    odometry.map_or("-".into(), |o| o.0.to_string()),
                ),
                kv(
                    "odometry_dropped",
                    odometry.map_or("-".into(), |o| o.1.to_string()),
                ),
                kv(
                    "odometry_newest_stamp",
                    odometry
                        .and_then(|o| o.3)
                        .map_or("-".into(), |t| format!("{t:.3}")),
                ),
                kv(
                    "filter_odometry_frames",
                    odometry.map_or("-".into(), |o| o.2.to_string()),
                ),
                kv("lens", lens),
                kv("map_fingerprint", map.fingerprint.clone()),
                kv("map", map.path.clone()),
            ],
        });
    }
    DiagArray {
        header: r2r::std_msgs::msg::Header {
            stamp: now,
            frame_id: String::new(),
        },
        status,
    }
}

fn map_info(loc: &Localizer) -> MapInfo {
    MapInfo {
        path: loc.map.path.display().to_string(),
        entries: loc.map.len(),
        fingerprint: loc.map.meta.encoder.model_fingerprint.clone(),
        lenses: loc.map.meta.lenses.clone(),
        rectified: loc.map.meta.encoder.rectified,
    }
}

/// Subscribes each camera topic into its latest-frame slot.
fn subscribe_cameras(
    node: &mut r2r::Node,
    params: &NodeParams,
    cameras: &[Camera],
    shared: &Arc<Mutex<Shared>>,
    wake: &Arc<tokio::sync::Notify>,
) -> Result<()> {
    let min_gap =
        (params.max_rate.0 > 0.0).then(|| Duration::from_secs_f64(1.0 / params.max_rate.0));
    for (i, cam) in cameras.iter().enumerate() {
        let stream: futures::stream::BoxStream<'static, Incoming> = if params.transport
            == "compressed"
        {
            node.subscribe::<localizer::CompressedMsg>(&cam.topic, QosProfile::sensor_data())
                .with_context(|| cannot_subscribe("image_topics", &cam.topic, "/camera/image_raw"))?
                .map(Incoming::Compressed)
                .boxed()
        } else {
            node.subscribe::<localizer::ImageMsg>(&cam.topic, QosProfile::sensor_data())
                .with_context(|| cannot_subscribe("image_topics", &cam.topic, "/camera/image_raw"))?
                .map(Incoming::Raw)
                .boxed()
        };
        let (shared, wake) = (shared.clone(), wake.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let now = Instant::now();
                let mut sh = lock(&shared);
                let s = &mut sh.stats[i];
                s.received += 1;
                s.last_arrival = Some(now);
                s.silence_logged = false;
                if let (Some(gap), Some(last)) = (min_gap, s.last_accepted) {
                    if now.duration_since(last) < gap {
                        s.throttled += 1;
                        continue;
                    }
                }
                s.last_accepted = Some(now);
                if sh.slots[i].is_some() {
                    sh.stats[i].replaced += 1;
                }
                sh.slots[i] = Some(Pending { msg, arrived: now });
                drop(sh);
                wake.notify_one();
            }
        });
    }
    Ok(())
}

/// Subscribes each camera's `camera_info` (image_transport's convention: beside the image
/// topic) and keeps the lens it gives; each /diagnostics message compares it with the current
/// map's images' (`map::views::lens_mismatch`; frames of an `image_rect...` topic are
/// rectified, a pinhole, as are a rectified map's images): `lens` (another lens: WARN), logged
/// when it changes. Best effort, which matches reliable and best-effort publishers alike.
/// Frames are encoded as they arrive whatever the lens.
fn subscribe_camera_info(
    node: &mut r2r::Node,
    params: &NodeParams,
    cameras: &[Camera],
    shared: &Arc<Mutex<Shared>>,
) -> Result<()> {
    let compressed = params.transport == "compressed";
    for (i, cam) in cameras.iter().enumerate() {
        let topic = &cam.info_topic;
        let mut sub = node.subscribe::<r2r::sensor_msgs::msg::CameraInfo>(
            topic,
            QosProfile::default().best_effort(),
        )?;
        let rectified = crate::bag::lens::is_rectified(&cam.topic, compressed);
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let lens = crate::bag::frames::camera_info(m)
                    .ok_or_else(|| "K has not 9 values or P not 12".to_string())
                    .and_then(|info| crate::bag::lens::camera_lens(&info, rectified))
                    .map(|(k, l)| (k, l, rectified));
                lock(&shared).stats[i].lens = Some(lens);
            }
        });
    }
    Ok(())
}

/// Subscribes `prior_topic` (when set): its latest position centres the geo-gate, the
/// ellipsoid of `gate_radius` and `gate_sigmas` standard deviations of the message's position
/// covariance in quadrature per axis ([`crate::localize::gate`]); an infinite variance opens
/// the gate along its axis (cut at 1e6 m), along every axis it gates nothing. Subscribed best effort, which matches reliable and
/// best-effort publishers alike. A prior in another frame than `frame_id` (odom, say) is not
/// map coordinates: it is ignored, and the log says so (once per frame name); so is a position
/// that is no number; both are counted (/diagnostics `priors_ignored`, the last one's reason
/// `prior_ignored_reason`). A covariance
/// that is not one (NaN, asymmetric, negative) is not used (the gate is the sphere of
/// `gate_radius`, as for a prior without one): counted (/diagnostics
/// `prior_covariance_invalid`) and said once in the log.
///
/// Each gate is also published on `prior_gate` (visualization_msgs/Marker, transient local,
/// so RViz shows the latest one when it subscribes late): a SPHERE marker scaled to the
/// ellipsoid's diameters, oriented along its axes, in `frame_id`, its lifetime
/// `prior_timeout` (RViz drops it when the prior stops gating); a prior too uncertain to gate
/// deletes it, and so does the diagnostics tick once the prior is older than `prior_timeout`.
/// Returns that publisher (None: no `prior_topic`).
fn subscribe_prior(
    node: &mut r2r::Node,
    topic: &str,
    frame_id: &str,
    (gate_radius, gate_sigmas): (f64, f64),
    shared: &Arc<Mutex<Shared>>,
) -> Result<Option<r2r::Publisher<MarkerMsg>>> {
    if topic.is_empty() {
        return Ok(None);
    }
    let mut sub = node
        .subscribe::<PriorMsg>(topic, QosProfile::default().best_effort())
        .with_context(|| cannot_subscribe("prior_topic", topic, "/gnss/pose"))?;
    let marker_pub = node.create_publisher::<MarkerMsg>(
        "prior_gate",
        QosProfile::default().keep_last(1).transient_local(),
    )?;
    let shared = shared.clone();
    let (topic, frame_id) = (topic.to_string(), frame_id.to_string());
    let returned = marker_pub.clone();
    tokio::spawn(async move {
        let mut warned = std::collections::BTreeSet::new();
        let mut warned_covariance = false;
        while let Some(m) = sub.next().await {
            let p = &m.pose.pose.position;
            let ignored = if m.header.frame_id != frame_id {
                Some(format!(
                    "a prior in frame `{}` is ignored: the search gate needs positions in \
                     `{frame_id}` (publish the map-frame estimate, e.g. robot_localization's \
                     map-frame output)",
                    m.header.frame_id
                ))
            } else if !(p.x.is_finite() && p.y.is_finite() && p.z.is_finite()) {
                Some(format!(
                    "a prior whose position is no number ({}, {}, {}) is ignored",
                    p.x, p.y, p.z
                ))
            } else {
                None
            };
            if let Some(why) = ignored {
                // Once per frame name (and once for positions that are no number).
                let key = if m.header.frame_id != frame_id {
                    m.header.frame_id.clone()
                } else {
                    "\0position".to_string()
                };
                if warned.insert(key) {
                    tracing::warn!(
                        "prior_topic {topic}: {why} (said once; counted in /diagnostics \
                         priors_ignored)"
                    );
                }
                let mut sh = lock(&shared);
                sh.priors_ignored += 1;
                sh.prior_ignored_why = Some(why);
                continue;
            }
            use crate::localize::gate::{Gate, PositionCovariance as C};
            let centre = [p.x, p.y, p.z];
            let mut invalid = false;
            let cov = match crate::localize::gate::position_covariance(&m.pose.covariance) {
                C::Known(c) => Some(c),
                C::Unknown => None,
                C::Invalid(why) => {
                    invalid = true;
                    if !warned_covariance {
                        warned_covariance = true;
                        tracing::warn!(
                            "prior_topic {topic}: {why}: such priors gate with the sphere of \
                             gate_radius ({gate_radius} m), as priors without a covariance \
                             (said once; counted in /diagnostics prior_covariance_invalid)"
                        );
                    }
                    None
                }
            };
            let gate = Gate::around(centre, gate_radius, gate_sigmas, cov.as_ref());
            let mut sh = lock(&shared);
            sh.gate_center = Some((gate, Instant::now()));
            sh.prior_covariance_invalid += u64::from(invalid);
            sh.gate_marker_shown = gate.is_some();
            // Published under the lock, so that the diagnostics tick's DELETE of an expired
            // gate cannot land after this newer gate.
            let marker = gate_marker(gate.as_ref(), m.header, sh.prior_timeout);
            if let Err(e) = marker_pub.publish(&marker) {
                tracing::debug!("prior_gate: cannot publish: {e}");
            }
        }
    });
    Ok(Some(returned))
}

/// The `prior_gate` marker of a gate (None: a DELETE of the last one, the prior gates
/// nothing): the ellipsoid in the prior's frame and stamp, RViz's SPHERE scaled to its
/// diameters; `lifetime` None: until replaced.
fn gate_marker(
    gate: Option<&crate::localize::gate::Gate>,
    header: r2r::std_msgs::msg::Header,
    lifetime: Option<Duration>,
) -> MarkerMsg {
    let mut m = MarkerMsg {
        header,
        ns: "prior_gate".into(),
        id: 0,
        type_: MarkerMsg::SPHERE as i32,
        action: MarkerMsg::DELETE as i32,
        ..Default::default()
    };
    let Some(g) = gate else { return m };
    let (axes, q) = g.ellipsoid();
    m.action = MarkerMsg::ADD as i32;
    m.pose = ros_pose(&crate::geom::Pose::from_parts(
        nalgebra::Translation3::new(g.centre[0], g.centre[1], g.centre[2]),
        q,
    ));
    m.scale = r2r::geometry_msgs::msg::Vector3 {
        x: 2.0 * axes[0],
        y: 2.0 * axes[1],
        z: 2.0 * axes[2],
    };
    m.color = r2r::std_msgs::msg::ColorRGBA {
        r: 0.2,
        g: 0.6,
        b: 1.0,
        a: 0.25,
    };
    if let Some(t) = lifetime {
        m.lifetime = r2r::builtin_interfaces::msg::Duration {
            sec: t.as_secs().min(i32::MAX as u64) as i32,
            nanosec: t.subsec_nanos(),
        };
    }
    m
}

/// Subscribes `odometry_topic` (when set; used with `filter: sequence`): its positions, by
/// stamp, give the distance travelled between two frames. Best effort, which matches reliable
/// and best-effort publishers alike. Samples with a zero stamp, out of stamp order or with
/// non-finite values are dropped and counted (/diagnostics `odometry_dropped`); a stamp more
/// than 1 s older than the newest starts the track again (logged).
fn subscribe_odometry(
    node: &mut r2r::Node,
    topic: &str,
    shared: &Arc<Mutex<Shared>>,
) -> Result<()> {
    if topic.is_empty() {
        return Ok(());
    }
    let mut sub = node
        .subscribe::<r2r::nav_msgs::msg::Odometry>(topic, QosProfile::default().best_effort())
        .with_context(|| cannot_subscribe("odometry_topic", topic, "/odom"))?;
    let shared = shared.clone();
    let topic = topic.to_string();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let st = &m.header.stamp;
            let p = &m.pose.pose.position;
            let mut sh = lock(&shared);
            let Some(track) = sh.odometry.as_mut() else {
                continue;
            };
            if st.sec == 0 && st.nanosec == 0 {
                track.dropped += 1;
                continue;
            }
            let t = st.sec as f64 + st.nanosec as f64 * 1e-9;
            if track.push(t, [p.x, p.y, p.z]) == crate::localize::odometry::Pushed::Restarted {
                tracing::warn!(
                    "{topic}: odometry stamp {t:.3} s is more than 1 s older than the one before: \
                     its clock went back (a bag played again?); starting its track again"
                );
            }
        }
    });
    Ok(())
}

struct Publishers {
    prior: r2r::Publisher<PriorMsg>,
    candidates: r2r::Publisher<PoseArrayMsg>,
}

/// The worker: takes the oldest waiting frame (each camera's newest), localizes it off the
/// executor and publishes; loops until no frame waits, then sleeps until woken.
fn spawn_worker(
    cameras: Arc<Vec<Camera>>,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<tokio::sync::Notify>,
    localizer: Arc<Mutex<Localizer>>,
    pubs: Publishers,
    frame_id: String,
) {
    // The vehicle's sequence filter (`filter: sequence`): frames are localized one at a time.
    let sequence = Arc::new(Mutex::new(crate::localize::Sequence::default()));
    // (camera, header.frame_id) pairs seen with the map answering now: a camera whose frames
    // are another camera's in the map (camera_ids in another order than build-map's
    // --camera-id) is said once per map; emptied when another map answers, so a reloaded map
    // is checked again.
    type FramesSeen = (usize, std::collections::HashSet<(usize, String)>);
    let frames_seen: Arc<Mutex<FramesSeen>> = Arc::default();
    tokio::spawn(async move {
        let mut expired_logged = false;
        // Per camera: frames taken, for the nearest-camera check every CAMERA_CHECK_EVERY.
        let mut taken = vec![0u64; cameras.len()];
        loop {
            wake.notified().await;
            loop {
                let (i, pending, gate) = {
                    let mut sh = lock(&shared);
                    let next = sh
                        .slots
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| s.as_ref().map(|p| (i, p.arrived)))
                        .min_by_key(|&(_, t)| t)
                        .map(|(i, _)| i);
                    let Some(i) = next else { break };
                    let p = sh.slots[i].take();
                    // A prior older than prior_timeout no longer gates: the whole map is
                    // searched until a new one arrives.
                    let gate = match sh.gate_center {
                        Some((g, at)) if sh.prior_fresh(at) => {
                            expired_logged = false;
                            g
                        }
                        Some((_, at)) => {
                            if !expired_logged {
                                tracing::info!(
                                    "the last prior_topic position is {:.1} s old (prior_timeout \
                                     {:.1} s): searching the whole map until a new one arrives",
                                    at.elapsed().as_secs_f64(),
                                    sh.prior_timeout.map_or(0.0, |t| t.as_secs_f64())
                                );
                                expired_logged = true;
                            }
                            None
                        }
                        None => None,
                    };
                    (i, p, gate)
                };
                let Some(pending) = pending else { break };
                // Every frame until the window is full (a crossing is said within seconds),
                // then every CAMERA_CHECK_EVERY-th.
                let check_camera =
                    taken[i] < CAMERA_CHECK_WINDOW as u64 || taken[i] % CAMERA_CHECK_EVERY == 0;
                taken[i] += 1;
                let (loc, cams, seq) = (localizer.clone(), cameras.clone(), sequence.clone());
                let seen = frames_seen.clone();
                let odo_shared = shared.clone();
                let stamp = pending.msg.header().stamp.clone();
                // The sequence filter's clock: the frame's stamp; a camera that stamps nothing
                // (0) gets the wall clock, so motion still widens with time.
                let time = if stamp.sec == 0 && stamp.nanosec == 0 {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                } else {
                    stamp.sec as f64 + stamp.nanosec as f64 * 1e-9
                };
                let pending_arrived = pending.arrived;
                let result = tokio::task::spawn_blocking(move || {
                    let cam = &cams[i];
                    let loc = lock(&loc);
                    // Which map answered: a reload starts the camera's match-quality window anew.
                    let map_id = loc.generation as usize;
                    if let (Some(id), Some(bag)) = (cam.id.as_deref(), &loc.map.meta.source.bag) {
                        let frame = &pending.msg.header().frame_id;
                        let mut seen = lock(&seen);
                        // Another map answering: a reload.
                        if seen.0 != map_id {
                            *seen = (map_id, Default::default());
                        }
                        if seen.1.insert((i, frame.clone())) {
                            if let Some(w) = bag.crossed(id, frame) {
                                tracing::warn!("{}: {w}", cam.topic);
                            }
                        }
                    }
                    let mut seq = lock(&seq);
                    // The odometry's motion since the filter's last frame.
                    let travelled = seq
                        .last_time(&loc.map)
                        .and_then(|t0| lock(&odo_shared).odometry.as_ref()?.travelled(t0, time));
                    let (outcome, nearest) = loc.localize_at_checked(
                        &mut seq,
                        &pending.msg.frame(),
                        &Query {
                            camera: cam.id.as_deref(),
                            near: gate,
                            base_from_cam: cam.base_from_cam.as_ref(),
                            source: &cam.resolved_topic,
                        },
                        time,
                        travelled,
                        check_camera && cam.id.is_some(),
                    );
                    let outcome = match outcome {
                        Outcome::Rejected(e) => {
                            Outcome::Rejected(format!("{}: {e}", pending.msg.describe(&cam.topic)))
                        }
                        other => other,
                    };
                    let moved_by_odometry = travelled.is_some() && outcome.answer().is_some();
                    (outcome, map_id, seq.counts(), moved_by_odometry, nearest)
                })
                .await;
                let (result, map_id, filter_counts, by_odometry, nearest) = match result {
                    Ok((o, id, counts, odo, near)) => (Ok(o), Some(id), counts, odo, near),
                    Err(e) => (Err(e), None, None, false, None),
                };
                if let Ok(Outcome::Prior(answer)) = &result {
                    let header = r2r::std_msgs::msg::Header {
                        stamp,
                        frame_id: frame_id.clone(),
                    };
                    let prior = PriorMsg {
                        header: header.clone(),
                        pose: r2r::geometry_msgs::msg::PoseWithCovariance {
                            pose: ros_pose(&answer.prior.pose),
                            covariance: answer.prior.covariance.to_vec(),
                        },
                    };
                    let cands = PoseArrayMsg {
                        header,
                        poses: answer.candidates.iter().map(ros_pose).collect(),
                    };
                    if let Err(e) = pubs
                        .prior
                        .publish(&prior)
                        .and_then(|_| pubs.candidates.publish(&cands))
                    {
                        tracing::warn!("cannot publish the pose prior: {e}");
                    }
                }
                let ms = pending_arrived.elapsed().as_secs_f64() * 1e3;
                let mut sh = lock(&shared);
                if filter_counts.is_some() {
                    sh.filter_counts = filter_counts;
                }
                let answer = result.as_ref().ok().and_then(|o| o.answer());
                if let Some(b) = answer.and_then(|a| a.beyond_end) {
                    sh.filter_beyond_end = Some(b);
                }
                if by_odometry {
                    sh.odometry_frames += 1;
                }
                let s = &mut sh.stats[i];
                // A reload starts the camera's windows anew.
                if map_id.is_some() && map_id != s.quality_map {
                    s.recent.clear();
                    s.camera_checks.clear();
                    s.crossed_logged = false;
                    s.quality_map = map_id;
                }
                if let Some(w) = answer.and_then(|a| a.camera_weight) {
                    s.filter_weight = Some(w);
                }
                if let Some(near) = nearest {
                    s.camera_checks.push_back(near);
                    if s.camera_checks.len() > CAMERA_CHECK_WINDOW {
                        s.camera_checks.pop_front();
                    }
                    let own = cameras[i].id.as_deref().unwrap_or_default();
                    if let Some((other, n)) = crossed_camera(&s.camera_checks, own) {
                        if !s.crossed_logged {
                            tracing::warn!(
                                "{}: its frames look like map camera {other}'s images, not \
                                 {own}'s ({n} of the last {} checked frames nearest camera \
                                 {other}'s images among every camera's): `camera_ids` may name \
                                 the topics in another order than the map's cameras (its \
                                 priors are then {own}'s poses of another view, turned by the \
                                 angle between the cameras); /diagnostics \
                                 `map_camera_nearest`",
                                cameras[i].topic,
                                s.camera_checks.len()
                            );
                            s.crossed_logged = true;
                        }
                    } else if s.crossed_logged
                        && s.camera_checks.len() >= CAMERA_CHECK_WINDOW
                        && camera_check_summary(&s.camera_checks).is_some_and(|(c, _, _)| c == own)
                    {
                        tracing::info!(
                            "{}: its frames look like map camera {own}'s images again",
                            cameras[i].topic
                        );
                        s.crossed_logged = false;
                    }
                }
                let bad = match result {
                    Ok(Outcome::Prior(a)) => {
                        s.localized += 1;
                        s.no_candidates_logged = false;
                        s.matched(a.frame_confidence, false);
                        s.latencies.push_back(ms);
                        if s.latencies.len() > LATENCY_WINDOW {
                            s.latencies.pop_front();
                        }
                        None
                    }
                    Ok(Outcome::Ambiguous(a)) => {
                        s.ambiguous += 1;
                        s.no_candidates_logged = false;
                        s.off_map += u64::from(a.off_the_map);
                        s.matched(a.frame_confidence, true);
                        tracing::debug!(
                            "{}: ambiguous match (confidence {:.3}): no prior",
                            cameras[i].topic,
                            a.prior.confidence
                        );
                        None
                    }
                    Ok(Outcome::NoCandidates(why)) => {
                        s.no_candidates += 1;
                        // Once per run of such frames: the gate (or the map) leaves nothing.
                        if !s.no_candidates_logged {
                            tracing::warn!(
                                "{}: {why}: no prior (said again after a frame of this camera \
                                 matches the map; counted in /diagnostics frames_no_candidates)",
                                cameras[i].topic
                            );
                            s.no_candidates_logged = true;
                        }
                        s.last_no_candidates = Some(why);
                        None
                    }
                    Ok(Outcome::Rejected(e)) => Some(e),
                    Err(e) => Some(format!("encoder task failed: {e}")),
                };
                s.last_bad = bad.is_some();
                if let Some(e) = bad {
                    s.rejected += 1;
                    // Rate-limited: a stream of bad frames gives a line every WARN_EVERY.
                    let due = s.last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY);
                    if due {
                        let more = std::mem::take(&mut s.suppressed);
                        let tail = if more > 0 {
                            format!(" ({more} more since the last warning)")
                        } else {
                            String::new()
                        };
                        tracing::warn!("bad frame dropped: {e}{tail}");
                        s.last_warned = Some(Instant::now());
                    } else {
                        s.suppressed += 1;
                    }
                    s.last_error = Some(e);
                }
            }
        }
    });
}

/// `~/reload_map` (std_srvs/Trigger): loads the map file again (e.g. rebuilt) with a fresh
/// encoder; a map that does not match the model is refused and the old one kept. Every call is
/// answered: the request queue keeps all calls (a burst is never dropped by a queue depth), and
/// the calls waiting when a reload starts share that reload and its answer.
///
/// Returns what the spinning thread must call after each `spin_once`: r2r hands requests over
/// through a channel of 10 and drops (never answers) the ones that do not fit, and a task on
/// the runtime does not always run between two spins (a burst of 20 lost one call in about 100
/// bursts that way), while one `spin_once` takes at most one request per service: moving it
/// into an unbounded queue right there keeps r2r's channel empty.
fn serve_reload(
    node: &mut r2r::Node,
    params: &NodeParams,
    device: tch::Device,
    localizer: Arc<Mutex<Localizer>>,
    map_info_slot: Arc<Mutex<MapInfo>>,
    shared: Arc<Mutex<Shared>>,
) -> Result<impl FnMut() + Send + 'static> {
    let mut srv = node.create_service::<r2r::std_srvs::srv::Trigger::Service>(
        "~/reload_map",
        QosProfile::services_default().keep_all(),
    )?;
    let (map, checkpoint, options) = (
        PathBuf::from(&params.map),
        params.checkpoint_path(),
        params.localizer_options()?,
    );
    let ids: Vec<String> = params.camera_ids.0.clone();
    let (queue, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let drain = move || {
        while let Some(Some(req)) = futures::FutureExt::now_or_never(srv.next()) {
            let _ = queue.send(req);
        }
    };
    tokio::spawn(async move {
        while let Some(first) = requests.recv().await {
            let mut callers = vec![first];
            while let Ok(more) = requests.try_recv() {
                callers.push(more);
            }
            let (map, checkpoint, options, ids) = (
                map.clone(),
                checkpoint.clone(),
                options.clone(),
                ids.clone(),
            );
            let fingerprint_now = lock(&map_info_slot).fingerprint.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let (loc, _) = Localizer::load(&map, checkpoint.as_deref(), device, options)?;
                loc.check_cameras(&ids)
                    .map_err(|e| anyhow::anyhow!("parameter `camera_ids`: {e}"))?;
                loc.warm_up();
                if loc.map.meta.encoder.model_fingerprint != fingerprint_now {
                    anyhow::bail!(
                        "the map was built with model {}, the node runs {fingerprint_now}",
                        loc.map.meta.encoder.model_fingerprint
                    );
                }
                Ok(loc)
            })
            .await;
            let response = match loaded {
                Ok(Ok(loc)) => {
                    let info = map_info(&loc);
                    let message = format!(
                        "reloaded {} ({} entries; centring {})",
                        info.path,
                        info.entries,
                        loc.centring_used().name()
                    );
                    *lock(&localizer) = loc;
                    *lock(&map_info_slot) = info;
                    // The sequence filter starts again on the new map: what it said about the
                    // old one (off the map, past its end, its counts, its cameras' say) is not
                    // reported for it.
                    let mut sh = lock(&shared);
                    sh.filter_counts = None;
                    sh.filter_beyond_end = None;
                    sh.stats.iter_mut().for_each(|s| s.filter_weight = None);
                    drop(sh);
                    tracing::info!("{message}");
                    r2r::std_srvs::srv::Trigger::Response {
                        success: true,
                        message,
                    }
                }
                Ok(Err(e)) => {
                    let message = format!("kept the old map: {}", crate::report::error_report(&e));
                    tracing::warn!("{message}");
                    r2r::std_srvs::srv::Trigger::Response {
                        success: false,
                        message,
                    }
                }
                Err(e) => r2r::std_srvs::srv::Trigger::Response {
                    success: false,
                    message: format!("kept the old map: reload failed: {e}"),
                },
            };
            let n = callers.len();
            for req in callers {
                if let Err(e) = req.respond(response.clone()) {
                    tracing::warn!("cannot answer ~/reload_map: {e}");
                }
            }
            tracing::debug!("answered {n} ~/reload_map call(s)");
        }
    });
    Ok(drain)
}

/// A signal during start-up: the node stops at once (exit status 0, as after a Ctrl-C once
/// running). The loading thread cannot be interrupted and the runtime would wait for it on the
/// way out; `exit` would run libtorch's static destructors under that thread's feet, so the
/// process ends with `_exit` once the log is flushed (nothing has been written but the log).
fn interrupted_while_loading(map: &str) -> ! {
    use std::io::Write;
    tracing::info!("shutting down: interrupted while loading {map}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C stdio stream (rcutils logs through them).
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: `_exit` ends the process without running atexit handlers; nothing is shared
    // with another process and no file of ours is half-written at this point.
    unsafe { libc::_exit(0) }
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let warnings = check_params_files(&args)?;
    let ctx = r2r::Context::create().context("creating the ROS 2 context")?;
    let mut node = r2r::Node::create(ctx, "dasgil_localizer", "").context("creating the node")?;
    log::set_logger(node.logger());
    for (_, w) in &warnings {
        tracing::warn!("{w}");
    }
    {
        // Each unknown name once: one a params file holds was warned about with its file.
        let params = lock(&node.params);
        let known = known_params();
        for name in params.keys() {
            if !known.contains(name)
                && !name.starts_with("qos_overrides")
                && !warnings
                    .iter()
                    .any(|(n, _)| n == name || name.starts_with(&format!("{n}.")))
            {
                tracing::warn!("{}", params::unknown_param(name, &known));
            }
        }
    }
    let (params, frozen, param_services) = NodeParams::declare(&mut node)?;
    let device = crate::toolchain::parse_device(&params.device, "parameter `device`")
        .map_err(anyhow::Error::msg)?;
    // Ctrl-C and SIGTERM are heard from here on, also while the map and the model load (which
    // can take a while for a large map): the load runs on a blocking thread and a signal ends
    // the node at once, as it does after start-up.
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the Ctrl-C handler")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let loading = {
        let (map, checkpoint, options, ids) = (
            PathBuf::from(&params.map),
            params.checkpoint_path(),
            params.localizer_options()?,
            params.camera_ids.0.clone(),
        );
        tracing::info!("loading the map {} and its model", map.display());
        tokio::task::spawn_blocking(move || -> Result<(Localizer, PathBuf)> {
            let (loc, checkpoint) =
                Localizer::load(&map, checkpoint.as_deref(), device, options)
                    .with_context(|| format!("parameter `map` = {}", map.display()))?;
            loc.check_cameras(&ids)
                .map_err(|e| anyhow::anyhow!("parameter `camera_ids`: {e}"))?;
            loc.warm_up();
            Ok((loc, checkpoint))
        })
    };
    let (loc, checkpoint) = tokio::select! {
        loaded = loading => loaded.context("the map loading thread failed")??,
        _ = int.recv() => interrupted_while_loading(&params.map),
        _ = term.recv() => interrupted_while_loading(&params.map),
    };
    let (node_namespace, node_name) = (node.namespace()?, node.name()?);
    let cameras: Vec<Camera> = params
        .image_topics
        .0
        .iter()
        .enumerate()
        .map(|(i, topic)| Camera {
            topic: topic.clone(),
            resolved_topic: crate::ros::resolve_name(&node_namespace, &node_name, topic),
            info_topic: crate::bag::lens::camera_info_topic(
                topic,
                params.transport == "compressed",
            ),
            id: params.camera_ids.0.get(i).cloned(),
            base_from_cam: params
                .base_from_camera
                .0
                .get(i)
                .and_then(|e| params::parse_extrinsic(e).ok()),
        })
        .collect();
    // A base_from_camera that makes base_link's z point away from the map cameras' up is
    // almost always the camera's body frame given for its optical frame, or w written first.
    if let Some(up) = crate::localize::prior::map_up((0..loc.map.len()).map(|i| loc.map.pose(i))) {
        for cam in &cameras {
            let Some(b) = &cam.base_from_cam else {
                continue;
            };
            let at = (0..loc.map.len())
                .find(|&i| {
                    cam.id
                        .as_ref()
                        .is_none_or(|id| &loc.map.meta.cameras[i] == id)
                })
                .map(|i| loc.map.pose(i));
            if let Some(w) = at {
                let tilt = crate::localize::prior::base_tilt_deg(&w, b, &up);
                if tilt > 30.0 {
                    tracing::warn!(
                        "base_from_camera for {}: base_link's z axis would point {tilt:.0} degrees \
                         away from up in the map: is it the pose of the camera's OPTICAL frame \
                         (x right, y down, z forward), written x y z qx qy qz qw (w last)?",
                        cam.topic
                    );
                }
            }
        }
    }
    // Odometry moves the sequence filter only: with filter none it would be read for nothing.
    let odometry_topic = if loc.options.filter == crate::localize::Filter::Sequence {
        params.odometry_topic.clone()
    } else {
        if !params.odometry_topic.is_empty() {
            tracing::warn!(
                "odometry_topic {} is not subscribed: it is used with filter sequence only \
                 (filter is {})",
                params.odometry_topic,
                params.filter
            );
        }
        String::new()
    };
    let info = Arc::new(Mutex::new(map_info(&loc)));
    if loc.map.meta.encoder.rectified {
        // The node takes frames as they come; a rectified map wants rectified frames.
        let raw: Vec<&String> = params
            .image_topics
            .0
            .iter()
            .filter(|t| !crate::bag::lens::is_rectified(t, params.transport == "compressed"))
            .collect();
        if !raw.is_empty() {
            tracing::warn!(
                "map {} was built from rectified images (build-map --rectify), and the node \
                 encodes frames as they arrive: {raw:?} do not look rectified (image_proc \
                 publishes image_rect); frames through another lens than the map's retrieve \
                 worse (maps/models/MODEL_CARD.md, \"Lenses\")",
                params.map
            );
        }
    }
    tracing::info!(
        "dasgil node ready: map {} ({} entries; adaptation {}, photometric {}{}, yaw views {}), metric {}, centring {}, checkpoint {}, topics [{}] ({}), device {device:?}, filter {}{}",
        params.map,
        loc.map.len(),
        loc.map.meta.encoder.adaptation,
        loc.map.meta.encoder.photometric_name(),
        if loc.map.meta.encoder.rectified {
            ", rectified"
        } else {
            ""
        },
        crate::map::views::describe(&loc.map.meta.yaw_views_deg),
        loc.metric.name(),
        loc.centring_used().name(),
        checkpoint.display(),
        // Each topic with the map camera it is searched as (`camera_ids`).
        params
            .image_topics
            .0
            .iter()
            .enumerate()
            .map(|(i, t)| match params.camera_ids.0.get(i) {
                Some(id) => format!("{t} as map camera {id}"),
                None => t.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        params.transport,
        params.filter,
        if odometry_topic.is_empty() {
            String::new()
        } else {
            format!(", odometry {odometry_topic}")
        }
    );
    let filter_name = loc.options.filter.name();
    let localizer = Arc::new(Mutex::new(loc));
    tokio::spawn(param_services);
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);

    let shared = Arc::new(Mutex::new(Shared {
        slots: cameras.iter().map(|_| None).collect(),
        stats: vec![CameraStats::default(); cameras.len()],
        gate_center: None,
        prior_timeout: (params.prior_timeout.0 > 0.0)
            .then(|| Duration::from_secs_f64(params.prior_timeout.0)),
        prior_covariance_invalid: 0,
        priors_ignored: 0,
        prior_ignored_why: None,
        gate_marker_shown: false,
        started: Instant::now(),
        frame_timeout: (params.frame_timeout.0 > 0.0)
            .then(|| Duration::from_secs_f64(params.frame_timeout.0)),
        filter: filter_name,
        filter_counts: None,
        filter_beyond_end: None,
        odometry: (!odometry_topic.is_empty()).then(Default::default),
        odometry_frames: 0,
    }));
    let wake = Arc::new(tokio::sync::Notify::new());
    subscribe_cameras(&mut node, &params, &cameras, &shared, &wake)?;
    subscribe_camera_info(&mut node, &params, &cameras, &shared)?;
    let gate_pub = subscribe_prior(
        &mut node,
        &params.prior_topic,
        &params.frame_id,
        (params.gate_radius.0, params.gate_sigmas.0),
        &shared,
    )?;
    subscribe_odometry(&mut node, &odometry_topic, &shared)?;
    let pubs = Publishers {
        prior: node.create_publisher::<PriorMsg>("pose_prior", QosProfile::default())?,
        candidates: node
            .create_publisher::<PoseArrayMsg>("pose_candidates", QosProfile::default())?,
    };
    let cameras = Arc::new(cameras);
    spawn_worker(
        cameras.clone(),
        shared.clone(),
        wake,
        localizer.clone(),
        pubs,
        params.frame_id.clone(),
    );
    let mut drain_reload_calls = serve_reload(
        &mut node,
        &params,
        device,
        localizer,
        info.clone(),
        shared.clone(),
    )?;

    let diag_pub = node.create_publisher::<DiagArray>("/diagnostics", QosProfile::default())?;
    let mut timer = node.create_wall_timer(Duration::from_secs_f64(params.diagnostics_period.0))?;
    let clock = node.get_ros_clock();
    let node_name = node.name()?;
    let node_fqn = node.fully_qualified_name()?;
    let min_confidence = params.min_confidence.0;
    let off_map_threshold = params.off_map_threshold.0;
    let gate_frame = params.frame_id.clone();
    tokio::spawn(async move {
        while timer.tick().await.is_ok() {
            let now = clock
                .lock()
                .ok()
                .and_then(|mut c| c.get_now().ok())
                .unwrap_or_default();
            let now = r2r::Clock::to_builtin_time(&now);
            // A gate whose prior expired is deleted from prior_gate (once; under the lock,
            // as the prior subscription publishes its gates).
            if let Some(p) = &gate_pub {
                let mut sh = lock(&shared);
                if sh.gate_marker_shown && sh.gate_center.is_some_and(|(_, at)| !sh.prior_fresh(at))
                {
                    sh.gate_marker_shown = false;
                    let header = r2r::std_msgs::msg::Header {
                        stamp: now.clone(),
                        frame_id: gate_frame.clone(),
                    };
                    if let Err(e) = p.publish(&gate_marker(None, header, None)) {
                        tracing::debug!("prior_gate: cannot publish: {e}");
                    }
                }
            }
            let msg = diagnostics(
                &mut lock(&shared),
                &cameras,
                &lock(&info),
                &node_name,
                &node_fqn,
                min_confidence,
                off_map_threshold,
                now,
            );
            if let Err(e) = diag_pub.publish(&msg) {
                tracing::warn!("cannot publish diagnostics: {e}");
            }
        }
    });

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_spin = stop.clone();
    let spinner = std::thread::spawn(move || {
        while !stop_spin.load(std::sync::atomic::Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(10));
            drain_reload_calls();
            // Let the tasks that empty r2r's other bounded channels run between two takes.
            std::thread::yield_now();
        }
    });
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = spinner.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossed_camera_ids_are_told_from_cameras_whose_views_overlap() {
        let window = |own: usize, other: usize, third: usize| -> VecDeque<String> {
            std::iter::repeat_n("c0", own)
                .chain(std::iter::repeat_n("c1", other))
                .chain(std::iter::repeat_n("c2", third))
                .map(String::from)
                .collect()
        };
        // c0's frames (as camera_ids says) nearest c1's images: crossed.
        assert_eq!(crossed_camera(&window(0, 24, 0), "c0"), Some(("c1", 24)));
        assert_eq!(crossed_camera(&window(1, 18, 5), "c0"), Some(("c1", 18)));
        // A stereo pair shares its matches; its own camera wins now and then: not crossed.
        assert_eq!(crossed_camera(&window(2, 22, 0), "c0"), None);
        assert_eq!(crossed_camera(&window(12, 12, 0), "c0"), None);
        // Nearest its own, or spread over two others, or too few checks yet: not crossed.
        assert_eq!(crossed_camera(&window(24, 0, 0), "c0"), None);
        assert_eq!(crossed_camera(&window(0, 12, 12), "c0"), None);
        assert_eq!(crossed_camera(&window(0, 23, 0), "c0"), None);
        assert_eq!(
            camera_check_summary(&window(3, 20, 1)),
            Some(("c1", 20, 24))
        );
        assert_eq!(camera_check_summary(&VecDeque::new()), None);
    }

    #[test]
    fn a_camera_that_stops_matching_is_told_apart_from_one_that_matches() {
        let mut s = CameraStats::default();
        assert_eq!(MatchQuality::of(&s.recent), None);
        // 9 of 9 withheld: too few frames to judge.
        for _ in 0..9 {
            s.matched(0.01, true);
        }
        let q = MatchQuality::of(&s.recent).unwrap();
        assert_eq!((q.frames, q.withheld), (9, 1.0));
        assert!(!q.stopped_matching());
        s.matched(0.02, true);
        assert!(MatchQuality::of(&s.recent).unwrap().stopped_matching());
        // The window keeps the last 30: 30 good frames after them clear the warning.
        for _ in 0..30 {
            s.matched(0.3, false);
        }
        let q = MatchQuality::of(&s.recent).unwrap();
        assert_eq!((q.frames, q.withheld, q.median_confidence), (30, 0.0, 0.3));
        assert!(!q.stopped_matching());
        // Exactly half withheld is not yet a warning; more than half is.
        for _ in 0..15 {
            s.matched(0.1, true);
        }
        let q = MatchQuality::of(&s.recent).unwrap();
        assert_eq!(q.withheld, 0.5);
        assert!(!q.stopped_matching());
        s.matched(0.1, true);
        assert!(MatchQuality::of(&s.recent).unwrap().stopped_matching());
        // With min_confidence 0 nothing is withheld: a median confidence below 0.04 still
        // warns.
        let mut z = CameraStats::default();
        for _ in 0..10 {
            z.matched(0.03, false);
        }
        let q = MatchQuality::of(&z.recent).unwrap();
        assert_eq!(q.withheld, 0.0);
        assert!(q.stopped_matching());
    }
}
