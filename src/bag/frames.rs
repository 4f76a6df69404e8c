//! A recording's camera frames with their poses: messages deserialized with r2r (CDR), images
//! decoded by the node's own code (`data::raw_image`), each frame posed by TF (the world frame
//! -> the image's `header.frame_id` at its `header.stamp`) or by a recorded trajectory
//! (`--pose-topic`, with `--base-from-camera`), thinned, and written once as PNG files into a
//! cache folder (`$DASGIL_DATA/bags/`, keyed by the recording's files and these options) that
//! map building reads like any data set. A frame that cannot be posed without extrapolating is
//! skipped and counted, never given a guessed pose.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use r2r::WrappedTypesupport;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::lens::{self, CameraInfo};
use super::reader::{Bag, Record};
use super::tf::{frame_id, Miss, Samples, TfTree};
use super::BagError;
use crate::data::raw_image::{self, Pixels, RawImageError};
use crate::data::sources::SourceImages;
use crate::data::{Decode, PosedImage};
use crate::error::PipelineError;
use crate::geom::Pose;
use crate::map::file::{BagSourceMeta, SourceMeta};

pub const IMAGE: &str = "sensor_msgs/msg/Image";
pub const COMPRESSED: &str = "sensor_msgs/msg/CompressedImage";
pub const TF_MESSAGE: &str = "tf2_msgs/msg/TFMessage";
pub const CAMERA_INFO: &str = "sensor_msgs/msg/CameraInfo";
pub const POSE_TYPES: [&str; 3] = [
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
];

/// Bumped when what is extracted changes, so older cache folders are not reused.
const EXTRACT_VERSION: u32 = 3;

/// What to take from a recording.
#[derive(Debug, Clone)]
pub struct BagOptions {
    pub bag: PathBuf,
    pub image_topics: Vec<String>,
    /// The map's camera id of each image topic (parallel; empty: the topic names), as the
    /// node's `camera_ids` name them.
    pub camera_ids: Vec<String>,
    /// The CameraInfo topic of each image topic (parallel; empty: each image topic's own, beside
    /// it, [`lens::camera_info_topic`]).
    pub camera_info_topics: Vec<String>,
    /// The frame the poses are to be in (REP 105: usually `map`).
    pub world_frame: String,
    /// Poses from this topic (`nav_msgs/Odometry`, `geometry_msgs/PoseStamped` or
    /// `PoseWithCovarianceStamped`) instead of TF.
    pub pose_topic: Option<String>,
    /// The TF topic (`/tf`; a namespaced robot's `/ROBOT/tf`); its static transforms are on
    /// the same name with `_static` after it, as tf2 names them.
    pub tf_topic: String,
    /// With `pose_topic`: the camera (optical frame) in the pose topic's body frame, per image
    /// topic or one for all; identity when empty.
    pub base_from_camera: Vec<Pose>,
    /// Keep every Nth posed frame of each topic (1: all).
    pub every: usize,
    /// Keep a frame only this far (m) from the topic's last kept frame (0: all).
    pub min_distance: f64,
    /// The largest gap (s) between two pose messages a frame's pose is interpolated across.
    pub max_gap_s: f64,
}

impl BagOptions {
    /// The static transforms' topic beside `tf_topic` (tf2's naming: `/tf` -> `/tf_static`).
    pub fn tf_static_topic(&self) -> String {
        format!("{}_static", self.tf_topic)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FrameEntry {
    name: String,
    topic: String,
    camera: String,
    stamp_ns: i64,
    /// tx ty tz qw qx qy qz
    world_from_cam: [f64; 7],
}

/// An image topic's intrinsics and lens, from its `camera_info` topic ([`lens`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicLens {
    topic: String,
    intrinsics: crate::geom::Pinhole,
    /// OpenCV's k1 k2 p1 p2 k3; absent: none (or a rectified topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    distortion: Option<crate::map::views::Distortion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Extracted {
    bag: BagSourceMeta,
    decode: Decode,
    frames: Vec<FrameEntry>,
    /// The image topics whose camera_info gave intrinsics (the others' frames have none).
    #[serde(default)]
    lenses: Vec<TopicLens>,
    notes: Vec<String>,
}

const LIST: &str = "frames.json";

/// A kept frame after decoding: its file name, mosaic pattern and size (width, height), or why
/// it was not written.
type Written = Result<
    (
        String,
        Option<crate::data::robotcar::BayerPattern>,
        (u32, u32),
    ),
    RawImageError,
>;

/// The recording's frames as a data set (database = every kept frame), extracted on first use.
pub fn open(o: &BagOptions) -> Result<SourceImages, PipelineError> {
    check_options(o)?;
    let bag = Bag::open(&o.bag)?;
    check_topics(&bag, o)?;
    let cache = crate::data::sources::data_dir().join("bags");
    // Half-written extractions of interrupted runs, whatever their options (each options set
    // has its own folder, so a rerun with the same ones is not what removes them).
    crate::synth::output::remove_stale_staging_in(&cache);
    let dir = cache.join(cache_name(&bag, o)?);
    let extracted = if crate::synth::output::is_complete(&dir) {
        let mut reused = reuse(&dir)?;
        // The recording and its cameras as given now: an extraction of an earlier run (or
        // version) may name the recording relative to another folder, or not its cameras.
        reused.bag.path = absolute_path(&bag.path);
        reused.bag.camera_ids = camera_ids(o);
        reused
    } else {
        extract(&bag, o, &dir)?
    };
    let database = extracted
        .frames
        .iter()
        .map(|f| {
            let p = f.world_from_cam;
            let lens = extracted.lenses.iter().find(|l| l.topic == f.topic);
            PosedImage {
                path: dir.join(&f.name),
                camera: f.camera.clone(),
                timestamp_us: Some(f.stamp_ns.div_euclid(1000)),
                world_from_cam: Some(Pose::from_parts(
                    nalgebra::Translation3::new(p[0], p[1], p[2]),
                    nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
                        p[3], p[4], p[5], p[6],
                    )),
                )),
                intrinsics: lens.map(|l| l.intrinsics),
                distortion: lens.and_then(|l| l.distortion),
            }
        })
        .collect();
    Ok(SourceImages {
        source: SourceMeta {
            format: "rosbag2".into(),
            root: dir.display().to_string(),
            slice: None,
            sequence: None,
            bag: Some(extracted.bag),
        },
        database,
        queries: Vec::new(),
        decode: extracted.decode,
        notes: extracted.notes,
        odometry: None,
    })
}

