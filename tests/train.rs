//! `dasgil-tools train` as a user runs it, on a tiny generated data set: losses go down,
//! checkpoints are written, a resumed run equals an unbroken one step for step, a corrupt
//! checkpoint is refused, a diverging run stops naming the step and term, SIGTERM saves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;
use common::{path_str, OutputWithin};

fn tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output_limited()
        .expect("run dasgil-tools")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny VKITTI2 (1 scene x 10 variations x 6 frames) and KITTI (4 images), made once per run
/// of this test binary.
fn data() -> &'static (PathBuf, PathBuf) {
    static DATA: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("train-data");
        let _ = std::fs::remove_dir_all(&dir);
        let vk = dir.join("vkitti2");
        let ki = dir.join("kitti");
        ok(&tools(&[
            "synth",
            "vkitti2",
            "--out",
            path_str(&vk),
            "--scenes",
            "1",
            "--frames",
            "6",
            "--width",
            "320",
            "--height",
            "128",
        ]));
        ok(&tools(&[
            "synth",
            "kitti",
            "--out",
            path_str(&ki),
            "--frames",
            "4",
            "--width",
            "320",
            "--height",
            "128",
        ]));
        (vk, ki)
    })
}

fn train(out: &Path, extra: &[&str]) -> Output {
    train_cmd(out, extra)
        .output_limited()
        .expect("run dasgil-tools")
}

/// The stderr of a command that must fail with exit code 1 (a refused run).
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The stderr of `train --resume RUN FLAGS...`, which must be refused.
fn refused_resume(run: &Path, flags: &[&str]) -> String {
    let args: Vec<&str> = ["train", "--resume", path_str(run)]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    refused(&tools(&args))
}

fn csv_rows(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("losses.csv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn column(rows: &[String], name: &str) -> Vec<f64> {
    let i = rows[0].split(',').position(|h| h == name).unwrap();
    rows[1..]
        .iter()
        .map(|r| r.split(',').nth(i).unwrap().parse().unwrap())
        .collect()
}

/// One step of the paper's run in `paper` and of the same run with `variant_flags` in
/// `variant`, side by side (both after `base`); returns their config.yaml texts.
fn paper_and_variant(
    paper: &Path,
    variant: &Path,
    base: &[&str],
    variant_flags: &[&str],
) -> (String, String) {
    let with: Vec<&str> = base.iter().chain(variant_flags).copied().collect();
    let outs = concurrently(vec![train_cmd(paper, base), train_cmd(variant, &with)]);
    for o in &outs {
        ok(o);
    }
    let read = |run: &Path| std::fs::read_to_string(run.join("config.yaml")).unwrap();
    (read(paper), read(variant))
}

/// The data and the fixed settings every run of this file trains with.
fn run_args() -> [&'static str; 12] {
    let (vk, ki) = data();
    [
        "--vkitti",
        path_str(vk),
        "--kitti",
        path_str(ki),
        "--size",
        "256x256",
        "--batch",
        "1",
        "--device",
        "cpu",
        "--seed",
        "5",
    ]
}

fn train_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"));
    c.arg("train")
        .args(run_args())
        .args(["--out", path_str(out)])
        .args(extra)
        .env("RUST_LOG", "warn");
    c
}

/// Runs the commands at the same time (they load the cores for each other, as the other tests
/// of this file and other test binaries do) and returns their outputs in order.
fn concurrently(cmds: Vec<Command>) -> Vec<Output> {
    let running: Vec<_> = cmds
        .into_iter()
        .map(|mut c| std::thread::spawn(move || c.output_limited().expect("run dasgil-tools")))
        .collect();
    running
        .into_iter()
        .map(|r| r.join().expect("a training command failed the test"))
        .collect()
}

