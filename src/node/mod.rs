//! The DASGIL ROS 2 node (cargo feature `ros`): subscribes to camera images, turns each frame
//! into a DASGIL descriptor (the encoder layers the model's discriminator type calls for), and
//! reports on /diagnostics. Frames are encoded off the ROS executor, latest frame wins, and a
//! bad frame is counted and reported, never fatal.
//!
//! Map retrieval and the pose prior (PoseWithCovarianceStamped) build on this once maps exist.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use r2r::QosProfile;
use tch::Device;

use crate::data::{preprocess, raw_image};
use crate::model::checkpoint;
use crate::model::{DescriptorEncoder, DescriptorSpec, DiscriminatorKind};

type ImageMsg = r2r::sensor_msgs::msg::Image;

/// Node parameters (`ros__parameters` in config/localize.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeParams {
    /// Generator checkpoint (.safetensors) to encode frames with. Required.
    pub checkpoint: String,
    /// Camera image topics (sensor_msgs/Image).
    pub image_topics: Vec<String>,
    /// cpu, cuda or auto.
    pub device: String,
    /// Seconds between /diagnostics messages.
    pub diagnostics_period: f64,
}

impl Default for NodeParams {
    fn default() -> Self {
        Self {
            checkpoint: String::new(),
            image_topics: vec!["/camera/image_raw".into()],
            device: "auto".into(),
            diagnostics_period: 1.0,
        }
    }
}

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

impl NodeParams {
    /// Reads the parameters given on the command line or in a params file.
    pub fn from_node(node: &r2r::Node) -> Result<Self> {
        let d = Self::default();
        let p = Self {
            checkpoint: param(node, "checkpoint", d.checkpoint)?,
            image_topics: param(node, "image_topics", d.image_topics)?,
            device: param(node, "device", d.device)?,
            diagnostics_period: param(node, "diagnostics_period", d.diagnostics_period)?,
        };
        if p.checkpoint.is_empty() {
            bail!(
                "parameter `checkpoint` is empty: set it to a dasgil generator checkpoint (.safetensors), \
                 e.g. `ros2 launch dasgil localize.launch.py checkpoint:=/path/to/generator.safetensors`"
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
    msg: ImageMsg,
}

/// diagnostic_msgs/DiagnosticStatus levels.
const LEVEL_OK: u8 = 0;
const LEVEL_WARN: u8 = 1;

struct Encoder {
    encoder: DescriptorEncoder,
    height: i64,
    width: i64,
    device: Device,
}

impl Encoder {
    /// Frame -> descriptor length; any problem with the frame is an error string.
    fn encode(&self, frame: &Frame) -> Result<i64, String> {
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
        let xs = preprocess::to_network_input(&img, self.height, self.width)
            .map_err(|e| e.to_string())?;
        let desc = self
            .encoder
            .describe(&xs.to_device(self.device))
            .map_err(|e| e.to_string())?;
        Ok(desc.size()[1])
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
    let ctx = r2r::Context::create().context("creating the ROS 2 context")?;
    let mut node = r2r::Node::create(ctx, "dasgil_localizer", "").context("creating the node")?;
    let params = NodeParams::from_node(&node)?;
    let device = crate::toolchain::parse_device(&params.device, "parameter `device`")
        .map_err(anyhow::Error::msg)?;
    let loaded = checkpoint::load_generator(std::path::Path::new(&params.checkpoint), device, None)
        .with_context(|| format!("parameter `checkpoint` = {}", params.checkpoint))?;
    let kind = loaded
        .meta
        .discriminator
        .unwrap_or(DiscriminatorKind::Flatten);
    let spec = DescriptorSpec::paper(kind);
    let cfg = loaded.meta.config;
    // tch tensors are Send but not Sync: the encoder is used by one blocking task at a time.
    let encoder = Arc::new(Mutex::new(Encoder {
        encoder: DescriptorEncoder::new(&loaded.net, spec)?,
        height: cfg.input_height,
        width: cfg.input_width,
        device,
    }));
    let node_name = node.name()?;
    tracing::info!(checkpoint = %params.checkpoint, topics = ?params.image_topics, ?device, "dasgil node ready");

    let stats = Arc::new(Mutex::new(Stats::default()));
    let (latest_tx, mut latest_rx) = tokio::sync::watch::channel::<Option<Arc<Frame>>>(None);
    let latest_tx = Arc::new(latest_tx);
    for topic in &params.image_topics {
        let mut sub = node.subscribe::<ImageMsg>(topic, QosProfile::sensor_data())?;
        let (tx, stats, topic) = (latest_tx.clone(), stats.clone(), topic.clone());
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
            let enc = encoder.clone();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                enc.lock().unwrap_or_else(|p| p.into_inner()).encode(&frame)
            })
            .await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let mut s = worker_stats.lock().unwrap_or_else(|p| p.into_inner());
            s.skipped += skipped;
            match result {
                Ok(Ok(len)) => {
                    s.encoded += 1;
                    s.descriptor_len = len;
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