/// A recording's path as the map records it: absolute (the map outlives the folder it was
/// built in).
fn absolute_path(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Each image topic's camera id: its `--camera-id`, else the topic.
fn camera_ids(o: &BagOptions) -> Vec<String> {
    (0..o.image_topics.len())
        .map(|i| o.camera_ids.get(i).unwrap_or(&o.image_topics[i]).clone())
        .collect()
}

/// The frames an earlier extraction (this process's or another's) left in `dir`.
fn reuse(dir: &Path) -> Result<Extracted, PipelineError> {
    let path = dir.join(LIST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| crate::atomic::PathIoError::new("cannot read", &path, e))?;
    let mut x: Extracted = serde_json::from_str(&text).map_err(|e| BagError::Open {
        path: path.clone(),
        why: format!(
            "the frame list of an earlier extraction is unreadable ({e}); delete {} to extract again",
            dir.display()
        ),
    })?;
    // The earlier run's timing is of that run: said as such.
    for n in &mut x.notes {
        if n.starts_with("bag read: ") {
            *n = format!("when they were extracted, {n}");
        }
    }
    x.notes.insert(
        0,
        format!("frames extracted before, reused from {}", dir.display()),
    );
    Ok(x)
}

/// Why no frame was kept, from the extraction's notes: one per line, a recording cut short
/// (whose topics then hold no message after the cut) said first, the read's timing left out.
fn no_frames_why(notes: &[String]) -> String {
    let mut lines: Vec<&str> = notes
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with("bag read: "))
        .collect();
    if lines.is_empty() {
        return "the read found nothing to say of its topics".into();
    }
    // Stable: the cut notes first, in the order met.
    lines.sort_by_key(|n| !n.contains("cut short"));
    let cut = lines.first().is_some_and(|n| n.contains("cut short"));
    format!(
        "{}\n  - {}",
        if cut {
            "the recording looks cut short (first below): if nothing usable comes before the \
             cut, that is why; what the read found"
        } else {
            "what the read found"
        },
        lines.join("\n  - ")
    )
}

/// Removes a staging folder unless the extraction finished (an error or a panic leaves no
/// half-written copy behind; Ctrl-C's handler removes it too: [`crate::atomic::Unfinished`]).
struct Staging(
    PathBuf,
    bool,
    // Held for its Drop.
    #[allow(dead_code)] crate::atomic::Unfinished,
);

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn check_options(o: &BagOptions) -> Result<(), BagError> {
    let bad = |field: &str, expected: &str, found: String| BagError::Option {
        field: field.into(),
        expected: expected.into(),
        found,
    };
    if o.image_topics.is_empty() {
        return Err(bad(
            "--image-topic",
            "at least one image topic",
            "none".into(),
        ));
    }
    // Options given once per image topic, or not at all.
    for (list, field) in [
        (&o.camera_info_topics, "--camera-info-topic"),
        (&o.camera_ids, "--camera-id"),
    ] {
        if !list.is_empty() && list.len() != o.image_topics.len() {
            return Err(bad(
                field,
                &format!("one per --image-topic ({})", o.image_topics.len()),
                list.len().to_string(),
            ));
        }
    }
    for (list, field) in [
        (&o.image_topics, "--image-topic"),
        (&o.camera_ids, "--camera-id"),
    ] {
        let mut seen = BTreeSet::new();
        if let Some(d) = list.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(bad(field, "each value once", format!("`{d}` twice")));
        }
    }
    if o.camera_ids.iter().any(|c| c.trim().is_empty()) {
        return Err(bad(
            "--camera-id",
            "a name such as c0",
            "an empty one".into(),
        ));
    }
    if frame_id(&o.world_frame).is_empty() {
        return Err(bad(
            "--world-frame/--truth-frame",
            "a frame id such as map",
            format!("`{}`", o.world_frame),
        ));
    }
    if o.every == 0 {
        return Err(bad("--every", "1 or more", "0".into()));
    }
    if !(o.min_distance.is_finite() && o.min_distance >= 0.0) {
        return Err(bad(
            "--min-distance",
            "0 or more metres",
            o.min_distance.to_string(),
        ));
    }
    if !(o.max_gap_s.is_finite() && o.max_gap_s > 0.0) {
        return Err(bad(
            "--max-pose-gap",
            "more than 0 seconds",
            o.max_gap_s.to_string(),
        ));
    }
    if o.pose_topic.is_none() && !o.base_from_camera.is_empty() {
        return Err(bad(
            "--base-from-camera",
            "only with --pose-topic (with TF, the camera's frame is the image's header.frame_id)",
            format!("{} given", o.base_from_camera.len()),
        ));
    }
    if let Some(base) = o.tf_topic.strip_suffix("_static") {
        return Err(bad(
            "--tf-topic",
            &format!(
                "the TF topic, whose static transforms are read from it with _static after \
                 it (here {base})"
            ),
            o.tf_topic.clone(),
        ));
    }
    if o.base_from_camera.len() > 1 && o.base_from_camera.len() != o.image_topics.len() {
        return Err(bad(
            "--base-from-camera",
            &format!("one, or one per --image-topic ({})", o.image_topics.len()),
            o.base_from_camera.len().to_string(),
        ));
    }
    Ok(())
}