#[test]
fn trains_checkpoints_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let split = dir.path().join("split");
    // The unbroken run and the first part of the split run train at the same time, so exact
    // resume is checked on a loaded machine (4 compute threads on the cores at least).
    let outs = concurrently(vec![
        train_cmd(&full, &["--steps", "8", "--checkpoint-every", "4"]),
        train_cmd(&split, &["--steps", "3", "--checkpoint-every", "2"]),
    ]);
    let stdout = ok(&outs[0]);
    ok(&outs[1]);
    assert!(
        stdout.contains("trained steps 0..8 of 8 on Cpu"),
        "{stdout}"
    );
    let rows = csv_rows(&full);
    assert_eq!(rows.len(), 9, "{rows:?}");
    // The generator loss and the segmentation terms fall from the initialisation.
    for term in ["generator_total", "seg_anchor", "seg_negative"] {
        let v = column(&rows, term);
        let (first, last) = ((v[0] + v[1]) / 2.0, (v[6] + v[7]) / 2.0);
        assert!(last < first * 0.9, "{term} did not go down: {v:?}");
    }
    // Every term is present and finite; the discriminator was trained.
    assert!(rows[1..]
        .iter()
        .all(|r| r.split(',').all(|v| v.parse::<f64>().unwrap().is_finite())));
    assert!(column(&rows, "discriminator").iter().all(|&v| v > 0.0));
    for f in [
        "config.yaml",
        "generator.safetensors",
        "loss_curves.png",
        "predictions.png",
        "batch.png",
    ] {
        assert!(full.join(f).is_file(), "{f}");
    }
    assert!(
        stdout.contains(&format!(
            "first batch as the network receives it: {}",
            full.join("batch.png").display()
        )),
        "{stdout}"
    );
    let latest = std::fs::read_to_string(full.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000008");
    for f in [
        "generator.safetensors",
        "discriminator.safetensors",
        "optimizer.safetensors",
        "state.json",
    ] {
        assert!(
            full.join("checkpoints/step-00000008").join(f).is_file(),
            "{f}"
        );
    }
    // The generator loads as a checkpoint anyone can embed with.
    let g = dasgil::model::checkpoint::load_generator(
        &full.join("generator.safetensors"),
        tch::Device::Cpu,
        None,
    )
    .unwrap();
    assert_eq!(g.meta.step, Some(8));
    assert_eq!(
        (g.meta.config.input_height, g.meta.config.input_width),
        (256, 256)
    );

    // The same run split in two by a resume gives the same losses, step for step, while a
    // third run with the same seed trains beside the resume (same seed, same bytes, under load).
    // The resume repeats the run's own data and model flags: accepted, they do not change it.
    let again_dir = dir.path().join("again");
    let mut resume = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"));
    let (vk, ki) = data();
    resume
        .args(["train", "--resume", path_str(&split), "--steps", "8"])
        .args(["--batch", "1", "--size", "256x256", "--seed", "5"])
        .args(["--vkitti", path_str(vk), "--kitti", path_str(ki)])
        .env("RUST_LOG", "warn");
    let outs = concurrently(vec![
        resume,
        train_cmd(&again_dir, &["--steps", "8", "--checkpoint-every", "4"]),
    ]);
    let resumed = ok(&outs[0]);
    ok(&outs[1]);
    assert!(resumed.contains("trained steps 3..8 of 8"), "{resumed}");
    let differing = |a: &[String], b: &[String]| {
        a.iter()
            .zip(b)
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("first differing row:\n{x}\n{y}"))
    };
    assert_eq!(csv_rows(&split).len(), rows.len());
    assert_eq!(
        differing(&csv_rows(&split), &rows),
        None,
        "resumed vs unbroken"
    );
    assert_eq!(
        differing(&csv_rows(&again_dir), &rows),
        None,
        "same seed, second run"
    );
    // The thread count is recorded with the run (resume uses it).
    let cfg = std::fs::read_to_string(split.join("config.yaml")).unwrap();
    assert!(
        cfg.lines()
            .any(|l| l.starts_with("threads: ") && l != "threads: 0"),
        "{cfg}"
    );
    // Resuming a finished run says so and changes nothing.
    let again = ok(&tools(&[
        "train",
        "--resume",
        path_str(&split),
        "--steps",
        "8",
    ]));
    assert!(
        again.contains("nothing to train: the run is already at step 8 of 8")
            && !again.contains("first batch"),
        "{again}"
    );
    assert_eq!(csv_rows(&split), rows);

    // Changing the data or the model on resume is refused, naming the recorded and given value.
    let msg = refused_resume(&split, &["--batch", "2"]);
    assert!(
        msg.contains("--batch cannot change when resuming")
            && msg.contains("the run has batch = 1, given 2"),
        "{msg}"
    );

    // A new run into a non-empty folder is refused; nothing there changes.
    let before = std::fs::read(split.join("losses.csv")).unwrap();
    let e = train(&split, &["--steps", "1"]);
    assert_eq!(e.status.code(), Some(1));
    let said = String::from_utf8_lossy(&e.stderr);
    assert!(
        said.contains("folder is not empty: it holds a training run; continue it with --resume"),
        "{said}"
    );
    assert_eq!(std::fs::read(split.join("losses.csv")).unwrap(), before);
    // A run --resume could not continue is named as one, with the reason, and not suggested.
    let latest = split.join("checkpoints/latest");
    let pointer = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, "nowhere").unwrap();
    let e = train(&split, &["--steps", "1"]);
    assert_eq!(e.status.code(), Some(1));
    let said = String::from_utf8_lossy(&e.stderr);
    assert!(
        said.contains("it holds a training run that --resume cannot continue;")
            && said.contains("found `nowhere`")
            && !said.contains("continue it with"),
        "{said}"
    );
    std::fs::write(&latest, pointer).unwrap();
    assert_eq!(std::fs::read(split.join("losses.csv")).unwrap(), before);

    // A corrupt checkpoint is refused naming the file.
    let ck = split.join("checkpoints/step-00000008/generator.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
    let e = tools(&["train", "--resume", path_str(&split), "--steps", "9"]);
    assert_eq!(e.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains(path_str(&ck)) && msg.contains("not a valid safetensors file"),
        "{msg}"
    );
}

