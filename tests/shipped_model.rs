//! The shipped model on data it never saw:
//! - on the embedded `cmu_slice` (a world and seasons no training data came from) it localizes
//!   more queries within (5 m, 10 deg) than both baselines, and the recorded evaluation
//!   (maps/models/cmu_slice-evaluation.json, made by tools/evaluate-shipped-model.sh and quoted
//!   in maps/models/MODEL_CARD.md) reproduces within one query through the real command;
//! - its pose priors are honest there (docs/pose-prior.md): priors for at least 94% of the
//!   queries with the truth inside the 95% ellipsoid for at least 85% of them, and on a drive
//!   beyond a small map most queries of places the map does not show are withheld or covered,
//!   each frame alone and under the sequence filter;
//! - on held-back Virtual KITTI 2 frames of another world it tells the same place under other
//!   weather from other places better than the untrained network.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{path_str, OutputWithin};

use dasgil::extract::MapEncoder;

fn shipped() -> PathBuf {
    common::root()
        .join("maps/models")
        .join(dasgil::extract::choice::SHIPPED_MODEL)
}

/// Runs dasgil-tools with `args` on the data folder `data` and the shipped model; panics with
/// its stderr on failure.
fn tools(data: &Path, args: &[&str]) {
    let res = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("DASGIL_DATA", data)
        .env_remove("DASGIL_MODEL")
        .output_limited()
        .expect("run dasgil-tools");
    assert!(
        res.status.success(),
        "{args:?}:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

fn evaluate(out: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "evaluate",
        "--sequence",
        "cmu_slice",
        "--device",
        "cpu",
        "--out",
        path_str(out),
    ];
    args.extend_from_slice(extra);
    tools(data, &args);
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn the_recorded_cmu_slice_figures_of_the_shipped_model_and_baselines_reproduce() {
    let recorded: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("maps/models/cmu_slice-evaluation.json"))
            .unwrap(),
    )
    .unwrap();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let data = tmp.join("dasgil-data");
    let mut checked = 0;
    let mut best: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut shipped_default = None;
    for (name, extra) in [
        ("shipped", vec![]),
        ("raw-pixels", vec!["--baseline", "raw-pixels"]),
        ("untrained", vec!["--baseline", "untrained"]),
    ] {
        let out = tmp.join(format!("shipped-eval-{name}"));
        let _ = std::fs::remove_dir_all(&out);
        let report = evaluate(&out, &data, &extra);
        for r in report["reports"].as_array().unwrap() {
            let key = format!("{name} ({})", r["adaptation"].as_str().unwrap());
            let acc = r["all"]["accuracy"]["5m,10deg"].as_f64().unwrap();
            let b = best.entry(name).or_insert(0.0);
            *b = b.max(acc);
            if name == "shipped" && shipped_default.is_none() {
                // The first report is the default way (no map-time adaptation), with the
                // metric the shipped file records (MODEL_CARD.md, "Its metric").
                assert_eq!(r["adaptation"], "none");
                assert_eq!(r["metric"], "cosine");
                shipped_default = Some(acc);
                // What the node publishes (default min_confidence): 315 of 320, 99.0% inside,
                // with the seventh model, its e6 and the constants of 2026-12-03 (the goal: 95% published, 85-99% inside; more inside
                // than 99% is a wider prior than needed, not a wrong one).
                let p = &r["published"];
                let shown = p["outcomes"]["localized"].as_f64().unwrap() / 320.0;
                let inside = p["scores"]["inside_95_ellipsoid"].as_f64().unwrap();
                eprintln!("cmu_slice: published {shown:.3}, inside the 95% ellipsoid {inside:.3}");
                assert!(shown >= 0.94, "published {shown}");
                assert!((0.85..=1.0).contains(&inside), "inside {inside}");
            }
            let rec = &recorded[&key];
            assert!(rec.is_object(), "{key} is not recorded");
            let queries = r["all"]["queries"].as_f64().unwrap();
            assert_eq!(rec["queries"].as_f64().unwrap(), queries, "{key}");
            let one = 1.0 / queries + 1e-9;
            for (field, path) in [
                ("accuracy_5m_10deg", ["accuracy", "5m,10deg"]),
                ("accuracy_0.5m_5deg", ["accuracy", "0.5m,5deg"]),
                ("recall_at_1_25m", ["recall_at_n", "1"]),
            ] {
                let now = r["all"][path[0]][path[1]].as_f64().unwrap();
                let then = rec[field].as_f64().unwrap();
                assert!(
                    (now - then).abs() <= one,
                    "{key} {field}: now {now}, recorded {then}"
                );
            }
            checked += 1;
        }
    }
    // shipped and untrained both ways, raw pixels once.
    assert_eq!(checked, 5);
    let shipped = shipped_default.unwrap();
    eprintln!(
        "(5 m, 10 deg) on cmu_slice: shipped {shipped:.3}, best raw pixels {:.3}, best untrained {:.3}",
        best["raw-pixels"], best["untrained"]
    );
    assert!(
        shipped > best["raw-pixels"] && shipped > best["untrained"],
        "the shipped model ({shipped:.3}) must beat raw pixels ({:.3}) and the untrained network ({:.3})",
        best["raw-pixels"],
        best["untrained"]
    );
}