/// With `--pose-topic`, the poses are the body's (an Odometry's child_frame_id): each image's
/// frame must be that body, or `--base-from-camera` says where the camera is on it. Refused
/// (the map would be posed at the body, silently): images in another frame than the
/// Odometry's child_frame_id with no `--base-from-camera`; one `--base-from-camera` for image
/// topics in different frames (one camera's mounting cannot be both's).
fn check_mounting(
    pose_topic: &str,
    body: Option<&str>,
    seen: &[Seen],
    o: &BagOptions,
) -> Result<(), BagError> {
    let all: BTreeSet<&str> = seen.iter().map(|s| s.frame_id.as_str()).collect();
    let list = |f: &BTreeSet<&str>| {
        f.iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (o.base_from_camera.len(), body) {
        (0, Some(body)) if all.iter().any(|f| *f != body) => Err(BagError::Option {
            field: "--base-from-camera".into(),
            expected: format!(
                "the camera's optical frame in `{body}` (the child_frame_id of {pose_topic}), \
                 once per --image-topic: the images are in {}, not `{body}`, and without it \
                 the map would be posed at `{body}` (if they coincide, give \"0 0 0 0 0 0 1\")",
                list(&all)
            ),
            found: "none".into(),
        }),
        (1, _) if o.image_topics.len() > 1 && all.len() > 1 => Err(BagError::Option {
            field: "--base-from-camera".into(),
            expected: format!(
                "one per --image-topic ({}): their images are in different frames ({}), and \
                 one mounting cannot be both cameras'",
                o.image_topics.len(),
                list(&all)
            ),
            found: "1".into(),
        }),
        _ => Ok(()),
    }
}

/// `topic` (given as `option`) is in the recording with one of `types` (`expected` says them):
/// else the topics that have, or the type found.
fn expect_topic(
    bag: &Bag,
    option: &str,
    topic: &str,
    types: &[&str],
    expected: String,
) -> Result<(), BagError> {
    let list = |keep: &dyn Fn(&str) -> bool| bag.topic_list(keep);
    match bag.topic(topic) {
        None => Err(BagError::UnknownTopic {
            path: bag.path.clone(),
            option: option.into(),
            topic: topic.into(),
            candidates: list(&|ty| types.contains(&ty)),
            all: list(&|_| true),
        }),
        Some(t) if !types.contains(&t.ty.as_str()) => Err(BagError::WrongType {
            path: bag.path.clone(),
            option: option.into(),
            topic: topic.into(),
            found: t.ty.clone(),
            expected,
        }),
        _ => Ok(()),
    }
}

fn check_topics(bag: &Bag, o: &BagOptions) -> Result<(), BagError> {
    let list = |keep: &dyn Fn(&str) -> bool| bag.topic_list(keep);
    for t in &o.image_topics {
        let expected = format!("{IMAGE} or {COMPRESSED}");
        expect_topic(bag, "--image-topic", t, &[IMAGE, COMPRESSED], expected)?;
    }
    for t in &o.camera_info_topics {
        let expected = CAMERA_INFO.to_string();
        expect_topic(bag, "--camera-info-topic", t, &[CAMERA_INFO], expected)?;
    }
    match &o.pose_topic {
        Some(p) => expect_topic(
            bag,
            "--pose-topic/--truth-topic",
            p,
            &POSE_TYPES,
            POSE_TYPES.join(", "),
        ),
        None => {
            let tf_static = o.tf_static_topic();
            let tf: Vec<&str> = [o.tf_topic.as_str(), tf_static.as_str()]
                .into_iter()
                .filter(|t| bag.topic(t).is_some_and(|x| x.ty == TF_MESSAGE))
                .collect();
            if tf.is_empty() {
                let poses = list(&|ty| POSE_TYPES.contains(&ty));
                let hint = match list(&|ty| ty == TF_MESSAGE).as_str() {
                    "none" => format!(
                        "record them, or give --pose-topic (pose topics in the recording: {poses})"
                    ),
                    tf if bag.topic("/tf").is_some_and(|x| x.ty == TF_MESSAGE) => format!(
                        "the recording has /tf: drop --tf-topic (TF topics in the recording: {tf})"
                    ),
                    tf => format!(
                        "TF topics in the recording: {tf}: give --tf-topic with the one that is \
                         not _static (a namespaced robot's /ROBOT/tf), or poses from a topic \
                         with --pose-topic (pose topics in the recording: {poses})"
                    ),
                };
                Err(BagError::NoTf {
                    path: bag.path.clone(),
                    tf: o.tf_topic.clone(),
                    hint,
                })
            } else {
                Ok(())
            }
        }
    }
}

/// `<recording name>-<16 hex digits>`: the key covers the recording's files (path, size,
/// modification time) and every option that changes what is extracted.
fn cache_name(bag: &Bag, o: &BagOptions) -> Result<String, BagError> {
    let mut h = std::hash::DefaultHasher::new();
    EXTRACT_VERSION.hash(&mut h);
    for f in &bag.files {
        let abs = std::fs::canonicalize(f).map_err(|e| BagError::Open {
            path: f.clone(),
            why: e.to_string(),
        })?;
        abs.hash(&mut h);
        let m = std::fs::metadata(f).map_err(|e| BagError::Open {
            path: f.clone(),
            why: e.to_string(),
        })?;
        m.len().hash(&mut h);
        if let Ok(t) = m.modified() {
            t.hash(&mut h);
        }
    }
    o.image_topics.hash(&mut h);
    o.camera_ids.hash(&mut h);
    o.camera_info_topics.hash(&mut h);
    o.world_frame.hash(&mut h);
    o.pose_topic.hash(&mut h);
    // Only when given, so that extractions made before the option stay valid.
    if o.tf_topic != "/tf" {
        o.tf_topic.hash(&mut h);
    }
    for p in &o.base_from_camera {
        let t = p.translation.vector;
        let q = p.rotation.coords;
        for v in [t.x, t.y, t.z, q.x, q.y, q.z, q.w] {
            v.to_bits().hash(&mut h);
        }
    }
    o.every.hash(&mut h);
    o.min_distance.to_bits().hash(&mut h);
    o.max_gap_s.to_bits().hash(&mut h);
    let stem: String = bag
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bag".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!("{stem}-{:016x}", h.finish()))
}

/// The fields [`lens::lens`] reads; None when K or P has the wrong length. Also the node's.
pub(crate) fn camera_info(m: r2r::sensor_msgs::msg::CameraInfo) -> Option<CameraInfo> {
    Some(CameraInfo {
        width: m.width,
        height: m.height,
        distortion_model: m.distortion_model,
        d: m.d,
        k: m.k.try_into().ok()?,
        p: m.p.try_into().ok()?,
        binning_x: m.binning_x,
        binning_y: m.binning_y,
        roi: [m.roi.x_offset, m.roi.y_offset, m.roi.width, m.roi.height],
    })
}

fn stamp_ns(t: &r2r::builtin_interfaces::msg::Time) -> i64 {
    t.sec as i64 * 1_000_000_000 + t.nanosec as i64
}

fn pose_of(
    p: &r2r::geometry_msgs::msg::Vector3,
    q: &r2r::geometry_msgs::msg::Quaternion,
) -> Option<Pose> {
    pose_of_xyz([p.x, p.y, p.z], q)
}

fn pose_of_xyz(t: [f64; 3], q: &r2r::geometry_msgs::msg::Quaternion) -> Option<Pose> {
    let quat = nalgebra::Quaternion::new(q.w, q.x, q.y, q.z);
    let n = quat.norm();
    if !(t.iter().all(|v| v.is_finite()) && n.is_finite() && (0.9..=1.1).contains(&n)) {
        return None;
    }
    Some(Pose::from_parts(
        nalgebra::Translation3::new(t[0], t[1], t[2]),
        nalgebra::UnitQuaternion::from_quaternion(quat),
    ))
}

/// A frame met in the first pass.
struct Seen {
    topic: usize,
    index: u64,
    stamp_ns: i64,
    frame_id: String,
}

/// Per image topic: what became of its messages.
#[derive(Default)]
struct Counts {
    messages: u64,
    undecodable_message: u64,
    zero_stamp: u64,
    duplicate: u64,
    before: u64,
    after: u64,
    gap: u64,
    thinned: u64,
    undecodable_image: u64,
    kept: u64,
    frames: BTreeSet<String>,
    /// The first frame skipped for want of a pose, and why (the link, the stamp).
    first_miss: Option<String>,
}

fn extract(bag: &Bag, o: &BagOptions, dir: &Path) -> Result<Extracted, PipelineError> {
    let max_gap_ns = (o.max_gap_s * 1e9).round() as i64;
    let mut notes: Vec<String> = bag.notes.clone();
    let mut tree = TfTree::default();
    let mut trajectory = Samples::default();
    let mut seen: Vec<Seen> = Vec::new();
    let mut counts: Vec<Counts> = o.image_topics.iter().map(|_| Counts::default()).collect();
    let mut bad_poses = 0u64;
    let mut unreadable_poses = 0u64;
    let mut first_bad: Option<String> = None;
    let pose_type = o
        .pose_topic
        .as_ref()
        .and_then(|p| bag.topic(p))
        .map(|t| t.ty.clone());
    let mut topics: Vec<&str> = o.image_topics.iter().map(String::as_str).collect();
    // Each image topic's camera_info topic, when the recording has it.
    let compressed: Vec<bool> = o
        .image_topics
        .iter()
        .map(|t| bag.topic(t).is_some_and(|x| x.ty == COMPRESSED))
        .collect();
    let info_topics: Vec<String> = if o.camera_info_topics.is_empty() {
        o.image_topics
            .iter()
            .zip(&compressed)
            .map(|(t, &c)| lens::camera_info_topic(t, c))
            .collect()
    } else {
        o.camera_info_topics.clone()
    };
    let recorded_infos: BTreeSet<&str> = info_topics
        .iter()
        .map(String::as_str)
        .filter(|t| bag.topic(t).is_some_and(|x| x.ty == CAMERA_INFO))
        .collect();
    topics.extend(recorded_infos.iter().copied());
    // Per camera_info topic: the first readable message (the first calibrated one, when a
    // driver publishes an all-zero K until its calibration loads), how many later ones differ,
    // and the first message that could not be read.
    let mut infos: std::collections::BTreeMap<String, (CameraInfo, u64)> = Default::default();
    let mut info_errors: std::collections::BTreeMap<String, String> = Default::default();
    // Per camera_info topic: the header.frame_id of its first message (the camera it
    // calibrates), checked against the frames it is used for.
    let mut info_frames: std::collections::BTreeMap<String, String> = Default::default();
    let tf_static = o.tf_static_topic();
    match &o.pose_topic {
        Some(p) => topics.push(p),
        None => topics.extend([o.tf_topic.as_str(), tf_static.as_str()]),
    }
    let world = frame_id(&o.world_frame).to_string();
    let started = std::time::Instant::now();
    let deser = |r: &Record<'_>, ty: &str, e: r2r::Error| {
        format!(
            "{}: topic {}, message {} (recorded at {} ns): cannot deserialize as {ty}: {e}",
            bag.path.display(),
            r.topic,
            r.index,
            r.log_time_ns
        )
    };
    let mut pose_frame_error: Option<BagError> = None;
    // The body frame an Odometry pose topic poses (its first child_frame_id).
    let mut body_frame: Option<String> = None;
    let read_notes = bag.read(&topics, |r| {
        if let Some(ti) = o.image_topics.iter().position(|t| t == r.topic) {
            let c = &mut counts[ti];
            c.messages += 1;
            let ty = &bag.topic(r.topic).expect("checked").ty;
            let header = if ty == IMAGE {
                r2r::sensor_msgs::msg::Image::from_serialized_bytes(r.data).map(|m| m.header)
            } else {
                r2r::sensor_msgs::msg::CompressedImage::from_serialized_bytes(r.data)
                    .map(|m| m.header)
            };
            match header {
                Ok(h) => {
                    let mut stamp = stamp_ns(&h.stamp);
                    if stamp == 0 {
                        c.zero_stamp += 1;
                        stamp = r.log_time_ns;
                    }
                    seen.push(Seen {
                        topic: ti,
                        index: r.index,
                        stamp_ns: stamp,
                        frame_id: frame_id(&h.frame_id).to_string(),
                    });
                }
                Err(e) => {
                    c.undecodable_message += 1;
                    first_bad.get_or_insert_with(|| deser(&r, ty, e));
                }
            }
            return Ok(());
        }
        if recorded_infos.contains(r.topic) {
            match r2r::sensor_msgs::msg::CameraInfo::from_serialized_bytes(r.data) {
                Ok(m) => {
                    info_frames
                        .entry(r.topic.to_string())
                        .or_insert_with(|| m.header.frame_id.clone());
                    match camera_info(m) {
                        Some(info) => match infos.get_mut(r.topic) {
                            Some((first, _)) if first.k[0] == 0.0 && info.k[0] != 0.0 => {
                                *first = info;
                            }
                            Some((first, changed)) => {
                                if *first != info {
                                    *changed += 1;
                                }
                            }
                            None => {
                                infos.insert(r.topic.to_string(), (info, 0));
                            }
                        },
                        None => {
                            info_errors.entry(r.topic.to_string()).or_insert_with(|| {
                                format!("message {}: K has not 9 values or P not 12", r.index)
                            });
                        }
                    }
                }
                Err(e) => {
                    info_errors
                        .entry(r.topic.to_string())
                        .or_insert_with(|| deser(&r, CAMERA_INFO, e));
                }
            }
            return Ok(());
        }
        if r.topic == o.tf_topic || r.topic == tf_static {
            match r2r::tf2_msgs::msg::TFMessage::from_serialized_bytes(r.data) {
                Ok(m) => {
                    for t in m.transforms {
                        match pose_of(&t.transform.translation, &t.transform.rotation) {
                            Some(p) => tree.add(
                                &t.header.frame_id,
                                &t.child_frame_id,
                                stamp_ns(&t.header.stamp),
                                p,
                                r.topic == tf_static,
                            ),
                            None => bad_poses += 1,
                        }
                    }
                }
                Err(e) => {
                    unreadable_poses += 1;
                    first_bad.get_or_insert_with(|| deser(&r, TF_MESSAGE, e));
                }
            }
            return Ok(());
        }
        // The pose topic.
        let ty = pose_type.as_deref().unwrap_or_default();
        let parsed = match ty {
            "nav_msgs/msg/Odometry" => r2r::nav_msgs::msg::Odometry::from_serialized_bytes(r.data)
                .map(|m| {
                    if body_frame.is_none() && !m.child_frame_id.is_empty() {
                        body_frame = Some(frame_id(&m.child_frame_id).to_string());
                    }
                    (m.header, m.pose.pose)
                }),
            "geometry_msgs/msg/PoseStamped" => {
                r2r::geometry_msgs::msg::PoseStamped::from_serialized_bytes(r.data)
                    .map(|m| (m.header, m.pose))
            }
            _ => r2r::geometry_msgs::msg::PoseWithCovarianceStamped::from_serialized_bytes(r.data)
                .map(|m| (m.header, m.pose.pose)),
        };
        match parsed {
            Ok((h, p)) => {
                if frame_id(&h.frame_id) != world && pose_frame_error.is_none() {
                    pose_frame_error = Some(BagError::PoseFrame {
                        topic: r.topic.to_string(),
                        found: h.frame_id.clone(),
                        world: world.clone(),
                    });
                }
                match pose_of_xyz([p.position.x, p.position.y, p.position.z], &p.orientation) {
                    Some(pose) => trajectory.push(stamp_ns(&h.stamp), pose),
                    None => bad_poses += 1,
                }
            }
            Err(e) => {
                unreadable_poses += 1;
                first_bad.get_or_insert_with(|| deser(&r, ty, e));
            }
        }
        Ok(())
    })?;
    notes.extend(read_notes);
    if let Some(e) = pose_frame_error {
        return Err(e.into());
    }
    if let Some(p) = &o.pose_topic {
        check_mounting(p, body_frame.as_deref(), &seen, o)?;
    }
    tree.finish();
    trajectory.finish();
    let read_s = started.elapsed().as_secs_f64();

    // Poses; a camera frame TF cannot reach at all is an error, not a skip.
    let mut posed: Vec<(usize, Pose)> = Vec::new(); // (index into seen, world_from_cam)
    for (i, s) in seen.iter().enumerate() {
        counts[s.topic].frames.insert(s.frame_id.clone());
        let pose = match &o.pose_topic {
            Some(topic) => trajectory
                .at(s.stamp_ns, max_gap_ns, topic)
                .map(|world_from_base| {
                    let base_from_cam = match o.base_from_camera.len() {
                        0 => Pose::identity(),
                        1 => o.base_from_camera[0],
                        _ => o.base_from_camera[s.topic],
                    };
                    world_from_base * base_from_cam
                }),
            None => {
                if !tree.connected(&world, &s.frame_id) {
                    return Err(BagError::NoChain {
                        path: bag.path.clone(),
                        world: world.clone(),
                        frame: s.frame_id.clone(),
                        topic: o.image_topics[s.topic].clone(),
                        known: {
                            let f = tree.frames();
                            if f.is_empty() {
                                "none".into()
                            } else {
                                f.into_iter().collect::<Vec<_>>().join(", ")
                            }
                        },
                    }
                    .into());
                }
                if tree.fixed_between(&world, &s.frame_id) {
                    let (frame, topic) = (&s.frame_id, &o.image_topics[s.topic]);
                    return Err(BagError::WorldOnRobot {
                        path: bag.path.clone(),
                        world: world.clone(),
                        how: if world == *frame {
                            format!("it is the images' own frame (header.frame_id of {topic})")
                        } else {
                            format!(
                                "TF links it to `{frame}` (header.frame_id of {topic}) through \
                                 static transforms only"
                            )
                        },
                    }
                    .into());
                }
                tree.lookup(&world, &s.frame_id, s.stamp_ns, max_gap_ns)
            }
        };
        let c = &mut counts[s.topic];
        let why = match &pose {
            Ok(p) => {
                posed.push((i, *p));
                continue;
            }
            Err(Miss::Before { child }) => {
                c.before += 1;
                format!("before the first message of the link to `{child}`")
            }
            Err(Miss::After { child }) => {
                c.after += 1;
                format!("after the last message of the link to `{child}`")
            }
            Err(Miss::Gap { child, gap_ns }) => {
                c.gap += 1;
                format!(
                    "in a gap of {:.3} s between messages of the link to `{child}`",
                    *gap_ns as f64 * 1e-9
                )
            }
            // An empty trajectory.
            Err(Miss::Unconnected) => {
                c.before += 1;
                "no pose message at all".to_string()
            }
        };
        c.first_miss.get_or_insert_with(|| {
            format!(
                "first skipped: the frame stamped {}.{:09} s, {why}",
                s.stamp_ns.div_euclid(1_000_000_000),
                s.stamp_ns.rem_euclid(1_000_000_000)
            )
        });
    }
    // Per topic in stamp order: one frame per stamp, then thinning.
    posed.sort_by_key(|&(i, _)| (seen[i].topic, seen[i].stamp_ns, seen[i].index));
    let mut keep: Vec<(usize, Pose)> = Vec::new();
    // (topic, stamp) of the previous posed frame, the topic's posed frames so far, and the
    // camera centre of its last kept frame.
    let mut prev: Option<(usize, i64)> = None;
    let mut nth = 0u64;
    let mut last_kept: Option<nalgebra::Vector3<f64>> = None;
    for (i, p) in posed {
        let s = &seen[i];
        if prev.map(|(t, _)| t) != Some(s.topic) {
            nth = 0;
            last_kept = None;
        }
        if prev == Some((s.topic, s.stamp_ns)) {
            counts[s.topic].duplicate += 1;
            continue;
        }
        prev = Some((s.topic, s.stamp_ns));
        let centre = p.translation.vector;
        let far_enough = match last_kept {
            Some(c) => (centre - c).norm() >= o.min_distance,
            None => true,
        };
        if nth % o.every as u64 == 0 && far_enough {
            keep.push((i, p));
            last_kept = Some(centre);
        } else {
            counts[s.topic].thinned += 1;
        }
        nth += 1;
    }

    // Second pass: decode the kept frames and write them.
    // Another command may have finished extracting the same frames during the first pass.
    if crate::synth::output::is_complete(dir) {
        return reuse(dir);
    }
    let (staged, listed) = match crate::synth::output::staging(dir, false) {
        Ok(s) => s,
        // Another command finished extracting them since the check above: use its copy.
        Err(_) if crate::synth::output::is_complete(dir) => return reuse(dir),
        Err(e) => return Err(e.into()),
    };
    let mut guard = Staging(staged, false, listed);
    let staging = guard.0.clone();
    let mut wanted: std::collections::HashMap<(usize, u64), usize> = Default::default();
    for (k, &(i, _)) in keep.iter().enumerate() {
        wanted.insert((seen[i].topic, seen[i].index), k);
    }
    let progress = crate::progress::Progress::new("bag frames", "frames", keep.len() as u64, 0);
    let mut written: Vec<Option<Written>> = vec![None; keep.len()];
    let mut batch: Vec<(usize, usize, Vec<u8>)> = Vec::new(); // (keep index, topic, bytes)
    let image_topics: Vec<&str> = o.image_topics.iter().map(String::as_str).collect();
    let flush = |batch: &mut Vec<(usize, usize, Vec<u8>)>,
                 written: &mut Vec<Option<Written>>|
     -> Result<(), PipelineError> {
        let done: Vec<(usize, Written, Option<PipelineError>)> = batch
            .par_iter()
            .map(|(k, topic, bytes)| {
                let (i, _) = keep[*k];
                let s = &seen[i];
                let name = format!(
                    "{}-{}.{:09}.png",
                    super::file_part(&o.image_topics[*topic]),
                    s.stamp_ns.div_euclid(1_000_000_000),
                    s.stamp_ns.rem_euclid(1_000_000_000)
                );
                let ty = &bag.topic(&o.image_topics[*topic]).expect("checked").ty;
                let pixels = if ty == IMAGE {
                    match r2r::sensor_msgs::msg::Image::from_serialized_bytes(bytes) {
                        Ok(m) => raw_image::decode(
                            m.width,
                            m.height,
                            &m.encoding,
                            m.is_bigendian != 0,
                            m.step,
                            &m.data,
                        ),
                        Err(e) => Err(RawImageError::Refused {
                            encoding: e.to_string(),
                            why: "the message could not be deserialized",
                        }),
                    }
                } else {
                    match r2r::sensor_msgs::msg::CompressedImage::from_serialized_bytes(bytes) {
                        Ok(m) => raw_image::decode_compressed(&m.format, &m.data),
                        Err(e) => Err(RawImageError::Refused {
                            encoding: e.to_string(),
                            why: "the message could not be deserialized",
                        }),
                    }
                };
                let pixels = match pixels {
                    Ok(p) => p,
                    Err(e) => return (*k, Err(e), None),
                };
                let path = staging.join(&name);
                let (res, pattern, size) = match &pixels {
                    Pixels::Colour(rgb) => (write_png(&path, rgb), None, rgb.dimensions()),
                    Pixels::Mono(g) => (write_png(&path, g), None, g.dimensions()),
                    Pixels::Mosaic(g, pat) => (write_png(&path, g), Some(*pat), g.dimensions()),
                };
                match res {
                    Ok(()) => (*k, Ok((name, pattern, size)), None),
                    Err(e) => (*k, Ok((name, pattern, size)), Some(e)),
                }
            })
            .collect();
        batch.clear();
        for (k, r, err) in done {
            if let Some(e) = err {
                return Err(e);
            }
            written[k] = Some(r);
        }
        Ok(())
    };
    let mut flush_error: Option<PipelineError> = None;
    let notes2 = bag.read(&image_topics, |r| {
        let ti = o
            .image_topics
            .iter()
            .position(|t| t == r.topic)
            .expect("asked");
        if let Some(&k) = wanted.get(&(ti, r.index)) {
            batch.push((k, ti, r.data.to_vec()));
            if batch.len() >= 16 {
                let n = batch.len() as u64;
                if let Err(e) = flush(&mut batch, &mut written) {
                    flush_error = Some(e);
                    return Err(BagError::Stopped);
                }
                progress.inc(n);
            }
        }
        Ok(())
    });
    // On an error the guard removes the staging folder.
    if let Some(e) = flush_error {
        return Err(e);
    }
    if let Err(e) = notes2 {
        return Err(e.into());
    }
    let n = batch.len() as u64;
    flush(&mut batch, &mut written)?;
    progress.inc(n);
    progress.finish();

    let mut frames = Vec::new();
    let mut patterns = BTreeSet::new();
    let mut mosaics = 0usize;
    let mut first_image_error: Option<String> = None;
    // Each image topic's frame sizes (a camera_info fits only frames of its size).
    let mut sizes: Vec<BTreeSet<(u32, u32)>> = vec![BTreeSet::new(); o.image_topics.len()];
    for (k, w) in written.into_iter().enumerate() {
        let (i, p) = keep[k];
        let s = &seen[i];
        match w {
            Some(Ok((name, pattern, size))) => {
                sizes[s.topic].insert(size);
                if let Some(pt) = pattern {
                    patterns.insert(pt.name());
                    mosaics += 1;
                }
                let t = p.translation.vector;
                let q = p.rotation.coords;
                counts[s.topic].kept += 1;
                frames.push(FrameEntry {
                    name,
                    topic: o.image_topics[s.topic].clone(),
                    camera: o
                        .camera_ids
                        .get(s.topic)
                        .unwrap_or(&o.image_topics[s.topic])
                        .clone(),
                    stamp_ns: s.stamp_ns,
                    world_from_cam: [t.x, t.y, t.z, q.w, q.x, q.y, q.z],
                });
            }
            Some(Err(e)) => {
                counts[s.topic].undecodable_image += 1;
                first_image_error.get_or_insert_with(|| {
                    format!(
                        "{}: topic {}, frame stamped {} ns: {e}",
                        bag.path.display(),
                        o.image_topics[s.topic],
                        s.stamp_ns
                    )
                });
            }
            // Not met again on the second read (the file changed meanwhile).
            None => counts[s.topic].undecodable_message += 1,
        }
    }
    // Raw mosaics only when every written frame is one, of one pattern; colour and grey
    // frames only when none is. A mix cannot share one decoding.
    let decode = match (patterns.len(), mosaics) {
        (0, _) => Decode::Rgb,
        (1, n) if n == frames.len() => {
            let name = patterns.into_iter().next().expect("one");
            Decode::Bayer(crate::data::robotcar::BayerPattern::parse(name).expect("a name"))
        }
        _ => {
            return Err(BagError::MixedMosaics {
                path: bag.path.clone(),
            }
            .into());
        }
    };
    for (ti, c) in counts.iter().enumerate() {
        notes.push(summary_line(&o.image_topics[ti], c, o, &bag.path));
    }
    let mut lenses = Vec::new();
    for (ti, topic) in o.image_topics.iter().enumerate() {
        let info_topic = &info_topics[ti];
        let rectified = lens::is_rectified(topic, compressed[ti]);
        let found = match infos.get(info_topic) {
            None if recorded_infos.contains(info_topic.as_str()) => {
                Err(match info_errors.get(info_topic) {
                    Some(e) => format!("no readable message on {info_topic}: {e}"),
                    None => format!("{info_topic} is recorded with no message"),
                })
            }
            None if bag.topic(info_topic).is_some() => Err(format!(
                "{info_topic} has type {}, expected {CAMERA_INFO}",
                bag.topic(info_topic).map_or("", |t| t.ty.as_str())
            )),
            None => Err(format!(
                "no {info_topic} ({CAMERA_INFO}) in the recording ({})",
                match bag.topic_list(&|ty| ty == CAMERA_INFO).as_str() {
                    "none" => "record the camera driver's camera_info topic too".to_string(),
                    there => format!(
                        "CameraInfo topics there: {there}; name one with --camera-info-topic"
                    ),
                }
            )),
            Some((info, changed)) => lens::lens(info, rectified)
                .map_err(|why| format!("{info_topic}: {why}"))
                .and_then(|(k, d)| {
                    let size = (k.width, k.height);
                    match sizes[ti].iter().find(|&&s| s != size) {
                        Some(&(w, h)) => Err(format!(
                            "{info_topic} is calibrated at {} x {}, but frames of {w} x {h} were \
                             recorded",
                            k.width, k.height
                        )),
                        None => Ok((k, d, *changed)),
                    }
                }),
        };
        match found {
            Ok((k, d, changed)) => {
                let calibrated = info_frames.get(info_topic).map_or("", String::as_str);
                let seen = &counts[ti].frames;
                if !calibrated.is_empty() && !seen.is_empty() && !seen.contains(calibrated) {
                    let warning = format!(
                        "{topic}: {info_topic} calibrates `{calibrated}`, but the frames are in \
                         `{}`: another camera's calibration? (--camera-info-topic names one per \
                         --image-topic, in the same order; fine when the cameras share one \
                         calibration)",
                        seen.iter().cloned().collect::<Vec<_>>().join("|")
                    );
                    tracing::warn!("{warning}");
                    notes.push(warning);
                }
                notes.push(format!(
                    "{topic}: intrinsics from {info_topic} ({}){}",
                    if rectified {
                        "P: a rectified topic, no distortion".to_string()
                    } else {
                        format!(
                            "K and D, {}",
                            if d.is_some() {
                                "distorted"
                            } else {
                                "no distortion"
                            }
                        )
                    },
                    if changed > 0 {
                        format!("; {changed} later message(s) differ from the first, which is used")
                    } else {
                        String::new()
                    }
                ));
                lenses.push(TopicLens {
                    topic: topic.clone(),
                    intrinsics: k,
                    distortion: d,
                });
            }
            Err(why) => notes.push(format!("{topic}{}{why}", lens::NO_INTRINSICS)),
        }
    }
    if bad_poses > 0 || tree.conflicts > 0 {
        notes.push(format!(
            "{} pose or transform message{} with a non-finite value or a quaternion whose norm is \
             not 1 skipped; {} transform{} naming a second parent for a frame ignored (tf2 \
             rejects them)",
            bad_poses,
            if bad_poses == 1 { "" } else { "s" },
            tree.conflicts,
            if tree.conflicts == 1 { "" } else { "s" }
        ));
    }
    if unreadable_poses > 0 {
        notes.push(format!(
            "{unreadable_poses} pose or transform message{} could not be read (skipped)",
            if unreadable_poses == 1 { "" } else { "s" }
        ));
    }
    if let Some(b) = first_bad {
        notes.push(format!("first message that could not be read: {b}"));
    }
    if let Some(b) = &first_image_error {
        notes.push(format!("first frame that could not be decoded: {b}"));
    }
    let total: u64 = counts.iter().map(|c| c.messages).sum();
    notes.push(format!(
        "bag read: {total} image messages in {:.1} s ({:.0} images/s, first pass); {} frames \
         decoded and written in {:.1} s",
        read_s,
        total as f64 / read_s.max(1e-9),
        frames.len(),
        started.elapsed().as_secs_f64() - read_s
    ));
    if frames.is_empty() {
        return Err(BagError::NoFrames {
            path: bag.path.clone(),
            why: no_frames_why(&notes),
        }
        .into());
    }
    let meta = BagSourceMeta {
        path: absolute_path(&bag.path),
        storage: bag.storage.name().into(),
        image_topics: o.image_topics.clone(),
        camera_frames: counts
            .iter()
            .map(|c| c.frames.iter().cloned().collect::<Vec<_>>().join("|"))
            .collect(),
        world_frame: world,
        pose_topic: o.pose_topic.clone(),
        camera_ids: camera_ids(o),
    };
    let extracted = Extracted {
        bag: meta,
        decode,
        frames,
        lenses,
        notes,
    };
    crate::atomic::write_atomic(
        &staging.join(LIST),
        serde_json::to_string_pretty(&extracted)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    crate::synth::output::finish_unless_present(
        &staging,
        dir,
        serde_json::json!({"dataset": "rosbag2 frames", "bag": extracted.bag.path}),
    )?;
    guard.1 = true;
    Ok(extracted)
}

fn summary_line(topic: &str, c: &Counts, o: &BagOptions, bag: &Path) -> String {
    let mut skipped = Vec::new();
    let mut say = |n: u64, what: String| {
        if n > 0 {
            skipped.push(format!("{n} {what}"));
        }
    };
    let span = match &o.pose_topic {
        Some(p) => format!("the poses of {p}"),
        None => "TF".to_string(),
    };
    // Said once, after the last of the two.
    let never = " (a pose is never extrapolated)";
    let before_never = if c.after == 0 { never } else { "" };
    say(
        c.before,
        format!("before the start of {span}{before_never}"),
    );
    say(c.after, format!("after the end of {span}{never}"));
    say(
        c.gap,
        format!(
            "across a gap of more than {} s in {span} (--max-pose-gap)",
            o.max_gap_s
        ),
    );
    say(c.duplicate, "with a stamp seen before".into());
    say(c.thinned, "thinned (--every/--min-distance)".into());
    say(c.undecodable_message, "unreadable messages".into());
    say(c.undecodable_image, "undecodable images".into());
    let _ = bag;
    format!(
        "{topic} (frame {}): {} messages, {} frames kept{}{}",
        if c.frames.is_empty() {
            "-".to_string()
        } else {
            c.frames.iter().cloned().collect::<Vec<_>>().join("|")
        },
        c.messages,
        c.kept,
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped {}", skipped.join(", "))
        },
        if c.zero_stamp > 0 {
            format!(
                "; {} frames had a zero header.stamp and were timed by their recording time",
                c.zero_stamp
            )
        } else {
            String::new()
        }
    ) + &c
        .first_miss
        .as_ref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
        + &{
            let body: Vec<&String> = c.frames.iter().filter(|f| !f.contains("optical")).collect();
            if o.pose_topic.is_none() && !body.is_empty() {
                format!(
                    "; note: frame {} is not named as an optical frame: the poses are those of \
                     the image's frame_id, taken as the camera's optical frame (x right, y down, \
                     z forward; REP 103); a camera_link-style frame (x forward) turns them by 90 deg",
                    body.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                )
            } else {
                String::new()
            }
        }
}

