//! Benchmark (not a test): exact top-K query latency over maps of 1k and 10k entries of 20,480-d
//! f32 descriptors (the FD descriptor at 256x1024), ours (`maps::search::top_k`, L1) against
//! `torch.cdist(p=1) + topk` on the same data in the venv's PyTorch and faiss `IndexFlat` with
//! `METRIC_L1` (faiss-cpu), timed in alternating blocks; and the scan's memory-bandwidth floor
//! (map bytes / measured read bandwidth). Ours also on the same map stored as float16
//! (`build-map --f16`), which halves the bytes the scan reads (the peers search the f32 data), and
//! ours for the top 200 (what the Localizer retrieves for the pose prior's confidence); and the
//! float16 map again with build-map's default yaw views (±3,±6 deg: four more rows per entry,
//! which every query also scans; maps of up to 10k entries) against the same map without them,
//! cosine top 200; on that map, the node's per-frame search on a map of two cameras (one
//! camera's entries, top 200) against its camera check (every camera's entries, top 1).
//!
//!     tools/setup.sh --bench    # once: faiss-cpu for the second peer
//!     source tools/env.sh && cargo bench --bench retrieval
//!
//! Env: DASGIL_BENCH_SIZES (default "1000,10000"), DASGIL_BENCH_BLOCKS (default 6),
//! DASGIL_BENCH_REPS (queries per block, default 10).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use dasgil::map::file::{write_map, MapFile, MapMeta, RawTensor};
use dasgil::retrieval::{top_k, Metric};
use rand::{Rng, SeedableRng};
use safetensors::tensor::Dtype;

const DIM: usize = 20_480;

const PEER: &str = r#"
import sys, time, json, torch
from safetensors.torch import load_file
threads = int(sys.argv[2])
torch.set_num_threads(threads)
d = load_file(sys.argv[1])["descriptors"]
q = d[:64].clone() + 0.01
try:
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlat(d.shape[1], faiss.METRIC_L1)
    index.add(d.numpy())
    qn = q.numpy()
    has_faiss = True
except ImportError:
    has_faiss = False
print(json.dumps({"ready": True, "faiss": has_faiss}), flush=True)
for line in sys.stdin:
    kind, reps = line.split()
    ts = []
    for i in range(int(reps)):
        t0 = time.perf_counter()
        if kind == "cdist":
            dist = torch.cdist(q[i % 64:i % 64 + 1], d, p=1)
            torch.topk(dist, 10, largest=False)
        else:
            index.search(qn[i % 64:i % 64 + 1], 10)
        ts.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps(ts), flush=True)
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Writes one random map of `n` entries twice: descriptors as f32 to `path`, and the same
/// values as float16 (`build-map --f16`) to `path16`; with `views`, the float16 map again with
/// build-map's default yaw views (four view rows per entry, random values) at that path.
fn make_maps(
    path: &std::path::Path,
    path16: &std::path::Path,
    views: Option<&std::path::Path>,
    n: usize,
) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
    let desc: Vec<f32> = (0..n * DIM).map(|_| rng.random::<f32>()).collect();
    write_bench_map(
        path,
        n,
        RawTensor::new("descriptors", Dtype::F32, vec![n, DIM], &desc),
    );
    let halves: Vec<half::f16> = desc.iter().map(|&v| half::f16::from_f32(v)).collect();
    drop(desc);
    write_bench_map(
        path16,
        n,
        RawTensor::new("descriptors", Dtype::F16, vec![n, DIM], &halves),
    );
    if let Some(views) = views {
        let yaws = dasgil::map::views::default_yaw_views();
        let rows = n * yaws.len();
        let view_halves: Vec<half::f16> = (0..rows * DIM)
            .map(|_| half::f16::from_f32(rng.random::<f32>()))
            .collect();
        write_bench_map_with(
            views,
            n,
            vec![
                RawTensor::new("descriptors", Dtype::F16, vec![n, DIM], &halves),
                RawTensor::new(
                    "view_descriptors",
                    Dtype::F16,
                    vec![rows, DIM],
                    &view_halves,
                ),
            ],
            yaws,
        );
    }
}

fn write_bench_map(path: &std::path::Path, n: usize, descriptors: RawTensor) {
    write_bench_map_with(path, n, vec![descriptors], Vec::new())
}

