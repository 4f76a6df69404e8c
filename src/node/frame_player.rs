//! `dasgil-tools replay`: plays a sequence's query frames to a running node through real ROS 2
//! publishers at camera rate (each camera on its own topic; stamped with the data's own clock,
//! as `ros2 bag play` keeps a recording's stamps, or with the time of sending, as a camera
//! driver stamps capture), and collects the `pose_prior` messages that come back.
//! Scoring is `maps::replay`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use r2r::QosProfile;

use crate::data::sources::SourceImages;
use crate::data::PosedImage;
use crate::eval::online::{status_value, NodeFilter, NodeOutcomes, Received, Sent};

/// What a replayed frame's header stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamps {
    /// The frame's own timestamp in the data set, the data's clock moved so that the first
    /// frame is stamped when the replay starts: the stamps keep the data's time differences
    /// (the vehicle's speed, the gaps between traversals) whatever `rate` frames are sent at.
    Data,
    /// The wall clock when the frame is sent.
    Send,
}

pub struct ReplayOptions {
    /// Topic of each camera, parallel to `cameras`.
    pub topics: Vec<String>,
    pub cameras: Vec<String>,
    /// Frames per second and camera.
    pub rate: f64,
    /// None: `Data` when every frame to be played has a timestamp, else `Send`.
    pub stamps: Option<Stamps>,
    /// sensor_msgs/CompressedImage (the files' JPEG/PNG bytes; with `rectify`, a frame through a
    /// lens as the PNG of its rectified image) instead of sensor_msgs/Image rgb8.
    pub compressed: bool,
    /// Each frame through a lens rectified with its camera's intrinsics and lens before it is
    /// published (`map::views::rectified`, to K, what `build-map --rectify` encodes; image_proc's
    /// `image_rect` maps to P); compressed, a rectified frame is sent as PNG.
    pub rectify: bool,
    pub prior_topic: String,
    /// The node's diagnostics topic (`/diagnostics` unless remapped).
    pub diagnostics_topic: String,
    /// How long to wait for the node to subscribe.
    pub wait: Duration,
    /// At most this many frames per camera.
    pub limit: Option<usize>,
    /// Play for this long, cycling through the frames (None: each frame once).
    pub duration: Option<Duration>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A ROS time (builtin_interfaces/Time: i32 seconds, u32 nanoseconds) from nanoseconds since
/// the Unix epoch; an error outside what it holds.
fn ros_time(ns: i64) -> Result<r2r::builtin_interfaces::msg::Time> {
    let sec = i32::try_from(ns.div_euclid(1_000_000_000))
        .ok()
        .filter(|s| *s >= 0)
        .with_context(|| format!("stamp {ns} ns: outside what a ROS time holds"))?;
    Ok(r2r::builtin_interfaces::msg::Time {
        sec,
        nanosec: ns.rem_euclid(1_000_000_000) as u32,
    })
}

enum Publisher {
    Raw(r2r::Publisher<r2r::sensor_msgs::msg::Image>),
    Compressed(r2r::Publisher<r2r::sensor_msgs::msg::CompressedImage>),
}

impl Publisher {
    fn subscribers(&self) -> usize {
        match self {
            Publisher::Raw(p) => p.get_inter_process_subscription_count(),
            Publisher::Compressed(p) => p.get_inter_process_subscription_count(),
        }
        .unwrap_or(0)
    }

