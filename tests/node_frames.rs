//! The node binary as a user runs it, against a real ROS 2 peer (this test process, its own
//! node, DDS in between): given a map (built by `dasgil-tools build-map` from a generated
//! Extended CMU-Seasons slice) and two camera topics, it publishes the pose prior of good frames
//! (a map image sent as a frame is localized at its own pose, with the image's stamp, per
//! camera), survives and counts a burst of malformed frames in /diagnostics, goes back to OK
//! and keeps localizing; never publishes a stamp it was not sent; takes CompressedImage; swaps a
//! rebuilt map in through ~/reload_map and refuses one of another model.
#![cfg(feature = "ros")]

mod common;
use common::OutputWithin;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dasgil::model::checkpoint::{self, CheckpointMeta, NetworkRole};
use dasgil::model::{DiscriminatorKind, Generator, ModelConfig, WeightInit};
use futures::StreamExt;
use r2r::QosProfile;
use tch::{nn, Device};

type Image = r2r::sensor_msgs::msg::Image;
type Compressed = r2r::sensor_msgs::msg::CompressedImage;
type Prior = r2r::geometry_msgs::msg::PoseWithCovarianceStamped;
type Diag = r2r::diagnostic_msgs::msg::DiagnosticArray;
type Status = r2r::diagnostic_msgs::msg::DiagnosticStatus;
type Marker = r2r::visualization_msgs::msg::Marker;

fn stamp(sec: i32) -> r2r::builtin_interfaces::msg::Time {
    r2r::builtin_interfaces::msg::Time { sec, nanosec: 0 }
}

/// Malformed frames of every kind the node must survive.
fn malformed(i: usize) -> Image {
    let (w, h) = (320u32, 200u32);
    let mut m = Image {
        header: r2r::std_msgs::msg::Header {
            frame_id: "cam0".into(),
            stamp: stamp(50_000 + i as i32),
        },
        height: h,
        width: w,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: w * 3,
        data: vec![7; (w * h * 3) as usize],
    };
    match i % 6 {
        0 => m.data.truncate(m.data.len() - 7),
        1 => m.encoding = "yuv422_weird".into(),
        2 => (m.width, m.height, m.step, m.data) = (0, 0, 0, Vec::new()),
        3 => m.step = 10,
        // Well formed, but too small to match (preprocess::MAX_UPSCALE).
        4 => (m.width, m.height, m.step, m.data) = (17, 5, 51, vec![7; 255]),
        _ => (m.width, m.height) = (100_000, 100_000),
    }
    m
}

/// A diagnostics value as text; panics naming the key when the status has none.
fn text_value<'a>(status: &'a Status, key: &str) -> &'a str {
    status
        .values
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
        .unwrap_or_else(|| panic!("no `{key}` in {status:?}"))
}

fn value(status: &Status, key: &str) -> u64 {
    text_value(status, key).parse().unwrap()
}

/// A diagnostics value that is a number, such as a stamp in seconds or a distance in metres
/// ("-": none yet, read as -inf).
fn number_value(status: &Status, key: &str) -> f64 {
    let v = text_value(status, key);
    if v == "-" {
        return f64::NEG_INFINITY;
    }
    v.parse()
        .unwrap_or_else(|e| panic!("`{key}` = {v:?} is no number: {e}"))
}

fn run_tools(args: &[&str]) {
    common::run_tools_ok(args);
}

fn synth(slice: &Path, places: &str) {
    let s = slice.to_str().unwrap();
    run_tools(&[
        "synth",
        "cmu",
        "--out",
        s,
        "--places",
        places,
        "--width",
        "128",
        "--height",
        "96",
        "--conditions",
        "snow",
    ]);
}

fn build_map(slice: &Path, ckpt: Option<&Path>, map: &Path) {
    let mut args = vec![
        "build-map".to_string(),
        "--format".into(),
        "cmu".into(),
        "--root".into(),
        slice.display().to_string(),
        "--slice".into(),
        "2".into(),
        "--out".into(),
        map.display().to_string(),
        "--device".into(),
        "cpu".into(),
    ];
    match ckpt {
        Some(c) => args.extend(["--checkpoint".into(), c.display().to_string()]),
        None => args.extend(["--baseline".into(), "raw-pixels".into()]),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tools(&args);
}

struct Probe {
    img: image::RgbImage,
    jpeg: Vec<u8>,
    pose: dasgil::geom::Pose,
}

fn probe(slice: &Path, index: usize, camera: &str) -> Probe {
    let db = dasgil::data::cmu_seasons::CmuSlice::open(slice, 2)
        .unwrap()
        .database_images();
    let p = db.iter().filter(|p| p.camera == camera).nth(index).unwrap();
    Probe {
        img: image::open(&p.path).unwrap().to_rgb8(),
        jpeg: std::fs::read(&p.path).unwrap(),
        pose: p.world_from_cam.unwrap(),
    }
}

fn raw(p: &Probe, sec: i32, frame: &str) -> Image {
    Image {
        header: r2r::std_msgs::msg::Header {
            frame_id: frame.into(),
            stamp: stamp(sec),
        },
        height: p.img.height(),
        width: p.img.width(),
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: p.img.width() * 3,
        data: p.img.as_raw().clone(),
    }
}

fn same_position(prior: &Prior, pose: &dasgil::geom::Pose) -> bool {
    let p = &prior.pose.pose.position;
    let t = pose.translation.vector;
    (p.x - t.x).abs() < 1e-9 && (p.y - t.y).abs() < 1e-9 && (p.z - t.z).abs() < 1e-9
}

/// A running node under test, its namespace, and the test's own ROS 2 node.
struct Harness {
    child: tokio::process::Child,
    ns: String,
    node: Option<r2r::Node>,
}

impl Harness {
    fn start(tag: &str, map: &Path, extra: &[String]) -> Self {
        Self::start_with(tag, map, extra, |_| {})
    }

    /// As `start`, with the node's output (debug level) written to `log`.
    fn start_logged(tag: &str, map: &Path, extra: &[String], log: &Path) -> Self {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        Self::start_with(tag, map, extra, move |cmd| {
            cmd.env("RUST_LOG", "dasgil=debug,warn")
                .stdout(out)
                .stderr(err);
        })
    }

    fn start_with(
        tag: &str,
        map: &Path,
        extra: &[String],
        setup: impl FnOnce(&mut tokio::process::Command),
    ) -> Self {
        let ns = format!("/dasgil_node_test_{tag}_{}", std::process::id());
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"));
        cmd.args(["--ros-args", "-p"])
            .arg(format!("map:={}", map.display()))
            .args(["-p", "diagnostics_period:=0.2", "-p", "device:=cpu"])
            // These tests check single frames, so they pin `filter: none` (whatever the node's
            // default); the filter's own tests give `filter:=sequence` in `extra`, which comes
            // later and wins.
            .args(["-p", "filter:=none"])
            .args(extra)
            .args(["-r", &format!("/diagnostics:={ns}/diagnostics")])
            .args(["-r", &format!("__ns:={ns}")])
            .kill_on_drop(true);
        setup(&mut cmd);
        let child = cmd.spawn().expect("start dasgil_node");
        let ctx = r2r::Context::create().unwrap();
        let node = r2r::Node::create(ctx, &format!("test_driver_{tag}"), "").unwrap();
        Harness {
            child,
            ns,
            node: Some(node),
        }
    }

    /// Spins the test's node in a thread until the returned flag is set.
    fn spin(&mut self) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let mut node = self.node.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let h = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                node.spin_once(Duration::from_millis(5));
            }
        });
        (stop, h)
    }
}

/// Waits for a diagnostics message whose status `i` satisfies `f`.
async fn wait_diag(
    diags: &mut (impl futures::Stream<Item = Diag> + Unpin),
    i: usize,
    what: &str,
    f: impl Fn(&Status) -> bool,
) -> Status {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let msg = diags.next().await.expect("diagnostics stream");
            if let Some(s) = msg.status.get(i) {
                if f(s) {
                    return s.clone();
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("diagnostics never showed: {what}"))
}

/// Publishes `msg` once per diagnostics message until the node's first status satisfies `f`.
async fn publish_until<T: r2r::WrappedTypesupport + 'static>(
    publisher: &r2r::Publisher<T>,
    msg: T,
    diags: &mut (impl futures::Stream<Item = Diag> + Unpin),
    what: &str,
    f: impl Fn(&Status) -> bool,
) -> Status {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            publisher.publish(&msg).unwrap();
            let d = diags.next().await.expect("diagnostics stream");
            if let Some(s) = d.status.first().filter(|s| f(s)) {
                return s.clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("diagnostics never showed: {what}"))
}