/// The robot drives beyond its map: a map of cmu_mini (the first 10 of cmu_slice's 40 places)
/// and cmu_slice's queries, each frame alone (`--filter none`) and through the sequence filter
/// (`--filter sequence`, the node's default). A query is shown by the map when its true
/// position lies within 10 m of a map image (two place spacings; about the definition
/// tools/python/fit_off_map.py's `--shown` fits the off-the-map constants with, which measures
/// to the nearest place's centre). Those beyond get a confident wrong prior only rarely:
/// withheld, or their truth inside the 95% ellipsoid, for at least 2/3 of them alone (an
/// ellipsoid cannot reach road the map has never seen) and 9/10 of them under the filter (its
/// off-the-map test withholds them, and past the map's end its ellipsoid reaches on by how far
/// the vehicle may have driven), never fewer under the filter than alone. The shown queries
/// keep their priors: 85% or more of the published inside, and under the filter 9/10 of them
/// published.
///
/// Measured with the seventh model (2026-12-02): beyond, 200 of 232 alone and 232 of 232 under
/// the filter with its velocity kernel (session 39; 230 before; the sixth model 199 and 230,
/// the fifth 197 alone and 192 under the filter before it widened its ellipsoid past the map's
/// end); shown, 82 of 85 and 87 of 88 published priors inside (88 before the velocity kernel),
/// 88 of 88 published under the filter. Until 2026-12-01 "shown" was within
/// 25 m; with the fifth model
/// that failed (under the filter 88 of 109 inside, 80.7%): the frames 10-25 m past the map's
/// end look like its last stretch. They now count as beyond, where they must be withheld or
/// covered like the rest (docs/sequence-filter.md, "Off the map").
#[test]
fn queries_beyond_the_map_are_mostly_withheld_or_covered() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let data = tmp.join("dasgil-data");
    let map = tmp.join("beyond-cmu_mini.map.safetensors");
    tools(
        &data,
        &[
            "build-map",
            "--sequence",
            "cmu_mini",
            "--device",
            "cpu",
            "--out",
            path_str(&map),
        ],
    );
    let m = dasgil::map::file::MapFile::open(&map).unwrap();
    let mut covered = Vec::new();
    for filter in ["none", "sequence"] {
        let out = tmp.join(format!("beyond-eval-{filter}"));
        let _ = std::fs::remove_dir_all(&out);
        let report = evaluate(&out, &data, &["--map", path_str(&map), "--filter", filter]);
        let queries = report["reports"][0]["queries"].as_array().unwrap().clone();
        assert_eq!(queries.len(), 320);
        // The true positions, from candidates-none.jsonl; the map's image positions.
        let truth: std::collections::BTreeMap<String, nalgebra::Vector3<f64>> =
            std::fs::read_to_string(out.join("candidates-none.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let t: Vec<f64> = (0..3).map(|i| v["truth"][i].as_f64().unwrap()).collect();
                    (
                        v["name"].as_str().unwrap().to_string(),
                        nalgebra::Vector3::new(t[0], t[1], t[2]),
                    )
                })
                .collect();
        let shown = |q: &serde_json::Value| {
            let t = truth[q["name"].as_str().unwrap()];
            (0..m.len()).any(|i| (m.pose(i).translation.vector - t).norm() <= 10.0)
        };
        let inside = |q: &serde_json::Value| {
            q["published"] == true
                && q["mahalanobis2"]
                    .as_f64()
                    .is_some_and(|m| m <= 7.814_727_903)
        };
        let (on, off): (Vec<_>, Vec<_>) = queries.iter().partition(|q| shown(q));
        let safe = off
            .iter()
            .filter(|q| q["published"] == false || inside(q))
            .count();
        let on_pub = on.iter().filter(|q| q["published"] == true).count();
        let on_in = on.iter().filter(|q| inside(q)).count();
        eprintln!(
            "beyond the map, filter {filter}: {safe} of {} withheld or covered; shown: {on_pub} \
             of {} published, {on_in} of them inside",
            off.len(),
            on.len()
        );
        assert!(off.len() >= 160, "{} queries beyond the map", off.len());
        covered.push(safe);
        let least = if filter == "none" { 2.0 / 3.0 } else { 0.9 };
        assert!(
            safe as f64 >= least * off.len() as f64,
            "filter {filter}: {safe} of {}",
            off.len()
        );
        assert!(
            on_pub > 0 && on_in as f64 >= 0.85 * on_pub as f64,
            "filter {filter}: {on_in} of {on_pub}"
        );
        if filter == "sequence" {
            // tools/python/fit_off_map.py replays the off-the-map probability and the
            // published flag of every frame, most of them withheld here.
            let said =
                common::python_tool("fit_off_map.py", &["--verify", "--fit", path_str(&out)]);
            assert!(said.contains("verified"), "{said}");
            assert!(10 * on_pub >= 9 * on.len(), "{on_pub} of {}", on.len());
        }
    }
    assert!(
        covered[1] >= covered[0],
        "beyond the map the filter withheld or covered {} queries, single frames {}",
        covered[1],
        covered[0]
    );
}

