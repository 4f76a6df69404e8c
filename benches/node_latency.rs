//! The node under load, against a peer in the same run (`cargo bench --bench node_latency`):
//! dasgil_node, and the same job written the usual way (tools/python/peer_localizer.py: rclpy +
//! PyTorch eager, cdist top-K), each fed the cmu_slice query frames by `dasgil-tools replay` over
//! ROS 2 (two cameras), with a map of 10,000 entries (cmu_slice's 80 tiled with noise and moved
//! away, so the real entries still exist and every search scans 10k / 2 cameras).
//!
//! 1. Latency: image-to-prior p50/p99 at 10 Hz per camera, in alternating blocks (ours, peer,
//!    ours, peer; `DASGIL_BENCH_SECONDS` each, default 20).
//! 2. Load: 30 Hz per camera for 60 s (`DASGIL_BENCH_LOAD_SECONDS`): resident memory of the
//!    node sampled every second, latency in the first and the last 10 s (a growing queue shows
//!    as growing latency), frames that got no prior (dropped as stale).
#![cfg(feature = "ros")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tiled_map;
use dasgil::map::file::MapFile;

mod common;

const TOOLS: &str = env!("CARGO_BIN_EXE_dasgil-tools");
const NODE: &str = env!("CARGO_BIN_EXE_dasgil_node");

fn secs(var: &str, default: f64) -> f64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Localizer {
    child: Child,
    name: &'static str,
}