#[test]
fn augmented_training_is_recorded_changes_the_batches_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (full, split, plain, palette, turned) = (
        dir.path().join("full"),
        dir.path().join("split"),
        dir.path().join("plain"),
        dir.path().join("palette"),
        dir.path().join("turned"),
    );
    let outs = concurrently(vec![
        train_cmd(
            &full,
            &["--augment", "--steps", "4", "--checkpoint-every", "2"],
        ),
        train_cmd(
            &split,
            &["--augment", "--steps", "2", "--checkpoint-every", "2"],
        ),
        train_cmd(&plain, &["--steps", "1"]),
        train_cmd(
            &palette,
            &["--augment", "--augment-palette", "--steps", "2"],
        ),
        train_cmd(
            &turned,
            &["--augment", "--augment-yaw", "10", "--steps", "2"],
        ),
    ]);
    for o in &outs {
        ok(o);
    }
    let cfg = std::fs::read_to_string(full.join("config.yaml")).unwrap();
    assert!(cfg.lines().any(|l| l == "augment: true"), "{cfg}");
    assert!(cfg.lines().any(|l| l == "augment_palette: false"), "{cfg}");
    let cfg = std::fs::read_to_string(palette.join("config.yaml")).unwrap();
    assert!(cfg.lines().any(|l| l == "augment_palette: true"), "{cfg}");
    let cfg = std::fs::read_to_string(plain.join("config.yaml")).unwrap();
    assert!(cfg.lines().any(|l| l == "augment: false"), "{cfg}");
    // Same seed and draws: only the augmentation separates step 0 of the two runs.
    let (rows, first_plain) = (csv_rows(&full), csv_rows(&plain));
    let depth = |rows: &[String]| column(rows, "depth_anchor")[0];
    assert_ne!(
        depth(&rows),
        depth(&first_plain),
        "augmentation did not reach the batches"
    );
    // The resume repeats --augment (accepted) and continues bit for bit.
    let resumed = ok(&tools(&[
        "train",
        "--resume",
        path_str(&split),
        "--augment",
        "--steps",
        "4",
    ]));
    assert!(resumed.contains("trained steps 2..4 of 4"), "{resumed}");
    assert_eq!(csv_rows(&split), rows, "resumed augmented run vs unbroken");
    // The same seed gives the same bytes, the checkpoint files too (their metadata was once
    // written in a HashMap's order, different in every process).
    for file in [
        "generator.safetensors",
        "checkpoints/step-00000004/generator.safetensors",
    ] {
        assert!(
            std::fs::read(full.join(file)).unwrap() == std::fs::read(split.join(file)).unwrap(),
            "{file}: the resumed run's bytes differ from the unbroken run's"
        );
    }
    // The palette remapping reaches the batches of the same draws.
    assert_ne!(
        csv_rows(&palette)[1..3],
        rows[1..3],
        "the palette remapping did not reach the batches"
    );
    // The turn is recorded (a run without it writes no field), reaches the batches of the same
    // draws, and a resume cannot change it.
    let cfg = std::fs::read_to_string(turned.join("config.yaml")).unwrap();
    assert!(cfg.lines().any(|l| l == "augment_yaw_deg: 10.0"), "{cfg}");
    assert!(
        !std::fs::read_to_string(full.join("config.yaml"))
            .unwrap()
            .contains("augment_yaw_deg"),
        "a run without the turn records it"
    );
    assert_ne!(
        csv_rows(&turned)[1..3],
        rows[1..3],
        "the turn did not reach the batches"
    );
    let msg = refused_resume(&split, &["--augment", "--augment-yaw", "5", "--steps", "5"]);
    assert!(
        msg.contains("--augment-yaw") && msg.contains("augment_yaw_deg"),
        "{msg}"
    );
    // Without augmentation it is refused before anything is written, from the flag or a file;
    // an angle out of range by the flag's parser.
    let none = dir.path().join("none");
    let msg = refused(&tools(&[
        "train",
        "--augment-yaw",
        "8",
        "--out",
        path_str(&none),
    ]));
    assert!(
        msg.contains("--augment-yaw is given without augmentation")
            && msg.contains("give --augment too"),
        "{msg}"
    );
    let e = tools(&[
        "train",
        "--augment",
        "--augment-yaw",
        "25",
        "--out",
        path_str(&none),
    ]);
    assert_eq!(e.status.code(), Some(2), "{e:?}");
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("degrees from 0 to 20"), "{msg}");
    let msg = refused(&tools(&[
        "train",
        "--augment-palette",
        "--out",
        path_str(&none),
    ]));
    assert!(
        msg.contains("--augment-palette is given without augmentation")
            && msg.contains("give --augment too"),
        "{msg}"
    );
    let yaml = dir.path().join("palette.yaml");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/train.yaml")).unwrap();
    std::fs::write(
        &yaml,
        shipped.replace("augment_palette: false", "augment_palette: true"),
    )
    .unwrap();
    let msg = refused(&tools(&[
        "train",
        "--config",
        path_str(&yaml),
        "--out",
        path_str(&none),
    ]));
    assert!(
        msg.contains(&format!(
            "{} sets augment_palette: true without augmentation",
            yaml.display()
        )),
        "{msg}"
    );
    assert!(!none.exists(), "a refused run left {}", none.display());
}

