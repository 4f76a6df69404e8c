//! Benchmark (not a test): one DASGIL training step (G step on A, A+, B with depth,
//! segmentation, multi-scale triplet and LSGAN terms, then the CD discriminator step), ours
//! (`train::Trainer::step`) against the same step in the venv's PyTorch eager mode
//! (tools/python/dasgil_torch.py train-step-server), on random data of the same size, timed in
//! alternating blocks; and the data loader's throughput on a generated data set.
//!
//!     source tools/env.sh && cargo bench --bench train_step
//!
//! Env: DASGIL_BENCH_SIZE (default 256x512), DASGIL_BENCH_BATCH (4), DASGIL_BENCH_BLOCKS (4),
//! DASGIL_BENCH_REPS (steps per block, 2).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use dasgil::train::loader::{Batch, Labelled};
use dasgil::train::{TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let size = env("DASGIL_BENCH_SIZE", "256x512");
    let (h, w) = size
        .split_once('x')
        .map(|(a, b)| (a.parse::<i64>().unwrap(), b.parse::<i64>().unwrap()))
        .unwrap();
    let batch: i64 = env("DASGIL_BENCH_BATCH", "4").parse().unwrap();
    let blocks: usize = env("DASGIL_BENCH_BLOCKS", "4").parse().unwrap();
    let reps: usize = env("DASGIL_BENCH_REPS", "2").parse().unwrap();
    let threads = tch::get_num_threads();

    let mut cfg: TrainConfig = serde_yaml::from_str(include_str!("../config/train.yaml")).unwrap();
    cfg.input_height = h;
    cfg.input_width = w;
    cfg.batch = batch as usize;
    cfg.device = "cpu".into();
    let mut trainer = Trainer::new(cfg).unwrap();
    tch::manual_seed(1);
    let labelled = || Labelled {
        rgb: Tensor::rand([batch, 3, h, w], (Kind::Float, Device::Cpu)) * 2.0 - 1.0,
        depth: Tensor::rand([batch, 1, h, w], (Kind::Float, Device::Cpu)) * 100.0,
        classes: Tensor::randint(15, [batch, h, w], (Kind::Int64, Device::Cpu)),
    };
    let mut step = 0u64;

    let mut peer = Command::new(dasgil::python::interpreter())
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tools/python/dasgil_torch.py"),
            "train-step-server",
            "--height",
            &h.to_string(),
            "--width",
            &w.to_string(),
            "--batch",
            &batch.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the PyTorch peer");
    let mut stdin = peer.stdin.take().unwrap();
    let mut stdout = BufReader::new(peer.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let torch_version = line.trim().to_string();

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        for _ in 0..reps {
            let b = Batch {
                step,
                draws: Vec::new(),
                triplet: [labelled(), labelled(), labelled()],
                real: Tensor::rand([batch, 3, h, w], (Kind::Float, Device::Cpu)) * 2.0 - 1.0,
            };
            let t = Instant::now();
            trainer.step(&b, 2e-3, 1e-3).unwrap();
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            step += 1;
        }
        writeln!(stdin, "step {reps}").unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        theirs.extend(
            v["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap()),
        );
    }
    let _ = writeln!(stdin, "quit");
    let _ = peer.wait();
    let (o, t) = (median(ours), median(theirs));
    let [plain, augmented, palette, stretched, turned] =
        loader_samples_per_second(h as u32, w as u32, batch as usize);
    println!("one training step, {size}, batch {batch}, CD, CPU, {threads} threads (peer {torch_version}), {blocks} alternating blocks of {reps}");
    println!("| path | median ms | vs PyTorch |\n|---|---|---|");
    println!("| ours (Trainer::step) | {o:.0} | {:.2}x |", o / t);
    println!("| PyTorch eager | {t:.0} | 1.00x |");
    println!(
        "data loader, one thread: {plain:.1} triplets/s plain, {augmented:.1} with --augment, {palette:.1} with --augment --augment-palette, {stretched:.1} with --augment --photometric autocontrast, {turned:.1} with --augment --augment-yaw 8 (each with its real-domain image); the step consumes {:.1} triplets/s",
        batch as f64 / (o / 1e3)
    );
}

/// Triplets per second one loader thread makes (decode, resize, flip, normalise): plain, with
/// augmentation, with augmentation and palette remapping, with augmentation and the per-image
/// autocontrast, and with augmentation and the camera turned up to 8 degrees (interleaved blocks
/// of steps), from
/// a small generated Virtual KITTI 2 (828x250, as the shipped model's data) and KITTI set.
fn loader_samples_per_second(h: u32, w: u32, batch: usize) -> [f64; 5] {
    use dasgil::synth::{kitti, vkitti2};
    use dasgil::train::loader::{make_batch, BatchSpec, TrainingData};
    let dir = tempfile::tempdir().unwrap();
    vkitti2::generate(&vkitti2::Options {
        out: dir.path().join("vk"),
        seed: 5,
        scenes: 1,
        frames: 6,
        width: 828,
        height: 250,
        cameras: 1,
        layout: dasgil::data::vkitti2::Layout::Official,
        appearance: Default::default(),
        lateral: 0.0,
    })
    .unwrap();
    kitti::generate(&kitti::Options {
        out: dir.path().join("ki"),
        seed: 6,
        sequences: 1,
        frames: 4,
        width: 1241,
        height: 376,
        styled: false,
    })
    .unwrap();
    let data = TrainingData::open(
        &[dasgil::data::vkitti2::Vkitti2Roots::official(
            &dir.path().join("vk"),
        )],
        &dir.path().join("ki"),
    )
    .unwrap();
    let spec = |(augment, augment_palette, photometric, augment_yaw_deg)| BatchSpec {
        seed: 1,
        batch,
        window: 5,
        hard_negatives: 0.0,
        height: h,
        width: w,
        augment,
        augment_palette,
        augment_yaw_deg,
        photometric,
    };
    let (mut secs, mut steps) = ([0.0f64; 5], 0u64);
    for block in 0..4u64 {
        use dasgil::data::preprocess::Photometric::{Autocontrast, None as Plain};
        for (k, mode) in [
            (false, false, Plain, 0.0),
            (true, false, Plain, 0.0),
            (true, true, Plain, 0.0),
            (true, false, Autocontrast, 0.0),
            (true, false, Plain, 8.0),
        ]
        .into_iter()
        .enumerate()
        {
            let t = Instant::now();
            for s in 0..2 {
                std::hint::black_box(make_batch(&data, &spec(mode), block * 2 + s).unwrap());
            }
            secs[k] += t.elapsed().as_secs_f64();
        }
        steps += 2;
    }
    let rate = |s: f64| (steps as usize * batch) as f64 / s;
    secs.map(rate)
}
