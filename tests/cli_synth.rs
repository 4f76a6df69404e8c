//! `dasgil-tools synth ...` as a user runs it: data set, summary line and contact sheet.

use std::process::Command;

mod common;
use common::OutputWithin;

fn tools(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .output_limited()
        .expect("run dasgil-tools")
}

#[test]
fn synth_writes_each_format_with_a_preview_read_back_through_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, &[&str], (u32, u32)); 4] = [
        (
            "vkitti2",
            &[
                "--scenes", "1", "--frames", "1", "--width", "124", "--height", "38",
            ],
            (3, 10),
        ),
        (
            "kitti",
            &["--frames", "4", "--width", "124", "--height", "38"],
            (4, 1),
        ),
        (
            "cmu",
            &[
                "--places",
                "2",
                "--width",
                "64",
                "--height",
                "48",
                "--conditions",
                "snow,rain",
                "--lens",
                "cmu",
            ],
            (3, 2),
        ),
        (
            "robotcar",
            &[
                "--traversals",
                "2",
                "--frames",
                "4",
                "--width",
                "64",
                "--height",
                "48",
            ],
            (4, 2),
        ),
    ];
    for (format, extra, (cols, rows)) in runs {
        let out = dir.path().join(format);
        let preview = dir.path().join(format!("{format}.png"));
        let mut args = vec![
            "synth",
            format,
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "1",
            "--preview",
            preview.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let res = tools(&args);
        assert!(
            res.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let said = String::from_utf8_lossy(&res.stdout);
        assert!(
            said.starts_with("wrote ") && said.contains("preview"),
            "{said}"
        );
        let sheet = image::open(&preview).unwrap();
        // Cells are 320 px wide with 6 px gaps (plot::image_sheet: a title, a caption each).
        assert_eq!(sheet.width(), cols * 326 + 6, "{format}: {cols} columns");
        assert!(sheet.height() > rows * 40, "{format}: {rows} rows");
    }
    // --lens cmu: intrinsics.txt gives each camera the real file's distortion (the format
    // spec's table), read back as build-map reads it.
    let cams =
        dasgil::data::cmu_seasons::read_intrinsics(&dir.path().join("cmu/intrinsics.txt")).unwrap();
    let d = |c: &str| {
        let c = &cams[c];
        [c.k1, c.k2, c.p1, c.p2]
    };
    assert_eq!(d("c0"), [-0.399431, 0.188924, 0.000153, 0.000571]);
    assert_eq!(d("c1"), [-0.397066, 0.181925, 0.000176, -0.000579]);
    let res = tools(&[
        "synth",
        "vkitti2",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--cameras",
        "3",
    ]);
    assert_eq!(res.status.code(), Some(2), "a usage error");
    assert!(
        String::from_utf8_lossy(&res.stderr).starts_with(
            "error: invalid value '3' for '--cameras <CAMERAS>': expected a whole number from 1 \
             to 2, found `3`"
        ),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn wide_appearance_changes_the_look_of_every_variation_but_not_the_poses() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, appearance: &str| {
        let out = dir.path().join(name);
        let o = tools(&[
            "synth",
            "vkitti2",
            "--seed",
            "3",
            "--scenes",
            "1",
            "--frames",
            "1",
            "--width",
            "124",
            "--height",
            "38",
            "--appearance",
            appearance,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let (fixed, wide, again) = (
        run("fixed", "fixed"),
        run("wide", "wide"),
        run("again", "wide"),
    );
    let read = |root: &std::path::Path, rel: String| std::fs::read(root.join(rel)).unwrap();
    let mut looks = std::collections::BTreeSet::new();
    for var in dasgil::data::vkitti2::VARIATIONS {
        let text = format!("Scene01/{var}/extrinsic.txt");
        assert_eq!(
            read(&fixed, text.clone()),
            read(&wide, text),
            "{var}: poses"
        );
        let rgb = format!("Scene01/{var}/frames/rgb/Camera_0/rgb_00000.jpg");
        assert_ne!(
            read(&fixed, rgb.clone()),
            read(&wide, rgb.clone()),
            "{var}: same look"
        );
        assert_eq!(
            read(&wide, rgb.clone()),
            read(&again, rgb.clone()),
            "{var}: not repeatable"
        );
        looks.insert(read(&wide, rgb));
    }
    assert_eq!(looks.len(), 10, "each variation its own look");
    // Random appearance: another look per variation and another rig, at the same place.
    let (random, random_again) = (run("random", "random"), run("random-again", "random"));
    let centre = |root: &std::path::Path, var: &str| -> (Vec<f64>, Vec<f64>) {
        let text = String::from_utf8(read(root, format!("Scene01/{var}/extrinsic.txt"))).unwrap();
        let row: Vec<f64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .skip(2)
            .map(|v| v.parse().unwrap())
            .collect();
        // cam_from_world [R | t] row-major (4x4): centre = -R^T t.
        let c = (0..3)
            .map(|k| -(0..3).map(|r| row[r * 4 + k] * row[r * 4 + 3]).sum::<f64>())
            .collect();
        let intr = String::from_utf8(read(root, format!("Scene01/{var}/intrinsic.txt"))).unwrap();
        let fx = intr
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .skip(2)
            .map(|v| v.parse().unwrap())
            .collect();
        (c, fx)
    };
    let mut rigs = std::collections::BTreeSet::new();
    let (clone_centre, _) = centre(&random, "clone");
    for var in dasgil::data::vkitti2::VARIATIONS {
        let rgb = format!("Scene01/{var}/frames/rgb/Camera_0/rgb_00000.jpg");
        assert_eq!(
            read(&random, rgb.clone()),
            read(&random_again, rgb.clone()),
            "{var}: random not repeatable"
        );
        assert_ne!(
            read(&random, rgb.clone()),
            read(&wide, rgb),
            "{var}: random looks like wide"
        );
        let ((_, k_fixed), (c_random, k_random)) = (centre(&fixed, var), centre(&random, var));
        // Every variation at the same place on the road (x and y of the camera centre; a
        // random scene is its own world, with its own block sizes), each on its own rig.
        assert!(
            (clone_centre[0] - c_random[0]).abs() < 1e-6
                && (clone_centre[1] - c_random[1]).abs() < 1e-6,
            "{var}: camera centre moved on the ground: {clone_centre:?} vs {c_random:?}"
        );
        assert!(
            (1.2..=2.2).contains(&c_random[2]),
            "{var}: camera height {}",
            c_random[2]
        );
        assert!(
            k_random[0] >= 0.75 * k_fixed[0] - 1e-9 && k_random[0] <= 1.3 * k_fixed[0] + 1e-9,
            "{var}: focal {} vs {}",
            k_random[0],
            k_fixed[0]
        );
        rigs.insert(format!("{:.4} {:.4}", c_random[2], k_random[0]));
    }
    assert!(rigs.len() >= 9, "each variation its own rig: {rigs:?}");
    // A bad --appearance is in the bad-input corpus (tests/bad_inputs.txt).
}

/// `--force` replaces an earlier synth output as a whole and says what it replaced; another
/// kind of data set is warned about before the render (a slip of --out should not pass unseen);
/// what the user added to the folder, a broken marker and a non-PNG --preview are refused.
#[test]
fn force_says_which_earlier_data_set_it_replaced_and_never_takes_the_users_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("world");
    let out_s = out.to_str().unwrap();
    let synth_in = |cwd: &std::path::Path, out: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
            .current_dir(cwd)
            .args(
                ["synth"]
                    .iter()
                    .chain(args)
                    .chain(&["--out", out, "--width", "32", "--height", "32"]),
            )
            .env("RUST_LOG", "info")
            .output_limited()
            .expect("run dasgil-tools")
    };
    let synth = |args: &[&str]| {
        let said = synth_in(dir.path(), out_s, args);
        (
            said.status.code(),
            String::from_utf8_lossy(&said.stdout).into_owned(),
            String::from_utf8_lossy(&said.stderr).into_owned(),
        )
    };
    assert_eq!(synth(&["kitti", "--frames", "2"]).0, Some(0));
    let (code, said, warned) = synth(&["kitti", "--frames", "3", "--force"]);
    assert_eq!(code, Some(0), "{warned}");
    assert!(
        said.contains("; replaced the earlier synth kitti data set (2 images)"),
        "{said}"
    );
    assert!(!warned.contains("holds an earlier"), "{warned}");
    // What the user put there is never replaced with it.
    std::fs::write(out.join("my_notes.txt"), "mine").unwrap();
    let (code, _, refused) = synth(&["kitti", "--frames", "2", "--force"]);
    assert_eq!(code, Some(1));
    assert!(
        refused.contains(
            "holds an earlier synth data set and also my_notes.txt that synth did not write"
        ) && refused.contains("(nothing was changed)"),
        "{refused}"
    );
    std::fs::remove_file(out.join("my_notes.txt")).unwrap();
    std::fs::write(out.join("dataset/sequences/report.md"), "mine").unwrap();
    let (code, _, refused) = synth(&["kitti", "--frames", "2", "--force"]);
    assert_eq!(code, Some(1));
    assert!(
        refused.contains("and also dataset/sequences/report.md that synth did not write"),
        "{refused}"
    );
    std::fs::remove_file(out.join("dataset/sequences/report.md")).unwrap();
    // Another kind: warned before the render, named after it.
    let (code, said, warned) = synth(&["cmu", "--places", "2", "--force"]);
    assert_eq!(code, Some(0), "{warned}");
    assert!(
        said.contains("; replaced the earlier synth kitti data set (3 images)"),
        "{said}"
    );
    assert!(
        warned.contains(
            "holds an earlier synth kitti data set (3 images); it is replaced by this synth cmu \
             data set when the render completes"
        ),
        "{warned}"
    );
    assert!(
        !out.join("dataset").exists(),
        "the KITTI layout is gone as a whole"
    );
    // A marker that is not one is not a synth output: nothing is replaced.
    std::fs::write(out.join(".dasgil-synth.json"), "{not json").unwrap();
    let (code, _, refused) = synth(&["kitti", "--frames", "2", "--force"]);
    assert_eq!(code, Some(1));
    assert!(
        refused.contains("is not a synth output (its .dasgil-synth.json is not a synth marker"),
        "{refused}"
    );
    // --out . renders into the current folder (by its own name, said); staging folders that
    // interrupted runs left beside it (their lock held by nobody, or without one a dead
    // process's) are removed and said; a live process's and names not of staging folders are
    // kept.
    let here = dir.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let beside = |n: &str| dir.path().join(n);
    let me = std::process::id();
    for n in [
        ".here.partial-999999999-0".to_string(),
        ".here.partial-999999997-0".to_string(),
        format!(".here.partial-{me}-7"),
        format!(".here.partial-{me}-8"),
        ".here.partial-12-x".to_string(),
    ] {
        std::fs::create_dir(beside(&n)).unwrap();
    }
    for n in [
        format!(".here.partial-{me}-8"),
        ".here.partial-999999999-0".into(),
    ] {
        std::fs::write(beside(&n).join(".dasgil-staging.lock"), "").unwrap();
    }
    let done = synth_in(&here, ".", &["kitti", "--frames", "2"]);
    assert!(done.status.success(), "{done:?}");
    assert!(here.join("dataset/sequences").is_dir());
    assert!(
        !here.join(".dasgil-staging.lock").exists(),
        "the lock is the staging folder's"
    );
    assert!(!beside(".here.partial-999999999-0").exists());
    assert!(!beside(".here.partial-999999997-0").exists());
    assert!(!beside(&format!(".here.partial-{me}-8")).exists());
    assert!(beside(&format!(".here.partial-{me}-7")).exists());
    assert!(beside(".here.partial-12-x").exists());
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("`cd .` to see the new one"), "{said}");
    assert_eq!(
        String::from_utf8_lossy(&done.stderr)
            .matches("left by an interrupted run")
            .count(),
        3,
        "{done:?}"
    );
    // An earlier output that an interrupted --force moved aside comes back when the folder is
    // missing (and a run without --force then refuses to replace it).
    std::fs::rename(&here, beside(".here.partial-999999998-0-old")).unwrap();
    let refused = synth_in(
        dir.path(),
        here.to_str().unwrap(),
        &["kitti", "--frames", "2"],
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("put back from"),
        "{refused:?}"
    );
    assert!(here.join("dataset/sequences").is_dir());
    // A link to nothing is refused before any work.
    std::os::unix::fs::symlink(dir.path().join("gone"), beside("dangling")).unwrap();
    let refused = synth_in(dir.path(), "dangling", &["kitti", "--frames", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a link to a folder that does not exist"),
        "{refused:?}"
    );
    // --preview onto a file that is not a picture is refused.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "mine").unwrap();
    let refused = synth_in(
        dir.path(),
        dir.path().join("fresh").to_str().unwrap(),
        &[
            "kitti",
            "--frames",
            "2",
            "--preview",
            notes.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists and is not a PNG picture"));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine");
}

/// Ctrl-C (SIGINT) while rendering removes the partial render and says so; --out is untouched.
#[test]
fn an_interrupted_render_removes_its_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    let child = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args([
            "synth", "vkitti2", "--scenes", "2", "--frames", "40", "--width", "256",
        ])
        .args(["--height", "128", "--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".big.partial-"))
    };
    let t0 = std::time::Instant::now();
    while !staging() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(staging(), "the render never started");
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: a signal to the child this test spawned.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let done = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&done.stderr);
    if done.status.success() || said.contains("the data set was already complete") {
        // It finished before the signal arrived (a fast machine): nothing to check.
        assert!(out.is_dir());
        return;
    }
    // Ended by the signal (a shell's `$?` 130; a loop of commands stops).
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&done.status),
        Some(libc::SIGINT),
        "{said}"
    );
    assert!(
        said.contains("synth: interrupted: the partial render"),
        "{said}"
    );
    assert!(!out.exists(), "{said}");
    if staging() {
        // A last write raced the removal: the next run into the same folder removes it.
        let again = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
            .args([
                "synth", "kitti", "--frames", "1", "--width", "32", "--height", "32",
            ])
            .args(["--out", out.to_str().unwrap()])
            .output_limited()
            .unwrap();
        assert!(again.status.success(), "{again:?}");
    }
    assert!(!staging(), "{said}");
}