/// `--hard-negatives` (or `hard_negatives:` in a --config file) draws the negatives from the
/// anchor's scene outside its positive window: the batches change (the tiny world's 6 frames
/// need a window of 1, `--positive-window 1`, to have such frames), the share is recorded in
/// config.yaml (a run without it writes no field, as runs before it), a resume cannot change
/// it nor the window, and a share outside 0 to 1 is refused naming the flag or the file's
/// field.
#[test]
fn hard_negatives_reach_the_batches_are_recorded_and_cannot_change_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    // config/train.yaml with one line changed, written to NAME.
    let edited = |name: &str, from: &str, to: &str| {
        let shipped = std::fs::read_to_string(common::root().join("config/train.yaml")).unwrap();
        assert!(
            shipped.contains(from),
            "config/train.yaml no longer says {from}"
        );
        let path = dir.path().join(name);
        std::fs::write(&path, shipped.replace(from, to)).unwrap();
        path
    };
    let (paper, hard) = (dir.path().join("paper"), dir.path().join("hard"));
    let (paper_cfg, cfg) = paper_and_variant(
        &paper,
        &hard,
        &["--positive-window", "1", "--steps", "1"],
        &["--hard-negatives", "1"],
    );
    assert!(cfg.lines().any(|l| l == "hard_negatives: 1.0"), "{cfg}");
    assert!(!paper_cfg.contains("hard_negatives"), "{paper_cfg}");
    for c in [&paper_cfg, &cfg] {
        assert!(c.lines().any(|l| l == "positive_window: 1"), "{c}");
    }
    let (p, h) = (csv_rows(&paper), csv_rows(&hard));
    assert_ne!(
        column(&p, "depth_negative"),
        column(&h, "depth_negative"),
        "the hard negatives did not reach the batches"
    );
    let msg = refused_resume(&hard, &["--hard-negatives", "0.5", "--steps", "2"]);
    assert!(
        msg.contains("--hard-negatives cannot change when resuming")
            && msg.contains("hard_negatives = 1.0, given 0.5"),
        "{msg}"
    );
    // A run without the field (as every run before the option) has 0.
    let msg = refused_resume(&paper, &["--hard-negatives", "0.5", "--steps", "2"]);
    assert!(msg.contains("hard_negatives = 0.0, given 0.5"), "{msg}");
    let msg = refused_resume(&paper, &["--positive-window", "3", "--steps", "2"]);
    assert!(
        msg.contains("--positive-window cannot change when resuming")
            && msg.contains("positive_window = 1, given 3"),
        "{msg}"
    );
    // From a --config file, the refusal names the file's field (not a flag the user never
    // typed); a flag typed beside the file wins over it, and the refusal names the flag.
    let half = edited("half.yaml", "hard_negatives: 0.0", "hard_negatives: 0.5");
    let mut args = vec!["--config", path_str(&half)];
    args.extend(run_args());
    args.extend(["--positive-window", "1", "--steps", "2"]);
    let msg = refused_resume(&hard, &args);
    assert!(
        msg.contains(&format!(
            "`hard_negatives` in {} cannot change when resuming",
            half.display()
        )) && msg.contains("hard_negatives = 1.0, given 0.5"),
        "{msg}"
    );
    args.extend(["--hard-negatives", "0.25"]);
    let msg = refused_resume(&hard, &args);
    assert!(
        msg.contains("--hard-negatives cannot change when resuming")
            && msg.contains("hard_negatives = 1.0, given 0.25"),
        "{msg}"
    );
    let none = dir.path().join("none");
    // A flag's value is a usage error (exit 2, as clap reports every bad flag).
    let flag = tools(&["train", "--hard-negatives", "1.5", "--out", path_str(&none)]);
    let msg = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("expected a share from 0 to 1 (e.g. 0.5), found `1.5`"),
        "{msg}"
    );
    for bad in ["1001", "-1", "2.5", "abc"] {
        let flag = tools(&["train", "--positive-window", bad, "--out", path_str(&none)]);
        let msg = String::from_utf8_lossy(&flag.stderr);
        assert_eq!(flag.status.code(), Some(2), "{msg}");
        assert!(
            msg.contains(&format!(
                "invalid value '{bad}' for '--positive-window <POSITIVE_WINDOW>': expected a \
                 whole number from 0 to 1000, found `{bad}`"
            )),
            "{msg}"
        );
    }
    // A file's value is refused naming the file and its line: a number written as YAML
    // writes it (2.0, shown as Rust shows it, 2), and a value of the wrong type.
    let bad = edited("bad.yaml", "hard_negatives: 0.0", "hard_negatives: 2.0");
    let line = std::fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("hard_negatives:"))
        .unwrap()
        + 1;
    let msg = refused(&train(&none, &["--config", path_str(&bad)]));
    assert!(
        msg.contains(&format!(
            "{}:{line}: field `hard_negatives`: expected a share from 0 to 1, found 2",
            bad.display()
        )),
        "{msg}"
    );
    let typo = edited("typo.yaml", "hard_negatives: 0.0", "hard_negatives: half");
    let msg = refused(&train(&none, &["--config", path_str(&typo)]));
    assert!(
        msg.contains(&format!(
            "{}:{line}: field `hard_negatives`: expected a share from 0 to 1, found the text \
             \"half\"",
            typo.display()
        )),
        "{msg}"
    );
    assert!(!none.exists(), "a refused run left {}", none.display());
}

