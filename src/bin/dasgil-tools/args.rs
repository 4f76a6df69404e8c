//! Flags shared by several commands: where the images come from, which model encodes them,
//! and the parsers of values several flags take.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub(crate) struct SourceArgs {
    /// A named sequence of config/sequences.yaml (cmu_slice: a synthetic Extended CMU-Seasons
    /// slice, rendered on first use under $DASGIL_DATA or ~/.cache/dasgil). Not with --format
    /// or --root: a named sequence has its own layout and folder.
    #[arg(long, conflicts_with_all = ["format", "root"])]
    pub(crate) sequence: Option<String>,
    /// Another sequences file instead of the built-in config/sequences.yaml (with --sequence).
    /// Not with --format or --root, which name an ad hoc data set instead.
    #[arg(long, conflicts_with_all = ["format", "root"])]
    pub(crate) sequences: Option<PathBuf>,
    /// Ad hoc: the data set's layout, cmu, robotcar, kitti or vkitti2 (with --root).
    #[arg(long, requires = "root",
          value_parser = clap::builder::PossibleValuesParser::new(dasgil::data::sources::FORMATS))]
    pub(crate) format: Option<String>,
    /// The data set's folder (with --format): an Extended CMU-Seasons or KITTI dataset root, a
    /// Virtual KITTI 2 root, or one RobotCar traversal's folder.
    #[arg(long, requires = "format")]
    pub(crate) root: Option<PathBuf>,
    /// The CMU slice, or the KITTI odometry sequence number (with --format; a --sequence has
    /// its own). KITTI without it: the root's only sequence (several are refused). Not with
    /// --sequence: a named sequence has its own slice.
    #[arg(long, conflicts_with = "sequence")]
    pub(crate) slice: Option<u32>,
    /// Cameras to use, comma-separated (cmu: c0,c1).
    #[arg(long, value_delimiter = ',')]
    pub(crate) cameras: Option<Vec<String>>,
}

impl SourceArgs {
    pub(crate) fn open(&self) -> Result<dasgil::data::sources::SourceImages> {
        // A layout without slices: --slice would be ignored (a command-line refusal, exit 2).
        if let (Some(f @ ("robotcar" | "vkitti2")), Some(n)) = (self.format.as_deref(), self.slice)
        {
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--slice {n}: a {} has no slices (--slice picks an Extended CMU-Seasons \
                     slice or a KITTI odometry sequence): drop it{}\n",
                    if f == "robotcar" {
                        "RobotCar traversal"
                    } else {
                        "Virtual KITTI 2 root"
                    },
                    if f == "robotcar" {
                        "; --root names the traversal, --cameras its camera"
                    } else {
                        ""
                    }
                ),
            )
            .exit();
        }
        Ok(dasgil::data::sources::source(
            self.sequence.as_deref(),
            self.sequences.as_deref(),
            self.format.as_deref(),
            self.root.as_deref(),
            self.slice,
            self.cameras.clone(),
        )?)
    }
}

/// `--baseline`: what a model is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Baseline {
    /// The image itself, downsampled (no network).
    RawPixels,
    /// The paper's initialisation of the network, not trained.
    Untrained,
}

#[derive(clap::Args)]
pub(crate) struct ModelArgs {
    /// Generator checkpoint (default: the shipped model, maps/models/). With --baseline
    /// untrained: the model whose shape (input size, layers) the untrained network takes.
    #[arg(long)]
    pub(crate) checkpoint: Option<PathBuf>,
    /// A baseline instead of a model: raw-pixels or untrained (the paper's initialisation).
    #[arg(long, value_enum)]
    pub(crate) baseline: Option<Baseline>,
    /// Descriptor layers, e.g. 5,6 or 5*0.5,6 (default: those the checkpoint records, as the
    /// shipped model's e6, else the paper's for its discriminator: CD e5, FD e5,e6).
    #[arg(long, value_parser = dasgil::extract::choice::parse_layers)]
    pub(crate) layers: Option<dasgil::model::DescriptorSpec>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto", value_parser = dasgil::toolchain::device_syntax)]
    pub(crate) device: String,
}

