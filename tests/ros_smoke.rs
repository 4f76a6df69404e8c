//! ROS 2 toolchain smoke tests (cargo feature `ros`): an r2r node sends itself a
//! sensor_msgs/Image on loopback, and an r2r node exchanges messages with an rclpy peer running
//! in a separate process from the venv's ROS 2 Jazzy wheels.
#![cfg(feature = "ros")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use r2r::QosProfile;

fn image(frame_id: &str, width: u32, height: u32) -> r2r::sensor_msgs::msg::Image {
    let data: Vec<u8> = (0..width * height * 3)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    r2r::sensor_msgs::msg::Image {
        header: r2r::std_msgs::msg::Header {
            stamp: r2r::builtin_interfaces::msg::Time {
                sec: 42,
                nanosec: 7,
            },
            frame_id: frame_id.to_string(),
        },
        height,
        width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: width * 3,
        data,
    }
}

/// Spins `node` on its own thread until `stop` is set.
fn spin(mut node: r2r::Node, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(20));
        }
    })
}

fn unique(topic: &str) -> String {
    format!("/dasgil_test_{}_{}", std::process::id(), topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2r_node_receives_its_own_image_on_loopback() {
    let ctx = r2r::Context::create().expect("ROS 2 context");
    let mut node = r2r::Node::create(ctx, "dasgil_loopback_test", "").expect("node");
    let topic = unique("loopback_image");
    let mut sub = node
        .subscribe::<r2r::sensor_msgs::msg::Image>(&topic, QosProfile::default())
        .unwrap();
    let publisher = node
        .create_publisher::<r2r::sensor_msgs::msg::Image>(&topic, QosProfile::default())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spin(node, stop.clone());

    let sent = image("camera_loopback", 16, 4);
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            publisher.publish(&sent).unwrap();
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return msg;
            }
        }
    })
    .await
    .expect("no image came back within 20 s");
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert_eq!(received, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2r_node_and_rclpy_peer_exchange_messages() {
    let topic_in = unique("peer_image");
    let topic_out = unique("peer_pose");
    let mut peer = tokio::process::Command::new(common::python())
        .arg(common::root().join("tests/ros/rclpy_peer.py"))
        .args([&topic_in, &topic_out, "1", "60"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the rclpy peer");

    let ctx = r2r::Context::create().expect("ROS 2 context");
    let mut node = r2r::Node::create(ctx, "dasgil_interop_test", "").expect("node");
    let publisher = node
        .create_publisher::<r2r::sensor_msgs::msg::Image>(&topic_in, QosProfile::default())
        .unwrap();
    let mut answers = node
        .subscribe::<r2r::geometry_msgs::msg::PoseWithCovarianceStamped>(
            &topic_out,
            QosProfile::default(),
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spin(node, stop.clone());

    let sent = image("camera_interop", 20, 10);
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            publisher.publish(&sent).unwrap();
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(500), answers.next()).await
            {
                return msg;
            }
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    let answer = match answer {
        Ok(a) => a,
        Err(_) => {
            let _ = peer.start_kill();
            let out = peer.wait_with_output().await.unwrap();
            panic!(
                "no answer from the rclpy peer within 60 s; its output:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), peer.wait())
        .await
        .expect("peer exits")
        .unwrap();
    assert!(status.success(), "rclpy peer exit status {status}");

    let sum: f64 = sent.data.iter().map(|&b| b as f64).sum();
    assert_eq!(answer.header, sent.header);
    let p = &answer.pose.pose.position;
    assert_eq!((p.x, p.y, p.z), (20.0, 10.0, sum));
    assert_eq!(answer.pose.covariance[0], sent.data.len() as f64);
    assert_eq!(answer.pose.covariance[35], sent.data[0] as f64);
}