    /// Reads (and for raw, decodes; with `rectify`, rectifies) the frame, then stamps it
    /// (`stamp`, or the time of sending when None) and publishes it; returns the stamp and the
    /// time of sending. Decoding happens before the time of sending is taken, as in a camera
    /// driver that stamps a frame when it is ready, so the measured latency is the node's and
    /// DDS's.
    fn send(
        &self,
        q: &PosedImage,
        src: &SourceImages,
        camera: &str,
        stamp: Option<i64>,
        rectify: bool,
    ) -> Result<(i64, i64)> {
        let header = |stamp_ns: i64| -> Result<r2r::std_msgs::msg::Header> {
            Ok(r2r::std_msgs::msg::Header {
                stamp: ros_time(stamp_ns)?,
                frame_id: camera.to_string(),
            })
        };
        let sent;
        match self {
            Publisher::Raw(p) => {
                let img = q
                    .load_rgb(src.decode)
                    .with_context(|| format!("query {}", q.path.display()))?;
                let lens = crate::map::views::lens_of(q.distortion.as_ref());
                let img = if rectify && lens.is_some() {
                    rectified(q, &img)?
                } else {
                    img
                };
                let mut msg = r2r::sensor_msgs::msg::Image {
                    header: Default::default(),
                    height: img.height(),
                    width: img.width(),
                    encoding: "rgb8".into(),
                    is_bigendian: 0,
                    step: img.width() * 3,
                    data: img.into_raw(),
                };
                sent = now_ns();
                msg.header = header(stamp.unwrap_or(sent))?;
                p.publish(&msg)?;
            }
            Publisher::Compressed(p) => {
                let lens = crate::map::views::lens_of(q.distortion.as_ref());
                let (data, format) = if rectify && lens.is_some() {
                    // Re-encoded losslessly: the node decodes what was rectified.
                    let img = q
                        .load_rgb(src.decode)
                        .with_context(|| format!("query {}", q.path.display()))?;
                    let mut png = Vec::new();
                    rectified(q, &img)?
                        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                        .with_context(|| format!("encoding {} rectified", q.path.display()))?;
                    (png, "png")
                } else {
                    let data = std::fs::read(&q.path)
                        .with_context(|| format!("cannot read {}", q.path.display()))?;
                    let format = match q.path.extension().and_then(|e| e.to_str()) {
                        Some("png") => "png",
                        _ => "jpeg",
                    };
                    (data, format)
                };
                sent = now_ns();
                p.publish(&r2r::sensor_msgs::msg::CompressedImage {
                    header: header(stamp.unwrap_or(sent))?,
                    format: format.into(),
                    data,
                })?;
            }
        }
        Ok((stamp.unwrap_or(sent), sent))
    }
}

/// Frame `img` of `q` rectified with its intrinsics and lens (`map::views::rectified`); an
/// error when `q` has no intrinsics.
fn rectified(q: &PosedImage, img: &image::RgbImage) -> Result<image::RgbImage> {
    let k = q.intrinsics.with_context(|| {
        format!(
            "--rectify: {} has no camera intrinsics, which rectification needs",
            q.path.display()
        )
    })?;
    Ok(crate::map::views::rectified(img, &k, q.distortion.as_ref()))
}

/// Sends the queries of `opts.cameras` (each camera's in sequence order, cameras interleaved
/// evenly within a period) and returns what was sent and what came back.
/// What a replay sent and got back; `interrupted` when Ctrl-C or SIGTERM stopped it while
/// playing (what was sent until then is scored).
pub struct Played {
    pub sent: Vec<Sent>,
    pub received: Vec<Received>,
    pub interrupted: bool,
    /// The node's filter during the replay, from /diagnostics (None: no diagnostics came).
    pub node_filter: Option<NodeFilter>,
    /// What the node did with the frames it did not answer, from /diagnostics.
    pub node_outcomes: Option<NodeOutcomes>,
    /// What the frames' stamps said.
    pub stamps: Stamps,
    /// The node's cameras whose frames look like another map camera's images
    /// (`map_camera_nearest` against `camera_id`), in words.
    pub node_crossed: Vec<String>,
}

/// From a node's statuses: each camera whose checked frames are mostly nearest another map
/// camera's images (`map_camera_nearest` `c0 n/m` with n > m/2 and m >= 4, and not its
/// `camera_id`), said with its topic.
pub fn node_crossed(statuses: &[&[(String, String)]]) -> Vec<String> {
    let mut out = Vec::new();
    for kv in statuses {
        let (Some(id), Some(near)) = (
            status_value(kv, "camera_id"),
            status_value(kv, "map_camera_nearest"),
        ) else {
            continue;
        };
        let Some((cam, n, m)) = near.split_once(' ').and_then(|(c, f)| {
            let (n, m) = f.split_once('/')?;
            Some((c, n.parse::<usize>().ok()?, m.parse::<usize>().ok()?))
        }) else {
            continue;
        };
        if id != "-" && cam != id && m >= 4 && 2 * n > m {
            out.push(format!(
                "the node searches {} as map camera {id}, but its frames look like map camera \
                 {cam}'s images ({n} of its last {m} checked frames; /diagnostics \
                 map_camera_nearest): the node's `camera_ids` may name its topics in another \
                 order than the map's cameras",
                status_value(kv, "image_topic").unwrap_or("a topic")
            ));
        }
    }
    out
}

/// What /diagnostics said last: messages with a dasgil node's status, its `filter`, and the
/// filter's counts (relocalizations, resets; None while they read "-": no frame yet).
#[derive(Default)]
struct DiagSeen {
    messages: u64,
    filter: String,
    counts: Option<(u64, u64)>,
    /// The node's withheld, off-the-map, skipped and rejected frames, all cameras.
    outcomes: Option<NodeOutcomes>,
    /// Names of dasgil statuses seen for topics the replay does not publish (another node's
    /// cameras, or a node listening elsewhere).
    elsewhere: std::collections::BTreeSet<String>,
    /// The nodes publishing the replay's `--pose-prior-topic` (empty until known).
    nodes: Vec<String>,
    /// [`node_crossed`] of the last message.
    crossed: Vec<String>,
    /// Whether a dasgil node among `nodes` has been heard (its statuses name it).
    named: bool,
}

/// What rmw names a node it has not yet heard the name of (`_NODE_NAME_UNKNOWN_`,
/// `_NODE_NAMESPACE_UNKNOWN_`).
const UNKNOWN_NODE: &str = "_UNKNOWN_";

/// Whether a dasgil node's status is about one of `topics`, the replay's (as `--topics` gives
/// them, resolved in the root namespace as the replay's own node does): by its `image_topic`
/// (the topic resolved in the node's namespace), or, from a node that does not report it, by
/// its name (`NODE: TOPIC`, TOPIC as its `image_topics` parameter gives it).
fn status_is_for(name: &str, kv: &[(String, String)], topics: &[String]) -> bool {
    let topic = match status_value(kv, "image_topic") {
        Some(t) => t,
        None => match name.rsplit_once(": ") {
            Some((_, t)) => t,
            None => return false,
        },
    };
    let t = topic.trim_start_matches('/');
    !t.is_empty() && topics.iter().any(|r| r.trim_start_matches('/') == t)
}

/// Of one /diagnostics message's dasgil statuses (name, key-value pairs), those of the
/// replay's node and cameras, and whether they are the node's by name: every dasgil node
/// publishes its own message on /diagnostics, and another node's counts (other cameras, other
/// frames) must not stand for this replay's.
/// `nodes`: the fully qualified names of the nodes publishing the replay's
/// `--pose-prior-topic`. The statuses of a dasgil node among them (each status says its
/// `node`): those of its cameras on `topics`, or, when none is (its image topics remapped),
/// all of them. Otherwise (`--pose-prior-topic` names a topic no dasgil node publishes, such
/// as the node's GNSS input; a node that does not say its name): any node's cameras on
/// `topics`.
fn statuses_for<'a>(
    statuses: &'a [(String, Vec<(String, String)>)],
    nodes: &[String],
    topics: &[String],
) -> (Vec<&'a [(String, String)]>, bool) {
    let dasgil = || {
        statuses
            .iter()
            .filter(|(_, kv)| filter_counts(&[kv.as_slice()]).is_some())
    };
    let named: Vec<&(String, Vec<(String, String)>)> = dasgil()
        .filter(|(_, kv)| status_value(kv, "node").is_some_and(|n| nodes.iter().any(|m| m == n)))
        .collect();
    let on_topics = |of: Vec<&'a (String, Vec<(String, String)>)>| -> Vec<&'a [(String, String)]> {
        of.into_iter()
            .filter(|(name, kv)| status_is_for(name, kv, topics))
            .map(|(_, kv)| kv.as_slice())
            .collect()
    };
    if named.is_empty() {
        return (on_topics(dasgil().collect()), false);
    }
    let on = on_topics(named.clone());
    if on.is_empty() {
        (named.iter().map(|(_, kv)| kv.as_slice()).collect(), true)
    } else {
        (on, true)
    }
}