impl ModelArgs {
    pub(crate) fn choice(&self) -> Result<dasgil::extract::choice::ModelChoice> {
        use dasgil::extract::choice::ModelChoice;
        Ok(match self.baseline {
            None => ModelChoice::Checkpoint(self.checkpoint.clone()),
            Some(Baseline::RawPixels) if self.checkpoint.is_some() => {
                anyhow::bail!("--baseline raw-pixels uses no network: drop --checkpoint")
            }
            Some(Baseline::RawPixels) => ModelChoice::RawPixels,
            Some(Baseline::Untrained) => ModelChoice::Untrained(self.checkpoint.clone()),
        })
    }
    pub(crate) fn device(&self) -> Result<tch::Device> {
        dasgil::toolchain::parse_device(&self.device, "--device").map_err(anyhow::Error::msg)
    }
}

/// `--photometric`: the names of [`dasgil::data::preprocess::Photometric`], listed in --help.
pub(crate) fn photometric_parser(
) -> impl clap::builder::TypedValueParser<Value = dasgil::data::preprocess::Photometric> {
    use clap::builder::TypedValueParser;
    use dasgil::data::preprocess::Photometric;
    clap::builder::PossibleValuesParser::new(Photometric::ALL.map(Photometric::name))
        // Only the listed names reach this.
        .map(|s| s.parse::<Photometric>().unwrap_or_default())
}

/// `--yaw-views 3,6` (or `none`): the signed yaws of the views (`dasgil::map::views::parse_yaw_views`); one
/// value to clap (a bare `Vec` would be taken for a repeated option).
#[derive(Debug, Clone)]
pub(crate) struct YawViews(pub Vec<f64>);

pub(crate) fn parse_yaw_views(s: &str) -> Result<YawViews, String> {
    dasgil::map::views::parse_yaw_views(s).map(YawViews)
}

/// "256x1024" -> (256, 1024).
/// A network input size HxW the model takes (multiples of 256 up to 4096).
pub(crate) fn parse_input_size(s: &str) -> Result<(i64, i64), String> {
    let syntax = || format!("expected HxW such as 256x1024, found `{s}`");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(syntax)?;
    let parse = |v: &str| v.trim().parse::<i64>().map_err(|_| syntax());
    let (h, w) = (parse(h)?, parse(w)?);
    dasgil::model::config::check_input_size(h, w).map_err(|e| e.to_string())?;
    Ok((h, w))
}

/// A count of at least 1 (steps).
pub(crate) fn parse_at_least_one(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, found `{s}`"
        )),
    }
}

/// A whole number from `lo` to `hi` (a flag's value parser: `whole_in(1, 64)`), else "expected
/// a whole number from lo to hi, found `s`" (a minus sign, a fraction and text alike).
pub(crate) fn whole_in<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        s.trim()
            .parse::<T>()
            .ok()
            .filter(|v| *v >= lo && *v <= hi)
            .ok_or_else(|| format!("expected a whole number from {lo} to {hi}, found `{s}`"))
    }
}

/// A number `ok` accepts, else "expected {expected}, found `s`": the one shape of every
/// numeric flag's value parser here.
pub(crate) fn parse_number_where(
    s: &str,
    ok: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| ok(*v))
        .ok_or_else(|| format!("expected {expected}, found `{s}`"))
}

/// A finite distance of 0 or more (metres).
pub(crate) fn parse_metres_or_zero(s: &str) -> Result<f64, String> {
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    parse_number_where(s.trim(), ok, "metres, 0 or more")
}

/// A finite time of more than 0 (seconds).
pub(crate) fn parse_positive_seconds(s: &str) -> Result<f64, String> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    parse_number_where(s.trim(), ok, "seconds, more than 0")
}

/// A triplet margin: a finite number more than 0.
pub(crate) fn parse_positive_margin(s: &str) -> Result<f64, String> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    parse_number_where(s.trim(), ok, "a number more than 0")
}

/// Candidates per query: 1 to 1000.
pub(crate) fn parse_top_k(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|v| (1..=1000).contains(v))
        .ok_or_else(|| format!("expected 1 to 1000, found {s}"))
}