#[test]
fn a_start_in_a_world_the_map_does_not_show_is_withheld_from_the_first_frame() {
    // The map: a small world of another slice and seed (its places hundreds of metres from
    // cmu_mini's); the queries: cmu_mini's two traversals, each starting after a reset.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let data = tmp.join("dasgil-data");
    let world = tmp.join("start-elsewhere-world");
    let map = tmp.join("start-elsewhere.map.safetensors");
    let out = tmp.join("start-elsewhere-eval");
    let _ = std::fs::remove_dir_all(&out);
    #[rustfmt::skip]
    tools(&data, &["synth", "cmu", "--out", path_str(&world), "--force", "--seed", "4242",
        "--slice", "7", "--places", "8", "--spacing", "5", "--conditions", "snow",
        "--width", "512", "--height", "384"]);
    #[rustfmt::skip]
    tools(&data, &["build-map", "--format", "cmu", "--root", path_str(&world), "--slice", "7",
        "--device", "cpu", "--out", path_str(&map)]);
    #[rustfmt::skip]
    tools(&data, &["evaluate", "--sequence", "cmu_mini", "--map", path_str(&map),
        "--filter", "sequence", "--device", "cpu", "--out", path_str(&out)]);
    let frames: Vec<serde_json::Value> = std::fs::read_to_string(out.join("candidates-none.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 40);
    // Right after a start or a reset the belief is uniform: the first frame weighs "off the
    // map" against how well an average place explains it, so it is withheld unless it stands
    // out from the map's places: with one camera's say, q = 0.2 r / (0.2 r + 0.8), r = L_off /
    // U = 3 e^(-c / 0.1) / 0.25, at least 0.5 for c up to 0.1 ln 3 (docs/sequence-filter.md,
    // "Off the map"). Before, such a first frame was published with the filter's floors.
    let firsts: Vec<&serde_json::Value> =
        frames.iter().filter(|f| f["evidence"].is_null()).collect();
    assert!(!firsts.is_empty(), "no first frame after a reset");
    // The confidence below which q reaches the threshold: c = OFF_MAP_CONFIDENCE ln(L / U0
    // * START / (1 - START) * (1 - W) / W), with the U factor's power 1 (0.1 ln 3 now).
    use dasgil::localize::sequence as seq;
    assert_eq!(
        seq::OFF_MAP_USUAL_POWER,
        1.0,
        "the edge below assumes power 1"
    );
    let edge = seq::OFF_MAP_CONFIDENCE
        * (seq::OFF_MAP_LIKELIHOOD / seq::OFF_MAP_USUAL * seq::OFF_MAP_START
            / (1.0 - seq::OFF_MAP_START)
            * (1.0 - seq::OFF_MAP_WITHHOLD)
            / seq::OFF_MAP_WITHHOLD)
            .ln();
    let mut unsure = 0;
    for f in &firsts {
        let c = f["frame_confidence"].as_f64().unwrap();
        if (c - edge).abs() < 1e-3 {
            continue;
        }
        unsure += usize::from(c < edge);
        let q = f["off_map"].as_f64().unwrap();
        assert_eq!(f["camera_weight"].as_f64(), Some(1.0), "{f}");
        assert_eq!(q >= seq::OFF_MAP_WITHHOLD, c < edge, "{f}");
        if c < edge {
            assert_eq!(f["published"], false, "{f}");
        }
    }
    assert!(
        unsure >= 1,
        "every first frame stands out here ({firsts:?}): pick a world where one does not"
    );
    // Hundreds of metres off, nearly all withheld; the Python replay of the off-the-map test
    // (tools/python/fit_off_map.py) reproduces every frame's probability and flag.
    let published = frames.iter().filter(|f| f["published"] == true).count();
    assert!(published <= 2, "{published} of 40 published");
    let said = common::python_tool("fit_off_map.py", &["--verify", "--fit", path_str(&out)]);
    assert!(said.contains("verified"), "{said}");
    // With nothing published (a threshold of 0 withholds every frame) report.md still says
    // what was withheld and why, in the published row, with no scores.
    let none = tmp.join("start-elsewhere-eval-none");
    let _ = std::fs::remove_dir_all(&none);
    #[rustfmt::skip]
    tools(&data, &["evaluate", "--sequence", "cmu_mini", "--map", path_str(&map),
        "--filter", "sequence", "--off-map-threshold", "0", "--device", "cpu",
        "--out", path_str(&none)]);
    let md = std::fs::read_to_string(none.join("report.md")).unwrap();
    let row = "| published by the node (min_confidence 0.04, off_map_threshold 0: 40 withheld: \
               40 as off the map, 0 below min_confidence; correct priors per query 0 of 40) | 0 | -";
    assert!(md.contains(row), "{md}");
}

/// Share of triplets with d(anchor, positive) < d(anchor, negative) under `enc`: anchors are
/// `clone` frames, positives the same frame under fog, morning, overcast, rain and sunset,
/// negatives that weather 6 frames (6 m) away and in the other scene's world.
fn triplet_accuracy(enc: &MapEncoder, vk: &Path) -> f64 {
    let ds =
        dasgil::data::vkitti2::Vkitti2::open(&dasgil::data::vkitti2::Vkitti2Roots::official(vk))
            .unwrap();
    let frame_path = |scene: usize, var: &str, f: usize| -> PathBuf {
        let v = ds.scenes[scene]
            .variations
            .iter()
            .find(|v| v.name == var)
            .unwrap();
        v.frames
            .iter()
            .find(|fr| fr.index as usize == f && fr.camera == 0)
            .unwrap()
            .rgb
            .clone()
    };
    let describe = |p: &Path| -> Vec<f32> {
        let img = dasgil::data::preprocess::load_rgb(p).unwrap();
        enc.encode(&[enc.prepare(&img).unwrap()]).unwrap()
    };
    let l1 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>();
    let (mut right, mut total) = (0, 0);
    for scene in 0..2 {
        for f in (0..12).step_by(2) {
            let a = describe(&frame_path(scene, "clone", f));
            for var in ["fog", "morning", "overcast", "rain", "sunset"] {
                let p = describe(&frame_path(scene, var, f));
                let far = describe(&frame_path(scene, var, (f + 6) % 12));
                let other = describe(&frame_path(1 - scene, var, f));
                for n in [far, other] {
                    total += 1;
                    right += (l1(&a, &p) < l1(&a, &n)) as usize;
                }
            }
        }
    }
    right as f64 / total as f64
}

#[test]
fn the_shipped_model_separates_positives_from_negatives_better_than_untrained() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shipped-heldout");
    let _ = std::fs::remove_dir_all(&dir);
    let vk = dir.join("vkitti2");
    // A world none of the training worlds is (they are seeds 1001 + 7919 s, s < 8).
    let out = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args([
            "synth",
            "vkitti2",
            "--out",
            path_str(&vk),
            "--seed",
            "31337",
            "--scenes",
            "2",
            "--frames",
            "12",
            "--width",
            "621",
            "--height",
            "188",
        ])
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trained = MapEncoder::from_checkpoint(&shipped(), tch::Device::Cpu, None).unwrap();
    let meta = dasgil::model::checkpoint::load_generator(&shipped(), tch::Device::Cpu, None)
        .unwrap()
        .meta;
    // The untrained network with the shipped model's own layers (e6), as evaluate scores it.
    let spec = dasgil::extract::default_spec(&meta);
    let untrained = MapEncoder::untrained(meta.config, tch::Device::Cpu, spec).unwrap();
    let (t, u) = (
        triplet_accuracy(&trained, &vk),
        triplet_accuracy(&untrained, &vk),
    );
    eprintln!("held-out triplet accuracy: shipped {t:.3}, untrained {u:.3}");
    assert!(t > u, "shipped {t:.3} vs untrained {u:.3}");
}