/// The node's filter and its counts, as one status reports them.
type FilterReport = (String, Option<(u64, u64)>);

/// The filter name and counts of the first of a /diagnostics message's statuses (each its
/// key-value pairs) that has them (a dasgil node's), or
/// None when no status has the keys.
fn filter_counts(statuses: &[&[(String, String)]]) -> Option<FilterReport> {
    statuses.iter().find_map(|kv| {
        let get = |k: &str| status_value(kv, k);
        let (f, r, s) = (
            get("filter")?,
            get("filter_relocalizations")?,
            get("filter_resets")?,
        );
        Some((f.to_string(), r.parse().ok().zip(s.parse().ok())))
    })
}

/// Waits up to `limit` (or until interrupted) until what /diagnostics said satisfies `done`
/// (e.g. a message after the n-th).
fn wait_diag(
    seen: &Mutex<DiagSeen>,
    done: impl Fn(&DiagSeen) -> bool,
    limit: Duration,
    stopped: &dyn Fn() -> bool,
) {
    let t0 = Instant::now();
    while !done(&seen.lock().unwrap_or_else(|e| e.into_inner()))
        && t0.elapsed() < limit
        && !stopped()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Stamps::Data` keeps the data's time between two frames up to this (ns); a longer gap (the
/// months between two traversals) is shortened to it: still far past what resets the node's
/// sequence filter (about 22 s), and the stamps stay near the wall clock.
const DATA_GAP_CAP_NS: i64 = 3_600_000_000_000;

/// `Stamps::Data`: each frame's stamp from its timestamp in the data set.
struct DataClock {
    /// The played frames' distinct timestamps (us), sorted, and each one's time after the
    /// first with the gaps over DATA_GAP_CAP_NS shortened (ns).
    times_us: Vec<i64>,
    after_first_ns: Vec<i64>,
    /// The wall clock the first timestamp maps to (ns).
    start_ns: i64,
    /// `--duration`'s k-th pass is stamped k times this later (the span and one capped gap).
    pass_ns: i64,
    pass: usize,
    /// Stamps given in this pass (passes never overlap).
    used: std::collections::BTreeSet<i64>,
}

impl DataClock {
    /// `times`: the timestamps (us) of the frames to be played.
    fn new(times: impl Iterator<Item = i64>, start_ns: i64) -> Self {
        let mut times_us: Vec<i64> = times.collect();
        times_us.sort_unstable();
        times_us.dedup();
        let mut after_first_ns = Vec::with_capacity(times_us.len());
        let mut at = 0i64;
        for (i, t) in times_us.iter().enumerate() {
            if i > 0 {
                let gap = t.saturating_sub(times_us[i - 1]).saturating_mul(1000);
                at = at.saturating_add(gap.min(DATA_GAP_CAP_NS));
            }
            after_first_ns.push(at);
        }
        Self {
            times_us,
            after_first_ns,
            start_ns,
            pass_ns: at.saturating_add(DATA_GAP_CAP_NS),
            pass: 0,
            used: Default::default(),
        }
    }

    /// The stamp (ns) of a frame with timestamp `t_us` in pass `pass` (0 for the first): its
    /// time after the data's first frame (long gaps shortened) after the replay's start, moved
    /// on by whole nanoseconds until no other frame has it (the cameras of one capture share a
    /// timestamp in the data: the second is 1 ns later; each prior must name its frame).
    /// Errors past what a ROS time holds (i32 seconds: January 2038).
    fn stamp(&mut self, t_us: i64, pass: usize) -> Result<i64> {
        if pass != self.pass {
            self.pass = pass;
            self.used.clear();
        }
        let i = self
            .times_us
            .binary_search(&t_us)
            .unwrap_or_else(|i| i.saturating_sub(1));
        let after = self.after_first_ns.get(i).copied().unwrap_or(0);
        let mut s = (pass as i64)
            .checked_mul(self.pass_ns)
            .and_then(|p| p.checked_add(after))
            .and_then(|p| p.checked_add(self.start_ns))
            .filter(|s| ros_time(*s).is_ok())
            .with_context(|| {
                format!("--stamps data: pass {pass} of the frames runs past what a ROS time holds")
            })?;
        while !self.used.insert(s) {
            s += 1;
        }
        Ok(s)
    }
}

pub fn replay(src: &SourceImages, opts: &ReplayOptions) -> Result<Played> {
    if !(0.001..=1000.0).contains(&opts.rate) {
        bail!(
            "--rate: expected frames per second from 0.001 to 1000, found {}",
            opts.rate
        );
    }
    let mut per_camera: Vec<Vec<usize>> = opts
        .cameras
        .iter()
        .map(|c| {
            src.queries
                .iter()
                .enumerate()
                .filter(|(_, q)| &q.camera == c)
                .map(|(i, _)| i)
                .take(opts.limit.unwrap_or(usize::MAX))
                .collect()
        })
        .collect();
    let untimed = per_camera
        .iter()
        .flatten()
        .map(|&i| &src.queries[i])
        .find(|q| q.timestamp_us.is_none());
    let stamps = match (opts.stamps, untimed) {
        (Some(Stamps::Data), Some(q)) => bail!(
            "--stamps data: query {} has no timestamp in the data set; --stamps send stamps \
             frames with the time of sending",
            q.path.display()
        ),
        (Some(s), _) => s,
        (None, None) => Stamps::Data,
        (None, Some(_)) => Stamps::Send,
    };
    if stamps == Stamps::Data {
        // In the data's time order (what the stamps then say), each camera's frames.
        for list in &mut per_camera {
            list.sort_by_key(|&i| src.queries[i].timestamp_us);
        }
    }
    for (c, list) in opts.cameras.iter().zip(&per_camera) {
        if list.is_empty() {
            let mut have: Vec<&str> = src.queries.iter().map(|q| q.camera.as_str()).collect();
            have.sort_unstable();
            have.dedup();
            if src.source.bag.is_some() {
                bail!(
                    "--camera-ids: the recording has no frames of camera `{c}` (its cameras: {}; \
                     a recording's camera is its image topic unless --camera-id names it, once \
                     per --image-topic)",
                    have.join(", ")
                );
            }
            bail!(
                "--camera-ids: the sequence has no query images of camera `{c}` (it has: {})",
                have.join(", ")
            );
        }
    }
    if opts.rectify {
        // Before any frame is sent: a replay that stops at its first frame without intrinsics
        // would have scored a part of the frames.
        let played = per_camera.iter().flatten().map(|&i| &src.queries[i]);
        let purpose = "undistorts each frame with its camera's lens";
        let doing = "replay to a map built";
        if let Some(e) =
            crate::map::build::missing_intrinsics(src, played, doing, "--rectify", purpose)
        {
            return Err(e.into());
        }
    }
    // Ctrl-C and SIGTERM stop the waits at once and the playing at the next frame; what was
    // sent is still scored and written (a flag, checked in every loop; registered after the
    // ROS 2 context so it takes the signals from there on).
    let ctx = r2r::Context::create().context("creating the ROS 2 context")?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())
            .context("installing the Ctrl-C handler")?;
    }
    let stopped = || interrupted.load(Ordering::Relaxed);
    let mut node = r2r::Node::create(ctx, "dasgil_replay", "").context("creating the node")?;
    let mut pubs = Vec::new();
    for t in &opts.topics {
        pubs.push(if opts.compressed {
            Publisher::Compressed(node.create_publisher(t, QosProfile::sensor_data())?)
        } else {
            Publisher::Raw(node.create_publisher(t, QosProfile::sensor_data())?)
        });
    }
    let mut sub = node.subscribe::<r2r::geometry_msgs::msg::PoseWithCovarianceStamped>(
        &opts.prior_topic,
        QosProfile::default(),
    )?;
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            while let Some(m) = sub.next().await {
                let p = &m.pose.pose;
                let cov: [f64; 36] = m
                    .pose
                    .covariance
                    .as_slice()
                    .try_into()
                    .unwrap_or([f64::NAN; 36]);
                let pose = crate::geom::Pose::from_parts(
                    nalgebra::Translation3::new(p.position.x, p.position.y, p.position.z),
                    nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
                        p.orientation.w,
                        p.orientation.x,
                        p.orientation.y,
                        p.orientation.z,
                    )),
                );
                let stamp_ns =
                    m.header.stamp.sec as i64 * 1_000_000_000 + m.header.stamp.nanosec as i64;
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Received {
                        stamp_ns,
                        received_ns: now_ns(),
                        frame_id: m.header.frame_id.clone(),
                        pose,
                        covariance: cov,
                    });
            }
        })
    });
    // The node's /diagnostics (every `diagnostics_period`, 1 s by default): which filter it
    // runs, and the sequence filter's relocalizations and resets during the replay.
    let mut diag_sub = node
        .subscribe::<r2r::diagnostic_msgs::msg::DiagnosticArray>(
            &opts.diagnostics_topic,
            QosProfile::default(),
        )
        .with_context(|| {
            format!(
                "--diagnostics-topic: cannot subscribe `{}` (a valid ROS 2 topic name, such as \
                 /diagnostics?)",
                opts.diagnostics_topic
            )
        })?;
    let diags: Arc<Mutex<DiagSeen>> = Arc::default();
    let diag_sink = diags.clone();
    let diag_topics = opts.topics.clone();
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            while let Some(m) = diag_sub.next().await {
                // Each status's name and key-value pairs, read for the filter and for the
                // outcomes of the replay's cameras.
                let all: Vec<(String, Vec<(String, String)>)> = m
                    .status
                    .iter()
                    .map(|st| {
                        let kv = st
                            .values
                            .iter()
                            .map(|kv| (kv.key.clone(), kv.value.clone()));
                        (st.name.clone(), kv.collect())
                    })
                    .collect();
                let mut d = diag_sink.lock().unwrap_or_else(|e| e.into_inner());
                let (ours, named) = statuses_for(&all, &d.nodes, &diag_topics);
                // Once the node has been heard by its name, only its statuses count (another
                // node on the same cameras would alternate with it).
                d.named |= named;
                let ours = if d.named && !named { Vec::new() } else { ours };
                if let Some((filter, counts)) = filter_counts(&ours) {
                    d.messages += 1;
                    d.filter = filter;
                    d.counts = counts;
                    d.crossed = node_crossed(&ours);
                    d.outcomes = NodeOutcomes::from_diagnostics(ours.into_iter());
                } else {
                    for (name, kv) in &all {
                        if d.elsewhere.len() < 8 && filter_counts(&[kv.as_slice()]).is_some() {
                            d.elsewhere.insert(name.clone());
                        }
                    }
                }
            }
        })
    });
    let diag_wait = Duration::from_millis(2500);
    let prior_topic = if opts.prior_topic.starts_with('/') {
        opts.prior_topic.clone()
    } else {
        format!("/{}", opts.prior_topic)
    };
    let node = Arc::new(Mutex::new(node));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_spin = stop.clone();
    let spin_node = node.clone();
    let spinner = std::thread::spawn(move || {
        while !stop_spin.load(Ordering::Relaxed) {
            spin_node
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .spin_once(Duration::from_millis(5));
            std::thread::yield_now();
        }
    });
    // The fully qualified names of the nodes publishing the priors.
    let prior_publishers = || -> Vec<String> {
        let infos = node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_publishers_info_by_topic(&prior_topic, false)
            .unwrap_or_default();
        infos
            .iter()
            .map(|i| crate::ros::fully_qualified(&i.node_namespace, &i.node_name))
            .collect()
    };
    let result = (|| {
        // The node subscribes once it has loaded its model and map.
        let t0 = Instant::now();
        let mut last_note = Instant::now();
        while pubs.iter().any(|p| p.subscribers() == 0) {
            if stopped() {
                bail!("interrupted while waiting for a node to subscribe: no frame was sent");
            }
            if t0.elapsed() > opts.wait {
                bail!(
                    "no node subscribed to {} within {:.0} s: is dasgil_node running (same \
                     ROS_DOMAIN_ID, topics and transport)?",
                    opts.topics.join(", "),
                    opts.wait.as_secs_f64()
                );
            }
            if last_note.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    "waiting for a node to subscribe to {}",
                    opts.topics.join(", ")
                );
                last_note = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A prior published before our subscription has matched the node's publisher is lost
        // (volatile QoS): wait until the graph shows that publisher, then a little more for
        // the match itself (a fixed 500 ms once lost the first of 5 priors under CI load).
        let mut nodes = prior_publishers();
        while nodes.is_empty() {
            if stopped() {
                bail!("interrupted while waiting for the node's {prior_topic}: no frame was sent");
            }
            if t0.elapsed() > opts.wait {
                bail!(
                    "the node subscribed to the images but nothing publishes {prior_topic} \
                     within {:.0} s (--pose-prior-topic, the node's remapping)",
                    opts.wait.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
            nodes = prior_publishers();
        }
        // DDS can show a publisher before the name of its node (rmw's `_NODE_NAME_UNKNOWN_`,
        // seen under load): wait a little for the names, then keep those known.
        let t_names = Instant::now();
        while nodes.iter().any(|n| n.contains(UNKNOWN_NODE))
            && t_names.elapsed() < Duration::from_secs(3)
            && !stopped()
        {
            std::thread::sleep(Duration::from_millis(50));
            nodes = prior_publishers();
        }
        nodes.retain(|n| !n.contains(UNKNOWN_NODE));
        {
            // From now on only the statuses of the node(s) publishing the priors count.
            let mut d = diags.lock().unwrap_or_else(|e| e.into_inner());
            *d = DiagSeen {
                nodes,
                ..DiagSeen::default()
            };
        }
        std::thread::sleep(Duration::from_millis(300));
        // The filter counts before the first frame (a node that runs a while already has some).
        // From the node by name when it is a dasgil node (it says so within a diagnostics
        // period): another node's message coming first must not give the before-counts.
        wait_diag(&diags, |d| d.messages > 0, diag_wait, &stopped);
        wait_diag(&diags, |d| d.named, diag_wait, &stopped);
        let (before, outcomes_before) = {
            let d = diags.lock().unwrap_or_else(|e| e.into_inner());
            (d.counts, d.outcomes)
        };
        let longest = per_camera.iter().map(Vec::len).max().unwrap_or(0);
        let rounds = match opts.duration {
            Some(d) => ((d.as_secs_f64() * opts.rate).ceil() as usize).max(1),
            None => longest,
        };
        let total: usize = per_camera
            .iter()
            .map(|l| {
                let (whole, part) = (rounds / longest.max(1), rounds % longest.max(1));
                whole * l.len() + part.min(l.len())
            })
            .sum();
        let progress = crate::progress::Progress::new("replay", "frames", total as u64, 0);
        let period = 1.0 / opts.rate;
        let n_cam = opts.cameras.len().max(1);
        let mut sent = Vec::new();
        let start = Instant::now();
        let mut clock = DataClock::new(
            per_camera
                .iter()
                .flatten()
                .filter_map(|&i| src.queries[i].timestamp_us),
            now_ns(),
        );
        'play: for k in 0..rounds {
            for (j, list) in per_camera.iter_mut().enumerate() {
                if stopped() {
                    break 'play;
                }
                // --duration cycles in rounds of the longest camera's frames: a shorter camera
                // waits for the next round, so that every camera's k-th pass is one pass.
                let Some(&qi) = list.get(k % longest.max(1)) else {
                    continue;
                };
                let due =
                    start + Duration::from_secs_f64(period * (k as f64 + j as f64 / n_cam as f64));
                // Sleep in short steps so that Ctrl-C is seen at a slow --rate too.
                while let Some(wait) = due.checked_duration_since(Instant::now()) {
                    if stopped() {
                        break 'play;
                    }
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                }
                let stamp = match stamps {
                    Stamps::Data => Some(clock.stamp(
                        src.queries[qi].timestamp_us.unwrap_or(i64::MIN),
                        k / longest.max(1),
                    )?),
                    Stamps::Send => None,
                };
                let (stamp_ns, sent_ns) =
                    pubs[j].send(&src.queries[qi], src, &opts.cameras[j], stamp, opts.rectify)?;
                sent.push(Sent {
                    stamp_ns,
                    sent_ns,
                    query: qi,
                });
                progress.inc(1);
            }
        }
        progress.finish();
        // Let the last priors arrive: until all came back, or 3 s without a new one. Only
        // priors that name a frame sent count (a topic that is not the node's output, a GNSS
        // fix say, must not end the wait before the node has answered).
        let sent_stamps: std::collections::HashSet<i64> = sent.iter().map(|s| s.stamp_ns).collect();
        let mut count = 0;
        let mut quiet = Instant::now();
        loop {
            let n = received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|r| sent_stamps.contains(&r.stamp_ns))
                .count();
            if n >= sent.len()
                || quiet.elapsed() > Duration::from_secs(3)
                || (stopped() && quiet.elapsed() > Duration::from_millis(500))
            {
                break;
            }
            if n != count {
                count = n;
                quiet = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // And after the last prior: the second /diagnostics message from now (the first may
        // have left the node between its last prior and that frame's count).
        let n = diags.lock().unwrap_or_else(|e| e.into_inner()).messages;
        wait_diag(&diags, |d| d.messages > n + 1, 2 * diag_wait, &stopped);
        let d = diags.lock().unwrap_or_else(|e| e.into_inner());
        if d.messages == 0 && !d.elsewhere.is_empty() {
            let names: Vec<&str> = d.elsewhere.iter().map(String::as_str).collect();
            tracing::warn!(
                "{} carried a dasgil node's statuses only for topics this replay does not \
                 publish ({}): is the node's image_topics parameter (or its remapping) the \
                 --topics given here, {}?",
                opts.diagnostics_topic,
                names.join(", "),
                opts.topics.join(", ")
            );
        }
        let node_filter =
            (d.messages > 0).then(|| NodeFilter::from_counts(&d.filter, before, d.counts));
        let node_outcomes = d
            .outcomes
            .map(|after| NodeOutcomes::during(outcomes_before, after));
        Ok((sent, node_filter, node_outcomes, d.crossed.clone()))
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = spinner.join();
    let (sent, node_filter, node_outcomes, node_crossed) = result?;
    let got = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Played {
        sent,
        received: got,
        interrupted: stopped(),
        node_filter,
        node_outcomes,
        stamps,
        node_crossed,
    })
}

#[cfg(test)]
mod tests {
    use super::{statuses_for, DataClock};
    use crate::eval::online::NodeOutcomes;

    #[test]
    fn a_node_camera_whose_frames_look_like_another_map_cameras_is_named() {
        let status = |id: &str, near: &str| -> Vec<(String, String)> {
            [
                ("image_topic", "/cam0/image_raw"),
                ("camera_id", id),
                ("map_camera_nearest", near),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
        };
        let crossed = status("c1", "c0 4/4");
        let said = super::node_crossed(&[crossed.as_slice()]);
        assert_eq!(said.len(), 1);
        assert!(
            said[0].starts_with("the node searches /cam0/image_raw as map camera c1, but its frames look like map camera c0's images (4 of its last 4"),
            "{said:?}"
        );
        // Its own camera, too few checks, a split, no camera id, no checks yet: nothing.
        for (id, near) in [
            ("c1", "c1 24/24"),
            ("c1", "c0 3/3"),
            ("c1", "c0 12/24"),
            ("-", "c0 24/24"),
            ("c1", "-"),
        ] {
            let s = status(id, near);
            assert!(
                super::node_crossed(&[s.as_slice()]).is_empty(),
                "{id} {near}"
            );
        }
    }

    #[test]
    fn only_the_replays_cameras_count_among_the_diagnostics() {
        // A dasgil status: its node and resolved topic (None: a node that does not say).
        let cam = |node: Option<&str>, topic: &str, received: u64| {
            let mut kv: Vec<(String, String)> = [
                ("filter", "sequence"),
                ("filter_relocalizations", "0"),
                ("filter_resets", "0"),
                ("frames_ambiguous", "1"),
                ("frames_off_map", "0"),
                ("frames_dropped", "0"),
                ("frames_rejected", "0"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            kv.push(("frames_received".into(), received.to_string()));
            if let Some(n) = node {
                kv.push(("node".into(), n.into()));
                kv.push(("image_topic".into(), topic.into()));
            }
            let short = node.map_or("dasgil_localizer", |n| n.rsplit('/').next().unwrap());
            (format!("{short}: {topic}"), kv)
        };
        let (front, rear) = (
            Some("/front/dasgil_localizer"),
            Some("/rear/dasgil_localizer"),
        );
        let statuses = vec![
            cam(front, "/front/cam0/image_raw", 10),
            cam(front, "/front/cam1/image_raw", 20),
            // A second node in another namespace, its topic relative: /rear/cam0/image_raw.
            cam(rear, "/rear/cam0/image_raw", 40),
            // An older node (no `node`, `image_topic`): its name says the topic.
            cam(None, "/cam0/image_raw", 80),
            // Another driver's status on /diagnostics.
            ("camera_driver: /front/cam0/image_raw".to_string(), vec![]),
        ];
        let names = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let received = |nodes: &[&str], topics: &[&str]| {
            let (ours, named) = statuses_for(&statuses, &names(nodes), &names(topics));
            let o = NodeOutcomes::from_diagnostics(ours.into_iter());
            (o.and_then(|o| o.received), named)
        };
        // Before the node is known: the cameras on the replay's topics, any node.
        assert_eq!(received(&[], &["/front/cam1/image_raw"]), (Some(20), false));
        let both = ["/front/cam0/image_raw", "front/cam1/image_raw"];
        assert_eq!(received(&[], &both), (Some(30), false));
        assert_eq!(received(&[], &["/rear/cam0/image_raw"]), (Some(40), false));
        assert_eq!(received(&[], &["/cam0/image_raw"]), (Some(80), false));
        // A topic that only ends like one is another topic.
        assert_eq!(received(&[], &["/cam0"]), (None, false));
        assert_eq!(received(&[], &["/x/front/cam0/image_raw"]), (None, false));
        // The node publishing the priors: its cameras on the topics, never another node's.
        let fr = ["/front/dasgil_localizer"];
        assert_eq!(received(&fr, &["/front/cam0/image_raw"]), (Some(10), true));
        // (its topics remapped away from its parameter: all of that node's cameras)
        assert_eq!(
            received(&fr, &["/rear/cam0/image_raw"]),
            (Some(10 + 20), true)
        );
        assert_eq!(received(&fr, &["/remapped/image"]), (Some(10 + 20), true));
        let re = ["/rear/dasgil_localizer"];
        assert_eq!(received(&re, &["/remapped/image"]), (Some(40), true));
        // Priors heard from a node that is no dasgil node (a GNSS driver's topic): any dasgil
        // node's cameras on the topics.
        let gnss = ["/gnss_driver"];
        assert_eq!(
            received(&gnss, &["/rear/cam0/image_raw"]),
            (Some(40), false)
        );
        assert_eq!(received(&gnss, &["/remapped/image"]), (None, false));
    }

    #[test]
    fn data_stamps_keep_the_data_time_differences_and_name_each_frame() {
        // Two cameras at 0.5 s, then a second traversal a month later (us).
        let month = 30 * 86_400_000_000i64;
        let t = [1_000_000, 1_500_000, 1_000_000 + month];
        let start = 1_700_000_000_000_000_000;
        let mut c = DataClock::new(t.into_iter(), start);
        let c0 = c.stamp(t[0], 0).unwrap();
        let c1 = c.stamp(t[0], 0).unwrap();
        assert_eq!(
            c0, start,
            "the first frame is stamped when the replay starts"
        );
        assert_eq!(c1, start + 1, "the second camera of a capture: 1 ns later");
        let half = c.stamp(t[1], 0).unwrap() - c0;
        assert_eq!(half, 500_000_000, "0.5 s as in the data");
        // The month between traversals shortened to an hour (past any filter reset).
        let hour = 3_600_000_000_000;
        let next = c.stamp(t[2], 0).unwrap();
        assert_eq!(next - c0, half + hour);
        // --duration's passes: each after the last (the span and an hour), stamps anew.
        let again = c.stamp(t[0], 1).unwrap();
        assert_eq!(again - c0, half + 2 * hour);
        assert_eq!(c.stamp(t[0], 1).unwrap(), again + 1);
        // A year of 1 s passes at 2 Hz would run past what a ROS time holds: an error, no wrap.
        let e = c.stamp(t[0], 200_000).unwrap_err().to_string();
        assert!(e.contains("runs past what a ROS time holds"), "{e}");
        assert!(super::ros_time(-1).is_err() && super::ros_time(i64::MAX).is_err());
        let r = super::ros_time(1_500_000_000_250_000_000).unwrap();
        assert_eq!((r.sec, r.nanosec), (1_500_000_000, 250_000_000));
    }
}