fn write_png<P>(path: &Path, img: &image::ImageBuffer<P, Vec<u8>>) -> Result<(), PipelineError>
where
    P: image::Pixel<Subpixel = u8> + image::PixelWithColorType,
{
    use image::ImageEncoder;
    let file = std::fs::File::create(path)
        .map_err(|e| crate::atomic::PathIoError::new("cannot create", path, e))?;
    let w = std::io::BufWriter::new(file);
    image::codecs::png::PngEncoder::new_with_quality(
        w,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(img.as_raw(), img.width(), img.height(), P::COLOR_TYPE)
    .map_err(|e| {
        crate::atomic::PathIoError::new("cannot write", path, std::io::Error::other(e)).into()
    })
}

#[cfg(test)]
mod tests {
    use super::no_frames_why;

    #[test]
    fn a_recording_cut_short_is_said_first_and_each_finding_on_its_own_line() {
        let notes: Vec<String> = [
            "/c0/image_raw (frame -): 0 messages, 0 frames kept",
            "/c0/image_raw: no intrinsics: /c0/camera_info is recorded with no message",
            "rec/rec.mcap.zstd: the file ends inside a record after 3 messages (a recording cut \
             short?): the messages before it are used",
            "bag read: 0 image messages in 0.0 s",
        ]
        .map(String::from)
        .to_vec();
        let why = no_frames_why(&notes);
        let lines: Vec<&str> = why.lines().collect();
        assert!(
            lines[0].starts_with("the recording looks cut short (first below)"),
            "{why}"
        );
        assert!(lines[1].contains("ends inside a record"), "{why}");
        assert!(lines[2].starts_with("  - /c0/image_raw (frame -)"), "{why}");
        assert_eq!(lines.len(), 4, "the read's timing is left out: {why}");
        // Without a cut, the findings in their order.
        let why = no_frames_why(&notes[..2]);
        assert!(
            why.starts_with("what the read found\n  - /c0/image_raw (frame -)"),
            "{why}"
        );
        // Only the timing: no empty list.
        assert!(!no_frames_why(&notes[3..]).contains("  - "));
    }
}
