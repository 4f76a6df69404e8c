//! `build-map --bag` as a robotics engineer runs it on their robot's recording: a small
//! Extended CMU-Seasons world written as rosbag2 recordings (tools/python/world_to_bag.py, with
//! the `rosbags` package) in both storages (MCAP, sqlite3), both image transports, and posed by
//! TF or by a pose topic. A map built from the recording must hold the same places as the map
//! built from the folder, and score the same queries the same; frames outside the recorded
//! poses are skipped and counted. Bad recordings are in the bad-input corpus.

use std::path::{Path, PathBuf};

mod common;
use common::{checkpoint, path_str};

/// Runs tools/python/world_to_bag.py; returns what it printed.
fn world_to_bag(args: &[&str]) -> String {
    common::python_tool("world_to_bag.py", args)
}

/// dasgil-tools with its own data folder (the frames cache), so tests never share one.
fn tools_in(data: &Path, args: &[&str]) -> std::process::Output {
    common::run_tools_in(Some(data), args)
}

fn ok_in(data: &Path, args: &[&str]) -> String {
    common::run_tools_ok_in(Some(data), args)
}

/// `CMD --bag BAG` with two image topics as cameras c0 and c1, then `rest`.
fn two_cameras<'a>(
    cmd: &'a str,
    bag: &'a Path,
    topics: [&'a str; 2],
    rest: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        cmd,
        "--bag",
        path_str(bag),
        "--image-topic",
        topics[0],
        "--image-topic",
        topics[1],
        "--camera-id",
        "c0",
        "--camera-id",
        "c1",
    ];
    args.extend_from_slice(rest);
    args
}

/// The map file's metadata (JSON).
fn map_meta(map: &Path) -> serde_json::Value {
    let bytes = std::fs::read(map).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    serde_json::from_str(meta.values().next().unwrap()).unwrap()
}

/// A map file's tensor `name` as 8- or 4-byte little-endian values, and its row length.
fn map_tensor<T>(map: &Path, name: &str, from: fn(&[u8]) -> T) -> (Vec<T>, usize) {
    let bytes = std::fs::read(map).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let width = std::mem::size_of::<T>();
    let values = t.data().chunks_exact(width).map(from).collect();
    (values, t.shape().get(1).copied().unwrap_or(1))
}