/// Publishes `prior` until the node's `prior_gate` marker (the gate RViz draws) satisfies `f`.
async fn gate_marker_until(
    publisher: &r2r::Publisher<Prior>,
    prior: &Prior,
    gates: &mut (impl futures::Stream<Item = Marker> + Unpin),
    what: &str,
    f: impl Fn(&Marker) -> bool,
) -> Marker {
    use futures::FutureExt;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            publisher.publish(prior).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            while let Some(Some(m)) = gates.next().now_or_never() {
                if f(&m) {
                    return m;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("prior_gate never showed: {what}"))
}

/// A client of the node's `~/reload_map` (namespace `ns`) and what tells when the service is
/// there (it resolves while the node spins: `service_up`).
fn reload_client(
    node: &mut r2r::Node,
    ns: &str,
) -> (
    r2r::Client<r2r::std_srvs::srv::Trigger::Service>,
    impl std::future::Future<Output = r2r::Result<()>>,
) {
    let client = node
        .create_client::<r2r::std_srvs::srv::Trigger::Service>(
            &format!("{ns}/dasgil_localizer/reload_map"),
            QosProfile::default(),
        )
        .unwrap();
    let ready = r2r::Node::is_available(&client).unwrap();
    (client, ready)
}

/// Waits up to 20 s for the service of `reload_client`.
async fn service_up(ready: impl std::future::Future<Output = r2r::Result<()>>) {
    tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .expect("reload_map service")
        .unwrap();
}

/// One `~/reload_map` call, answered within 60 s (a reload of a small map takes well under 1).
async fn call_reload(
    client: &r2r::Client<r2r::std_srvs::srv::Trigger::Service>,
) -> r2r::std_srvs::srv::Trigger::Response {
    let call = client
        .request(&r2r::std_srvs::srv::Trigger::Request {})
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("no answer from ~/reload_map within 60 s")
        .unwrap()
}

/// Waits for the next prior with stamp `sec`, returning it and any priors seen before it.
async fn wait_prior(
    priors: &mut (impl futures::Stream<Item = Prior> + Unpin),
    sec: i32,
    seen: &mut Vec<Prior>,
) -> Prior {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let p = priors.next().await.expect("prior stream");
            seen.push(p.clone());
            if p.header.stamp.sec == sec {
                return p;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no prior stamped {sec}"))
}

/// Sends a first frame with `send(sec)` until its prior comes back (until the node's
/// subscription is matched, frames may go nowhere), the stamp `*sec` one second later each try.
async fn first_prior(
    priors: &mut (impl futures::Stream<Item = Prior> + Unpin),
    seen: &mut Vec<Prior>,
    sec: &mut i32,
    mut send: impl FnMut(i32),
) -> Prior {
    loop {
        send(*sec);
        if let Ok(p) =
            tokio::time::timeout(Duration::from_secs(2), wait_prior(priors, *sec, seen)).await
        {
            return p;
        }
        *sec += 1;
    }
}

/// The same untrained network in every test and every run: its weights are drawn from a seeded
/// generator under a lock (the tests of this file run in parallel and share libtorch's global
/// generator). Unseeded, one draw in about seven (2 of 15 measured) let the blind camera's noise
/// frames stand out a little from the five places (median confidence 0.06), and its test failed.
/// `dasgil-tools replay` on the cmu slice `slice` (its slice 2, camera c0 on `camera`), the
/// node's /diagnostics on `diagnostics`, 3 frames at `rate` Hz, `extra` arguments after; run
/// off the async runtime. Its output, and stdout and stderr as one text.
async fn replay_slice(
    slice: &Path,
    camera: &str,
    diagnostics: &str,
    rate: &str,
    out: &Path,
    extra: &[&str],
) -> (std::process::Output, String) {
    let mut args: Vec<String> = [
        "replay",
        "--format",
        "cmu",
        "--root",
        &slice.display().to_string(),
        "--slice",
        "2",
        "--topics",
        camera,
        "--camera-ids",
        "c0",
        "--diagnostics-topic",
        diagnostics,
        "--rate",
        rate,
        "--limit",
        "3",
        "--wait",
        "60",
        "--out",
        &out.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    let result = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_tools_in(None, &args)
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    (result, text)
}

fn test_checkpoint(dir: &Path) -> std::path::PathBuf {
    static DRAW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let cfg = ModelConfig::paper().with_input_size(256, 256).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    {
        let _one_at_a_time = DRAW.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(7);
        Generator::new(&vs.root(), cfg, WeightInit::Reference).unwrap();
    }
    let ckpt = dir.join("gen.safetensors");
    let meta = CheckpointMeta {
        network: NetworkRole::Generator,
        config: cfg,
        discriminator: Some(DiscriminatorKind::Flatten),
        epoch: None,
        step: None,
        source: None,
        descriptor_layers: None,
        metric: None,
        photometric: None,
    };
    checkpoint::save(&vs, &meta, &ckpt).unwrap();
    ckpt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cameras_bad_frame_burst_recovery_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let (slice, bigger) = (dir.path().join("cmu"), dir.path().join("cmu6"));
    let map = dir.path().join("map.safetensors");
    synth(&slice, "4");
    build_map(&slice, Some(&ckpt), &map);
    let c0 = probe(&slice, 2, "c0");
    let c1 = probe(&slice, 1, "c1");

    let mut h = Harness::start(
        "two",
        &map,
        &[
            "-p".into(),
            "image_topics:=[cam0/image_raw, cam1/image_raw]".into(),
            "-p".into(),
            "camera_ids:=[c0, c1]".into(),
        ],
    );
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam0 = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let cam1 = node
        .create_publisher::<Image>(&format!("{ns}/cam1/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let mut candidates = node
        .subscribe::<r2r::geometry_msgs::msg::PoseArray>(
            &format!("{ns}/pose_candidates"),
            QosProfile::default(),
        )
        .unwrap();
    let (reload, service_ready) = reload_client(node, &ns);
    let (stop, spinner) = h.spin();
    let mut seen = Vec::new();
    let mut sent_good: BTreeSet<i32> = BTreeSet::new();

    // Both cameras: each map image comes back at its own pose, stamp and the map frame.
    wait_diag(&mut diags, 1, "the node's diagnostics", |_| true).await;
    let mut sec = 1000;
    let p0 = first_prior(&mut priors, &mut seen, &mut sec, |sec| {
        cam0.publish(&raw(&c0, sec, "cam0")).unwrap();
        sent_good.insert(sec);
    })
    .await;
    assert_eq!(p0.header.frame_id, "map");
    assert!(same_position(&p0, &c0.pose), "{p0:?}");
    assert_eq!(p0.pose.covariance.len(), 36);
    assert!((0..6).all(|i| p0.pose.covariance[i * 7] > 0.0));
    let cands = tokio::time::timeout(Duration::from_secs(5), candidates.next())
        .await
        .expect("pose candidates")
        .unwrap();
    assert_eq!(cands.poses.len(), 4, "top_k 5, but 4 map images of c0");
    cam1.publish(&raw(&c1, 2000, "cam1")).unwrap();
    sent_good.insert(2000);
    let p1 = wait_prior(&mut priors, 2000, &mut seen).await;
    assert!(
        same_position(&p1, &c1.pose),
        "camera c1 is matched among c1's images"
    );

    // A burst of 50 malformed frames on cam0: survived, counted, WARN.
    for i in 0..50 {
        cam0.publish(&malformed(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let warn = wait_diag(&mut diags, 0, "rejected frames", |s| {
        value(s, "frames_rejected") >= 1 && s.level == 1
    })
    .await;
    assert!(warn.message.contains("rejected"), "{}", warn.message);
    // Every malformed frame was either decoded and rejected or replaced by a newer one.
    let settled = wait_diag(&mut diags, 0, "all frames accounted for", |s| {
        value(s, "frames_rejected") + value(s, "frames_replaced") + value(s, "frames_localized")
            == value(s, "frames_received")
    })
    .await;
    assert!(value(&settled, "frames_received") >= 51, "{settled:?}");
    // A well-formed frame too small to match, on its own: rejected, not localized.
    let (rejected, localized) = (
        value(&settled, "frames_rejected"),
        value(&settled, "frames_localized"),
    );
    let mut tiny = malformed(4);
    tiny.header.stamp = stamp(60_000);
    cam0.publish(&tiny).unwrap();
    let after = wait_diag(&mut diags, 0, "the tiny frame rejected", |s| {
        value(s, "frames_rejected") == rejected + 1
    })
    .await;
    assert_eq!(value(&after, "frames_localized"), localized, "{after:?}");
    // Good frames again: localized, and the status returns to OK.
    for k in 0..3 {
        cam0.publish(&raw(&c0, 3000 + k, "cam0")).unwrap();
        sent_good.insert(3000 + k);
        wait_prior(&mut priors, 3000 + k, &mut seen).await;
    }
    // The first OK may be a status published before the third good frame was counted (queued
    // in the subscription): wait for the one that counts all four localized frames.
    let ok = wait_diag(&mut diags, 0, "OK after good frames, all counted", |s| {
        s.level == 0 && value(s, "frames_localized") >= 4
    })
    .await;
    // The match quality of the camera's recent frames: its own map images, none withheld.
    assert!(value(&ok, "recent_matched_frames") >= 4, "{ok:?}");
    assert_eq!(text_value(&ok, "recent_withheld_share"), "0.000", "{ok:?}");
    assert_eq!(value(&ok, "map_entries"), 8);
    for p in &seen {
        assert!(
            sent_good.contains(&p.header.stamp.sec),
            "a prior with a stamp never sent with a good frame: {:?}",
            p.header
        );
    }

    // ~/reload_map: a map of another encoder is refused and the old one kept; a rebuilt map of
    // the same model (more places) is swapped in.
    service_up(service_ready).await;
    let other = dir.path().join("other.safetensors");
    build_map(&slice, None, &other);
    std::fs::rename(&other, &map).unwrap();
    let r = call_reload(&reload).await;
    assert!(!r.success, "{}", r.message);
    assert!(r.message.contains("kept the old map"), "{}", r.message);
    synth(&bigger, "6");
    let rebuilt = dir.path().join("rebuilt.safetensors");
    build_map(&bigger, Some(&ckpt), &rebuilt);
    std::fs::rename(&rebuilt, &map).unwrap();
    let r = call_reload(&reload).await;
    assert!(r.success, "{}", r.message);
    // The test checkpoint records no metric: an l1 map, which centring: auto leaves as encoded.
    assert!(
        r.message.contains("12 entries; centring none"),
        "{}",
        r.message
    );
    wait_diag(&mut diags, 0, "the reloaded map's size", |s| {
        value(s, "map_entries") == 12
    })
    .await;
    // The map file overwritten in place while the node runs (`cp`, an editor: same inode, cut
    // to a few bytes): the node keeps the map it loaded and goes on localizing.
    std::fs::write(&map, b"not a map any more").unwrap();
    cam0.publish(&raw(&c0, 4000, "cam0")).unwrap();
    sent_good.insert(4000);
    wait_prior(&mut priors, 4000, &mut seen).await;
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "dasgil_node exited after the map changed"
    );
    cam0.publish(&raw(&c0, 4001, "cam0")).unwrap();
    sent_good.insert(4001);
    wait_prior(&mut priors, 4001, &mut seen).await;

    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    // SIGTERM: a clean exit, within 2 s.
    let pid = h.child.id().unwrap() as i32;
    let t = std::time::Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(5), h.child.wait())
        .await
        .expect("the node did not stop within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A node named `name` on a 4-place slice's map (the test checkpoint) taking camera c0 as
/// compressed frames on cam0/image_raw/compressed, with one more parameter `extra`: the temporary
/// folder (keep it), the harness, c0's probe and the camera's publisher.
fn compressed_camera_node(
    name: &str,
    extra: &str,
) -> (
    tempfile::TempDir,
    Harness,
    Probe,
    r2r::Publisher<Compressed>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let slice = dir.path().join("cmu");
    let map = dir.path().join("map.safetensors");
    synth(&slice, "4");
    build_map(&slice, Some(&ckpt), &map);
    let c0 = probe(&slice, 3, "c0");
    // The node's log beside the map (node.log).
    let log = dir.path().join("node.log");
    let mut h = Harness::start_logged(
        name,
        &map,
        &[
            "-p".into(),
            "transport:=compressed".into(),
            "-p".into(),
            "image_topics:=[cam0/image_raw/compressed]".into(),
            "-p".into(),
            "camera_ids:=[c0]".into(),
            "-p".into(),
            extra.into(),
        ],
        &log,
    );
    let ns = h.ns.clone();
    let cam = h
        .node
        .as_mut()
        .unwrap()
        .create_publisher::<Compressed>(
            &format!("{ns}/cam0/image_raw/compressed"),
            QosProfile::sensor_data(),
        )
        .unwrap();
    (dir, h, c0, cam)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_frames_are_localized_and_corrupt_ones_rejected() {
    let (_dir, mut h, c0, cam) = compressed_camera_node("jpeg", "frame_timeout:=2.0");
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    let msg = |sec: i32, data: Vec<u8>| Compressed {
        header: r2r::std_msgs::msg::Header {
            frame_id: "cam0".into(),
            stamp: stamp(sec),
        },
        format: "jpeg".into(),
        data,
    };
    // Nothing published yet: after frame_timeout (2 s) the camera's status warns, with causes.
    let s = wait_diag(&mut diags, 0, "a WARN for a camera without frames", |s| {
        s.level == 1 && s.message.contains("no frame in")
    })
    .await;
    assert!(
        s.message.contains("since the node started") && s.message.contains("transport: compressed"),
        "{}",
        s.message
    );
    let mut seen = Vec::new();
    let mut sec = 100;
    let p = first_prior(&mut priors, &mut seen, &mut sec, |sec| {
        cam.publish(&msg(sec, c0.jpeg.clone())).unwrap()
    })
    .await;
    assert!(same_position(&p, &c0.pose), "{p:?}");
    // A JPEG start-of-image marker followed by garbage.
    let mut corrupt = c0.jpeg[..4].to_vec();
    corrupt.extend((0..5000u32).map(|i| (i * 7919 % 251) as u8));
    cam.publish(&msg(900, corrupt)).unwrap();
    let s = wait_diag(&mut diags, 0, "a rejected JPEG", |s| {
        value(s, "frames_rejected") == 1
    })
    .await;
    assert!(s.message.contains("compressed frame"), "{}", s.message);
    // A single-channel frame for a map of colour images: refused, not localized as grey.
    let grey =
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(c0.img.clone()).to_luma8());
    let mut png = std::io::Cursor::new(Vec::new());
    grey.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mut mono = msg(901, png.into_inner());
    mono.format = "mono8; png compressed ".into();
    cam.publish(&mono).unwrap();
    let s = wait_diag(&mut diags, 0, "a rejected mono8 frame", |s| {
        value(s, "frames_rejected") == 2
    })
    .await;
    assert!(
        s.message
            .contains("single-channel frame for a map of colour images"),
        "{}",
        s.message
    );
    // The camera falls silent: a WARN again after frame_timeout, saying how many came before.
    let s = wait_diag(&mut diags, 0, "a WARN for a camera that stopped", |s| {
        s.level == 1 && s.message.contains("no frame for")
    })
    .await;
    assert!(s.message.contains("received"), "{}", s.message);
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    assert!(seen
        .iter()
        .all(|p| p.header.stamp.sec != 900 && p.header.stamp.sec != 901));
}

/// Runs the node with `args` until it exits (it must: every case is a start-up error).
/// An operator sees a camera that has stopped matching: with `min_confidence` 1 every frame that
/// is not exactly a map image (here one mirrored) is withheld as ambiguous, and after 10 such
/// frames /diagnostics WARNs and reports the withheld share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_whose_frames_are_all_withheld_warns_on_diagnostics() {
    let (_dir, mut h, c0, cam) = compressed_camera_node("quality", "min_confidence:=1.0");
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    // The map image mirrored (a map image's own JPEG would match itself exactly: confidence 1).
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::imageops::flip_horizontal(&c0.img))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    let (stop, spinner) = h.spin();
    wait_diag(&mut diags, 0, "the node's diagnostics", |_| true).await;
    let warned = tokio::time::timeout(Duration::from_secs(60), async {
        let mut sec = 100;
        loop {
            cam.publish(&Compressed {
                header: r2r::std_msgs::msg::Header {
                    frame_id: "cam0".into(),
                    stamp: stamp(sec),
                },
                format: "jpeg".into(),
                data: jpeg.clone(),
            })
            .unwrap();
            sec += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Some(d) = diags.next().await {
                if let Some(s) = d.status.first() {
                    if s.level == 1 && s.message.contains("stopped matching the map") {
                        return s.clone();
                    }
                }
            }
        }
    })
    .await
    .expect("no WARN `stopped matching the map` within 60 s");
    assert!(value(&warned, "frames_ambiguous") >= 10, "{warned:?}");
    assert_eq!(value(&warned, "frames_localized"), 0, "{warned:?}");
    assert_eq!(
        text_value(&warned, "recent_withheld_share"),
        "1.000",
        "{warned:?}"
    );
    assert!(
        warned.message.contains("min_confidence 1"),
        "{}",
        warned.message
    );
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    // The node's log says it too, once for the state (not at every /diagnostics message).
    let said = std::fs::read_to_string(_dir.path().join("node.log")).unwrap();
    let line = "cam0/image_raw/compressed: stopped matching the map";
    assert_eq!(said.matches(line).count(), 1, "{said}");
    assert!(!said.contains("no longer stopped matching"), "{said}");
}

/// A camera whose camera_info gives another lens than the map's images were taken through
/// (the map: a pinhole slice; the camera: Extended CMU-Seasons' barrel lens) is a WARN on
/// /diagnostics, with `lens` saying how far apart; the same camera calibrated as a pinhole is
/// as the map's, and an uncalibrated camera_info is named unusable. No frame is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_through_another_lens_than_the_map_s_warns_on_diagnostics() {
    let (_dir, mut h, c0, _cam) = compressed_camera_node("lens", "frame_timeout:=0.0");
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let info_pub = node
        .create_publisher::<r2r::sensor_msgs::msg::CameraInfo>(
            &format!("{ns}/cam0/camera_info"),
            QosProfile::default(),
        )
        .unwrap();
    let (w, h_px) = c0.img.dimensions();
    let info = |model: &str, d: Vec<f64>, f: f64| r2r::sensor_msgs::msg::CameraInfo {
        width: w,
        height: h_px,
        distortion_model: model.into(),
        d,
        k: vec![
            f,
            0.0,
            w as f64 / 2.0,
            0.0,
            f,
            h_px as f64 / 2.0,
            0.0,
            0.0,
            1.0,
        ],
        p: vec![
            f,
            0.0,
            w as f64 / 2.0,
            0.0,
            0.0,
            f,
            h_px as f64 / 2.0,
            0.0,
            0.0,
            0.0,
            1.0,
            0.0,
        ],
        ..Default::default()
    };
    let (stop, spinner) = h.spin();
    // Before any camera_info: nothing known, nothing to warn about.
    let s = wait_diag(&mut diags, 0, "the node's diagnostics", |_| true).await;
    assert_eq!((s.level, text_value(&s, "lens")), (0, "-"), "{s:?}");
    let cmu = vec![-0.399431, 0.188924, 0.000153, 0.000571, 0.0];
    let warned = publish_until(
        &info_pub,
        info("plumb_bob", cmu, 100.0),
        &mut diags,
        "a WARN for another lens",
        |s| s.level == 1 && text_value(s, "lens").starts_with("another than the map's"),
    )
    .await;
    assert!(
        warned.message.starts_with("frames taken through a distorting lens (k1 -0.399, k2 0.189), map images through c0: a pinhole (no distortion): one puts rays up to 21.7% further out than the other."),
        "{warned:?}"
    );
    assert_eq!(
        text_value(&warned, "lens"),
        "another than the map's (rays up to 21.7% further out)"
    );
    // A fisheye (OpenCV's equidistant model, as ROS names it) is compared by its own model.
    let fisheye = publish_until(
        &info_pub,
        info("equidistant", vec![-0.007, 0.043, -0.041, 0.008], 100.0),
        &mut diags,
        "a WARN for a fisheye",
        |s| s.level == 1 && s.message.contains("fisheye"),
    )
    .await;
    assert!(
        fisheye.message.starts_with("frames taken through a fisheye lens (equidistant: k1 -0.007, k2 0.043, k3 -0.041, k4 0.008), map images through c0: a pinhole (no distortion)"),
        "{fisheye:?}"
    );
    let s = publish_until(
        &info_pub,
        info("plumb_bob", vec![0.0; 5], 100.0),
        &mut diags,
        "the map's lens",
        |s| text_value(s, "lens") == "as the map's",
    )
    .await;
    assert_eq!(s.level, 0, "{s:?}");
    let s = publish_until(
        &info_pub,
        info("plumb_bob", vec![0.0; 5], 0.0),
        &mut diags,
        "an unusable camera_info",
        |s| text_value(s, "lens").starts_with("cannot compare: K gives fx 0"),
    )
    .await;
    assert_eq!(s.level, 0, "{s:?}");
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
}

fn node_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output_within(Duration::from_secs(120))
        .expect("run dasgil_node");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn bad_parameters_stop_the_node_with_the_file_line_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let e = node_error(&["--ros-args", "--params-file", "/nonexistent/params.yaml"]);
    assert!(
        e.contains("--params-file /nonexistent/params.yaml: cannot read it"),
        "{e}"
    );
    let bad = p(
        "bad.yaml",
        "dasgil_localizer:\n  ros__parameters:\n    top_k: [1\n",
    );
    let e = node_error(&["--ros-args", "--params-file", &bad]);
    assert!(
        e.contains(&format!("--params-file {bad}:")) && e.contains("not valid YAML"),
        "{e}"
    );
    let empty = p(
        "empty.yaml",
        "dasgil_localizer:\n  ros__parameters:\n    map: /x.safetensors\n    image_topics: []\n",
    );
    let e = node_error(&["--ros-args", "--params-file", &empty]);
    assert!(
        e.contains("parameter `image_topics`: expected at least one"),
        "{e}"
    );
    let e = node_error(&["--ros-args", "-p", "map:=/x.safetensors", "-p", "top_k:=0"]);
    assert!(
        e.contains("parameter `top_k`: expected 1 to 1000, found 0"),
        "{e}"
    );
    // A misspelt name in a params file: warned once, with the file and the likely name.
    let typo = p(
        "typo.yaml",
        "dasgil_localizer:\n  ros__parameters:\n    map: /nonexistent.safetensors\n    min_confidance: 0.2\n",
    );
    let e = node_error(&["--ros-args", "--params-file", &typo]);
    assert!(
        e.contains(&format!(
            "--params-file {typo}: unknown parameter `min_confidance` (did you mean \
             `min_confidence`?); it is ignored"
        )),
        "{e}"
    );
    assert_eq!(e.matches("min_confidance").count(), 1, "warned once: {e}");
    let e = node_error(&[
        "--ros-args",
        "-p",
        "map:=/x.safetensors",
        "-p",
        "image_topics:=[a, b]",
        "-p",
        "camera_ids:=[c0]",
    ]);
    assert!(e.contains("expected lists of the same length"), "{e}");
    // Absurd values and wrong types: the parameter, the expected and the found value.
    for (arg, want) in [
        ("top_k:=-3", "parameter `top_k`: expected 1 to 1000, found -3"),
        ("diagnostics_period:=1e20", "parameter `diagnostics_period`: expected seconds from 0.01 to 3600, found 100000000000000000000"),
        ("transport:=h264", "parameter `transport`: expected `raw` or `compressed`, found `h264`"),
        ("min_confidence:=2", "parameter `min_confidence`: expected 0 to 1, found 2"),
        ("max_rate:=-1.0", "parameter `max_rate`: expected 0 (no limit) to 1000 Hz, found -1"),
        ("gate_radius:=0", "parameter `gate_radius`: expected metres > 0"),
        ("gate_sigmas:=-1.0", "parameter `gate_sigmas`: expected standard deviations from 0 (gate_radius alone) to 100, found -1"),
        ("base_from_camera:=[1 2 3]", "parameter `base_from_camera` entry 0"),
        ("top_k:=many", "parameter `top_k`"),
        ("frame_timeout:=-1.0", "parameter `frame_timeout`: expected 0 (never) to 86400 seconds, found -1"),
        ("frame_timeout:=1e9", "parameter `frame_timeout`: expected 0 (never) to 86400 seconds, found 1000000000"),
        ("prior_timeout:=-0.5", "parameter `prior_timeout`: expected 0 (never expires) to 86400 seconds, found -0.5"),
        ("prior_timeout:=.nan", "parameter `prior_timeout`"),
        ("image_topics:=5", "parameter `image_topics`"),
    ] {
        let e = node_error(&["--ros-args", "-p", "map:=/x.safetensors", "-p", arg]);
        assert!(e.contains(want), "{arg}: {e}");
    }
    // An integer for a double is accepted; a misspelt name is warned about; the map is checked.
    let e = node_error(&[
        "--ros-args",
        "-p",
        "map:=/nonexistent.safetensors",
        "-p",
        "diagnostics_period:=1",
        "-p",
        "topk:=3",
    ]);
    assert!(!e.contains("parameter `diagnostics_period`"), "{e}");
    assert!(
        e.contains("unknown parameter `topk` (did you mean `top_k`?); it is ignored"),
        "{e}"
    );
    assert_eq!(
        e.matches("unknown parameter").count(),
        1,
        "warned once: {e}"
    );
    assert!(
        e.contains("parameter `map` = /nonexistent.safetensors"),
        "{e}"
    );
}

/// A RobotCar map (built from demosaiced GBRG mosaics): every database image, sent raw as the
/// camera gives it (a `bayer_gbrg8` Image, then a `bayer_gbrg8; png compressed mono8`
/// CompressedImage), is localized at its own pose; frames that cannot be a camera image of the
/// map's kind (depth and generic matrix types, planar YUV, unknown names) are each refused,
/// counted in /diagnostics with their encoding named, and publish nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bayer_frames_localize_to_themselves_and_non_camera_encodings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let trav = common::synth_robotcar(dir.path(), 5);
    let map = dir.path().join("rc.map.safetensors");
    common::run_tools_ok(&common::robotcar_map_args(&trav, &ckpt, &map));
    let images = dasgil::data::robotcar::Traversal::open(&trav, "stereo/centre")
        .unwrap()
        .images;
    for transport in ["raw", "compressed"] {
        let mut h = Harness::start(
            &format!("bayer_{transport}"),
            &map,
            &[
                "-p".into(),
                format!("transport:={transport}"),
                "-p".into(),
                "image_topics:=[cam/image_raw]".into(),
                "-p".into(),
                "camera_ids:=[stereo/centre]".into(),
            ],
        );
        let ns = h.ns.clone();
        let node = h.node.as_mut().unwrap();
        let topic = format!("{ns}/cam/image_raw");
        // One message type per topic: the publisher of this transport only.
        let raw_pub = (transport == "raw").then(|| {
            node.create_publisher::<Image>(&topic, QosProfile::sensor_data())
                .unwrap()
        });
        let comp_pub = (transport == "compressed").then(|| {
            node.create_publisher::<Compressed>(&topic, QosProfile::sensor_data())
                .unwrap()
        });
        let mut diags = node
            .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
            .unwrap();
        let mut priors = node
            .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
            .unwrap();
        let (stop, spinner) = h.spin();
        let header = |sec: i32| r2r::std_msgs::msg::Header {
            frame_id: "stereo_centre".into(),
            stamp: stamp(sec),
        };
        let send = |sec: i32, p: &dasgil::data::PosedImage| {
            let mosaic = image::open(&p.path).unwrap().to_luma8();
            if let Some(raw_pub) = &raw_pub {
                raw_pub
                    .publish(&Image {
                        header: header(sec),
                        height: mosaic.height(),
                        width: mosaic.width(),
                        encoding: "bayer_gbrg8".into(),
                        is_bigendian: 0,
                        step: mosaic.width(),
                        data: mosaic.into_raw(),
                    })
                    .unwrap();
            } else if let Some(comp_pub) = &comp_pub {
                comp_pub
                    .publish(&Compressed {
                        header: header(sec),
                        format: "bayer_gbrg8; png compressed mono8".into(),
                        data: std::fs::read(&p.path).unwrap(),
                    })
                    .unwrap();
            }
        };
        wait_diag(&mut diags, 0, "the node's diagnostics", |_| true).await;
        let mut seen = Vec::new();
        // The first frame is resent until the subscription is matched.
        let p = first_prior(&mut priors, &mut seen, &mut 10, |sec| send(sec, &images[0])).await;
        assert!(
            same_position(&p, &images[0].world_from_cam.unwrap()),
            "{p:?}"
        );
        for (k, p) in images.iter().enumerate().skip(1) {
            let sec = 100 + k as i32;
            send(sec, p);
            let prior = wait_prior(&mut priors, sec, &mut seen).await;
            assert!(
                same_position(&prior, &p.world_from_cam.unwrap()),
                "{transport}: image {k} was not localized at its own pose: {prior:?}"
            );
        }
        // Refused encodings: one at a time, each counted and named.
        type SendBad = Box<dyn Fn(i32)>;
        let refused: Vec<(String, SendBad)> = if transport == "raw" {
            ["16UC1", "32FC1", "8UC1", "8UC3", "nv21", "bayer_xyzw8"]
                .into_iter()
                .map(|enc| {
                    let pb = raw_pub.clone().unwrap();
                    let f: SendBad = Box::new(move |sec| {
                        let bpp = match enc {
                            "32FC1" => 4,
                            "16UC1" => 2,
                            "8UC3" => 3,
                            _ => 1,
                        };
                        pb.publish(&Image {
                            header: r2r::std_msgs::msg::Header {
                                frame_id: "stereo_centre".into(),
                                stamp: stamp(sec),
                            },
                            height: 96,
                            width: 128,
                            encoding: enc.into(),
                            is_bigendian: 0,
                            step: 128 * bpp,
                            data: vec![9; (128 * 96 * bpp) as usize],
                        })
                        .unwrap()
                    });
                    (enc.to_string(), f)
                })
                .collect()
        } else {
            let png = std::fs::read(&images[0].path).unwrap();
            [
                "16UC1; compressedDepth png",
                "32FC1; png compressed ",
                "rgb8; h264",
            ]
            .into_iter()
            .map(|format| {
                let (pb, png) = (comp_pub.clone().unwrap(), png.clone());
                let f: SendBad = Box::new(move |sec| {
                    pb.publish(&Compressed {
                        header: r2r::std_msgs::msg::Header {
                            frame_id: "stereo_centre".into(),
                            stamp: stamp(sec),
                        },
                        format: format.into(),
                        data: png.clone(),
                    })
                    .unwrap()
                });
                (format.split(';').next().unwrap().to_string(), f)
            })
            .collect()
        };
        for (k, (name, send_bad)) in refused.iter().enumerate() {
            send_bad(900 + k as i32);
            let rejected = k as u64 + 1;
            let s = wait_diag(
                &mut diags,
                0,
                &format!("`{name}` counted as rejected"),
                |s| value(s, "frames_rejected") == rejected,
            )
            .await;
            assert_eq!(s.level, 1, "{s:?}");
            assert!(
                s.message.contains(&format!("`{name}")),
                "{name}: {}",
                s.message
            );
        }
        // A good frame after them is still localized; none of the refused stamps came back.
        send(2000, &images[1]);
        wait_prior(&mut priors, 2000, &mut seen).await;
        assert!(
            seen.iter()
                .all(|p| p.header.stamp.sec < 900 || p.header.stamp.sec >= 1000),
            "a refused frame published a prior"
        );
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    }
}

/// Ctrl-C while the node is still loading its map and model (a large map takes a while): the
/// node stops at once with exit status 0 and says so, as it does once running (the signal was
/// swallowed before: the node went on to start up and run).
#[test]
fn node_stops_on_ctrl_c_while_loading_its_map() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let (slice, map) = (dir.path().join("cmu"), dir.path().join("map.safetensors"));
    synth(&slice, "2");
    build_map(&slice, Some(&ckpt), &map);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"))
        .args(["--ros-args", "-p"])
        .arg(format!("map:={}", map.display()))
        .args(["-p", "device:=cpu", "-r"])
        .arg(format!(
            "__ns:=/dasgil_node_test_ctrlc_{}",
            std::process::id()
        ))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no `loading the map` line within 30 s: {log:#?}"));
        let loading = line.contains("loading the map");
        log.push(line);
        if loading {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let sent = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the node did not stop within 10 s of Ctrl-C during loading: {log:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    log.extend(rx.iter());
    let log = log.join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("shutting down: interrupted while loading"),
        "the node finished loading before the signal or did not say why it stopped: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// A five-place slice under `dir` and its map with the test checkpoint: (slice, map).
fn five_places(dir: &Path) -> (PathBuf, PathBuf) {
    let ckpt = test_checkpoint(dir);
    let (slice, map) = (dir.join("cmu"), dir.join("map.safetensors"));
    synth(&slice, "5");
    build_map(&slice, Some(&ckpt), &map);
    (slice, map)
}

/// A map built from a recording knows each camera's optical frame: a node whose `camera_ids`
/// are in another order than build-map's `--camera-id` (c0's frames searched among c1's map
/// images) says so in its log, once, naming both cameras; the camera in its own frame does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_whose_frames_are_another_cameras_in_the_map_is_said_to_be_crossed() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, bag, map) = (
        dir.path().join("cmu"),
        dir.path().join("drive"),
        dir.path().join("map.safetensors"),
    );
    synth(&slice, "4");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    common::python_tool(
        "world_to_bag.py",
        &[
            "--root",
            &path(&slice),
            "--slice",
            "2",
            "--out",
            &path(&bag),
        ],
    );
    run_tools(&[
        "build-map",
        "--bag",
        &path(&bag),
        "--image-topic",
        "/c0/image_raw",
        "--image-topic",
        "/c1/image_raw",
        "--camera-id",
        "c0",
        "--camera-id",
        "c1",
        "--baseline",
        "raw-pixels",
        "--device",
        "cpu",
        "--out",
        &path(&map),
    ]);
    let args: Vec<String> = [
        "-p",
        "image_topics:=[cam0/image_raw,cam1/image_raw]",
        "-p",
        "camera_ids:=[c1,c0]",
    ]
    .map(String::from)
    .to_vec();
    let log = dir.path().join("node.log");
    let mut h = Harness::start_logged("crossed", &map, &args, &log);
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam0 = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    let frame = probe(&slice, 1, "c0");
    let want = "cam0/image_raw: camera `c1`'s frames are in `c0_optical_frame`, the frame of the \
                map's camera `c0` (the map's `c1` is in `c1_optical_frame`)";
    let mut sec = 100;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        sec += 1;
        cam0.publish(&raw(&frame, sec, "c0_optical_frame")).unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), priors.next()).await;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains(want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning for the crossed camera in 60 s:\n{said}"
        );
    }
    // More frames of the same camera and frame: said once.
    for _ in 0..3 {
        sec += 1;
        cam0.publish(&raw(&frame, sec, "c0_optical_frame")).unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), priors.next()).await;
    }
    // The frames' own look says it too, for any map (not only a recording's, whose frames
    // name their camera): frames are also searched among every camera's images (each of the
    // first 24, then every 5th), and once 24 checks are in, c0's images are nearest all. Frames of the map's other
    // places, each a few times; its own look, not the frame_id, decides.
    let want_look = "cam0/image_raw: its frames look like map camera c0's images, not c1's";
    let frames: Vec<Probe> = (0..4).map(|k| probe(&slice, k, "c0")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut k = 0;
    loop {
        sec += 1;
        k += 1;
        cam0.publish(&raw(&frames[k % frames.len()], sec, "cam0"))
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), priors.next()).await;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains(want_look) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning for the crossed camera's look in 120 s ({k} frames):\n{said}"
        );
    }
    // Not before the window is full: 24 checks, every frame of the camera's first 24 (some of
    // them the frames above), then every 5th.
    assert!(k >= 24 - 10, "warned after {k} frames");
    // (The stream keeps older messages, of fewer checks: the full window's is waited for.)
    // /diagnostics says it as the camera's message (not "stopped matching the map", which its
    // withheld frames would otherwise bring).
    wait_diag(
        &mut diags,
        0,
        "map_camera_nearest c0 24/24 for cam0, WARN naming the crossing",
        |s| {
            text_value(s, "map_camera_nearest") == "c0 24/24"
                && s.level == 1
                && s.message.starts_with(
                    "its frames look like map camera c0's images, not c1's (24 of the last 24",
                )
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(said.matches(want).count(), 1, "{said}");
    assert_eq!(said.matches(want_look).count(), 1, "{said}");
    assert!(
        said.contains("/c0/image_raw as c0, /c1/image_raw as c1"),
        "{said}"
    );
}

/// `filter: sequence` through the node: a drive past the map's own images (one a second,
/// camera c0), each localized at its own pose by the filter's chosen place, with a covariance
/// no tighter than the single frame's; then on past the map's end (its last image again and
/// again, as the road beyond an end looks like the map's last stretch), where /diagnostics
/// WARNs `past the map's end` with how far the vehicle may have driven on
/// (`filter_beyond_end_m`) and the prior's ellipsoid has widened by that; a bad `filter` value
/// stops the node naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_filter_through_the_node_follows_a_drive() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = five_places(dir.path());
    let args = |filter: &str| -> Vec<String> {
        [
            "-p",
            "image_topics:=[cam0/image_raw]",
            "-p",
            "camera_ids:=[c0]",
            "-p",
            &format!("filter:={filter}"),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut h = Harness::start("sequence", &map, &args("sequence"));
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let (reload, service_ready) = reload_client(node, &ns);
    let (stop, spinner) = h.spin();
    let mut seen = Vec::new();
    let first = probe(&slice, 0, "c0");
    let mut sec = 100;
    let p = first_prior(&mut priors, &mut seen, &mut sec, |sec| {
        cam.publish(&raw(&first, sec, "cam0")).unwrap()
    })
    .await;
    assert!(same_position(&p, &first.pose), "{p:?}");
    for place in 1..5 {
        let frame = probe(&slice, place, "c0");
        sec += 1;
        cam.publish(&raw(&frame, sec, "cam0")).unwrap();
        let p = wait_prior(&mut priors, sec, &mut seen).await;
        assert!(
            same_position(&p, &frame.pose),
            "place {place}: prior at {:?}, image at {:?}",
            p.pose.pose.position,
            frame.pose.translation.vector
        );
        assert!((0..6).all(|i| p.pose.covariance[i * 7] > 0.0), "{p:?}");
    }
    // Past the end: no warning yet, then the last place's image for 6 more seconds.
    let beyond_end = |s: &Status| number_value(s, "filter_beyond_end_m");
    // The messages queued during the drive are dropped: the next ones come after the frame at
    // the end.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), diags.next()).await {}
    let at_end = wait_diag(&mut diags, 0, "filter_beyond_end_m at the end", |s| {
        beyond_end(s).is_finite()
    })
    .await;
    assert!(!at_end.message.contains("past the map's end"), "{at_end:?}");
    assert!(beyond_end(&at_end) <= 10.0, "{at_end:?}");
    let end = probe(&slice, 4, "c0");
    let mut last = None;
    for _ in 0..6 {
        sec += 1;
        cam.publish(&raw(&end, sec, "cam0")).unwrap();
        last = Some(wait_prior(&mut priors, sec, &mut seen).await);
    }
    let last = last.unwrap();
    assert!(same_position(&last, &end.pose), "{last:?}");
    let d = wait_diag(&mut diags, 0, "a WARN past the map's end", |s| {
        s.message.contains("past the map's end")
    })
    .await;
    assert_eq!(d.level, 1, "{d:?}");
    let b = beyond_end(&d);
    assert!(b > 10.0, "{d:?}");
    // The message gives the same distance, in whole metres.
    let said: f64 = d
        .message
        .split("up to ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `up to N m` in {d:?}"));
    assert!((said - b).abs() <= 1.0, "{d:?}");
    // The position block's trace holds the ground disc's two axes: at least 2 b^2 / 7.81.
    let c = &last.pose.covariance;
    let trace = c[0] + c[7] + c[14];
    assert!(
        trace >= 2.0 * b * b / 7.81,
        "trace {trace} m^2, {b} m past the end"
    );
    // /diagnostics reports the filter's counts: a drive at one frame a second, no reset.
    let d = wait_diag(&mut diags, 0, "the filter's counts", |s| {
        s.values
            .iter()
            .any(|kv| kv.key == "filter_resets" && kv.value != "-")
    })
    .await;
    assert_eq!(value(&d, "filter_resets"), 0, "{d:?}");
    assert!(value(&d, "filter_relocalizations") <= 1, "{d:?}");
    // A reloaded map (the remedy the WARN names) starts the filter again: nothing past an end,
    // no WARN, until a frame on the new map says otherwise.
    service_up(service_ready).await;
    let r = call_reload(&reload).await;
    assert!(r.success, "{}", r.message);
    let after = wait_diag(&mut diags, 0, "no WARN past the end after a reload", |s| {
        !s.message.contains("past the map's end")
    })
    .await;
    assert!(
        after
            .values
            .iter()
            .any(|kv| kv.key == "filter_beyond_end_m" && kv.value == "-"),
        "{after:?}"
    );
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    let e = node_error(&[
        "--ros-args",
        "-p",
        "map:=/x.safetensors",
        "-p",
        "filter:=hmm",
    ]);
    assert!(
        e.contains("parameter `filter`: expected none or sequence, found `hmm`"),
        "{e}"
    );
}

/// Centring through the node at its default (`auto`, with `metric: cosine`: running, as its
/// start-up line says): a drive past the map's own images, twice, each frame localized at its
/// image's pose; on a map searched with L1 (the test checkpoint's, which records no metric)
/// `centring: running` stops the node naming the map and the fix; a bad value stops it naming
/// the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centring_through_the_node_localizes_a_drive() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = five_places(dir.path());
    let args: Vec<String> = [
        "-p",
        "image_topics:=[cam0/image_raw]",
        "-p",
        "camera_ids:=[c0]",
        "-p",
        "filter:=none",
        "-p",
        "metric:=cosine",
    ]
    .map(String::from)
    .to_vec();
    let log = dir.path().join("node.log");
    let mut h = Harness::start_logged("centring", &map, &args, &log);
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    let mut seen = Vec::new();
    let first = probe(&slice, 0, "c0");
    let mut sec = 100;
    let p = first_prior(&mut priors, &mut seen, &mut sec, |sec| {
        cam.publish(&raw(&first, sec, "cam0")).unwrap()
    })
    .await;
    assert!(same_position(&p, &first.pose), "{p:?}");
    for lap in 0..2 {
        for place in 1..5 {
            let frame = probe(&slice, place, "c0");
            sec += 1;
            cam.publish(&raw(&frame, sec, "cam0")).unwrap();
            let p = wait_prior(&mut priors, sec, &mut seen).await;
            assert!(
                same_position(&p, &frame.pose),
                "lap {lap}, place {place}: prior at {:?}, image at {:?}",
                p.pose.pose.position,
                frame.pose.translation.vector
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("centring: auto: map") && said.contains("centred by the mean of its"),
        "{said}"
    );
    let map_arg = format!("map:={}", map.display());
    let e = node_error(&["--ros-args", "-p", &map_arg, "-p", "centring:=running"]);
    assert!(
        e.contains(
            "cannot centre its descriptors (centring: running): it is searched with the l1 metric"
        ) && e.contains("`metric: cosine`"),
        "{e}"
    );
    let e = node_error(&[
        "--ros-args",
        "-p",
        "map:=/x.safetensors",
        "-p",
        "centring:=mean",
    ]);
    assert!(
        e.contains("parameter `centring`: expected auto, running or none, found `mean`"),
        "{e}"
    );
}

/// Under `filter: sequence` the match-quality alarm reads each frame's own single-frame
/// confidence, not the posterior: camera c0 drives past the map's images and keeps the belief
/// (and so the posterior mass of every frame) up, while camera c1 sees noise. c1's frames are
/// published (the posterior says where the vehicle is), yet /diagnostics WARNs that c1 has
/// stopped matching the map, and not c0; its `filter_camera_weight` says the filter no longer
/// listens to c1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_camera_warns_under_the_sequence_filter_while_another_keeps_the_belief() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = five_places(dir.path());
    let args: Vec<String> = [
        "-p",
        "image_topics:=[cam0/image_raw,cam1/image_raw]",
        "-p",
        "camera_ids:=[c0,c1]",
        "-p",
        "filter:=sequence",
    ]
    .map(String::from)
    .to_vec();
    let mut h = Harness::start("blindcam", &map, &args);
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let pub_of = |node: &mut r2r::Node, t: &str| {
        node.create_publisher::<Image>(&format!("{ns}/{t}"), QosProfile::sensor_data())
            .unwrap()
    };
    let (cam0, cam1) = (
        pub_of(node, "cam0/image_raw"),
        pub_of(node, "cam1/image_raw"),
    );
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let places: Vec<Probe> = (0..5).map(|i| probe(&slice, i, "c0")).collect();
    // Noise the size of a map image (seeded): matches no place better than the others.
    let mut noise = places[0].img.clone();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for p in noise.pixels_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *p = image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8]);
    }
    let blind = Probe {
        img: noise,
        jpeg: Vec::new(),
        pose: places[0].pose,
    };
    let (stop, spinner) = h.spin();
    wait_diag(&mut diags, 0, "the node's diagnostics", |_| true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut last = None;
    let mut sec = 100;
    let (c0, c1) = 'drive: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WARN `stopped matching the map` for the blind camera within 90 s; the last \
             statuses (c0, c1): {last:#?}"
        );
        // Driving up and down the five places, one a second; c1 half a second later.
        let k = (sec as usize / 2) % 8;
        let place = if k < 5 { k } else { 8 - k };
        cam0.publish(&raw(&places[place], sec, "cam0")).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        cam1.publish(&raw(&blind, sec + 1, "cam1")).unwrap();
        sec += 2;
        tokio::time::sleep(Duration::from_millis(150)).await;
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(10), diags.next()).await
        {
            if let [c0, c1, ..] = &d.status[..] {
                if c1.level == 1 && c1.message.contains("stopped matching the map") {
                    break 'drive (c0.clone(), c1.clone());
                }
                last = Some((c0.clone(), c1.clone()));
            }
        }
    };
    // c1's frames were published, not withheld (but perhaps its first, before c0's frames
    // settled the belief: a frame that stands out from no place counts towards the vehicle
    // being off the map): the alarm came from their own confidence, and c0 keeps the vehicle
    // on the map.
    assert!(value(&c1, "frames_localized") >= 9, "{c1:?}");
    assert!(value(&c1, "frames_ambiguous") <= 1, "{c1:?}");
    assert!(
        c1.message.contains("median single-frame confidence"),
        "{c1:?}"
    );
    let off_map: f64 = c1
        .values
        .iter()
        .find(|kv| kv.key == "filter_off_map")
        .and_then(|kv| kv.value.parse().ok())
        .expect("filter_off_map");
    assert!(off_map < 0.5, "{c1:?}");
    assert!(
        !c0.message.contains("stopped matching"),
        "the seeing camera warned too: {c0:?}"
    );
    let median = |s: &Status| -> f64 {
        s.values
            .iter()
            .find(|kv| kv.key == "recent_median_confidence")
            .and_then(|kv| kv.value.parse().ok())
            .unwrap_or_else(|| panic!("{s:?}"))
    };
    eprintln!(
        "blind camera: median confidence {:.3} (seeing camera {:.3})",
        median(&c1),
        median(&c0)
    );
    assert!(median(&c1) < 0.04 && median(&c0) > 0.5, "{c0:?} {c1:?}");
    // The filter has stopped listening to the blind camera (docs/sequence-filter.md, "A
    // camera that shows nothing"): the seeing one has the full say.
    let say = |s: &Status| number_value(s, "filter_camera_weight");
    assert_eq!(say(&c0), 1.0, "{c0:?}");
    assert!(say(&c1) < 0.5, "{c1:?}");
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
}