/// A number from 0 to 1.
pub(crate) fn parse_unit(s: &str) -> Result<f64, String> {
    parse_number_where(s, |v| (0.0..=1.0).contains(&v), "a number from 0 to 1")
}

/// A new training run's output folder must be new or empty: nothing is mixed or lost.
/// `run_there`: None when the folder holds no training run, else whether `--resume` could
/// continue it (Err: why not); only a resumable run gets `--resume` suggested.
pub(crate) fn refuse_non_empty(
    out: &std::path::Path,
    run_there: impl FnOnce(&std::path::Path) -> Option<std::result::Result<(), String>>,
) -> Result<()> {
    if let Some(refusal) = dasgil::atomic::unusable_out(out) {
        anyhow::bail!(refusal);
    }
    if out.exists() {
        if !out.is_dir() {
            anyhow::bail!("--out {}: exists and is not a folder", out.display());
        }
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))?;
        if entries.next().is_some() {
            match run_there(out) {
                Some(Ok(())) => anyhow::bail!(
                    "--out {0}: folder is not empty: it holds a training run; continue it with \
                     --resume {0} (in place of --out), or choose a new or empty folder",
                    out.display()
                ),
                Some(Err(why)) => anyhow::bail!(
                    "--out {}: folder is not empty: it holds a training run that --resume \
                     cannot continue; choose a new or empty folder, or remove this one to start \
                     again (nothing in it was changed). Why it cannot be resumed: {why}",
                    out.display()
                ),
                None => {
                    // A data set given as --out by mistake: say what it is and where it goes.
                    let holds = match dasgil::synth::output::earlier(out) {
                        Some((words, kind)) => {
                            // The training input flag that reads such a data set, if any.
                            let flag = match kind.as_deref() {
                                Some("vkitti2") => Some("--vkitti"),
                                Some("kitti") => Some("--kitti"),
                                _ => None,
                            };
                            match flag {
                                Some(f) => {
                                    format!(" but a {words}, an input training reads with {f}")
                                }
                                None => format!(" but a {words}"),
                            }
                        }
                        None => String::new(),
                    };
                    anyhow::bail!(
                        "--out {}: folder is not empty and holds no training run{holds}; choose \
                         a new or empty folder (nothing in it was changed)",
                        out.display()
                    )
                }
            }
        }
    }
    Ok(())
}

/// What `--map` must name, in its errors.
pub(crate) const MAP_EXPECTED: &str = "expected a map file made by build-map (.safetensors)";

/// `--map PATH` names a map file: refused here, naming the flag, when it is missing, a folder or
/// not a regular file (what is inside is checked when the map is opened).
pub(crate) fn map_flag(path: &std::path::Path) -> Result<()> {
    let what = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(m) if m.is_dir() => "is a folder".to_string(),
        Ok(_) => "is not a regular file".to_string(),
        Err(e) => format!("cannot open it: {}", dasgil::error::io_words(&e)),
    };
    anyhow::bail!("--map {}: {what}; {MAP_EXPECTED}", path.display())
}

/// Opens the map `--map PATH` names; every error names the flag and the file.
pub(crate) fn open_map(path: &std::path::Path) -> Result<dasgil::map::file::MapFile> {
    map_flag(path)?;
    dasgil::map::file::MapFile::open(path)
        .with_context(|| format!("--map {}: {MAP_EXPECTED}", path.display()))
}

/// `X,Y,Z` in metres, finite.
pub(crate) fn parse_point(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected X,Y,Z in metres, found `{s}`"))?;
    match v[..] {
        [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok([x, y, z]),
        _ => Err(format!("expected X,Y,Z in metres, found `{s}`")),
    }
}

/// A radius in metres: finite and > 0.
pub(crate) fn parse_radius(s: &str) -> Result<f64, String> {
    parse_number_where(s, |r| r.is_finite() && r > 0.0, "metres > 0")
}

/// `evaluate --gate-radius`: metres > 0, at most 1e6 (the node's `gate_radius` bound).
pub(crate) fn parse_gate_radius(s: &str) -> Result<f64, String> {
    parse_number_where(
        s,
        |r| r.is_finite() && r > 0.0 && r <= 1e6,
        "metres > 0 and at most 1e6",
    )
}

/// A seed: an integer from 0 to 2^64 - 1.
pub(crate) fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("expected an integer from 0 to {}, found `{s}`", u64::MAX))
}