/// `--photometric autocontrast` normalises every training image (same seed and draws as the
/// paper's run: the losses of step 0 differ), is recorded in config.yaml (the paper's run
/// writes no field, as runs before it) and in the generator checkpoint (`dasgil.photometric`,
/// which build-map follows), and a resume cannot change it.
#[test]
fn a_photometric_run_is_recorded_in_its_checkpoint_and_cannot_change_on_resume() {
    use dasgil::data::preprocess::Photometric;
    let dir = tempfile::tempdir().unwrap();
    let (paper, stretched) = (dir.path().join("paper"), dir.path().join("stretched"));
    let (paper_cfg, cfg) = paper_and_variant(
        &paper,
        &stretched,
        &["--steps", "1"],
        &["--photometric", "autocontrast"],
    );
    assert!(
        cfg.lines().any(|l| l == "photometric: autocontrast"),
        "{cfg}"
    );
    assert!(!paper_cfg.contains("photometric"), "{paper_cfg}");
    let (p, c) = (csv_rows(&paper), csv_rows(&stretched));
    assert_ne!(
        column(&p, "depth_anchor"),
        column(&c, "depth_anchor"),
        "the normalisation did not reach the batches"
    );
    let trained_with = |run: &Path| {
        dasgil::model::checkpoint::load_generator(
            &run.join("generator.safetensors"),
            tch::Device::Cpu,
            None,
        )
        .unwrap()
        .meta
        .photometric
    };
    assert_eq!(trained_with(&stretched), Some(Photometric::Autocontrast));
    assert_eq!(trained_with(&paper), None);
    // A run started from those weights goes on normalising unless told otherwise.
    let (on, told) = (dir.path().join("on"), dir.path().join("told"));
    let init = stretched.join("generator.safetensors");
    let outs = concurrently(vec![
        train_cmd(&on, &["--steps", "1", "--init-generator", path_str(&init)]),
        train_cmd(
            &told,
            &[
                "--steps",
                "1",
                "--init-generator",
                path_str(&init),
                "--photometric",
                "none",
            ],
        ),
    ]);
    let note = String::from_utf8_lossy(&outs[0].stderr).into_owned();
    assert!(
        note.contains("was trained with --photometric autocontrast: this run trains with it too"),
        "{note}"
    );
    for o in &outs {
        ok(o);
    }
    assert_eq!(trained_with(&on), Some(Photometric::Autocontrast));
    assert_eq!(trained_with(&told), None);
    let msg = refused_resume(&stretched, &["--photometric", "none", "--steps", "2"]);
    assert!(
        msg.contains("--photometric cannot change when resuming")
            && msg.contains("photometric = autocontrast, given none"),
        "{msg}"
    );
}