/// `odometry_topic` with `filter: sequence`: a robot stopped at a map place, one frame every 70 s
/// (without odometry each gap's reach, 15 m/s, exceeds 1 km and resets the belief), with
/// nav_msgs/Odometry saying it has not moved: the filter keeps its place (no reset), every frame
/// after the first moves by odometry, and the priors stay on the place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odometry_keeps_the_sequence_filter_through_long_stops() {
    type Odometry = r2r::nav_msgs::msg::Odometry;
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = five_places(dir.path());
    let args: Vec<String> = [
        "-p",
        "image_topics:=[cam0/image_raw]",
        "-p",
        "camera_ids:=[c0]",
        "-p",
        "filter:=sequence",
        "-p",
        "odometry_topic:=odom",
    ]
    .map(String::from)
    .to_vec();
    let mut h = Harness::start("odometry", &map, &args);
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let odom = node
        .create_publisher::<Odometry>(&format!("{ns}/odom"), QosProfile::default())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    // Odometry of a robot standing still, 4 samples a second, stamped on the cameras' clock,
    // sent in chunks of 8, each taken by the node (/diagnostics `odometry_samples`) before the
    // next: r2r hands a subscription's messages on through a queue of 10 and drops what does
    // not fit, and 1 s of this odometry is sent in 40 ms, so a node starved for that long by
    // the other tests' load would lose a second of samples and see a hole (seen in the full
    // suite: a frame not moved by odometry). The first frame needs none (nothing before it to
    // move from), and the node takes samples once it is up, so they start after its prior.
    let mut odom_until = 98.0f64;
    let mut published = 0u64;
    async fn odometry_to(
        odom: &r2r::Publisher<Odometry>,
        diags: &mut (impl futures::Stream<Item = Diag> + Unpin),
        odom_until: &mut f64,
        published: &mut u64,
        until: f64,
    ) {
        while *odom_until < until {
            for _ in 0..8 {
                if *odom_until >= until {
                    break;
                }
                *odom_until += 0.25;
                let mut m = Odometry::default();
                m.header.frame_id = "odom".into();
                m.header.stamp = r2r::builtin_interfaces::msg::Time {
                    sec: odom_until.floor() as i32,
                    nanosec: (odom_until.fract() * 1e9) as u32,
                };
                m.pose.pose.orientation.w = 1.0;
                odom.publish(&m).unwrap();
                *published += 1;
            }
            let want = *published;
            wait_diag(
                diags,
                0,
                "the odometry samples sent so far taken",
                move |s| value(s, "odometry_samples") >= want,
            )
            .await;
        }
    }
    let here = probe(&slice, 2, "c0");
    let mut seen = Vec::new();
    let mut sec = 100;
    let p = first_prior(&mut priors, &mut seen, &mut sec, |sec| {
        cam.publish(&raw(&here, sec, "cam0")).unwrap()
    })
    .await;
    assert!(same_position(&p, &here.pose), "{p:?}");
    // The node's odometry subscription has matched this publisher (best effort: nothing sent
    // before would be kept).
    tokio::time::timeout(
        Duration::from_secs(60),
        odom.wait_for_inter_process_subscribers().unwrap(),
    )
    .await
    .expect("the node subscribes the odometry topic within 60 s")
    .unwrap();
    for _ in 0..3 {
        sec += 70;
        // The odometry up to the frame's stamp is in the node before the frame is sent.
        odometry_to(
            &odom,
            &mut diags,
            &mut odom_until,
            &mut published,
            sec as f64 + 0.5,
        )
        .await;
        wait_diag(&mut diags, 0, "the odometry up to the frame's stamp", |s| {
            number_value(s, "odometry_newest_stamp") >= sec as f64 + 0.5
        })
        .await;
        cam.publish(&raw(&here, sec, "cam0")).unwrap();
        let p = wait_prior(&mut priors, sec, &mut seen).await;
        assert!(
            same_position(&p, &here.pose),
            "stamp {sec}: prior at {:?}, the robot stands at {:?}",
            p.pose.pose.position,
            here.pose.translation.vector
        );
    }
    let d = wait_diag(&mut diags, 0, "three frames moved by odometry", |s| {
        value(s, "filter_odometry_frames") >= 3
    })
    .await;
    assert_eq!(
        value(&d, "filter_resets"),
        0,
        "odometry said the robot stood still: {d:?}"
    );
    assert_eq!(value(&d, "filter_odometry_frames"), 3, "{d:?}");
    assert_eq!(value(&d, "odometry_dropped"), 0, "{d:?}");
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
}