/// Each map entry's (camera, timestamp µs), in the map's row order.
fn map_keys(map: &Path) -> Vec<(String, i64)> {
    let (times, _) = map_tensor(map, "timestamps_us", |b| {
        i64::from_le_bytes(b.try_into().unwrap())
    });
    map_meta(map)["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .zip(times)
        .collect()
}

/// (camera, timestamp µs) -> (x, y, z, qw, qx, qy, qz) of every map entry.
fn map_poses(map: &Path) -> std::collections::BTreeMap<(String, i64), [f64; 7]> {
    let (poses, _) = map_tensor(map, "poses", |b| f64::from_le_bytes(b.try_into().unwrap()));
    map_keys(map)
        .into_iter()
        .zip(poses.chunks_exact(7))
        .map(|(k, p)| (k, p.try_into().unwrap()))
        .collect()
}

/// (camera, timestamp µs) -> each yaw view's descriptor of every map entry (`view_descriptors`,
/// f32, entry-major).
fn map_views(map: &Path) -> std::collections::BTreeMap<(String, i64), Vec<Vec<f32>>> {
    let (values, dim) = map_tensor(map, "view_descriptors", |b| {
        f32::from_le_bytes(b.try_into().unwrap())
    });
    let per_entry = map_meta(map)["yaw_views_deg"].as_array().unwrap().len();
    map_keys(map)
        .into_iter()
        .zip(values.chunks_exact(per_entry * dim))
        .map(|(k, rows)| (k, rows.chunks_exact(dim).map(<[f32]>::to_vec).collect()))
        .collect()
}

/// `evaluate --map MAP` on the world's queries: (queries, recall@1, share within 5 m and 10°).
fn evaluate(data: &Path, map: &Path, root: &Path, out: &Path) -> (u64, f64, f64) {
    ok_in(
        data,
        &[
            "evaluate",
            "--map",
            path_str(map),
            "--format",
            "cmu",
            "--root",
            path_str(root),
            "--slice",
            "3",
            "--device",
            "cpu",
            "--out",
            path_str(out),
        ],
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let all = &r["reports"][0]["all"];
    (
        all["queries"].as_u64().unwrap(),
        all["recall_at_n"]["1"].as_f64().unwrap(),
        all["accuracy"]["5m,10deg"].as_f64().unwrap(),
    )
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    ckpt: PathBuf,
    data: PathBuf,
}

impl World {
    /// A map of the world's folder (slice 3) at `map`.
    fn folder_map(&self, map: &Path) {
        ok_in(
            &self.data,
            &[
                "build-map",
                "--format",
                "cmu",
                "--root",
                path_str(&self.root),
                "--slice",
                "3",
                "--checkpoint",
                path_str(&self.ckpt),
                "--out",
                path_str(map),
                "--device",
                "cpu",
            ],
        );
    }

    /// The world's database written as a recording (`db`, TF-posed) and the map built from it
    /// with cameras c0 and c1 (`db.map`, returned).
    fn map_from_recording(&self) -> PathBuf {
        let (db, map) = (self.dir.join("db"), self.dir.join("db.map"));
        world_to_bag(&[
            "--root",
            path_str(&self.root),
            "--slice",
            "3",
            "--out",
            path_str(&db),
        ]);
        ok_in(
            &self.data,
            &two_cameras(
                "build-map",
                &db,
                ["/c0/image_raw", "/c1/image_raw"],
                &[
                    "--checkpoint",
                    path_str(&self.ckpt),
                    "--out",
                    path_str(&map),
                    "--device",
                    "cpu",
                ],
            ),
        );
        map
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cmu");
    common::small_cmu(&root, "8");
    let ckpt = dir.path().join("gen.safetensors");
    checkpoint(&ckpt, 1);
    World {
        dir: dir.path().to_path_buf(),
        data: dir.path().join("data"),
        root,
        ckpt,
        _dir: dir,
    }
}

#[test]
fn a_map_from_a_recording_holds_the_folders_places_and_scores_its_queries_the_same() {
    let w = world();
    let d = |n: &str| w.dir.join(n);
    w.folder_map(&d("folder.map"));
    let folder = map_poses(&d("folder.map"));
    let folder_scores = evaluate(&w.data, &d("folder.map"), &w.root, &d("ev-folder"));
    assert_eq!(folder.len(), 16);
    assert_eq!(folder_scores.0, 32);

    // MCAP, raw rgb8 frames, posed by TF (map -> odom -> base_link -> cK_optical_frame); and
    // sqlite3, the JPEG bytes as CompressedImage, posed by nav_msgs/Odometry of base_link
    // with the cameras' mounting given as --base-from-camera.
    for (name, storage, transport, poses) in [
        ("tf-mcap", "mcap", "raw", "tf"),
        ("odom-sqlite", "sqlite3", "compressed", "odometry"),
    ] {
        let bag = d(name);
        let printed = world_to_bag(&[
            "--root",
            path_str(&w.root),
            "--slice",
            "3",
            "--out",
            path_str(&bag),
            "--storage",
            storage,
            "--transport",
            transport,
            "--poses",
            poses,
        ]);
        let topic = |c: &str| {
            if transport == "raw" {
                format!("/{c}/image_raw")
            } else {
                format!("/{c}/image_raw/compressed")
            }
        };
        let (t0, t1) = (topic("c0"), topic("c1"));
        let map = d(&format!("{name}.map"));
        let mut args = two_cameras(
            "build-map",
            &bag,
            [t0.as_str(), t1.as_str()],
            &[
                "--checkpoint",
                path_str(&w.ckpt),
                "--out",
                path_str(&map),
                "--device",
                "cpu",
            ],
        );
        // The mounting world_to_bag.py printed, one per camera.
        let mounts: Vec<String> = printed
            .lines()
            .filter_map(|l| {
                l.split_once(": ")
                    .filter(|(k, _)| k.starts_with("--base-from-camera"))
            })
            .map(|(_, v)| v.trim_matches('"').to_string())
            .collect();
        if poses != "tf" {
            assert_eq!(mounts.len(), 2, "{printed}");
            args.extend(["--pose-topic", "/odom"]);
            for m in &mounts {
                args.extend(["--base-from-camera", m.as_str()]);
            }
        }
        let summary = ok_in(&w.data, &args);
        assert!(
            summary.contains("16 images (2 cameras: c0,c1)"),
            "{summary}"
        );
        assert!(
            summary.contains(&format!(
                "{t0} (frame c0_optical_frame): 8 messages, 8 frames kept"
            )),
            "{summary}"
        );
        assert!(summary.contains("images/s"), "{summary}");
        // Every place of the folder's map, at the same pose (interpolated between 50 Hz pose
        // messages: within 2 cm and 0.2 degrees).
        let from_bag = map_poses(&map);
        assert_eq!(
            from_bag.keys().collect::<Vec<_>>(),
            folder.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, p) in &from_bag {
            let f = &folder[k];
            let dt = ((p[0] - f[0]).powi(2) + (p[1] - f[1]).powi(2) + (p[2] - f[2]).powi(2)).sqrt();
            let dot = (p[3] * f[3] + p[4] * f[4] + p[5] * f[5] + p[6] * f[6])
                .abs()
                .min(1.0);
            let angle = 2.0 * dot.acos().to_degrees();
            assert!(
                dt < 0.02 && angle < 0.2,
                "{name} {k:?}: {dt} m, {angle} deg"
            );
        }
        // The same queries score the same (within one query of 32).
        let scores = evaluate(&w.data, &map, &w.root, &d(&format!("ev-{name}")));
        assert_eq!(scores.0, folder_scores.0);
        assert!(
            (scores.1 - folder_scores.1).abs() <= 1.0 / 32.0 + 1e-9
                && (scores.2 - folder_scores.2).abs() <= 1.0 / 32.0 + 1e-9,
            "{name}: {scores:?} vs the folder's {folder_scores:?}"
        );
        // The map says where it came from.
        let source = &map_meta(&map)["source"];
        assert_eq!(source["format"], "rosbag2", "{source}");
        assert_eq!(source["bag"]["path"], path_str(&bag), "{source}");
        assert_eq!(source["bag"]["storage"], storage, "{source}");
        assert_eq!(source["bag"]["image_topics"][1], t1.as_str(), "{source}");
        assert_eq!(
            source["bag"]["camera_frames"][1], "c1_optical_frame",
            "{source}"
        );
        assert_eq!(source["bag"]["world_frame"], "map", "{source}");
    }
}

/// Yaw views need intrinsics: a recording gives them in each camera's camera_info (K, D; as a
/// driver publishes it beside the image topic), and its views are the folder's (which takes them
/// from intrinsics.txt); a recording without camera_info is refused, naming where they come from,
/// and built without views when they were not asked for (build-map's default).
#[test]
fn a_recordings_camera_info_gives_yaw_views_and_one_without_it_is_refused() {
    let w = world();
    let d = |n: &str| w.dir.join(n);
    let build = |source: &[&str], out: &Path| {
        let mut args = vec!["build-map"];
        args.extend_from_slice(source);
        args.extend([
            "--yaw-views",
            "4",
            "--checkpoint",
            path_str(&w.ckpt),
            "--out",
            path_str(out),
            "--device",
            "cpu",
        ]);
        tools_in(&w.data, &args)
    };
    let root = path_str(&w.root);
    let folder = build(
        &["--format", "cmu", "--root", root, "--slice", "3"],
        &d("folder.map"),
    );
    assert!(folder.status.success(), "{folder:?}");
    // The JPEG files' bytes as CompressedImage: decoded as the folder's files are, so the
    // views are the folder's exactly when the intrinsics are.
    let recording = |out: &Path, extra: &[&str]| {
        let mut args = vec!["--root", root, "--slice", "3", "--out", path_str(out)];
        args.extend_from_slice(&["--transport", "compressed"]);
        args.extend_from_slice(extra);
        world_to_bag(&args);
    };
    recording(&d("db"), &[]);
    let topics = ["/c0/image_raw/compressed", "/c1/image_raw/compressed"];
    let bag = build(
        &two_cameras("--bag", &d("db"), topics, &[])[1..],
        &d("db.map"),
    );
    let summary =
        String::from_utf8_lossy(&bag.stdout).to_string() + &String::from_utf8_lossy(&bag.stderr);
    assert!(bag.status.success(), "{summary}");
    assert!(
        summary.contains(
            "/c0/image_raw/compressed: intrinsics from /c0/camera_info (K and D, no distortion)"
        ),
        "{summary}"
    );
    assert_eq!(
        map_meta(&d("db.map"))["yaw_views_deg"],
        serde_json::json!([4.0, -4.0])
    );
    // --camera-info-topic names another (here c0's for both cameras).
    let named = build(
        &two_cameras(
            "--bag",
            &d("db"),
            topics,
            &[
                "--camera-info-topic",
                "/c0/camera_info",
                "--camera-info-topic",
                "/c0/camera_info",
            ],
        )[1..],
        &d("named.map"),
    );
    let said = String::from_utf8_lossy(&named.stdout).to_string()
        + &String::from_utf8_lossy(&named.stderr);
    assert!(
        named.status.success()
            && said.contains("/c1/image_raw/compressed: intrinsics from /c0/camera_info"),
        "{said}"
    );
    // c0's calibration for c1's frames is said (a swapped pair would be the same words), c0's
    // for c0's is not.
    assert!(
        said.contains(
            "/c1/image_raw/compressed: /c0/camera_info calibrates `c0_optical_frame`, but the \
             frames are in `c1_optical_frame`: another camera's calibration?"
        ) && !said.contains("/c0/image_raw/compressed: /c0/camera_info calibrates"),
        "{said}"
    );
    assert!(
        !summary.contains("another camera's calibration"),
        "{summary}"
    );
    // Each view is the folder's (other intrinsics would turn the image about another centre,
    // by another angle).
    let (from_bag, from_folder) = (map_views(&d("db.map")), map_views(&d("folder.map")));
    assert_eq!(
        from_bag.keys().collect::<Vec<_>>(),
        from_folder.keys().collect::<Vec<_>>()
    );
    // (Within float rounding: the encoder's batches differ in order; half a pixel moves a view
    // by far more.)
    let l1 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>();
    for (k, views) in &from_bag {
        for (v, f) in views.iter().zip(&from_folder[k]) {
            let (off, size) = (l1(v, f), l1(f, &vec![0.0; f.len()]));
            assert!(
                off <= 1e-4 * size,
                "{k:?}: a view {off:e} off the folder's ({size:e})"
            );
        }
    }

    // The same recording without camera_info: refused, and nothing written.
    recording(&d("bare"), &["--no-camera-info"]);
    let bare = build(
        &two_cameras("--bag", &d("bare"), topics, &[])[1..],
        &d("bare.map"),
    );
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(!bare.status.success(), "{err}");
    assert!(
        err.contains("--yaw-views") && err.contains("no /c0/camera_info"),
        "{err}"
    );
    assert!(!d("bare.map").exists());
    // Without --yaw-views (build-map's default views where there are intrinsics): the map is
    // built without views, and the summary says why, quoting the recording's reason.
    let (bare_bag, out) = (d("bare"), d("bare-default.map"));
    let mut args = vec!["build-map"];
    args.extend_from_slice(&two_cameras("--bag", &bare_bag, topics, &[])[1..]);
    args.extend([
        "--checkpoint",
        path_str(&w.ckpt),
        "--out",
        path_str(&out),
        "--device",
        "cpu",
    ]);
    let plain = tools_in(&w.data, &args);
    let said = String::from_utf8_lossy(&plain.stdout).to_string()
        + &String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{said}");
    assert!(
        said.contains("no yaw views: the default views (±3,±6 deg) turn each map image")
            && said.contains("no /c0/camera_info"),
        "{said}"
    );
    assert!(map_meta(&d("bare-default.map"))
        .get("yaw_views_deg")
        .is_none());
}

#[test]
fn frames_outside_the_recorded_poses_are_skipped_and_counted_and_thinning_keeps_fewer() {
    let w = world();
    let bag = w.dir.join("trimmed");
    // No TF in the first and last 0.6 s of the drive (frames every 0.5 s): the first two and
    // last two stamps of each camera cannot be posed without extrapolating.
    world_to_bag(&[
        "--root",
        path_str(&w.root),
        "--slice",
        "3",
        "--out",
        path_str(&bag),
        "--trim-poses",
        "0.6",
    ]);
    let base = [
        "build-map",
        "--bag",
        path_str(&bag),
        "--image-topic",
        "/c0/image_raw",
        "--checkpoint",
        path_str(&w.ckpt),
        "--device",
        "cpu",
    ];
    // An extraction interrupted earlier with other options (its own cache folder) left its
    // staging folder: this run removes it, not one whose process still runs (this test's).
    let cache = w.data.join("bags");
    let stale = cache.join(".bag-other-options.partial-999999999-0");
    let live = cache.join(format!(".bag-running.partial-{}-0", std::process::id()));
    for d in [&stale, &live] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("000001.png"), b"half-written").unwrap();
    }
    let out = w.dir.join("trimmed.map");
    let mut args = base.to_vec();
    args.extend(["--out", path_str(&out)]);
    let s = ok_in(&w.data, &args);
    assert!(!stale.exists() && live.exists(), "{s}");
    assert!(
        s.contains(
            "8 messages, 4 frames kept; skipped 2 before the start of TF, 2 after the end of TF"
        ),
        "{s}"
    );
    assert_eq!(map_poses(&out).len(), 4);
    // A second build reuses the extracted frames and says so, with the same counts.
    let again = w.dir.join("again.map");
    let mut args = base.to_vec();
    args.extend(["--out", path_str(&again)]);
    let s2 = ok_in(&w.data, &args);
    assert!(
        s2.contains("reused from")
            && s2.contains("4 frames kept")
            && s2.contains("when they were extracted, bag read: ")
            && !s2.contains("replaced the map"),
        "{s2}"
    );
    // The same --out again: the earlier map is replaced, and that is said.
    let s3 = ok_in(&w.data, &args);
    assert!(
        s3.contains(&format!("replaced the map that was at {}", again.display())),
        "{s3}"
    );
    // Thinning: every 2nd posed frame, and frames at least 7 m apart (places are 4 m apart).
    for (flag, value, kept) in [("--every", "2", 2), ("--min-distance", "7", 2)] {
        let m = w.dir.join(format!("thin{flag}.map"));
        let mut args = base.to_vec();
        args.extend([flag, value, "--out", path_str(&m)]);
        let s = ok_in(&w.data, &args);
        assert!(s.contains(&format!("{kept} frames kept")), "{flag}: {s}");
        assert!(
            s.contains("thinned (--every/--min-distance)"),
            "{flag}: {s}"
        );
        assert_eq!(map_poses(&m).len(), kept, "{flag}");
    }
}

#[test]
fn a_query_recording_is_scored_against_its_recorded_truth_and_written_as_tum() {
    let w = world();
    let d = |n: &str| w.dir.join(n);
    let map = w.map_from_recording();
    // The folder's queries against the map, and the same queries recorded with TF.
    let folder = evaluate(&w.data, &map, &w.root, &d("ev-folder"));
    world_to_bag(&[
        "--root",
        path_str(&w.root),
        "--slice",
        "3",
        "--part",
        "query",
        "--out",
        path_str(&d("q")),
    ]);
    let (q, ev) = (d("q"), d("ev-bag"));
    let printed = ok_in(
        &w.data,
        &two_cameras(
            "evaluate",
            &q,
            ["/c0/image_raw", "/c1/image_raw"],
            &[
                "--map",
                path_str(&map),
                "--truth-frame",
                "map",
                "--device",
                "cpu",
                "--out",
                path_str(&ev),
            ],
        ),
    );
    assert!(printed.contains("32 queries, 16 map images"), "{printed}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d("ev-bag/report.json")).unwrap()).unwrap();
    assert_eq!(
        map_meta(&map)["source"]["bag"]["camera_ids"],
        serde_json::json!(["c0", "c1"])
    );
    assert!(
        !r["notes"].to_string().contains("crossed"),
        "{}",
        r["notes"]
    );
    // The same recording with its camera ids given the other way round: each camera searches
    // the other's map images. Said in the log and the report's notes, naming both.
    let crossed = tools_in(
        &w.data,
        &[
            "evaluate",
            "--bag",
            path_str(&q),
            "--image-topic",
            "/c0/image_raw",
            "--image-topic",
            "/c1/image_raw",
            "--camera-id",
            "c1",
            "--camera-id",
            "c0",
            "--map",
            path_str(&map),
            "--truth-frame",
            "map",
            "--device",
            "cpu",
            "--out",
            path_str(&d("ev-crossed")),
        ],
    );
    let said = String::from_utf8_lossy(&crossed.stderr);
    assert_eq!(crossed.status.code(), Some(0), "{said}");
    let want = "camera `c1`'s frames are in `c0_optical_frame`, the frame of the map's camera `c0`";
    assert!(
        said.contains(want) && said.contains("/c0/image_raw as c0, /c1/image_raw as c1"),
        "{said}"
    );
    let notes = std::fs::read_to_string(d("ev-crossed/report.md")).unwrap();
    assert!(notes.contains(want), "{notes}");
    let all = &r["reports"][0]["all"];
    let (recall, acc) = (
        all["recall_at_n"]["1"].as_f64().unwrap(),
        all["accuracy"]["5m,10deg"].as_f64().unwrap(),
    );
    assert!(
        (recall - folder.1).abs() <= 1.0 / 32.0 + 1e-9
            && (acc - folder.2).abs() <= 1.0 / 32.0 + 1e-9,
        "recording ({recall}, {acc}) vs folder {folder:?}"
    );
    // TUM trajectories per camera: the truth of every query, the published priors, in time
    // order, `stamp tx ty tz qx qy qz qw`; the folder's and the recording's truth agree.
    for dir in ["ev-bag", "ev-folder"] {
        for cam in ["c0", "c1"] {
            let truth = std::fs::read_to_string(d(&format!("{dir}/truth-{cam}.tum"))).unwrap();
            let rows: Vec<Vec<f64>> = truth
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
                .collect();
            assert_eq!(rows.len(), 16, "{dir} {cam}");
            assert!(rows.iter().all(|r| r.len() == 8), "{dir} {cam}");
            assert!(
                rows.windows(2).all(|p| p[0][0] < p[1][0]),
                "{dir} {cam}: time order"
            );
            let priors = std::fs::read_to_string(d(&format!("{dir}/priors-{cam}.tum"))).unwrap();
            assert!(
                priors.starts_with("# timestamp tx ty tz qx qy qz qw\n"),
                "{priors}"
            );
        }
    }
    // The columns are what TUM says: the truth against the slice's own ground truth
    // (camera-poses: `name qw qx qy qz cx cy cz`, q world->camera: the TUM quaternion is its
    // conjugate), and every published prior is a map image's pose, quaternion order included.
    let rows = |path: &Path| -> Vec<Vec<f64>> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
            .collect()
    };
    let gt_dir = w.root.join("slice3/camera-poses");
    let mut gt: std::collections::BTreeMap<(String, i64), Vec<f64>> = Default::default();
    for f in std::fs::read_dir(&gt_dir).unwrap() {
        for l in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            let v: Vec<&str> = l.split_whitespace().collect();
            let (cam, us) = (&v[0][10..12], v[0][13..29].parse::<i64>().unwrap());
            gt.insert(
                (cam.to_string(), us),
                v[1..].iter().map(|x| x.parse().unwrap()).collect(),
            );
        }
    }
    let same_rotation = |tum: &[f64], wxyz: [f64; 4]| {
        let dot = tum[4] * wxyz[1] + tum[5] * wxyz[2] + tum[6] * wxyz[3] + tum[7] * wxyz[0];
        dot.abs() > 1.0 - 1e-6
    };
    for r in rows(&d("ev-folder/truth-c0.tum")) {
        let g = &gt[&("c0".to_string(), (r[0] * 1e6).round() as i64)];
        assert!(
            (r[1] - g[4]).abs() + (r[2] - g[5]).abs() + (r[3] - g[6]).abs() < 1e-5,
            "{r:?} {g:?}"
        );
        assert!(
            same_rotation(&r, [g[0], -g[1], -g[2], -g[3]]),
            "{r:?} vs {g:?}"
        );
    }
    // A prior's position is a c0 map image's; its orientation that image's, or at a bend
    // turned at most halfway to a c0 image within 10 m (docs/pose-prior.md, "Between map
    // images").
    let entries = map_poses(&map);
    let c0: Vec<&[f64]> = entries
        .iter()
        .filter(|((c, _), _)| c == "c0")
        .map(|(_, p)| &p[..])
        .collect();
    let angle = |a: [f64; 4], b: [f64; 4]| {
        let dot: f64 = (0..4).map(|i| a[i] * b[i]).sum();
        2.0 * dot.abs().min(1.0).acos()
    };
    let wxyz = |p: &[f64]| [p[3], p[4], p[5], p[6]];
    let priors = rows(&d("ev-bag/priors-c0.tum"));
    assert!(!priors.is_empty());
    let mut turned = 0;
    for r in &priors {
        let image = c0
            .iter()
            .find(|p| (r[1] - p[0]).abs() + (r[2] - p[1]).abs() + (r[3] - p[2]).abs() < 1e-5)
            .unwrap_or_else(|| panic!("prior {r:?} is at no c0 map image"));
        let prior = [r[7], r[4], r[5], r[6]];
        let off = angle(prior, wxyz(image));
        let room = c0
            .iter()
            .filter(|p| (0..3).map(|i| (p[i] - image[i]).powi(2)).sum::<f64>() < 100.0)
            .map(|p| angle(wxyz(p), wxyz(image)))
            .fold(0.0f64, f64::max);
        assert!(
            same_rotation(r, wxyz(image)) || off <= 0.5 * room + 1e-9,
            "prior {r:?} is turned {off} rad from its image's, half the turn to a neighbour is {}",
            0.5 * room
        );
        turned += usize::from(!same_rotation(r, wxyz(image)));
    }
    eprintln!("{turned} of {} priors turned at a bend", priors.len());
    let a = std::fs::read_to_string(d("ev-bag/truth-c1.tum")).unwrap();
    let b = std::fs::read_to_string(d("ev-folder/truth-c1.tum")).unwrap();
    for (x, y) in a.lines().zip(b.lines()).skip(1) {
        let x: Vec<f64> = x.split(' ').map(|v| v.parse().unwrap()).collect();
        let y: Vec<f64> = y.split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(x[0], y[0]);
        let dt = ((x[1] - y[1]).powi(2) + (x[2] - y[2]).powi(2) + (x[3] - y[3]).powi(2)).sqrt();
        assert!(dt < 0.02, "{x:?} vs {y:?}");
    }
    // Without --map there is nothing to score the recording against.
    let out = tools_in(
        &w.data,
        &[
            "evaluate",
            "--bag",
            path_str(&d("q")),
            "--image-topic",
            "/c0/image_raw",
            "--out",
            path_str(&d("ev-none")),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --map"));
    assert!(!d("ev-none").exists());
}

/// `evaluate --bag ... --filter sequence --odometry-topic TOPIC`: the recording's wheel
/// odometry (tools/python/world_to_bag.py --wheel-odometry, drifting) reaches the filter as the
/// node's `odometry_topic` hands it on. Every capture but the first of each drive moves the
/// filter by it (between drives the odometry has a hole; the two cameras of a capture are one
/// step), and the filter's output differs from the run without; the report says what was
/// taken. A topic that is
/// missing, of another type, or given without the filter is refused, naming it.
#[test]
fn a_recordings_odometry_moves_the_sequence_filter_as_in_the_node() {
    let w = world();
    let d = |n: &str| w.dir.join(n);
    let map = w.map_from_recording();
    let printed = world_to_bag(&[
        "--root",
        path_str(&w.root),
        "--slice",
        "3",
        "--part",
        "query",
        "--wheel-odometry",
        "/wheel/odom",
        "--out",
        path_str(&d("q")),
    ]);
    assert!(
        printed.contains("wheel odometry on /wheel/odom"),
        "{printed}"
    );
    // The drives of the query recording: its stamps more than 5 s apart.
    let mut stamps: Vec<i64> = Vec::new();
    for f in std::fs::read_dir(w.root.join("slice3/camera-poses")).unwrap() {
        for l in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            stamps.push(l[13..29].parse().unwrap());
        }
    }
    stamps.sort_unstable();
    let drives = 1 + stamps
        .windows(2)
        .filter(|p| p[1] - p[0] > 5_000_000)
        .count() as u64;
    assert!(drives >= 2, "{drives}");
    let evaluate_on = |map: &Path, out: &str, extra: &[&str]| {
        let mut rest = vec!["--map", path_str(map), "--device", "cpu", "--out"];
        let out = d(out);
        rest.push(path_str(&out));
        rest.extend_from_slice(extra);
        tools_in(
            &w.data,
            &two_cameras(
                "evaluate",
                &d("q"),
                ["/c0/image_raw", "/c1/image_raw"],
                &rest,
            ),
        )
    };
    let evaluate = |out: &str, extra: &[&str]| evaluate_on(&map, out, extra);
    let out = evaluate(
        "ev-odom",
        &["--filter", "sequence", "--odometry-topic", "/wheel/odom"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d("ev-odom/report.json")).unwrap()).unwrap();
    let o = &r["reports"][0]["sequence"]["odometry"];
    assert_eq!(o["topic"], "/wheel/odom", "{o}");
    let messages = o["messages"].as_u64().unwrap();
    assert!(messages > 32, "{o}");
    assert_eq!(o["taken"].as_u64().unwrap(), messages, "{o}");
    assert_eq!(o["left_out"].as_u64().unwrap(), 0, "{o}");
    assert_eq!(o["out_of_order"].as_u64().unwrap(), 0, "{o}");
    // 32 queries: 16 captures of two cameras.
    assert_eq!(o["steps_moved"].as_u64().unwrap(), 16 - drives, "{o}");
    assert!(
        stdout.contains(&format!(
            "odometry from /wheel/odom: {messages} of its {messages} message(s) taken"
        )) && stdout.contains(&format!("{} filter step(s) moved by it", 16 - drives)),
        "{stdout}"
    );
    let md = std::fs::read_to_string(d("ev-odom/report.md")).unwrap();
    assert!(md.contains("odometry from /wheel/odom"), "{md}");
    // Without the topic: no odometry block.
    let out = evaluate("ev-plain", &["--filter", "sequence"]);
    assert!(out.status.success());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d("ev-plain/report.json")).unwrap()).unwrap();
    assert!(r["reports"][0]["sequence"].get("odometry").is_none(), "{r}");
    // The odometry moved the belief: the published beliefs differ.
    let beliefs = |dir: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d(dir).join("candidates-none.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["belief_profile"].clone()
            })
            .collect()
    };
    let (with, without) = (beliefs("ev-odom"), beliefs("ev-plain"));
    assert_eq!(with.len(), without.len());
    assert!(with.iter().all(|b| b.is_array()), "{:?}", with.first());
    assert!(
        with != without,
        "the same beliefs with and without odometry"
    );
    // Refused: an image topic, a topic the recording lacks, no sequence filter.
    let refused = |out: std::process::Output, exit: i32, fragments: &[&str]| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "{err}");
        assert!(fragments.iter().all(|f| err.contains(f)), "{err}");
    };
    refused(
        evaluate(
            "ev-wrong",
            &["--filter", "sequence", "--odometry-topic", "/c0/image_raw"],
        ),
        1,
        &[
            "--odometry-topic /c0/image_raw: type sensor_msgs/msg/Image",
            "expected nav_msgs/msg/Odometry",
        ],
    );
    refused(
        evaluate(
            "ev-missing",
            &["--filter", "sequence", "--odometry-topic", "/odom"],
        ),
        1,
        &[
            "--odometry-topic /odom: no such topic",
            "candidates: /wheel/odom (nav_msgs/msg/Odometry)",
        ],
    );
    refused(
        evaluate("ev-none", &["--odometry-topic", "/wheel/odom"]),
        2,
        &["add --filter sequence"],
    );
    let out = tools_in(
        &w.data,
        &[
            "evaluate",
            "--format",
            "cmu",
            "--root",
            path_str(&w.root),
            "--slice",
            "3",
            "--map",
            path_str(&map),
            "--filter",
            "sequence",
            "--odometry-topic",
            "/wheel/odom",
            "--out",
            path_str(&d("ev-folder")),
        ],
    );
    refused(out, 2, &["--odometry-topic reads a recording's odometry"]);
    for dir in ["ev-wrong", "ev-missing", "ev-none", "ev-folder"] {
        assert!(!d(dir).exists(), "{dir}");
    }
    // A map built from the folder scores the recording too, and matches.png shows its images
    // (the map names them by file name: the folder's reader finds them).
    let folder_map = d("folder.map");
    w.folder_map(&folder_map);
    let out = evaluate_on(&folder_map, "ev-folder-map", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, h) = image::image_dimensions(d("ev-folder-map/matches.png")).unwrap();
    assert!(
        h > 100,
        "matches.png is {h} pixels high: no map image found"
    );
}