/// `evaluate --gate-sigmas`: 0 to 100, as the node's `gate_sigmas`.
pub(crate) fn parse_gate_sigmas(s: &str) -> Result<f64, String> {
    parse_number_where(
        s,
        |k| k.is_finite() && (0.0..=100.0).contains(&k),
        "standard deviations from 0 (--gate-radius alone) to 100",
    )
}

/// `evaluate --gate-drift`: seconds > 0.
pub(crate) fn parse_gate_drift(s: &str) -> Result<f64, String> {
    parse_number_where(s, |t| t.is_finite() && t > 0.0, "seconds > 0")
}

/// `evaluate --gate-error`: metres >= 0.
pub(crate) fn parse_gate_error(s: &str) -> Result<f64, String> {
    parse_number_where(s, |r| r.is_finite() && r >= 0.0, "metres >= 0")
}

/// The flags of the other sources, which a recording and its own flags cannot be used with.
const NOT_BAG: [&str; 6] = [
    "sequence",
    "sequences",
    "format",
    "root",
    "slice",
    "cameras",
];

/// A rosbag2 recording as the source (`build-map --bag`, `evaluate --bag`).
#[derive(clap::Args)]
pub(crate) struct BagArgs {
    /// A rosbag2 recording: its folder (with metadata.yaml), or one .mcap or .db3 file. Frames of
    /// --image-topic are posed by TF (--world-frame -> the image's header.frame_id, the camera's
    /// optical frame) or by --pose-topic, and written once to $DASGIL_DATA/bags/ (default
    /// ~/.cache/dasgil/bags/). Not with --sequence, --sequences, --format, --root, --slice or
    /// --cameras: the recording is the source, its cameras picked by --image-topic.
    #[arg(long, value_name = "PATH", conflicts_with_all = NOT_BAG, requires = "image_topics")]
    pub(crate) bag: Option<PathBuf>,
    /// A sensor_msgs/Image or CompressedImage topic of the recording (repeat for more cameras).
    #[arg(long = "image-topic", value_name = "TOPIC", requires = "bag", conflicts_with_all = NOT_BAG)]
    image_topics: Vec<String>,
    /// The map's camera id for each --image-topic, in order (e.g. c0, c1: what the node's
    /// camera_ids then name). Default: the topic names.
    #[arg(
        long = "camera-id",
        id = "bag_camera_ids",
        value_name = "NAME",
        requires = "bag", conflicts_with_all = NOT_BAG
    )]
    bag_camera_ids: Vec<String>,
    /// The sensor_msgs/CameraInfo topic of each --image-topic, in order (the intrinsics
    /// the yaw views, build-map's default, and --rectify need). Default: the one beside each image topic, as image_transport names
    /// it (/cam/image_raw -> /cam/camera_info).
    #[arg(
        long = "camera-info-topic",
        value_name = "TOPIC",
        requires = "bag", conflicts_with_all = NOT_BAG
    )]
    camera_info_topics: Vec<String>,
    /// The frame the poses are in (REP 105: map; or odom for a single drive). For evaluate,
    /// the frame of the recorded truth (alias --truth-frame).
    #[arg(
        long,
        value_name = "FRAME",
        default_value = "map",
        visible_alias = "truth-frame",
        requires = "bag",
        conflicts_with_all = NOT_BAG
    )]
    world_frame: String,
    /// The recording's TF topic (a namespaced robot's /ROBOT/tf); its static transforms are
    /// read from the same name with _static after it.
    #[arg(
        long,
        value_name = "TOPIC",
        default_value = "/tf",
        requires = "bag",
        conflicts_with_all = NOT_BAG,
        conflicts_with = "pose_topic"
    )]
    tf_topic: String,
    /// Poses from this topic instead of /tf: nav_msgs/Odometry, geometry_msgs/PoseStamped or
    /// PoseWithCovarianceStamped, with header.frame_id the world frame. Not with --tf-topic:
    /// the poses come from one or the other.
    #[arg(
        long,
        value_name = "TOPIC",
        requires = "bag", conflicts_with_all = NOT_BAG,
        visible_alias = "truth-topic"
    )]
    pose_topic: Option<String>,
    /// With --pose-topic: the camera's optical frame in the pose's body frame, 'x y z qx qy qz
    /// qw' (m; as the node's base_from_camera); once for every topic, or once per
    /// --image-topic. Default: the pose is the camera's.
    #[arg(long, value_name = "POSE", requires = "pose_topic", conflicts_with_all = NOT_BAG, value_parser = dasgil::geom::parse_xyz_qxyzw)]
    base_from_camera: Vec<dasgil::geom::Pose>,
    /// Keep every Nth posed frame of each topic (1 or more).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "bag", conflicts_with_all = NOT_BAG,
          value_parser = parse_at_least_one, allow_negative_numbers = true)]
    every: u64,
    /// Keep a frame only when its camera is at least D metres from the topic's last kept frame
    /// (0 or more).
    #[arg(long, value_name = "D", default_value_t = 0.0, requires = "bag", conflicts_with_all = NOT_BAG,
          value_parser = parse_metres_or_zero, allow_negative_numbers = true)]
    min_distance: f64,
    /// The largest time (s) between two pose messages a frame's pose is interpolated across;
    /// frames in a longer gap are skipped and counted (more than 0).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5, requires = "bag", conflicts_with_all = NOT_BAG,
          value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    max_pose_gap: f64,
}

