//! The compressed search mode against the exact search on real descriptors
//! (`cargo bench --bench compressed`): cmu_slice's map (shipped model) tiled to 10,000 and
//! 100,000 entries (copies moved 1 km apart per copy, descriptors with noise), the compressed
//! codes (256-value random projection, int8, shortlist 100) stored beside them; the 320
//! cmu_slice queries encoded once; per camera, as the node searches. Reported: query latency of
//! both (interleaved blocks), how often the compressed top-1 is the exact top-1, and the share
//! of queries within (5 m, 10 deg) for both.
//!
//! Env: DASGIL_BENCH_SIZES (default "10000,100000"), DASGIL_BENCH_DIMS (256),
//! DASGIL_BENCH_SHORTLIST (100).

use std::path::Path;
use std::time::Instant;

use dasgil::extract::MapEncoder;
use dasgil::map::file::MapFile;
use dasgil::retrieval::compress;
use dasgil::retrieval::{top_k, Hit, MapIndex, Metric};

mod common;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn run(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let dims: usize = env("DASGIL_BENCH_DIMS", "256").parse().unwrap();
    let shortlist: usize = env("DASGIL_BENCH_SHORTLIST", "100").parse().unwrap();
    let sizes: Vec<usize> = env("DASGIL_BENCH_SIZES", "10000,100000")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.map.safetensors");
    run(&[
        "build-map",
        "--sequence",
        "cmu_slice",
        "--out",
        base.to_str().unwrap(),
    ]);
    let base_map = MapFile::open(&base).unwrap();
    let ckpt = base_map.meta.encoder.checkpoint.clone().unwrap();
    let spec = base_map.meta.encoder.descriptor_spec();
    let mut enc =
        MapEncoder::from_checkpoint(Path::new(&ckpt), tch::Device::Cpu, Some(spec)).unwrap();
    enc.use_map(&base_map).unwrap();
    let seqs = dasgil::data::sources::sequences(None).unwrap();
    let seq = &seqs["cmu_slice"];
    let src = seq
        .open(Some("cmu_slice"), &seq.resolve("cmu_slice").unwrap())
        .unwrap();
    let queries: Vec<(Vec<f32>, String, dasgil::geom::Pose)> = src
        .queries
        .iter()
        .map(|q| {
            let img = q.load_rgb(src.decode).unwrap();
            let d = enc.encode(&[enc.prepare(&img).unwrap()]).unwrap();
            (d, q.camera.clone(), q.world_from_cam.unwrap())
        })
        .collect();
    println!(
        "{} cmu_slice queries, {}-d descriptors; compressed: {dims}-value projection, int8, shortlist {shortlist}",
        queries.len(),
        base_map.dim()
    );
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>8} {:>13} {:>13} {:>13}",
        "entries",
        "map MiB",
        "exact ms",
        "compr. ms",
        "ratio",
        "same top-1",
        "exact 5m10d",
        "compr. 5m10d"
    );
    for &n in &sizes {
        let path = dir.path().join(format!("tiled-{n}.map.safetensors"));
        common::tiled_map(&base, &path, n, Some((dims, shortlist)));
        let t = Instant::now();
        let map = MapFile::open(&path).unwrap();
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        let c = map.meta.compression.clone().unwrap();
        let index = MapIndex::new(&map);
        let cands: Vec<Vec<usize>> = queries
            .iter()
            .map(|(_, cam, _)| index.candidates(Some(cam), None).unwrap())
            .collect();
        let exact = |i: usize| top_k(&map, &queries[i].0, 5, Metric::L1, Some(&cands[i]));
        let compr =
            |i: usize| compress::top_k(&map, &c, &queries[i].0, 5, Metric::L1, Some(&cands[i]));
        // Warm the page cache and the codes, then alternate blocks of all queries.
        let (e_hits, c_hits): (Vec<Vec<Hit>>, Vec<Vec<Hit>>) =
            (0..queries.len()).map(|i| (exact(i), compr(i))).unzip();
        let (mut te, mut tc) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            for i in 0..queries.len() {
                let t = Instant::now();
                std::hint::black_box(exact(i));
                te.push(t.elapsed().as_secs_f64() * 1e3);
            }
            for i in 0..queries.len() {
                let t = Instant::now();
                std::hint::black_box(compr(i));
                tc.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let same = e_hits
            .iter()
            .zip(&c_hits)
            .filter(|(a, b)| a[0].index == b[0].index)
            .count();
        let ok = |hits: &[Vec<Hit>]| {
            hits.iter()
                .zip(&queries)
                .filter(|(h, (_, _, gt))| {
                    let p = map.pose(h[0].index);
                    (p.translation.vector - gt.translation.vector).norm() <= 5.0
                        && (p.rotation.inverse() * gt.rotation).angle().to_degrees() <= 10.0
                })
                .count() as f64
                / queries.len() as f64
        };
        let (me, mc) = (med(te), med(tc));
        println!(
            "{:>8} {:>9.0} {:>12.2} {:>12.2} {:>7.3}x {:>12.1}% {:>12.1}% {:>12.1}%   (open {open_ms:.0} ms)",
            n,
            std::fs::metadata(&path).unwrap().len() as f64 / 1048576.0,
            me,
            mc,
            mc / me,
            100.0 * same as f64 / queries.len() as f64,
            100.0 * ok(&e_hits),
            100.0 * ok(&c_hits)
        );
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
