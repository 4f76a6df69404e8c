//! The DASGIL ROS 2 node (cargo feature `ros`): subscribes to camera images, encodes each frame
//! exactly as the map was built (the same code as `dasgil-tools localize`: `maps::encode` with
//! the map's adapted statistics), retrieves the nearest map images and publishes
//! `pose_prior` (geometry_msgs/PoseWithCovarianceStamped, the best map image's camera pose with
//! the covariance of `maps::prior`) and `pose_candidates` (geometry_msgs/PoseArray, best
//! first), both stamped with the source image's stamp, and /diagnostics. Frames are encoded off
//! the ROS executor, latest frame wins, and a bad frame is counted and reported, never fatal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use r2r::QosProfile;

use crate::data::raw_image;
use crate::maps::encode::MapEncoder;
use crate::maps::file::MapFile;
use crate::maps::prior::pose_prior;
use crate::maps::search::{top_k, MapIndex, Metric};

type ImageMsg = r2r::sensor_msgs::msg::Image;
type PriorMsg = r2r::geometry_msgs::msg::PoseWithCovarianceStamped;
type PoseArrayMsg = r2r::geometry_msgs::msg::PoseArray;

/// Node parameters (`ros__parameters` in config/localize.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeParams {
    /// The descriptor map (`dasgil-tools build-map`). Required.
    pub map: String,
    /// Generator checkpoint; empty: the one the map was built with (or the shipped model).
    pub checkpoint: String,
    /// Camera image topics (sensor_msgs/Image).
    pub image_topics: Vec<String>,
    /// The map camera each topic is (parallel to image_topics); empty: search every camera.
    pub camera_ids: Vec<String>,
    /// Candidates retrieved (and published in pose_candidates).
    pub top_k: i64,
    /// frame_id of the published poses (the map's world frame).
    pub frame_id: String,
    /// l1, l2 or cosine; empty: the map's.
    pub metric: String,
    /// cpu, cuda or auto.
    pub device: String,
    /// Seconds between /diagnostics messages.
    pub diagnostics_period: f64,
}

impl Default for NodeParams {
    fn default() -> Self {
        Self {
            map: String::new(),
            checkpoint: String::new(),
            image_topics: vec!["/camera/image_raw".into()],
            camera_ids: Vec::new(),
            top_k: 5,
            frame_id: "map".into(),
            metric: String::new(),
            device: "auto".into(),
            diagnostics_period: 1.0,
        }
    }
}

/// The parameters this node reads; any other name is warned about (a likely misspelling).
pub const KNOWN_PARAMS: [&str; 10] = [
    "map",
    "checkpoint",
    "image_topics",
    "camera_ids",
    "top_k",
    "frame_id",
    "metric",
    "device",
    "diagnostics_period",
    "use_sim_time",
];

fn param<T>(node: &r2r::Node, name: &str, default: T) -> Result<T>
where
    r2r::ParameterValue: TryInto<Option<T>, Error = r2r::WrongParameterType>,
{
    match node.get_parameter::<Option<T>>(name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Ok(default),
        Err(e) => bail!("parameter `{name}`: {e}"),
    }
}

/// A floating-point parameter; an integer (`diagnostics_period: 1`) is accepted as well.
fn param_f64(node: &r2r::Node, name: &str, default: f64) -> Result<f64> {
    let params = node.params.lock().unwrap_or_else(|p| p.into_inner());
    match params.get(name).map(|p| &p.value) {
        None | Some(r2r::ParameterValue::NotSet) => Ok(default),
        Some(r2r::ParameterValue::Double(v)) => Ok(*v),
        Some(r2r::ParameterValue::Integer(v)) => Ok(*v as f64),
        Some(other) => bail!("parameter `{name}`: expected a number, found {other:?}"),
    }
}

