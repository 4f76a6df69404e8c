//! Benchmark (not a test): `dasgil-tools build-map` throughput (images/s) against the usual
//! way of writing the same job, a PIL + PyTorch loop (tools/python/peer_build_map.py: PIL
//! decode, bicubic resize, normalise, the shipped generator's encoder in batches of 8, the
//! map's weighted layers), on a generated Extended CMU-Seasons slice, both with the same number
//! of threads, run alternately. Whole-command wall time for both (start-up, model load, reading
//! the slice, writing the output), and for the peer also its loop alone. Bytes per map entry.
//!
//!     tools/setup.sh --bench    # once: pillow for the peer
//!     source tools/env.sh && cargo bench --bench build_map
//!
//! Env: DASGIL_BENCH_PLACES (database places, two images each; default 100),
//! DASGIL_BENCH_ROUNDS (alternating rounds, default 3).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dasgil::map::file::MapFile;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn check(what: &str, out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let places: usize = env("DASGIL_BENCH_PLACES", "100").parse().unwrap();
    let rounds: usize = env("DASGIL_BENCH_ROUNDS", "3").parse().unwrap();
    let threads = tch::get_num_threads();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slice");
    let tools = env!("CARGO_BIN_EXE_dasgil-tools");
    check(
        "synth cmu",
        Command::new(tools)
            .args([
                "synth",
                "cmu",
                "--seed",
                "77",
                "--slice",
                "2",
                "--conditions",
                "snow",
            ])
            .args(["--places", &places.to_string(), "--spacing", "5"])
            .args(["--width", "1024", "--height", "768", "--out"])
            .arg(&root)
            .output()
            .unwrap(),
    );
    let ours_map = dir.path().join("ours.map.safetensors");
    let build = || {
        let t = Instant::now();
        check(
            "build-map",
            Command::new(tools)
                // One descriptor per image, as the peer encodes (no yaw views, build-map's
                // default where intrinsics exist: five encodings per image).
                .args([
                    "build-map",
                    "--format",
                    "cmu",
                    "--slice",
                    "2",
                    "--yaw-views",
                    "none",
                ])
                .arg("--root")
                .arg(&root)
                .arg("--out")
                .arg(&ours_map)
                .output()
                .unwrap(),
        );
        t.elapsed().as_secs_f64()
    };
    // One untimed run of each first: page cache and the model file warm for both.
    build();
    let map = MapFile::open(&ours_map).unwrap();
    let n = map.len();
    let ckpt = map
        .meta
        .encoder
        .checkpoint
        .clone()
        .expect("the shipped model");
    let layers: Vec<String> = map
        .meta
        .encoder
        .layers
        .iter()
        .map(|(l, w)| format!("{l}:{w}"))
        .collect();
    let bytes_per_entry = std::fs::metadata(&ours_map).unwrap().len() as f64 / n as f64;
    drop(map);
    let peer_out = dir.path().join("peer.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python/peer_build_map.py");
    let peer = || {
        let t = Instant::now();
        let out = check(
            "peer_build_map.py (tools/setup.sh --bench installs pillow)",
            Command::new(dasgil::python::interpreter())
                .arg(&script)
                .arg("--root")
                .arg(&root)
                .args(["--slice", "2", "--checkpoint", &ckpt, "--layers"])
                .arg(layers.join(","))
                .arg("--out")
                .arg(&peer_out)
                .args(["--threads", &threads.to_string()])
                .output()
                .unwrap(),
        );
        let wall = t.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            v["images"].as_u64(),
            Some(n as u64),
            "the peer saw other images"
        );
        (wall, v["loop_s"].as_f64().unwrap())
    };
    peer();
    let (mut ours, mut theirs, mut loops) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(build());
        let (wall, inner) = peer();
        theirs.push(wall);
        loops.push(inner);
    }
    let (o, t, l) = (median(ours), median(theirs), median(loops));
    let rate = |s: f64| n as f64 / s;
    println!(
        "build-map on {n} database images (1024x768 JPEG -> 256x512, shipped model, layers {}), \
         {threads} threads, median of {rounds} alternating rounds",
        layers.join(",")
    );
    println!("| | wall | images/s |");
    println!("|---|---|---|");
    println!(
        "| ours (`dasgil-tools build-map`) | {o:.2} s | {:.1} |",
        rate(o)
    );
    println!(
        "| PIL + PyTorch loop, whole command | {t:.2} s | {:.1} |",
        rate(t)
    );
    println!(
        "| PIL + PyTorch loop, loop only | {l:.2} s | {:.1} |",
        rate(l)
    );
    println!(
        "ours / peer (whole command): {:.2}x the time; map file {bytes_per_entry:.0} bytes per entry",
        o / t
    );
}