/// Ctrl-C during `build-map --bag` ends it with 130 and says so; the frames' staging folder (when
/// the signal comes while frames are extracted) is removed, and no map is written.
#[test]
fn an_interrupted_build_map_leaves_no_half_written_frames_or_map() {
    let w = world();
    let bag = w.dir.join("drive");
    world_to_bag(&[
        "--root",
        path_str(&w.root),
        "--slice",
        "3",
        "--out",
        path_str(&bag),
    ]);
    let out = w.dir.join("drive.map");
    let args = two_cameras(
        "build-map",
        &bag,
        ["/c0/image_raw", "/c1/image_raw"],
        &[
            "--checkpoint",
            path_str(&w.ckpt),
            "--out",
            path_str(&out),
            "--device",
            "cpu",
        ],
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(&args)
        .env("DASGIL_DATA", &w.data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cache = w.data.join("bags");
    let staging = || {
        std::fs::read_dir(&cache).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
        })
    };
    // As soon as the extraction starts (or, on a fast machine, while the frames are encoded).
    let t0 = std::time::Instant::now();
    while !staging() && !cache.is_dir() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    while !staging() && t0.elapsed().as_millis() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let extracting = staging();
    let Some(said) = common::interrupt(child, "build-map") else {
        // It finished before the signal arrived (a fast machine): nothing to check.
        assert!(out.is_file());
        return;
    };
    assert!(
        said.contains("removed what was being written: ")
            && said.contains("outputs already in place stay")
            // Unless the extraction finished between the look and the signal.
            || !extracting
            || said.contains("no file was being written"),
        "{said}"
    );
    assert!(!staging(), "{said}");
    assert!(!out.exists(), "{said}");
    // What stays in the cache is only a complete extraction, reused by the next run.
    let s = ok_in(&w.data, &args);
    assert!(s.contains("frames kept"), "{s}");
}