/// Checks every `--params-file` on the command line before r2r reads it (r2r panics on a
/// missing or malformed file): readable, valid YAML (with the line of a syntax error), the
/// `<node>: ros__parameters:` shape, no empty `image_topics`. Returns warnings for unknown
/// parameter names.
pub fn check_params_files(args: &[String]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a != "--params-file" {
            continue;
        }
        let Some(path) = it.next() else {
            bail!("--params-file needs a file name after it");
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--params-file {path}: cannot read it"))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--params-file {path}{}: not valid YAML: {e}",
                e.location()
                    .map(|l| format!(":{}", l.line()))
                    .unwrap_or_default()
            )
        })?;
        let Some(nodes) = doc.as_mapping() else {
            bail!("--params-file {path}: expected `dasgil_localizer: {{ros__parameters: {{...}}}}` at the top, found {doc:?}");
        };
        for (node_name, body) in nodes {
            let node_name = node_name.as_str().unwrap_or("?");
            let Some(params) = body.get("ros__parameters").and_then(|p| p.as_mapping()) else {
                bail!("--params-file {path}: node `{node_name}`: expected a `ros__parameters:` mapping");
            };
            let ours = node_name
                .trim_start_matches('/')
                .ends_with("dasgil_localizer")
                || node_name.ends_with("/**")
                || node_name == "**";
            if !ours {
                continue;
            }
            for (k, v) in params {
                let k = k.as_str().unwrap_or("?");
                if !KNOWN_PARAMS.contains(&k) && !k.starts_with("qos_overrides") {
                    warnings.push(format!(
                        "--params-file {path}: unknown parameter `{k}` (known: {}); it is ignored",
                        KNOWN_PARAMS.join(", ")
                    ));
                }
                if k == "image_topics" && v.as_sequence().is_some_and(|s| s.is_empty()) {
                    bail!(
                        "--params-file {path}: parameter `image_topics`: expected at least one \
                         sensor_msgs/Image topic, found an empty list"
                    );
                }
            }
        }
    }
    Ok(warnings)
}

impl NodeParams {
    /// Reads the parameters given on the command line or in a params file.
    pub fn from_node(node: &r2r::Node) -> Result<Self> {
        let d = Self::default();
        let p = Self {
            map: param(node, "map", d.map)?,
            checkpoint: param(node, "checkpoint", d.checkpoint)?,
            image_topics: param(node, "image_topics", d.image_topics)?,
            camera_ids: param(node, "camera_ids", d.camera_ids)?,
            top_k: param(node, "top_k", d.top_k)?,
            frame_id: param(node, "frame_id", d.frame_id)?,
            metric: param(node, "metric", d.metric)?,
            device: param(node, "device", d.device)?,
            diagnostics_period: param_f64(node, "diagnostics_period", d.diagnostics_period)?,
        };
        if p.map.is_empty() {
            bail!(
                "parameter `map` is empty: set it to a map made by `dasgil-tools build-map`, \
                 e.g. `ros2 launch dasgil localize.launch.py map:=/path/to/cmu_slice.map.safetensors`"
            );
        }
        if !p.camera_ids.is_empty() && p.camera_ids.len() != p.image_topics.len() {
            bail!(
                "parameters `camera_ids` and `image_topics`: expected lists of the same length \
                 (one map camera per topic), found {} and {}",
                p.camera_ids.len(),
                p.image_topics.len()
            );
        }
        if !(1..=1000).contains(&p.top_k) {
            bail!("parameter `top_k`: expected 1 to 1000, found {}", p.top_k);
        }
        if p.frame_id.is_empty() {
            bail!(
                "parameter `frame_id`: expected a frame name such as `map`, found an empty string"
            );
        }
        if p.image_topics.is_empty() {
            bail!("parameter `image_topics` is empty: give at least one sensor_msgs/Image topic");
        }
        if !(p.diagnostics_period > 0.0 && p.diagnostics_period.is_finite()) {
            bail!(
                "parameter `diagnostics_period`: expected seconds > 0, found {}",
                p.diagnostics_period
            );
        }
        Ok(p)
    }
}

/// Counters the diagnostics report.
#[derive(Debug, Default, Clone)]
struct Stats {
    received: u64,
    encoded: u64,
    rejected: u64,
    localized: u64,
    /// Frames replaced by a newer one before the encoder got to them.
    skipped: u64,
    last_error: Option<String>,
    last_latency_ms: f64,
    total_latency_ms: f64,
    descriptor_len: i64,
}

struct Frame {
    /// Arrival number across all topics, to count the frames a newer one replaced.
    seq: u64,
    topic: String,
    /// The map camera of the topic (None: search every camera).
    camera: Option<String>,
    msg: ImageMsg,
}

/// diagnostic_msgs/DiagnosticStatus levels.
const LEVEL_OK: u8 = 0;
const LEVEL_WARN: u8 = 1;

/// What one frame gave: the prior and the candidates (map indices), or why not.
struct Answer {
    prior: crate::maps::prior::PosePrior,
    candidates: Vec<crate::geom::Pose>,
    descriptor_len: i64,
}

struct Localizer {
    encoder: MapEncoder,
    map: Arc<MapFile>,
    index: MapIndex,
    metric: Metric,
    top_k: usize,
}

