//! The node binary as a user runs it: given a checkpoint and a camera topic, it encodes good
//! frames, reports malformed ones on /diagnostics, and keeps running.
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

    let ns = format!("/dasgil_node_test_{}", std::process::id());
    let camera = format!("{ns}/cam0/image_raw");
    let diag_topic = format!("{ns}/diagnostics");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dasgil_node"))
        .args(["--ros-args", "-p"])
        .arg(format!("checkpoint:={}", ckpt.display()))
        .args([
            "-p",
            &format!("image_topics:=[{camera}]"),
            "-p",
            "diagnostics_period:=0.2",
            "-p",
            "device:=cpu",
        ])
        .args(["-r", &format!("/diagnostics:={diag_topic}")])
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
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let spinner = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(10));
        }
    });

    // Alternate a good 320x200 frame and one whose data is 7 bytes short.
    let result = tokio::time::timeout(Duration::from_secs(90), async {
        let mut i = 0u64;
        loop {
            camera_pub
                .publish(&frame(320, 200, if i % 2 == 0 { 0 } else { 7 }))
                .unwrap();
            i += 1;
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(150), diags.next()).await
            {
                let status = &msg.status[0];
                if value(status, "frames_encoded") >= 2 && value(status, "frames_rejected") >= 2 {
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
        result.expect("the node did not report 2 encoded and 2 rejected frames within 90 s");
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
