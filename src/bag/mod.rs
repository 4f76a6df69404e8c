//! rosbag2 recordings in: a robot's own camera frames, posed by its TF tree or a recorded
//! trajectory, as a data set that `build-map --bag` encodes into a map.
//!
//! - [`lens`]: a camera's intrinsics and lens from its `camera_info` topic;
//! - [`reader`]: the storage (MCAP or sqlite3) as topics and CDR messages;
//! - [`tf`]: the TF tree and trajectories, interpolated, never extrapolated;
//! - `frames` (with the `ros` feature: messages are deserialized by r2r): the frames, posed,
//!   thinned and written once into a cache folder;
//! - `odometry` (with the `ros` feature): an odometry topic's positions, for `evaluate`'s
//!   sequence filter.

use std::path::PathBuf;

#[cfg(feature = "ros")]
pub mod frames;
pub mod lens;
#[cfg(feature = "ros")]
pub mod odometry;
pub mod reader;
pub mod tf;

/// A topic or camera id as part of a file name: `/camera/image_raw` -> `camera_image_raw`.
pub fn file_part(topic: &str) -> String {
    topic
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What makes a recording unusable, naming the file, topic or option, what was expected and
/// what was found.
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    #[error("{path}: {why}")]
    Open { path: PathBuf, why: String },
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Metadata {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{path}: storage_identifier `{found}`: expected mcap or sqlite3")]
    Storage { path: PathBuf, found: String },
    #[error(
        "{path}: compression_format `{format}`, compression_mode `{mode}`: expected none, or zstd \
         per MESSAGE or per FILE (the compressions rosbag2 writes); convert the recording to an \
         uncompressed one with the tool that wrote it"
    )]
    Compressed {
        path: PathBuf,
        format: String,
        mode: String,
    },
    #[error(
        "{path}: topic {topic}: serialization format `{found}`, expected cdr (a ROS 2 recording)"
    )]
    Serialization {
        path: PathBuf,
        topic: String,
        found: String,
    },
    #[error("{path}: not a readable MCAP file: {message}")]
    Mcap { path: PathBuf, message: String },
    #[error("{path}: not a readable rosbag2 sqlite3 file: {message}")]
    Sqlite { path: PathBuf, message: String },
    #[error("{field}: expected {expected}, found {found}")]
    Option {
        field: String,
        expected: String,
        found: String,
    },
    #[error(
        "{option} {topic}: no such topic in {path}; candidates: {candidates}; every topic: {all}"
    )]
    UnknownTopic {
        path: PathBuf,
        option: String,
        topic: String,
        candidates: String,
        all: String,
    },
    #[error("{option} {topic}: type {found} in {path}, expected {expected}")]
    WrongType {
        path: PathBuf,
        option: String,
        topic: String,
        found: String,
        expected: String,
    },
    #[error(
        "{path}: no {tf} or {tf}_static (tf2_msgs/msg/TFMessage) to pose the frames with; {hint}"
    )]
    NoTf {
        path: PathBuf,
        tf: String,
        /// What to do: the recording's TF topics first, then its pose topics.
        hint: String,
    },
    #[error(
        "--pose-topic/--truth-topic {topic}: header.frame_id `{found}`, expected the --world-frame/--truth-frame `{world}`"
    )]
    PoseFrame {
        topic: String,
        found: String,
        world: String,
    },
    #[error(
        "{path}: TF has no chain from the world frame `{world}` to `{frame}` (header.frame_id of \
         {topic}); frames in TF: {known}. Record the transforms that connect them \
         (REP 105: map -> odom -> base_link -> the camera's optical frame), choose another \
         --world-frame/--truth-frame, or give --pose-topic"
    )]
    NoChain {
        path: PathBuf,
        world: String,
        frame: String,
        topic: String,
        known: String,
    },
    #[error(
        "{path}: the world frame `{world}` moves with the camera: {how}, so every image would \
         be posed at one place. Give the frame the robot moves in as --world-frame/--truth-frame \
         (REP 105: map, or odom), or give --pose-topic"
    )]
    WorldOnRobot {
        path: PathBuf,
        world: String,
        /// How: linked to the images' frame by static transforms only, or that frame itself.
        how: String,
    },
    #[error("{path}: the image topics hold raw mosaics of different Bayer patterns, or mosaics and other frames: build one map per camera")]
    MixedMosaics { path: PathBuf },
    #[error("{path}: no frame could be used: {why}")]
    NoFrames { path: PathBuf, why: String },
    /// A caller's callback stopped the read (its own error is reported instead).
    #[error("reading stopped")]
    Stopped,
}