impl Localizer {
    /// Frame -> pose prior; any problem with the frame is an error string.
    fn localize(&self, frame: &Frame) -> Result<Answer, String> {
        let m = &frame.msg;
        let img = raw_image::decode(
            m.width,
            m.height,
            &m.encoding,
            m.is_bigendian != 0,
            m.step,
            &m.data,
        )
        .map_err(|e| format!("{}: frame `{}`: {e}", frame.topic, m.header.frame_id))?;
        let prepared = self.encoder.prepare(&img).map_err(|e| e.to_string())?;
        let desc = self
            .encoder
            .encode(&[prepared])
            .map_err(|e| e.to_string())?;
        let cands = self.index.candidates(frame.camera.as_deref(), None);
        let hits = top_k(&self.map, &desc, self.top_k, self.metric, cands.as_deref());
        let prior = pose_prior(&self.map, &hits).ok_or("the map has no entries")?;
        Ok(Answer {
            prior,
            candidates: hits.iter().map(|h| self.map.pose(h.index)).collect(),
            descriptor_len: desc.len() as i64,
        })
    }
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

fn diagnostics(
    stats: &Stats,
    node_name: &str,
    now: r2r::builtin_interfaces::msg::Time,
) -> r2r::diagnostic_msgs::msg::DiagnosticArray {
    use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: v,
    };
    let (level, message) = match (&stats.last_error, stats.encoded) {
        (Some(e), _) => (LEVEL_WARN, format!("last bad frame: {e}")),
        (None, 0) => (LEVEL_OK, "waiting for images".to_string()),
        (None, _) => (LEVEL_OK, "encoding frames".to_string()),
    };
    let mean = if stats.encoded > 0 {
        stats.total_latency_ms / stats.encoded as f64
    } else {
        0.0
    };
    DiagnosticArray {
        header: r2r::std_msgs::msg::Header {
            stamp: now,
            frame_id: String::new(),
        },
        status: vec![DiagnosticStatus {
            level,
            name: format!("{node_name}: descriptor encoder"),
            message,
            hardware_id: String::new(),
            values: vec![
                kv("frames_received", stats.received.to_string()),
                kv("frames_encoded", stats.encoded.to_string()),
                kv("frames_rejected", stats.rejected.to_string()),
                kv("frames_localized", stats.localized.to_string()),
                kv("frames_skipped", stats.skipped.to_string()),
                kv("descriptor_length", stats.descriptor_len.to_string()),
                kv("last_latency_ms", format!("{:.2}", stats.last_latency_ms)),
                kv("mean_latency_ms", format!("{mean:.2}")),
            ],
        }],
    }
}