/// Bursts of `~/reload_map` calls from one client (an operator's script, a supervisor retrying):
/// every call is answered, each burst sharing a reload (here of a file that is no map: the old
/// map is kept and each answer says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_reload_map_burst_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = (dir.path().join("cmu"), dir.path().join("map.safetensors"));
    synth(&slice, "2");
    build_map(&slice, None, &map);
    let bursts: usize = std::env::var("DASGIL_TEST_RELOAD_BURSTS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(10);
    let log = dir.path().join("node.log");
    let mut h = Harness::start_logged("reload_burst", &map, &[], &log);
    let mut node = h.node.take().unwrap();
    let reload = node
        .create_client::<r2r::std_srvs::srv::Trigger::Service>(
            &format!("{}/dasgil_localizer/reload_map", h.ns),
            QosProfile::services_default().keep_all(),
        )
        .unwrap();
    let ready = r2r::Node::is_available(&reload).unwrap();
    h.node = Some(node);
    let (stop, spinner) = h.spin();
    let node_log = || std::fs::read_to_string(&log).unwrap_or_default();
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap_or_else(|_| panic!("no ~/reload_map within 30 s: {}", node_log()))
        .unwrap();
    // The service being available means the request topic is matched, not yet the client's
    // response reader: the middleware (rmw_fastrtps waits 100 ms) may drop an answer sent
    // before that ("cannot answer ~/reload_map: RCL_RET_TIMEOUT" in the log, seen once under
    // load). One call answered first, retried, as a client that just started would.
    let mut warm = false;
    for _ in 0..6 {
        let call = reload
            .request(&r2r::std_srvs::srv::Trigger::Request {})
            .unwrap();
        if let Ok(a) = tokio::time::timeout(Duration::from_secs(5), call).await {
            assert!(
                a.unwrap().success,
                "reloading the intact map: {}",
                node_log()
            );
            warm = true;
            break;
        }
    }
    assert!(
        warm,
        "no ~/reload_map call answered in 6 tries: {}",
        node_log()
    );
    std::fs::write(&map, b"not a map any more").unwrap();
    for burst in 0..bursts {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                reload
                    .request(&r2r::std_srvs::srv::Trigger::Request {})
                    .unwrap()
            })
            .collect();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.into_iter().map(|c| {
            let answered = answered.clone();
            async move {
                let a = c.await;
                answered.fetch_add(1, Ordering::Relaxed);
                a
            }
        });
        let all = futures::future::join_all(counted);
        let Ok(answers) = tokio::time::timeout(Duration::from_secs(30), all).await else {
            panic!(
                "burst {burst}: {} of 20 ~/reload_map calls answered within 30 s; node log:\n{}",
                answered.load(Ordering::Relaxed),
                node_log()
            );
        };
        for a in answers {
            let a = a.unwrap();
            assert!(
                !a.success && a.message.contains("kept the old map"),
                "{}",
                a.message
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "dasgil_node exited: {}",
        node_log()
    );
}