/// `--triplet-distance cosine --triplet-margin M` reaches the loss (same seed and batches as
/// the paper's run: the depth term equal, the triplet terms not), is recorded per layer in
/// config.yaml (the paper's run records no distance), and a resume cannot change it.
#[test]
fn a_cosine_triplet_run_is_recorded_reaches_the_loss_and_cannot_change_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (paper, cosine) = (dir.path().join("paper"), dir.path().join("cosine"));
    let (paper_cfg, cfg) = paper_and_variant(
        &paper,
        &cosine,
        &["--steps", "1"],
        &["--triplet-distance", "cosine", "--triplet-margin", "0.1"],
    );
    assert_eq!(cfg.matches("distance: cosine").count(), 4, "{cfg}");
    assert_eq!(cfg.matches("margin: 0.1").count(), 4, "{cfg}");
    assert!(!paper_cfg.contains("distance"), "{paper_cfg}");
    let (p, c) = (csv_rows(&paper), csv_rows(&cosine));
    assert_eq!(column(&p, "depth_anchor"), column(&c, "depth_anchor"));
    assert_ne!(
        column(&p, "triplet_e6"),
        column(&c, "triplet_e6"),
        "the cosine distance did not reach the triplet term"
    );
    let msg = refused_resume(&cosine, &["--triplet-distance", "mse", "--steps", "2"]);
    assert!(
        msg.contains("--triplet-distance or --triplet-margin cannot change when resuming"),
        "{msg}"
    );
    let bad = tools(&[
        "train",
        "--triplet-distance",
        "cos",
        "--out",
        path_str(&dir.path().join("bad")),
    ]);
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{msg}");
    assert!(msg.contains("expected mse or cosine"), "{msg}");
}