/// Runs the node until Ctrl-C.
pub async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let warnings = check_params_files(&args)?;
    let ctx = r2r::Context::create().context("creating the ROS 2 context")?;
    let mut node = r2r::Node::create(ctx, "dasgil_localizer", "").context("creating the node")?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    {
        let params = node.params.lock().unwrap_or_else(|p| p.into_inner());
        for name in params.keys() {
            if !KNOWN_PARAMS.contains(&name.as_str()) && !name.starts_with("qos_overrides") {
                tracing::warn!(
                    "unknown parameter `{name}` (known: {}); it is ignored",
                    KNOWN_PARAMS.join(", ")
                );
            }
        }
    }
    let params = NodeParams::from_node(&node)?;
    let device = crate::toolchain::parse_device(&params.device, "parameter `device`")
        .map_err(anyhow::Error::msg)?;
    let map = Arc::new(
        MapFile::open(std::path::Path::new(&params.map))
            .with_context(|| format!("parameter `map` = {}", params.map))?,
    );
    let checkpoint = if params.checkpoint.is_empty() {
        match map
            .meta
            .encoder
            .checkpoint
            .as_deref()
            .map(std::path::PathBuf::from)
        {
            Some(p) if p.is_file() => p,
            _ => crate::maps::commands::default_checkpoint()?,
        }
    } else {
        params.checkpoint.clone().into()
    };
    let layers = crate::model::DescriptorSpec {
        layers: map
            .meta
            .encoder
            .layers
            .iter()
            .map(|&(layer, weight)| crate::model::DescriptorLayer { layer, weight })
            .collect(),
    };
    let mut encoder = if map.meta.encoder.kind == "raw-pixels" {
        MapEncoder::raw_pixels()
    } else {
        MapEncoder::from_checkpoint(&checkpoint, device, Some(layers))
            .with_context(|| format!("checkpoint {}", checkpoint.display()))?
    };
    encoder.use_map(&map)?;
    let metric: Metric = if params.metric.is_empty() {
        map.meta.metric.parse().map_err(anyhow::Error::msg)?
    } else {
        params
            .metric
            .parse()
            .map_err(|e| anyhow::anyhow!("parameter `metric`: {e}"))?
    };
    for cam in &params.camera_ids {
        if !map.meta.cameras.contains(cam) {
            bail!(
                "parameter `camera_ids`: `{cam}` is not a camera of the map {} (it has: {})",
                params.map,
                {
                    let mut c = map.meta.cameras.clone();
                    c.sort();
                    c.dedup();
                    c.join(", ")
                }
            );
        }
    }
    let index = MapIndex::new(&map);
    // tch tensors are Send but not Sync: the localizer is used by one blocking task at a time.
    let localizer = Arc::new(Mutex::new(Localizer {
        encoder,
        map: map.clone(),
        index,
        metric,
        top_k: params.top_k as usize,
    }));
    let prior_pub = node.create_publisher::<PriorMsg>("pose_prior", QosProfile::default())?;
    let cand_pub =
        node.create_publisher::<PoseArrayMsg>("pose_candidates", QosProfile::default())?;
    let frame_id = params.frame_id.clone();
    let node_name = node.name()?;
    tracing::info!(map = %params.map, entries = map.len(), checkpoint = %checkpoint.display(), topics = ?params.image_topics, ?device, "dasgil node ready");

    let stats = Arc::new(Mutex::new(Stats::default()));
    let (latest_tx, mut latest_rx) = tokio::sync::watch::channel::<Option<Arc<Frame>>>(None);
    let latest_tx = Arc::new(latest_tx);
    for (i, topic) in params.image_topics.iter().enumerate() {
        let mut sub = node.subscribe::<ImageMsg>(topic, QosProfile::sensor_data())?;
        let (tx, stats, topic) = (latest_tx.clone(), stats.clone(), topic.clone());
        let camera = params.camera_ids.get(i).cloned();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let seq = {
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    s.received += 1;
                    s.received
                };
                tx.send_replace(Some(Arc::new(Frame {
                    seq,
                    topic: topic.clone(),
                    camera: camera.clone(),
                    msg,
                })));
            }
        });
    }

    let worker_stats = stats.clone();
    tokio::spawn(async move {
        let mut last_seq = 0;
        while latest_rx.changed().await.is_ok() {
            let Some(frame) = latest_rx.borrow_and_update().clone() else {
                continue;
            };
            // Frames between the last one encoded and this one were replaced: latest wins.
            let skipped = frame.seq.saturating_sub(last_seq + 1);
            last_seq = frame.seq;
            let loc = localizer.clone();
            let started = Instant::now();
            let stamp = frame.msg.header.stamp.clone();
            let result = tokio::task::spawn_blocking(move || {
                loc.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .localize(&frame)
            })
            .await;
            if let Ok(Ok(answer)) = &result {
                let header = r2r::std_msgs::msg::Header {
                    stamp: stamp.clone(),
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
                if let Err(e) = prior_pub
                    .publish(&prior)
                    .and_then(|_| cand_pub.publish(&cands))
                {
                    tracing::warn!(error = %e, "cannot publish the pose prior");
                }
            }
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let mut s = worker_stats.lock().unwrap_or_else(|p| p.into_inner());
            s.skipped += skipped;
            match result {
                Ok(Ok(answer)) => {
                    s.encoded += 1;
                    s.localized += 1;
                    s.descriptor_len = answer.descriptor_len;
                    s.last_latency_ms = ms;
                    s.total_latency_ms += ms;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "bad frame skipped");
                    s.rejected += 1;
                    s.last_error = Some(e);
                }
                Err(e) => {
                    tracing::error!(error = %e, "encoder task failed; frame skipped");
                    s.rejected += 1;
                    s.last_error = Some(format!("encoder task failed: {e}"));
                }
            }
        }
    });

    let diag_pub = node.create_publisher::<r2r::diagnostic_msgs::msg::DiagnosticArray>(
        "/diagnostics",
        QosProfile::default(),
    )?;
    let mut timer = node.create_wall_timer(Duration::from_secs_f64(params.diagnostics_period))?;
    let clock = node.get_ros_clock();
    tokio::spawn(async move {
        while timer.tick().await.is_ok() {
            let now = clock
                .lock()
                .ok()
                .and_then(|mut c| c.get_now().ok())
                .unwrap_or_default();
            let now = r2r::Clock::to_builtin_time(&now);
            let msg = diagnostics(
                &stats.lock().unwrap_or_else(|p| p.into_inner()),
                &node_name,
                now,
            );
            if let Err(e) = diag_pub.publish(&msg) {
                tracing::warn!(error = %e, "cannot publish diagnostics");
            }
        }
    });

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_spin = stop.clone();
    let spinner = std::thread::spawn(move || {
        while !stop_spin.load(std::sync::atomic::Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(10));
        }
    });
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = spinner.join();
    Ok(())
}