#[cfg(feature = "ros")]
type BagOptions = dasgil::bag::frames::BagOptions;
#[cfg(not(feature = "ros"))]
type BagOptions = ();

impl BagArgs {
    /// None without --bag.
    pub(crate) fn options(&self) -> Option<Result<BagOptions>> {
        let bag = self.bag.clone()?;
        #[cfg(feature = "ros")]
        {
            Some(Ok(dasgil::bag::frames::BagOptions {
                bag,
                image_topics: self.image_topics.clone(),
                camera_ids: self.bag_camera_ids.clone(),
                camera_info_topics: self.camera_info_topics.clone(),
                world_frame: self.world_frame.clone(),
                pose_topic: self.pose_topic.clone(),
                tf_topic: self.tf_topic.clone(),
                base_from_camera: self.base_from_camera.clone(),
                every: usize::try_from(self.every).unwrap_or(usize::MAX),
                min_distance: self.min_distance,
                max_gap_s: self.max_pose_gap,
            }))
        }
        #[cfg(not(feature = "ros"))]
        {
            let _ = bag;
            Some(Err(anyhow::anyhow!(
                "--bag: this dasgil-tools was built without the `ros` feature, which reads \
                 recordings (r2r deserializes their messages); rebuild with default features"
            )))
        }
    }
}

impl BagArgs {
    /// The recording given with --bag.
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        self.bag.as_deref()
    }
}

#[cfg(feature = "ros")]
pub(crate) fn read_odometry(
    bag: &std::path::Path,
    topic: &str,
) -> Result<dasgil::localize::odometry::RecordedOdometry> {
    Ok(dasgil::bag::odometry::read(bag, topic)?)
}

#[cfg(not(feature = "ros"))]
pub(crate) fn read_odometry(
    _: &std::path::Path,
    _: &str,
) -> Result<dasgil::localize::odometry::RecordedOdometry> {
    anyhow::bail!("--odometry-topic: this dasgil-tools was built without the `ros` feature")
}

#[cfg(feature = "ros")]
pub(crate) fn open_bag(o: &BagOptions) -> Result<dasgil::data::sources::SourceImages> {
    Ok(dasgil::bag::frames::open(o)?)
}

#[cfg(not(feature = "ros"))]
pub(crate) fn open_bag(_: &BagOptions) -> Result<dasgil::data::sources::SourceImages> {
    anyhow::bail!("--bag: this dasgil-tools was built without the `ros` feature")
}