#[test]
fn a_run_started_from_a_generator_begins_with_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (base, fresh, tuned) = (
        dir.path().join("base"),
        dir.path().join("fresh"),
        dir.path().join("tuned"),
    );
    let outs = concurrently(vec![
        train_cmd(&base, &["--steps", "6"]),
        train_cmd(&fresh, &["--steps", "1"]),
    ]);
    ok(&outs[0]);
    ok(&outs[1]);
    let weights = base.join("generator.safetensors");
    let said = ok(&train(
        &tuned,
        &["--steps", "1", "--init-generator", path_str(&weights)],
    ));
    assert!(said.contains("trained steps 0..1 of 1"), "{said}");
    // Same seed, so step 0 of both new runs draws the same batch: only the starting weights
    // differ, and the ones trained for 6 steps segment it better than the initialisation.
    let seg = |d: &Path| column(&csv_rows(d), "seg_anchor")[0];
    assert!(
        seg(&tuned) < seg(&fresh) * 0.9,
        "tuned {} vs fresh {}: the initial weights did not reach the network",
        seg(&tuned),
        seg(&fresh)
    );
    let cfg = std::fs::read_to_string(tuned.join("config.yaml")).unwrap();
    let canonical = std::fs::canonicalize(&weights).unwrap();
    assert!(
        cfg.lines()
            .any(|l| l == format!("init_generator: {}", canonical.display())),
        "{cfg}"
    );
    let cfg = std::fs::read_to_string(fresh.join("config.yaml")).unwrap();
    assert!(!cfg.contains("init_generator"), "{cfg}");
    // Another network's weights are refused naming the file; the new run leaves nothing.
    let wrong = base.join("checkpoints/step-00000006/discriminator.safetensors");
    let bad = dir.path().join("bad");
    let e = train(
        &bad,
        &["--steps", "1", "--init-generator", path_str(&wrong)],
    );
    let msg = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(path_str(&wrong)) && msg.contains("do not match the DASGIL generator"),
        "{msg}"
    );
    assert!(!bad.exists());
    // A resumed run keeps its own weights: the flag is refused with --resume.
    let e = tools(&[
        "train",
        "--resume",
        path_str(&base),
        "--init-generator",
        path_str(&weights),
    ]);
    assert_eq!(e.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
}