/// A bench map of these descriptor tensors (and view rows, with their yaws).
fn write_bench_map_with(
    path: &std::path::Path,
    n: usize,
    descriptors: Vec<RawTensor>,
    yaw_views_deg: Vec<f64>,
) {
    let poses: Vec<f64> = (0..n)
        .flat_map(|i| [i as f64, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        .collect();
    let times: Vec<i64> = vec![-1; n];
    let mut tensors = descriptors;
    tensors.extend([
        RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
        RawTensor::new("timestamps_us", Dtype::I64, vec![n], &times),
    ]);
    let mut meta = MapMeta::by_hand(n, "random");
    meta.yaw_views_deg = yaw_views_deg;
    meta.encoder.input_width = 1024;
    meta.encoder.layers = vec![(5, 1.0), (6, 1.0)];
    write_map(path, &tensors, &mut meta).unwrap();
}

/// Read bandwidth of a plain sum over `bytes` (parallel, as the scan), GB/s.
fn bandwidth(data: &[f32]) -> f64 {
    use rayon::prelude::*;
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f32 = data
            .par_chunks(1 << 16)
            .map(|c| {
                // Sixteen independent accumulators, as the L1 scan has, so the adds vectorize
                // and the loop is bound by memory, not by one chain of adds.
                let mut acc = [0f32; 16];
                for x in c.chunks_exact(16) {
                    for i in 0..16 {
                        acc[i] += x[i];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
        best = best.max((data.len() * 4) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let sizes: Vec<usize> = std::env::var("DASGIL_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    let blocks = env_usize("DASGIL_BENCH_BLOCKS", 6);
    let reps = env_usize("DASGIL_BENCH_REPS", 10);
    let threads = rayon::current_num_threads();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "exact top-10 L1 over {DIM}-d f32 descriptors, {threads} threads, median ms per query"
    );
    println!(
        "| entries | ours | torch.cdist+topk | faiss IndexFlat L1 | ours / torch | ours / faiss \
         | bandwidth floor | ours / floor |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let path = dir.path().join(format!("map{n}.safetensors"));
        // The same map stored as float16 (`build-map --f16`): half the bytes to scan.
        let path16 = dir.path().join(format!("map{n}-f16.safetensors"));
        // And with build-map's default yaw views, as float16, up to 10k entries (the view
        // rows of a 10k map are 1.6 GB as float16; of a 100k map, 16 GB).
        let pathv = (n <= 10_000).then(|| dir.path().join(format!("map{n}-f16-views.safetensors")));
        make_maps(&path, &path16, pathv.as_deref(), n);
        let map16 = MapFile::open(&path16).unwrap();
        let mapv = pathv.map(|p| MapFile::open(&p).unwrap());
        let t_open = Instant::now();
        let map = MapFile::open(&path).unwrap();
        let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
        let dasgil::map::file::Descriptors::F32(all) = map.descriptors() else {
            unreachable!()
        };
        let queries: Vec<Vec<f32>> = (0..64)
            .map(|i| {
                all[i * DIM..(i + 1) * DIM]
                    .iter()
                    .map(|v| v + 0.01)
                    .collect()
            })
            .collect();
        let gbps = bandwidth(all);
        let floor_ms = (n * DIM * 4) as f64 / gbps / 1e6;
        let mut peer = Command::new(dasgil::python::interpreter())
            .args(["-c", PEER, path.to_str().unwrap(), &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the PyTorch peer");
        let mut stdin = peer.stdin.take().unwrap();
        let mut stdout = BufReader::new(peer.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
        let has_faiss = ready["faiss"].as_bool().unwrap_or(false);
        if !has_faiss {
            eprintln!(
                "faiss is not installed in the venv: run tools/setup.sh --bench for that peer"
            );
        }
        let (mut ours, mut ours16, mut ours200, mut cdist, mut faiss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The shipped model's metric (cosine, 2026-12-04), as the node searches: top 200.
        let (mut cos200, mut cos16, mut cosv) = (Vec::new(), Vec::new(), Vec::new());
        // The node on a map of two cameras (entries alternating): each frame searched among
        // its camera's entries (top 200), and the camera check (`Localizer::nearest_camera`:
        // every camera's entries, top 1) on each of a camera's first 24 frames, then every 5th.
        let one_camera: Vec<usize> = (0..n).step_by(2).collect();
        let (mut own, mut check) = (Vec::new(), Vec::new());
        let mut ask = |kind: &str, into: &mut Vec<f64>| {
            writeln!(stdin, "{kind} {reps}").unwrap();
            line.clear();
            stdout.read_line(&mut line).unwrap();
            let ts: Vec<f64> = serde_json::from_str(&line).unwrap();
            into.extend(ts);
        };
        for _ in 0..blocks {
            // Top 10 as the peers; top 200 as the Localizer asks since the pose prior's
            // confidence looks for a candidate beyond 7.5 m among 200 (localize::prior).
            for (m, k, metric, into) in [
                (&map, 10, Metric::L1, &mut ours),
                (&map16, 10, Metric::L1, &mut ours16),
                (&map, 200, Metric::L1, &mut ours200),
                (&map, 200, Metric::Cosine, &mut cos200),
                (&map16, 200, Metric::Cosine, &mut cos16),
            ] {
                for i in 0..reps {
                    let t = Instant::now();
                    std::hint::black_box(top_k(m, &queries[i % 64], k, metric, None));
                    into.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            if let Some(mapv) = &mapv {
                for i in 0..reps {
                    let t = Instant::now();
                    std::hint::black_box(top_k(mapv, &queries[i % 64], 200, Metric::Cosine, None));
                    cosv.push(t.elapsed().as_secs_f64() * 1e3);
                }
                for i in 0..reps {
                    let q = &queries[i % 64];
                    let t = Instant::now();
                    std::hint::black_box(top_k(mapv, q, 200, Metric::Cosine, Some(&one_camera)));
                    own.push(t.elapsed().as_secs_f64() * 1e3);
                    let t = Instant::now();
                    std::hint::black_box(top_k(mapv, q, 1, Metric::Cosine, None));
                    check.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            ask("cdist", &mut cdist);
            if has_faiss {
                ask("faiss", &mut faiss);
            }
        }
        drop(stdin);
        let _ = peer.wait();
        let (o, t) = (median(ours), median(cdist));
        let faiss_ms = has_faiss.then(|| median(faiss));
        let (f, of) = match faiss_ms {
            Some(f) => (format!("{f:.2}"), format!("{:.2}x", o / f)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "| {n} | {o:.2} | {t:.2} | {f} | {:.2}x | {of} | {floor_ms:.2} ms ({gbps:.1} GB/s) | {:.2}x |",
            o / t,
            o / floor_ms
        );
        let o16 = median(ours16);
        let of16 = faiss_ms.map_or("-".into(), |f| format!("{:.2}x", o16 / f));
        println!(
            "| {n} (ours f16) | {o16:.2} | {t:.2} | {f} | {:.2}x | {of16} | {:.2} ms | {:.2}x |",
            o16 / t,
            floor_ms / 2.0,
            o16 / (floor_ms / 2.0)
        );
        let o200 = median(ours200);
        println!(
            "| {n} (ours, top 200) | {o200:.2} | {t:.2} | {f} | {:.2}x | - | {floor_ms:.2} ms | {:.2}x |",
            o200 / t,
            o200 / floor_ms
        );
        let (c200, c16) = (median(cos200), median(cos16));
        println!(
            "| {n} (ours, top 200, cosine) | {c200:.2} | - | - | - | - | {floor_ms:.2} ms | {:.2}x |",
            c200 / floor_ms
        );
        println!(
            "| {n} (ours f16, top 200, cosine) | {c16:.2} | - | - | - | - | {:.2} ms | {:.2}x |",
            floor_ms / 2.0,
            c16 / (floor_ms / 2.0)
        );
        if mapv.is_some() {
            let cv = median(cosv);
            println!(
                "| {n} (ours f16 with yaw views ±3,±6, top 200, cosine) | {cv:.2} | - | - | - | - | {:.2} ms | {:.2}x (views / none {:.2}x) |",
                floor_ms * 2.5,
                cv / (floor_ms * 2.5),
                cv / c16
            );
            let (o, c) = (median(own), median(check));
            println!(
                "| {n} (the node's search, f16 views: one camera of two, top 200, cosine) | {o:.2} | - | - | - | - | - | - |"
            );
            println!(
                "| {n} (its camera check: every camera, top 1) | {c:.2} | - | - | - | - | - | check / search {:.2}x; per frame after a camera's first 24 (every 5th checked) +{:.0}% |",
                c / o,
                100.0 * c / 5.0 / o
            );
        }
        eprintln!(
            "map of {n} entries ({} MiB) opened and verified in {open_ms:.0} ms",
            (n * DIM * 4) >> 20
        );
    }
}