/// `replay` waiting for a node that never comes: SIGTERM (what Ctrl-C and a supervisor send)
/// ends it within a second, with a non-zero exit and a message saying so.
#[test]
fn replay_stops_on_sigterm_while_waiting_for_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let slice = dir.path().join("cmu");
    synth(&slice, "2");
    let topic = format!("/replay_sigterm_{}/image_raw", std::process::id());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(["replay", "--format", "cmu", "--root"])
        .arg(&slice)
        .args([
            "--slice",
            "2",
            "--topics",
            &topic,
            "--camera-ids",
            "c0",
            "--wait",
            "120",
        ])
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id() as i32;
    let sent = std::time::Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("replay did not stop within 10 s of SIGTERM")
        .unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted while waiting for a node to subscribe: no frame was sent"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
}

/// Three frames of `probe`, each sent just after `prior` on `gate`, stamped from `sec` on: each
/// localized at the probe's own pose (the prior does not keep it from the map).
async fn localizes_under(
    gate: &r2r::Publisher<Prior>,
    prior: &Prior,
    cam: &r2r::Publisher<Image>,
    probe: &Probe,
    sec: i32,
    priors: &mut (impl futures::Stream<Item = Prior> + Unpin),
    seen: &mut Vec<Prior>,
) {
    for k in 0..3 {
        gate.publish(prior).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        cam.publish(&raw(probe, sec + k, "cam0")).unwrap();
        let p = wait_prior(priors, sec + k, seen).await;
        assert!(same_position(&p, &probe.pose), "{p:?}");
    }
}