#[test]
fn a_cut_off_training_image_is_skipped_and_counted_and_never_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (vk, ki) = data();
    // A copy of the data with frame 0's RGB cut off in every variation (half of each draw's
    // scene frames at 6 per variation come near it).
    let copy = dir.path().join("vk");
    let s = Command::new("cp")
        .args(["-r", path_str(vk), path_str(&copy)])
        .status()
        .unwrap();
    assert!(s.success());
    let mut cut = 0;
    for var in dasgil::data::vkitti2::VARIATIONS {
        let f = copy.join(format!("Scene01/{var}/frames/rgb/Camera_0/rgb_00000.jpg"));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        cut += 1;
    }
    let (run, unbroken) = (dir.path().join("run"), dir.path().join("unbroken"));
    let cmd = |out: &Path, steps: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"));
        c.args([
            "train",
            "--vkitti",
            path_str(&copy),
            "--kitti",
            path_str(ki),
        ])
        .args([
            "--size", "256x256", "--batch", "1", "--device", "cpu", "--seed", "5",
        ])
        .args(["--steps", steps, "--out", path_str(out)])
        .env("RUST_LOG", "error");
        c
    };
    let outs = concurrently(vec![cmd(&run, "3"), cmd(&unbroken, "5")]);
    ok(&outs[1]);
    let said = ok(&outs[0]);
    assert!(said.contains("trained steps 0..3 of 3"), "{said}");
    let line = said
        .lines()
        .find(|l| l.starts_with("skipped "))
        .unwrap_or_else(|| panic!("no skip count: {said}"));
    let n: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        (1..=cut).contains(&n) && line.contains("rgb_00000.jpg") && line.contains("truncated JPEG"),
        "{line}"
    );
    // A resume goes on past the bad files, and the substitutions are the same every time: the
    // split run equals the unbroken one on the same broken data, row for row.
    let resumed = ok(&tools(&[
        "train",
        "--resume",
        path_str(&run),
        "--steps",
        "5",
    ]));
    assert!(resumed.contains("trained steps 3..5 of 5"), "{resumed}");
    assert_eq!(
        csv_rows(&run),
        csv_rows(&unbroken),
        "resumed vs unbroken, broken data"
    );
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_term_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("train.yaml");
    let text = std::fs::read_to_string(common::root().join("config/train.yaml")).unwrap();
    std::fs::write(
        &cfg,
        text.replace("lr_generator: 0.002", "lr_generator: 1.0e+30"),
    )
    .unwrap();
    let out = dir.path().join("run");
    let e = train(
        &out,
        &[
            "--config",
            path_str(&cfg),
            "--steps",
            "6",
            "--checkpoint-every",
            "1",
        ],
    );
    let msg = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(1), "{msg}");
    assert!(msg.contains("step 1: loss term `"), "{msg}");
    assert!(
        msg.contains("The last good checkpoint (step 1) is intact"),
        "{msg}"
    );
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000001");
    dasgil::model::checkpoint::load_generator(
        &out.join("checkpoints/step-00000001/generator.safetensors"),
        tch::Device::Cpu,
        None,
    )
    .unwrap();
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (vk, ki) = data();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args([
            "train",
            "--vkitti",
            path_str(vk),
            "--kitti",
            path_str(ki),
            "--size",
            "256x256",
            "--batch",
            "1",
            "--device",
            "cpu",
            "--out",
            path_str(&out),
            "--steps",
            "100000",
            "--checkpoint-every",
            "100000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A bound on liveness, not a timing claim: the file's other tests train beside this one
    // (seen: no step in 120 s on a loaded 2-core machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::fs::read_to_string(out.join("losses.csv"))
        .map(|t| t.lines().count() < 3)
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no training step in 600 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // A checkpoint write takes seconds; a run that does not stop fails the test, not the suite.
    let output = common::wait_output_within(
        &mut child,
        std::time::Duration::from_secs(300),
        "train after SIGTERM",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("interrupted: checkpoint written after"),
        "{stdout}"
    );
    assert!(
        stdout.contains("continue with: dasgil-tools train --resume"),
        "{stdout}"
    );
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(step >= 2);
    // The rows written match the checkpoint (resume continues from there).
    assert_eq!(csv_rows(&out).len() as u64, step + 1);
}

/// A run started with data paths relative to the working folder records them absolute and
/// resumes from any folder; a run that recorded them relative (before they were recorded
/// absolute) is refused from elsewhere with the reason, and resumes when the same data is given
/// by its path from there.
#[test]
fn a_run_with_relative_data_paths_resumes_from_another_folder() {
    let (vk, ki) = data();
    let base = vk.parent().unwrap();
    let (vk_name, ki_name) = (
        vk.file_name().unwrap().to_str().unwrap(),
        ki.file_name().unwrap().to_str().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let in_folder = |cwd: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
            .current_dir(cwd)
            .args(args)
            .env("RUST_LOG", "warn")
            .output_limited()
            .expect("run dasgil-tools")
    };
    ok(&in_folder(
        base,
        &[
            "train",
            "--vkitti",
            vk_name,
            "--kitti",
            ki_name,
            "--size",
            "256x256",
            "--batch",
            "1",
            "--seed",
            "5",
            "--steps",
            "1",
            "--out",
            path_str(&run),
        ],
    ));
    let cfg = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    // Made absolute as given (a symbolic link would stay the link).
    let vk_abs = std::path::absolute(vk).unwrap();
    assert!(
        cfg.contains(&format!("- {}", vk_abs.display())),
        "data paths not recorded absolute:\n{cfg}"
    );
    // From another folder: resumes.
    let out = ok(&in_folder(
        dir.path(),
        &["train", "--resume", "run", "--steps", "2"],
    ));
    assert!(out.contains("trained steps 1..2 of 2"), "{out}");
    // A run that recorded relative paths (as runs did before): refused from elsewhere, saying
    // why and what to do.
    let state = run.join("checkpoints/step-00000002/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let ki_abs = std::path::absolute(ki).unwrap();
    let old = text
        .replace(
            &format!("\"{}\"", vk_abs.display()),
            &format!("\"./{vk_name}\""),
        )
        .replace(
            &format!("\"{}\"", ki_abs.display()),
            &format!("\"{ki_name}\""),
        );
    assert_ne!(old, text, "state.json holds the paths: {text}");
    std::fs::write(&state, old).unwrap();
    let refused = in_folder(dir.path(), &["train", "--resume", "run", "--steps", "3"]);
    assert_eq!(refused.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains(&format!(
            "records --vkitti `./{vk_name}` and --kitti `{ki_name}`: relative to the folder the \
             run was started in"
        )) && msg.contains("resume from that folder, or give --vkitti and --kitti"),
        "{msg}"
    );
    // The same data by its path from here (`./vkitti2` ends as `vkitti2` does): accepted, and
    // recorded absolute.
    let out = ok(&in_folder(
        dir.path(),
        &[
            "train",
            "--resume",
            "run",
            "--steps",
            "3",
            "--vkitti",
            path_str(vk),
            "--kitti",
            path_str(ki),
        ],
    ));
    assert!(out.contains("trained steps 2..3 of 3"), "{out}");
    // Other data is still another run's: refused, the lists written plainly.
    let msg = refused_resume(&run, &["--vkitti", path_str(ki), "--steps", "4"]);
    assert!(
        msg.contains(&format!(
            "the run has vkitti = {}, given {}",
            vk_abs.display(),
            std::fs::canonicalize(ki).unwrap().display()
        )),
        "{msg}"
    );
}
