//! The node binary as a user runs it: given a map (built by `dasgil-tools build-map` from a
//! generated Extended CMU-Seasons slice) and a camera topic, it publishes the pose prior of good
//! frames (a map image sent as a frame is localized at its own pose, with the image's stamp),
//! reports malformed frames on /diagnostics, and keeps running.
#![cfg(feature = "ros")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dasgil::model::checkpoint::{self, CheckpointMeta, NetworkRole};
use dasgil::model::{DiscriminatorKind, Generator, ModelConfig, WeightInit};
use futures::StreamExt;
use r2r::QosProfile;
use tch::{nn, Device};

fn frame(width: u32, height: u32, truncate: usize) -> r2r::sensor_msgs::msg::Image {
    let mut data: Vec<u8> = (0..width * height * 3).map(|i| (i % 256) as u8).collect();
    data.truncate(data.len() - truncate);
    r2r::sensor_msgs::msg::Image {
        header: r2r::std_msgs::msg::Header {
            frame_id: "cam0".into(),
            ..Default::default()
        },
        height,
        width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: width * 3,
        data,
    }
}

fn value(status: &r2r::diagnostic_msgs::msg::DiagnosticStatus, key: &str) -> u64 {
    status
        .values
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.parse().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_encodes_good_frames_and_survives_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::paper().with_input_size(256, 256).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    Generator::new(&vs.root(), cfg, WeightInit::Reference).unwrap();
    let ckpt = dir.path().join("gen.safetensors");
    let meta = CheckpointMeta {
        network: NetworkRole::Generator,
        config: cfg,
        discriminator: Some(DiscriminatorKind::Flatten),
        epoch: None,
        step: None,
        source: None,
    };
    checkpoint::save(&vs, &meta, &ckpt).unwrap();
    let slice = dir.path().join("cmu");
    let map = dir.path().join("map.safetensors");
    for args in [
        vec![
            "synth",
            "cmu",
            "--out",
            slice.to_str().unwrap(),
            "--places",
            "4",
            "--width",
            "128",
            "--height",
            "96",
            "--conditions",
            "snow",
        ],
        vec![
            "build-map",
            "--format",
            "cmu",
            "--root",
            slice.to_str().unwrap(),
            "--slice",
            "2",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--out",
            map.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = dasgil::data::cmu_seasons::CmuSlice::open(&slice, 2)
        .unwrap()
        .database_images();
    let probe = &db[5];
    let probe_img = image::open(&probe.path).unwrap().to_rgb8();
    let probe_pose = probe.world_from_cam.unwrap();

    let ns = format!("/dasgil_node_test_{}", std::process::id());
    let camera = format!("{ns}/cam0/image_raw");
    let diag_topic = format!("{ns}/diagnostics");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"))
        .args(["--ros-args", "-p"])
        .arg(format!("map:={}", map.display()))
        .args([
            "-p",
            &format!("image_topics:=[{camera}]"),
            "-p",
            "diagnostics_period:=0.2",
            "-p",
            "device:=cpu",
        ])
        .args(["-r", &format!("/diagnostics:={diag_topic}")])
        .args(["-r", &format!("__ns:={ns}")])
        .kill_on_drop(true)
        .spawn()
        .expect("start dasgil_node");

    let ctx = r2r::Context::create().unwrap();
    let mut node = r2r::Node::create(ctx, "dasgil_node_test_driver", "").unwrap();
    let camera_pub = node
        .create_publisher::<r2r::sensor_msgs::msg::Image>(&camera, QosProfile::sensor_data())
        .unwrap();
    let mut diags = node
        .subscribe::<r2r::diagnostic_msgs::msg::DiagnosticArray>(&diag_topic, QosProfile::default())
        .unwrap();
    let mut priors = node
        .subscribe::<r2r::geometry_msgs::msg::PoseWithCovarianceStamped>(
            &format!("{ns}/pose_prior"),
            QosProfile::default(),
        )
        .unwrap();
    let mut candidates = node
        .subscribe::<r2r::geometry_msgs::msg::PoseArray>(
            &format!("{ns}/pose_candidates"),
            QosProfile::default(),
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let spinner = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(10));
        }
    });

    // Alternate a map image sent as a frame (stamped i seconds) and a frame 7 bytes short.
    let good = |i: u64| r2r::sensor_msgs::msg::Image {
        header: r2r::std_msgs::msg::Header {
            frame_id: "cam0".into(),
            stamp: r2r::builtin_interfaces::msg::Time {
                sec: i as i32,
                nanosec: 0,
            },
        },
        height: probe_img.height(),
        width: probe_img.width(),
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: probe_img.width() * 3,
        data: probe_img.as_raw().clone(),
    };
    let result = tokio::time::timeout(Duration::from_secs(90), async {
        let mut i = 0u64;
        loop {
            if i % 2 == 0 {
                camera_pub.publish(&good(1000 + i)).unwrap();
            } else {
                camera_pub.publish(&frame(320, 200, 7)).unwrap();
            }
            i += 1;
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(150), diags.next()).await
            {
                let status = &msg.status[0];
                if value(status, "frames_localized") >= 2 && value(status, "frames_rejected") >= 2 {
                    return status.clone();
                }
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.start_kill();
    let status =
        result.expect("the node did not report 2 localized and 2 rejected frames within 90 s");
    // The pose prior of the map image is its own pose, with the frame's stamp and the map frame.
    let prior = tokio::time::timeout(Duration::from_secs(5), priors.next())
        .await
        .expect("a pose prior")
        .unwrap();
    assert_eq!(prior.header.frame_id, "map");
    assert!(
        prior.header.stamp.sec >= 1000 && prior.header.stamp.sec % 2 == 0,
        "{:?}",
        prior.header
    );
    let p = &prior.pose.pose.position;
    let t = probe_pose.translation.vector;
    assert!((p.x - t.x).abs() < 1e-9 && (p.y - t.y).abs() < 1e-9 && (p.z - t.z).abs() < 1e-9);
    let q = &prior.pose.pose.orientation;
    assert!(
        (probe_pose.rotation.w - q.w).abs() < 1e-9 && (probe_pose.rotation.i - q.x).abs() < 1e-9
    );
    assert_eq!(prior.pose.covariance.len(), 36);
    assert!((0..6).all(|i| prior.pose.covariance[i * 7] > 0.0));
    let cands = tokio::time::timeout(Duration::from_secs(5), candidates.next())
        .await
        .expect("pose candidates")
        .unwrap();
    assert_eq!(cands.poses.len(), 5);
    assert_eq!(cands.poses[0].position.x, p.x);
    assert!(alive, "dasgil_node exited");
    assert_eq!(status.level, 1, "a bad frame makes the status WARN");
    assert!(
        status
            .message
            .contains("data has 191993 bytes, expected step 960 x height 200 = 192000"),
        "{}",
        status.message
    );
    // Paper FD descriptor (layers 5 and 6) at 256x256: 64*8*8 + 64*4*4.
    assert_eq!(value(&status, "descriptor_length"), 64 * 8 * 8 + 64 * 4 * 4);
}

/// Runs the node with `args` until it exits (it must: every case is a start-up error).
fn node_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
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
    assert!(e.contains("unknown parameter `topk`"), "{e}");
    assert!(
        e.contains("parameter `map` = /nonexistent.safetensors"),
        "{e}"
    );
}