/// `prior_topic` gating as a robot feeds it: a best-effort publisher is heard (the node
/// subscribes best effort), a position far from every map image leaves nothing to match (counted
/// as no_candidates), a prior in `odom` is ignored, a prior older than `prior_timeout` stops
/// gating, and a prior's covariance shapes the gate: `gate_sigmas` of its standard deviations
/// along each axis (an ellipsoid), none for an infinite variance, the sphere of `gate_radius`
/// for a covariance that is none (NaN, counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prior_gating_hears_best_effort_ignores_other_frames_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let slice = dir.path().join("cmu");
    let map = dir.path().join("map.safetensors");
    synth(&slice, "4");
    build_map(&slice, Some(&ckpt), &map);
    let c0 = probe(&slice, 2, "c0");
    let mut h = Harness::start(
        "gate",
        &map,
        &[
            "-p".into(),
            "image_topics:=[cam0/image_raw]".into(),
            "-p".into(),
            "camera_ids:=[c0]".into(),
            "-p".into(),
            "prior_topic:=odom_prior".into(),
            "-p".into(),
            "gate_radius:=5.0".into(),
            "-p".into(),
            "prior_timeout:=1.5".into(),
        ],
    );
    let ns = h.ns.clone();
    let node = h.node.as_mut().unwrap();
    let cam = node
        .create_publisher::<Image>(&format!("{ns}/cam0/image_raw"), QosProfile::sensor_data())
        .unwrap();
    let gate_best_effort = node
        .create_publisher::<Prior>(
            &format!("{ns}/odom_prior"),
            QosProfile::default().best_effort(),
        )
        .unwrap();
    let gate_reliable = node
        .create_publisher::<Prior>(&format!("{ns}/odom_prior"), QosProfile::default())
        .unwrap();
    let mut diags = node
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let mut priors = node
        .subscribe::<Prior>(&format!("{ns}/pose_prior"), QosProfile::default())
        .unwrap();
    // As RViz subscribes a Marker display (reliable, volatile).
    let mut gates = node
        .subscribe::<Marker>(&format!("{ns}/prior_gate"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    let far = |frame: &str| {
        let mut p = Prior::default();
        p.header.frame_id = frame.into();
        p.pose.pose.position.x = 1e4;
        p.pose.pose.position.y = 1e4;
        p.pose.pose.orientation.w = 1.0;
        p
    };
    wait_diag(&mut diags, 0, "the node's diagnostics", |_| true).await;
    let mut seen = Vec::new();
    // Best effort, far from the map: frames find nothing to match while it is fresh.
    let gated = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sec = 100;
        loop {
            gate_best_effort.publish(&far("map")).unwrap();
            cam.publish(&raw(&c0, sec, "cam0")).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let d = diags.next().await.unwrap();
            if d.status
                .first()
                .is_some_and(|s| value(s, "frames_no_candidates") >= 1)
            {
                return;
            }
            sec += 1;
        }
    })
    .await;
    assert!(
        gated.is_ok(),
        "a best-effort prior far away never gated the search"
    );
    // The prior is not refreshed: after prior_timeout the whole map is searched again, and
    // the gate drawn on prior_gate is deleted (an RViz that joins later sees no stale gate).
    {
        use futures::FutureExt;
        while let Some(Some(_)) = gates.next().now_or_never() {}
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    cam.publish(&raw(&c0, 500, "cam0")).unwrap();
    let p = wait_prior(&mut priors, 500, &mut seen).await;
    assert!(same_position(&p, &c0.pose), "{p:?}");
    let deleted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = gates.next().await.expect("prior_gate stream");
            if m.action == 2 {
                return m;
            }
        }
    })
    .await
    .expect("the gate of an expired prior was not deleted from prior_gate");
    assert_eq!(deleted.header.frame_id, "map", "{deleted:?}");
    // A prior in odom (reliable publisher) is not map coordinates: ignored, frames localize.
    localizes_under(
        &gate_reliable,
        &far("odom"),
        &cam,
        &c0,
        600,
        &mut priors,
        &mut seen,
    )
    .await;
    // ... and /diagnostics counts it, with why.
    wait_diag(&mut diags, 0, "the prior in odom counted as ignored", |s| {
        value(s, "priors_ignored") >= 1
            && text_value(s, "prior_ignored_reason").contains("a prior in frame `odom` is ignored")
    })
    .await;
    // The same far position with its covariance, 10 km standard deviation along each axis:
    // the gate adds gate_sigmas (default 4) of it to gate_radius, 40 km, which holds the map;
    // /diagnostics says so, and frames localize while the prior is fresh.
    let with_covariance = |diagonal: [f64; 3]| {
        let mut p = far("map");
        p.pose.covariance = vec![0.0; 36];
        for (i, v) in diagonal.into_iter().enumerate() {
            p.pose.covariance[i * 7] = v;
        }
        p
    };
    // Each frame sent just after the prior that should gate it out (4 tries).
    let gates_frames_out = |prior: Prior, sec: i32| {
        let (cam, gate_reliable, c0) = (&cam, &gate_reliable, &c0);
        async move {
            for k in 0..4 {
                gate_reliable.publish(&prior).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                cam.publish(&raw(c0, sec + k, "cam0")).unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let uncertain = with_covariance([1e8, 1e8, 1e8]);
    publish_until(
        &gate_reliable,
        uncertain.clone(),
        &mut diags,
        "a 40 km gate",
        |s| text_value(s, "prior_gate_m") == "40000.0",
    )
    .await;
    // RViz sees the same gate: a sphere 2 x 40 km across at the prior, in the map frame, gone
    // from the display when the prior stops gating (its lifetime: prior_timeout, 1.5 s).
    let across = 2.0 * (25.0f64 + 16.0 * 1e8).sqrt();
    let m = gate_marker_until(&gate_reliable, &uncertain, &mut gates, "40 km", |m| {
        m.action == 0 && (m.scale.x - across).abs() < 1e-6
    })
    .await;
    assert_eq!(
        (
            m.header.frame_id.as_str(),
            m.type_,
            m.lifetime.sec,
            m.lifetime.nanosec
        ),
        ("map", 2, 1, 500_000_000),
        "{m:?}"
    );
    assert!(
        (m.scale.y - across).abs() < 1e-6 && (m.scale.z - across).abs() < 1e-6,
        "{m:?}"
    );
    assert_eq!((m.pose.position.x, m.pose.position.y), (1e4, 1e4), "{m:?}");
    assert!(m.color.a > 0.0 && m.color.a < 1.0, "{m:?}");
    localizes_under(
        &gate_reliable,
        &uncertain,
        &cam,
        &c0,
        700,
        &mut priors,
        &mut seen,
    )
    .await;
    // Unsure along x only: the gate is 40 km along x and gate_radius (5 m) along y and z, an
    // ellipsoid, not a sphere as wide as its widest axis: the map, 10 km off along y, is not
    // in it.
    let s = wait_diag(&mut diags, 0, "the counts before", |_| true).await;
    let before = value(&s, "frames_no_candidates");
    gates_frames_out(with_covariance([1e8, 0.0, 0.0]), 800).await;
    let s = wait_diag(
        &mut diags,
        0,
        "frames outside a gate long along x only, warned",
        // /diagnostics warns (the node logs it too) while frames find nothing in the gate.
        |s| {
            value(s, "frames_no_candidates") > before
                && text_value(s, "prior_gate_m") == "40000.0"
                && text_value(s, "prior_gate_narrowest_m") == "5.0"
                && s.level == 1
                && s.message.contains(
                    "found no map image to match and got no prior; last: no map image of \
                     camera c0 within 5.0-40000.0 m",
                )
        },
    )
    .await;
    let before = value(&s, "frames_no_candidates");
    // RViz draws that ellipsoid: 80 km along the map's x, 10 m across the other two axes.
    let long_x = with_covariance([1e8, 0.0, 0.0]);
    let m = gate_marker_until(&gate_reliable, &long_x, &mut gates, "long along x", |m| {
        let mut s = [m.scale.x, m.scale.y, m.scale.z];
        s.sort_by(f64::total_cmp);
        (s[0] - 10.0).abs() < 1e-6 && (s[1] - 10.0).abs() < 1e-6 && (s[2] - across).abs() < 1e-6
    })
    .await;
    let o = &m.pose.orientation;
    let q =
        nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(o.w, o.x, o.y, o.z));
    let longest = [m.scale.x, m.scale.y, m.scale.z]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let along = q * nalgebra::Vector3::ith(longest, 1.0);
    assert!(
        along.x.abs() > 1.0 - 1e-9,
        "the long axis points along {along:?}: {m:?}"
    );
    // An infinite variance: the prior does not know where it is, and gates nothing.
    let lost = with_covariance([f64::INFINITY; 3]);
    publish_until(&gate_reliable, lost.clone(), &mut diags, "no gate", |s| {
        text_value(s, "prior_gate_m") == "none"
    })
    .await;
    // ... and RViz's gate is deleted (action DELETE).
    gate_marker_until(&gate_reliable, &lost, &mut gates, "deleted", |m| {
        m.action == 2 && m.ns == "prior_gate" && m.id == 0
    })
    .await;
    localizes_under(
        &gate_reliable,
        &lost,
        &cam,
        &c0,
        900,
        &mut priors,
        &mut seen,
    )
    .await;
    // A covariance with NaN in it is none: counted, and the gate is the sphere of gate_radius
    // (5 m) as for a prior without one, far from every map image.
    let mut broken = with_covariance([1e8, 1e8, 1e8]);
    broken.pose.covariance[1] = f64::NAN;
    gates_frames_out(broken, 1000).await;
    wait_diag(
        &mut diags,
        0,
        "a NaN covariance counted, the 5 m gate",
        |s| {
            value(s, "frames_no_candidates") > before
                && text_value(s, "prior_gate_m") == "5.0"
                && value(s, "prior_covariance_invalid") >= 1
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    // A prior_topic that is no topic name stops the node, naming the parameter and its value.
    let e = node_error(&[
        "--ros-args",
        "-p",
        &format!("map:={}", map.display()),
        "-p",
        "device:=cpu",
        "-p",
        "prior_topic:=gnss prior",
    ]);
    assert!(
        e.contains("parameter `prior_topic`: cannot subscribe `gnss prior`"),
        "{e}"
    );
}

/// `replay --rectify` publishes rectified frames, as image_proc's `image_rect` topics carry
/// them: each frame of a slice drawn through the real Extended CMU-Seasons lenses (`synth cmu
/// --lens cmu`), byte for byte the file rectified with the slice's intrinsics and lens by
/// `views::rectified` (what `build-map --rectify` applies after decoding; raw rgb8, and
/// compressed as PNG), never the frame as recorded; a node on a map built with `--rectify`
/// answers the frames; replaying frames as recorded to that map warns that the node's priors
/// will not be what evaluate scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rectify_publishes_rectified_frames_for_a_rectified_map() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = test_checkpoint(dir.path());
    let (slice, map) = (dir.path().join("cmu"), dir.path().join("map.safetensors"));
    let s = slice.to_str().unwrap();
    run_tools(&[
        "synth",
        "cmu",
        "--out",
        s,
        "--places",
        "4",
        "--width",
        "128",
        "--height",
        "96",
        "--conditions",
        "snow",
        "--lens",
        "cmu",
    ]);
    let (m, c) = (map.to_str().unwrap(), ckpt.to_str().unwrap());
    run_tools(&[
        "build-map",
        "--format",
        "cmu",
        "--root",
        s,
        "--slice",
        "2",
        "--out",
        m,
        "--device",
        "cpu",
        "--checkpoint",
        c,
        "--rectify",
    ]);
    // Every camera-c0 query as recorded and rectified with the slice's intrinsics and lens.
    let queries: Vec<_> = dasgil::data::cmu_seasons::CmuSlice::open(&slice, 2)
        .unwrap()
        .query_images()
        .into_iter()
        .filter(|q| q.camera == "c0")
        .collect();
    let recorded: Vec<image::RgbImage> = queries
        .iter()
        .map(|q| image::open(&q.path).unwrap().to_rgb8())
        .collect();
    let rectified: Vec<image::RgbImage> = queries
        .iter()
        .zip(&recorded)
        .map(|(q, img)| {
            let lens = q
                .distortion
                .expect("--lens cmu writes a lens to intrinsics.txt");
            dasgil::map::views::rectified(img, &q.intrinsics.unwrap(), Some(&lens))
        })
        .collect();
    let check = |frames: &[image::RgbImage], what: &str| {
        assert!(!frames.is_empty(), "{what}: no frame seen on the topic");
        for f in frames {
            assert!(
                rectified.contains(f),
                "{what}: a frame is no rectified query"
            );
            assert!(!recorded.contains(f), "{what}: a frame as recorded");
        }
    };
    let replay = |ns: &str, topic: &str, extra: &[&str], out: &str| {
        let mut args: Vec<String> = [
            "replay",
            "--format",
            "cmu",
            "--root",
            s,
            "--slice",
            "2",
            "--map",
            m,
            "--topics",
            &format!("{ns}/{topic}"),
            "--camera-ids",
            "c0",
            "--pose-prior-topic",
            &format!("{ns}/pose_prior"),
            // 0.5 Hz: the node's one-frame slot per camera is never overwritten while the
            // untrained network encodes on a loaded machine.
            "--rate",
            "0.5",
            "--limit",
            "3",
            "--wait",
            "60",
            "--out",
            &dir.path().join(out).display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run_tools_in(None, &args)
        })
    };
    let said = |o: &std::process::Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Raw frames.
    let params = |transport: &str, topic: &str| -> Vec<String> {
        [
            "-p",
            &format!("transport:={transport}"),
            "-p",
            &format!("image_topics:=[{topic}]"),
            "-p",
            "camera_ids:=[c0]",
            // Every match published, however unsure (the test network is untrained).
            "-p",
            "min_confidence:=0.0",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut h = Harness::start("rectify_raw", &map, &params("raw", "cam0/image_rect"));
    let ns = h.ns.clone();
    // This test's own subscription to the frames does not start replay early: replay then
    // waits for the node's pose_prior publisher, which the node creates after subscribing.
    let mut frames = h
        .node
        .as_mut()
        .unwrap()
        .subscribe::<Image>(&format!("{ns}/cam0/image_rect"), QosProfile::sensor_data())
        .unwrap();
    let (stop, spinner) = h.spin();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let collect = tokio::spawn(async move {
        while let Some(m) = frames.next().await {
            let img = image::RgbImage::from_raw(m.width, m.height, m.data).unwrap();
            sink.lock().unwrap().push(img);
        }
    });
    let out = replay(&ns, "cam0/image_rect", &["--rectify"], "raw")
        .await
        .unwrap();
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("frames sent 3, priors received 3"), "{text}");
    assert!(!text.contains("warning"), "{text}");
    check(&seen.lock().unwrap().clone(), "raw");
    // The frames as recorded, to the rectified map: replay says what that does.
    let out = replay(&ns, "cam0/image_rect", &[], "as-recorded")
        .await
        .unwrap();
    let text = said(&out);
    assert!(
        text.contains("was built with --rectify and the frames are played as recorded")
            && text.contains("give --rectify"),
        "{text}"
    );
    collect.abort();
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
    drop(h);

    // Compressed: a rectified frame is re-encoded as PNG.
    let topic = "cam0/image_rect/compressed";
    let mut h = Harness::start("rectify_png", &map, &params("compressed", topic));
    let mut frames = h
        .node
        .as_mut()
        .unwrap()
        .subscribe::<Compressed>(&format!("{}/{topic}", h.ns), QosProfile::sensor_data())
        .unwrap();
    let ns = h.ns.clone();
    let (stop, spinner) = h.spin();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let formats = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let format_sink = formats.clone();
    let collect = tokio::spawn(async move {
        while let Some(m) = frames.next().await {
            format_sink.lock().unwrap().insert(m.format.clone());
            if let Ok(img) = image::load_from_memory(&m.data) {
                sink.lock().unwrap().push(img.to_rgb8());
            }
        }
    });
    let out = replay(
        &ns,
        topic,
        &["--rectify", "--transport", "compressed"],
        "png",
    )
    .await
    .unwrap();
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("frames sent 3, priors received 3"), "{text}");
    assert_eq!(
        *formats.lock().unwrap(),
        BTreeSet::from(["png".to_string()])
    );
    check(&seen.lock().unwrap().clone(), "compressed");
    collect.abort();
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
}

/// `replay` pointed at the node's input instead of its output (`--pose-prior-topic` set to the
/// topic the node's `prior_topic` reads, a GNSS position far from the map): no frame gets a
/// prior, and replay fails saying both why: the messages it heard carry no frame's stamp (an
/// input topic?), and the node found no map image in its gate (/diagnostics
/// frames_no_candidates); the old flag name still works, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_listening_to_the_node_s_input_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = (dir.path().join("cmu"), dir.path().join("map.safetensors"));
    synth(&slice, "4");
    build_map(&slice, None, &map);
    let mut h = Harness::start(
        "replay_input",
        &map,
        &[
            "-p".into(),
            "image_topics:=[cam0/image_raw]".into(),
            "-p".into(),
            "camera_ids:=[c0]".into(),
            "-p".into(),
            "prior_topic:=gnss".into(),
            "-p".into(),
            "gate_radius:=5.0".into(),
        ],
    );
    let ns = h.ns.clone();
    let gnss = h
        .node
        .as_mut()
        .unwrap()
        .create_publisher::<Prior>(&format!("{ns}/gnss"), QosProfile::default())
        .unwrap();
    let mut diags = h
        .node
        .as_mut()
        .unwrap()
        .subscribe::<Diag>(&format!("{ns}/diagnostics"), QosProfile::default())
        .unwrap();
    let (stop, spinner) = h.spin();
    // A GNSS fix 10 km from every map image, at 5 Hz, stamped as a receiver would (its own
    // clock: no frame's stamp).
    let publishing = Arc::new(AtomicBool::new(true));
    let go_on = publishing.clone();
    let feeder = tokio::spawn(async move {
        let mut k = 0;
        while go_on.load(Ordering::Relaxed) {
            let mut p = Prior::default();
            p.header.frame_id = "map".into();
            p.header.stamp.sec = 7_000 + k;
            p.pose.pose.position.x = 1e4;
            p.pose.pose.position.y = 1e4;
            p.pose.pose.orientation.w = 1.0;
            gnss.publish(&p).unwrap();
            k += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // The node gates with the fix before the first frame is sent.
    wait_diag(&mut diags, 0, "the 5 m gate of the fix", |s| {
        text_value(s, "prior_gate_m") == "5.0"
    })
    .await;
    drop(diags);
    let topic = format!("{ns}/gnss");
    let camera = format!("{ns}/cam0/image_raw");
    let diags = format!("{ns}/diagnostics");
    let out = dir.path().join("out");
    let extra = ["--prior-topic", topic.as_str()];
    let (result, text) = replay_slice(&slice, &camera, &diags, "1", &out, &extra).await;
    publishing.store(false, Ordering::Relaxed);
    feeder.await.unwrap();
    assert!(!result.status.success(), "{text}");
    for want in [
        "--prior-topic is the old name of --pose-prior-topic",
        "no pose prior came back from the node for 3 frames",
        "carried the stamp of no frame sent: is it the node's output (`pose_prior`",
        // How many of the 3 depends on when the node heard its first fix (waited for below).
        "the node found no map image in the gate of its prior_topic position for ",
        " with no map image in the gate of its prior_topic position (/diagnostics)",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(h.child.try_wait().unwrap().is_none(), "dasgil_node exited");
}

/// Two nodes on one /diagnostics, both hearing the replay's camera: `replay` reports the
/// counts of the node whose priors it scores (the one publishing `--pose-prior-topic`), even
/// when that node's image topic is remapped away from its parameter, never the other's. Node
/// A localizes every frame (`min_confidence` 0); node B, subscribed to the replay's topic by
/// its parameter, withholds every frame (`min_confidence` 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_counts_the_node_it_scores_among_two_on_one_diagnostics_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (slice, map) = (dir.path().join("cmu"), dir.path().join("map.safetensors"));
    synth(&slice, "4");
    build_map(&slice, None, &map);
    let shared = format!("/two_nodes_{}", std::process::id());
    let (camera, diag_topic) = (
        format!("{shared}/cam0/image_raw"),
        format!("{shared}/diagnostics"),
    );
    let args = |topic: &str, min_confidence: &str, remap: Option<String>| -> Vec<String> {
        let mut a: Vec<String> = [
            "-p".into(),
            format!("image_topics:=[{topic}]"),
            "-p".into(),
            "camera_ids:=[c0]".into(),
            "-p".into(),
            format!("min_confidence:={min_confidence}"),
            // Before the harness's own /diagnostics rule: the first matching rule wins.
            "-r".into(),
            format!("/diagnostics:={diag_topic}"),
        ]
        .to_vec();
        if let Some(r) = remap {
            a.extend(["-r".to_string(), r]);
        }
        a
    };
    let a = Harness::start(
        "two_nodes_a",
        &map,
        &args(
            "cam_param/image_raw",
            "0.0",
            Some(format!("cam_param/image_raw:={camera}")),
        ),
    );
    let mut b = Harness::start("two_nodes_b", &map, &args(&camera, "1.0", None));
    let b_name = format!("{}/dasgil_localizer", b.ns);
    let mut diags = b
        .node
        .as_mut()
        .unwrap()
        .subscribe::<Diag>(&diag_topic, QosProfile::default())
        .unwrap();
    let (stop, spinner) = b.spin();
    let prior_topic = format!("{}/pose_prior", a.ns);
    let extra = ["--pose-prior-topic", prior_topic.as_str()];
    let out = dir.path().join("out");
    let (result, text) = replay_slice(&slice, &camera, &diag_topic, "0.5", &out, &extra).await;
    assert!(result.status.success(), "{text}");
    // Node B withheld the frames it heard: the test can tell the two nodes' counts apart.
    wait_diag(&mut diags, 0, "node B withholding frames", |st| {
        st.values
            .iter()
            .any(|kv| kv.key == "node" && kv.value == b_name)
            && value(st, "frames_ambiguous") >= 1
    })
    .await;
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out").join("summary.json")).unwrap(),
    )
    .unwrap();
    let o = &summary["node_outcomes"];
    assert_eq!(
        o["withheld"], 0,
        "node B's withheld frames counted:\n{text}\n{o}"
    );
    let received = o["received"].as_u64().unwrap_or_else(|| panic!("{o}"));
    assert!((1..=3).contains(&received), "{o}");
    // The summary says so in words, as summary.json counts.
    assert!(
        text.contains(&format!(
            "the node: 0 frame(s) withheld; {} skipped as stale, {} rejected",
            o["skipped"], o["rejected"]
        )),
        "{text}"
    );
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    drop(a);
}