fn start(which: &str, map: &Path, checkpoint: &Path, log: &Path) -> Localizer {
    let log = std::fs::File::create(log).unwrap();
    let child = if which == "ours" {
        Command::new(NODE)
            .args(["--ros-args", "-p"])
            .arg(format!("map:={}", map.display()))
            .args([
                "-p",
                "image_topics:=[/cam0/image_raw, /cam1/image_raw]",
                "-p",
                "camera_ids:=[c0, c1]",
                "-p",
                "device:=cpu",
                // Single frames, as the peer does (whatever the node's default).
                "-p",
                "filter:=none",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    } else {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tools/python/peer_localizer.py"))
            .arg("--map")
            .arg(map)
            .arg("--checkpoint")
            .arg(checkpoint)
            .args([
                "--topics",
                "/cam0/image_raw,/cam1/image_raw",
                "--cameras",
                "c0,c1",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    Localizer {
        child,
        name: if which == "ours" {
            "dasgil_node"
        } else {
            "rclpy+PyTorch"
        },
    }
}

impl Drop for Localizer {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replays for `seconds` at `rate` per camera; returns summary.json.
fn replay(out: &Path, rate: f64, seconds: f64) -> serde_json::Value {
    run(Command::new(TOOLS).args([
        "replay",
        "--sequence",
        "cmu_slice",
        "--topics",
        "/cam0/image_raw,/cam1/image_raw",
        "--camera-ids",
        "c0,c1",
        "--rate",
        &rate.to_string(),
        "--duration",
        &seconds.to_string(),
        // Windows below are taken on the stamps: the time of sending.
        "--stamps",
        "send",
        "--wait",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]));
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    dasgil::eval::online::percentile(v, q)
}

fn main() {
    // DASGIL_BENCH_DIR keeps the maps and logs there (else a temporary folder).
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("DASGIL_BENCH_DIR").map(PathBuf::from);
    if let Some(k) = &keep {
        std::fs::create_dir_all(k).unwrap();
    }
    let dir_path = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    let dir = &dir_path;
    let entries: usize = std::env::var("DASGIL_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let block = secs("DASGIL_BENCH_SECONDS", 20.0);
    let load = secs("DASGIL_BENCH_LOAD_SECONDS", 60.0);
    let base = dir.join("base.map.safetensors");
    run(Command::new(TOOLS).args([
        "build-map",
        "--sequence",
        "cmu_slice",
        // The peer (tools/python/peer_localizer.py) searches with L1, as the reference: the
        // same work on both sides (the shipped model's own metric is cosine).
        "--metric",
        "l1",
        "--out",
        base.to_str().unwrap(),
    ]));
    let map = dir.join("tiled.map.safetensors");
    tiled_map(&base, &map, entries, None);
    let checkpoint = PathBuf::from(
        MapFile::open(&map)
            .unwrap()
            .meta
            .encoder
            .checkpoint
            .clone()
            .expect("the map names its checkpoint"),
    );
    let size = std::fs::metadata(&map).unwrap().len();
    println!(
        "map: {entries} entries, {:.0} MiB; replay: cmu_slice queries on /cam0 and /cam1",
        size as f64 / 1048576.0
    );

    println!("\n1. latency at 10 Hz per camera, {block:.0} s blocks, interleaved");
    println!(
        "{:<16} {:>6} {:>7} {:>9} {:>9} {:>13}",
        "", "frames", "priors", "p50 ms", "p99 ms", "(5 m, 10 deg)"
    );
    let mut all: std::collections::BTreeMap<&str, (Vec<f64>, Vec<f64>)> = Default::default();
    for round in 0..2 {
        for which in ["ours", "peer"] {
            let l = start(which, &map, &checkpoint, &dir.join(format!("{which}.log")));
            let s = replay(&dir.join(format!("r{round}-{which}")), 10.0, block);
            let (p50, p99) = (
                s["latency_p50_ms"].as_f64().unwrap_or(f64::NAN),
                s["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "{:<16} {:>6} {:>7} {:>9.1} {:>9.1} {:>12.1}%",
                l.name,
                s["frames_sent"],
                s["priors_received"],
                p50,
                p99,
                100.0 * s["all"]["within_5m_10deg"].as_f64().unwrap_or(f64::NAN)
            );
            let e = all.entry(l.name).or_default();
            e.0.push(p50);
            e.1.push(p99);
        }
    }
    for (name, (p50, p99)) in &all {
        println!(
            "{name:<16} mean of blocks: p50 {:.1} ms, p99 {:.1} ms",
            p50.iter().sum::<f64>() / p50.len() as f64,
            p99.iter().sum::<f64>() / p99.len() as f64
        );
    }

    if load <= 0.0 {
        return;
    }
    println!("\n2. load: 30 Hz per camera (60 frames/s) for {load:.0} s");
    println!(
        "{:<16} {:>6} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "", "frames", "priors", "RSS start", "RSS end", "RSS max", "p99 first", "p99 last"
    );
    for which in ["ours", "peer"] {
        let l = start(
            which,
            &map,
            &checkpoint,
            &dir.join(format!("load-{which}.log")),
        );
        let pid = l.child.id();
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s2, stop) = (
            samples.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let stop2 = stop.clone();
        let sampler = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    s2.lock().unwrap().push(k);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let out = dir.join(format!("load-{which}"));
        let s = replay(&out, 30.0, load);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap();
        let frames = s["frames"].as_array().unwrap();
        let t0 = frames
            .first()
            .and_then(|f| f["stamp_ns"].as_i64())
            .unwrap_or(0);
        let window = |from: f64, to: f64| -> Vec<f64> {
            frames
                .iter()
                .filter(|f| {
                    let t = (f["stamp_ns"].as_i64().unwrap_or(0) - t0) as f64 / 1e9;
                    t >= from && t < to
                })
                .filter_map(|f| f["latency_ms"].as_f64())
                .collect()
        };
        let rss = samples.lock().unwrap().clone();
        // The first samples include loading; "start" is after 5 s of traffic.
        let start_rss = rss
            .get(rss.len().min(8).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        println!(
            "{:<16} {:>6} {:>7} {:>8} MiB {:>7} MiB {:>7} MiB {:>8.1} ms {:>8.1} ms",
            l.name,
            s["frames_sent"],
            s["priors_received"],
            start_rss / 1024,
            rss.last().copied().unwrap_or(0) / 1024,
            rss.iter().max().copied().unwrap_or(0) / 1024,
            pct(&mut window(0.0, 10.0), 0.99),
            pct(&mut window(load - 10.0, load), 0.99),
        );
    }
}
