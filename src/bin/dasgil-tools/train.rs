//! `dasgil-tools train`: the adversarial multi-task loop, new or resumed.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::args::*;
use dasgil::model::DiscriminatorKind;

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// Training configuration (default: the shipped config/train.yaml, the paper's values).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Virtual KITTI 2 root(s); several are pooled.
    #[arg(long, num_args = 1..)]
    vkitti: Vec<PathBuf>,
    /// Read the Virtual KITTI 2 roots in the authors' repackaged layout.
    #[arg(long)]
    dasgil_layout: bool,
    /// Folder of real-domain (KITTI) images, searched recursively.
    #[arg(long)]
    kitti: Option<PathBuf>,
    /// Discriminator: FD or CD.
    #[arg(long)]
    dis: Option<DiscriminatorKind>,
    /// Train without the discriminator (depth + segmentation + triplet only).
    #[arg(long)]
    no_adversarial: bool,
    /// Augment each labelled training image (colour jitter, grey, gamma, blur, noise, JPEG,
    /// small zoom and rotation); not in the paper.
    #[arg(long)]
    augment: bool,
    /// With --augment, also remap each augmented image's palette (channel swap and mix, a tone
    /// curve per channel), as another renderer or camera colours the same place; not in the
    /// paper.
    #[arg(long)]
    augment_palette: bool,
    /// With --augment, turn the camera of each augmented image, with probability 0.5, about its
    /// vertical axis by a yaw drawn uniformly within +-DEG (degrees, 0 to 20; default 0: never),
    /// with the frame's intrinsics (Virtual KITTI 2's official intrinsic.txt; not in the
    /// --dasgil-layout), the homography of build-map's yaw views (depth and classes follow), as
    /// a vehicle passing a place a little turned sees it. Not in the paper.
    #[arg(long, value_name = "DEG", value_parser = parse_yaw_deg, allow_negative_numbers = true)]
    augment_yaw: Option<f64>,
    /// Per-image photometric normalisation of every training image (labelled, after
    /// augmentation, and real-domain) before the network: none (the paper's) or autocontrast
    /// (build-map --photometric). Recorded in the checkpoints (`dasgil.photometric`), so
    /// build-map and evaluate apply it to map and query images unless told otherwise.
    #[arg(long, value_parser = photometric_parser())]
    photometric: Option<dasgil::data::preprocess::Photometric>,
    /// The triplet terms' distance between two images' features: mse (the default, the
    /// paper's) or cosine (1 - cos of the flattened features, what a cosine map searches with;
    /// not in the paper; give --triplet-margin too). Applies to every triplet layer.
    #[arg(long, value_parser = parse_triplet_distance)]
    triplet_distance: Option<dasgil::model::losses::TripletDistance>,
    /// The triplet terms' margin m, every layer (default: the configuration's, the paper's 1,
    /// which suits mse; with cosine, whose distances lie in [0, 2], about 0.1).
    #[arg(long, value_parser = parse_positive_margin, allow_negative_numbers = true)]
    triplet_margin: Option<f64>,
    /// The share of triplets (0 to 1) whose negative comes from the anchor's scene, any
    /// variation, more than positive_window frames away: another place of the same street,
    /// where random negatives (the paper's; 0, the default) are mostly other scenes. Not in
    /// the paper.
    #[arg(long, value_parser = parse_share, allow_negative_numbers = true)]
    hard_negatives: Option<f64>,
    /// The positive P of a triplet is a frame of the anchor's place in another look within
    /// this many frames of it (0 to 1000; default: the configuration's, the paper's 5; the
    /// shipped worlds' frames are 1 m apart). Hard negatives lie beyond it.
    #[arg(long, value_parser = whole_in(0u64, 1000), allow_negative_numbers = true)]
    positive_window: Option<u64>,
    /// Epochs (1 to 100000).
    #[arg(long, value_parser = whole_in(1u64, 100_000), allow_negative_numbers = true)]
    epochs: Option<u64>,
    /// Steps per epoch (default: anchor frames / batch).
    #[arg(long, value_parser = parse_at_least_one, allow_negative_numbers = true)]
    steps_per_epoch: Option<u64>,
    /// Stop after this many steps in all (at least 1).
    #[arg(long, value_parser = parse_at_least_one, allow_negative_numbers = true)]
    steps: Option<u64>,
    /// Triplets per step (1 to 64).
    #[arg(long, value_parser = whole_in(1u64, dasgil::train::config::MAX_BATCH as u64),
          allow_negative_numbers = true)]
    batch: Option<u64>,
    /// Network input HxW, multiples of 256 up to 4096 (e.g. 256x1024, 256x512).
    #[arg(long, value_parser = parse_input_size)]
    size: Option<(i64, i64)>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, value_parser = dasgil::toolchain::device_syntax)]
    device: Option<String>,
    /// Checkpoint every N steps (at least 1; and at every epoch's end).
    #[arg(long, value_parser = parse_at_least_one, allow_negative_numbers = true)]
    checkpoint_every: Option<u64>,
    /// Seed of the initialisation, the batches and their augmentation (default: the
    /// configuration's); the same seed gives the same run, byte for byte.
    #[arg(long)]
    seed: Option<u64>,
    /// libtorch CPU threads (default: one per core). Recorded in the run; a resume keeps the
    /// run's count unless given (a resume with another count is not bit-identical to an
    /// unbroken run).
    #[arg(long, value_parser = whole_in(0u64, 1024), allow_negative_numbers = true)]
    threads: Option<u64>,
    /// Start a new run from these generator weights instead of the reference initialisation
    /// (fine-tuning): a run's generator.safetensors, a shipped model (maps/models/) or an
    /// imported authors' checkpoint, of the same network (every tensor's name and shape must
    /// match). The optimizer and the discriminator start fresh; recorded in config.yaml. Not
    /// with --resume: a resumed run continues from its own checkpoint.
    #[arg(long, conflicts_with = "resume")]
    init_generator: Option<PathBuf>,
    /// Output folder of a new run (must be empty or new). Not with --resume, which continues
    /// a run in its own folder.
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (--epochs, --steps, --device,
    /// --checkpoint-every and --threads may change; other flags must repeat the run's values).
    #[arg(long)]
    resume: Option<PathBuf>,
}

/// A share of triplets: a number from 0 to 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    parse_number_where(s.trim(), ok, "a share from 0 to 1 (e.g. 0.5)")
}

fn parse_yaw_deg(s: &str) -> Result<f64, String> {
    let max = dasgil::map::views::MAX_YAW_DEG;
    let ok = |v: f64| v.is_finite() && (0.0..=max).contains(&v);
    parse_number_where(s.trim(), ok, &format!("degrees from 0 to {max} (e.g. 8)"))
}

fn parse_triplet_distance(s: &str) -> Result<dasgil::model::losses::TripletDistance, String> {
    s.parse()
}

pub(crate) fn run_train(a: TrainArgs) -> Result<()> {
    use dasgil::train::{self, TrainConfig};
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&interrupt))
            .context("cannot install the signal handler")?;
    }
    // On --resume the run's recorded configuration is the base; a flag (or a --config file)
    // that gives a value the run already has is accepted, one that differs is refused below.
    let (recorded, out) = match &a.resume {
        Some(dir) => {
            let (_, state) = train::latest_checkpoint(dir)?;
            (Some(state.config), dir.clone())
        }
        None => {
            let out = a
                .out
                .clone()
                .context("--out DIR is required for a new run (or --resume DIR to continue one)")?;
            // A run: its checkpoints/ (every --checkpoint-every steps), or the config.yaml
            // and losses.csv it writes when it starts (a config file alone is not a run).
            refuse_non_empty(&out, |dir| {
                let started = dir.join("config.yaml").exists() && dir.join("losses.csv").exists();
                (started || dir.join("checkpoints").exists()).then(|| {
                    train::latest_checkpoint(dir)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })?;
            (None, out)
        }
    };
    let resume = recorded.is_some();
    let mut cfg = match (&a.config, &recorded) {
        (Some(p), recorded) => {
            let mut c = TrainConfig::read(p)?;
            if let Some(r) = recorded {
                // A config file without data paths keeps the run's.
                if c.vkitti.is_empty() {
                    c.vkitti = r.vkitti.clone();
                }
                if c.kitti.is_none() {
                    c.kitti = r.kitti.clone();
                }
                if c.init_generator.is_none() {
                    c.init_generator = r.init_generator.clone();
                }
                // What a resume may change (epochs, steps, device, checkpoint_every) comes from
                // the file, then flags; a file that leaves `threads` at 0 keeps the run's count.
                if c.threads == 0 {
                    c.threads = r.threads;
                }
            }
            c
        }
        (None, Some(r)) => r.clone(),
        (None, None) => serde_yaml::from_str(include_str!("../../../config/train.yaml"))
            .context("the built-in config/train.yaml")?,
    };
    if !a.vkitti.is_empty() {
        cfg.vkitti = a.vkitti.clone();
    }
    if a.dasgil_layout {
        cfg.vkitti_layout = train::config::VkittiLayout::Dasgil;
    }
    if a.kitti.is_some() {
        cfg.kitti = a.kitti.clone();
    }
    if let Some(d) = a.dis {
        cfg.discriminator = d;
    }
    if a.no_adversarial {
        cfg.adversarial = false;
    }
    if a.augment {
        cfg.augment = true;
    }
    if a.augment_palette {
        cfg.augment_palette = true;
    }
    if let Some(y) = a.augment_yaw {
        cfg.augment_yaw_deg = y;
    }
    if let Some(p) = a.photometric {
        cfg.photometric = p;
    }
    if let Some(h) = a.hard_negatives {
        cfg.hard_negatives = h;
    }
    if let Some(w) = a.positive_window {
        cfg.positive_window = w as usize;
    }
    // An option that acts only in augmented images, set without --augment: refused naming
    // the flag, or the --config file when the file set it.
    let without_augment = |flag: &str, from_flag: bool, field: String, what: &str| {
        let from = match (&a.config, from_flag) {
            (Some(p), false) => format!("{} sets {field}", p.display()),
            _ => format!("{flag} is given"),
        };
        anyhow::anyhow!(
            "{from} without augmentation: {what} only in augmented images; give --augment too \
             (or augment: true)"
        )
    };
    // (An angle out of range is the configuration's check to name, below.)
    let yaw_in_range = cfg.augment_yaw_deg <= dasgil::map::views::MAX_YAW_DEG;
    if cfg.augment_yaw_deg > 0.0 && yaw_in_range && !cfg.augment {
        return Err(without_augment(
            "--augment-yaw",
            a.augment_yaw.is_some(),
            format!("augment_yaw_deg: {}", cfg.augment_yaw_deg),
            "the camera is turned",
        ));
    }
    if cfg.augment_palette && !cfg.augment {
        return Err(without_augment(
            "--augment-palette",
            a.augment_palette,
            "augment_palette: true".into(),
            "the palette is remapped",
        ));
    }
    if a.triplet_distance == Some(dasgil::model::losses::TripletDistance::Cosine)
        && a.triplet_margin.is_none()
        && cfg.triplet.iter().any(|t| t.margin >= 1.0)
    {
        eprintln!(
            "note: --triplet-distance cosine keeps the configured margins ({}); cosine distances \
             lie in [0, 2], so with a margin of 1 or more almost every triplet stays within it: \
             give --triplet-margin (about 0.1) unless that is what you want",
            cfg.triplet
                .iter()
                .map(|t| t.margin.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for t in &mut cfg.triplet {
        if let Some(d) = a.triplet_distance {
            t.distance = d;
        }
        if let Some(m) = a.triplet_margin {
            t.margin = m;
        }
    }
    if let Some(v) = a.epochs {
        cfg.epochs = v;
    }
    if a.steps_per_epoch.is_some() {
        cfg.steps_per_epoch = a.steps_per_epoch;
    }
    if a.steps.is_some() {
        cfg.max_steps = a.steps;
    }
    if let Some(v) = a.batch {
        cfg.batch = v as usize;
    }
    if let Some((h, w)) = a.size {
        cfg.input_height = h;
        cfg.input_width = w;
    }
    if let Some(v) = &a.device {
        cfg.device = v.clone();
    }
    if let Some(v) = a.checkpoint_every {
        cfg.checkpoint_every = v;
    }
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    if let Some(v) = a.threads {
        cfg.threads = v as usize;
    }
    if a.init_generator.is_some() {
        cfg.init_generator = a.init_generator.clone();
    }
    // A run recorded before data paths were recorded absolute has them relative to the folder
    // it was started in: resumed from elsewhere, say so (rather than "missing").
    if let (Some(dir), Some(r)) = (&a.resume, &recorded) {
        let data = cfg.vkitti.iter().map(|p| ("--vkitti", p));
        let lost: Vec<(&str, &PathBuf)> = data
            .chain(cfg.kitti.iter().map(|p| ("--kitti", p)))
            .filter(|(flag, p)| {
                let recorded = if *flag == "--vkitti" {
                    r.vkitti.contains(p)
                } else {
                    r.kitti.as_ref() == Some(*p)
                };
                recorded && p.is_relative() && !p.exists()
            })
            .collect();
        if !lost.is_empty() {
            let here = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into());
            let named: Vec<String> = lost
                .iter()
                .map(|(flag, p)| format!("{flag} `{}`", p.display()))
                .collect();
            let mut flags: Vec<&str> = lost.iter().map(|(f, _)| *f).collect();
            flags.dedup();
            anyhow::bail!(
                "{} records {}: relative to the folder the run was started in, and not found \
                 from {here}: resume from that folder, or give {} with the same data's paths \
                 from here (every root, in the recorded order; recorded absolute from then on)",
                dir.display(),
                named.join(" and "),
                flags.join(" and ")
            );
        }
    }
    // Recorded absolute (from the flags or a --config file), so the run resumes from any
    // folder: data roots as given, made absolute (a symbolic link stays the link, so data
    // moved behind it is still the run's), the starting weights as the file they are.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    cfg.vkitti = std::mem::take(&mut cfg.vkitti)
        .into_iter()
        .map(absolute)
        .collect();
    cfg.kitti = cfg.kitti.take().map(absolute);
    cfg.init_generator = cfg
        .init_generator
        .take()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    // Weights trained on normalised images go on seeing them unless --photometric says
    // otherwise (their checkpoints would otherwise record none, and maps built with them stop
    // normalising). A file that cannot be read is reported when the trainer loads it.
    if let (false, None, Some(init)) = (resume, a.photometric, &cfg.init_generator) {
        let trained = dasgil::tensor_io::read(init)
            .ok()
            .and_then(|f| dasgil::model::checkpoint::read_meta(&f, init, None).ok())
            .and_then(|m| m.photometric);
        if let Some(p) = trained.filter(|p| !p.is_none() && cfg.photometric.is_none()) {
            eprintln!(
                "note: --init-generator {} was trained with --photometric {p}: this run trains \
                 with it too (give --photometric none to train on plain images)",
                init.display()
            );
            cfg.photometric = p;
        }
    }
    if let (Some(dir), Some(r)) = (&a.resume, &recorded) {
        if let Some(c) = r.fixed_differences(&cfg).first() {
            // The flag that sets the field, and whether it was typed.
            let (flag, typed) = match c.field.as_str() {
                "input_height" | "input_width" => ("--size".to_string(), a.size.is_some()),
                "discriminator" => ("--dis".to_string(), a.dis.is_some()),
                "adversarial" => ("--no-adversarial".to_string(), a.no_adversarial),
                "augment" => ("--augment".to_string(), a.augment),
                "augment_palette" => ("--augment-palette".to_string(), a.augment_palette),
                "augment_yaw_deg" => ("--augment-yaw".to_string(), a.augment_yaw.is_some()),
                "photometric" => ("--photometric".to_string(), a.photometric.is_some()),
                "hard_negatives" => ("--hard-negatives".to_string(), a.hard_negatives.is_some()),
                "vkitti_layout" => ("--dasgil-layout".to_string(), a.dasgil_layout),
                "init_generator" => ("--init-generator".to_string(), a.init_generator.is_some()),
                "triplet" => (
                    "--triplet-distance or --triplet-margin".to_string(),
                    a.triplet_distance.is_some() || a.triplet_margin.is_some(),
                ),
                "vkitti" => ("--vkitti".to_string(), !a.vkitti.is_empty()),
                "kitti" => ("--kitti".to_string(), a.kitti.is_some()),
                "batch" => ("--batch".to_string(), a.batch.is_some()),
                "seed" => ("--seed".to_string(), a.seed.is_some()),
                "steps_per_epoch" => ("--steps-per-epoch".to_string(), a.steps_per_epoch.is_some()),
                "positive_window" => ("--positive-window".to_string(), a.positive_window.is_some()),
                other => (format!("--config field `{other}`"), false),
            };
            // A flag typed on the command line wins over the --config file; otherwise the
            // file's field made the difference.
            let flag = match &a.config {
                Some(p) if !typed => format!("`{}` in {}", c.field, p.display()),
                _ => flag,
            };
            anyhow::bail!(
                "{flag} cannot change when resuming {}: the run has {} = {}, given {}; a resumed \
                 run continues exactly as it started (only --epochs, --steps, --device, \
                 --checkpoint-every and --threads may change)",
                dir.display(),
                c.field,
                c.recorded,
                c.given
            );
        }
    }
    // Checked here, before anything is made, against where the values came from: the
    // --config file and the line of the field there (the flags are checked when parsed), or
    // the resumed run's recorded config.yaml, or the built-in config/train.yaml.
    let origin = match (&a.config, &a.resume) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(dir)) => dir.join("config.yaml").display().to_string(),
        (None, None) => "the built-in config/train.yaml and the flags".to_string(),
    };
    if let Err(e) = cfg.validate(&origin) {
        // The line of the field in the --config file, when the value found is the one written
        // there (not one a flag gave); a nested field (triplet.margin) points at the entry that
        // writes it, or its section.
        if let (
            train::config::ConfigError::Field {
                field,
                expected,
                found,
                ..
            },
            Some(p),
        ) = (&e, &a.config)
        {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let line = train::config::line_of_value(&text, field, found);
            if let Some(line) = line {
                return Err(train::config::ConfigError::Field {
                    origin: format!("{}:{line}", p.display()),
                    field,
                    expected: expected.clone(),
                    found: found.clone(),
                }
                .into());
            }
        }
        return Err(e.into());
    }
    if cfg.epochs > 100_000 {
        anyhow::bail!("--epochs: expected 1 to 100000, found {}", cfg.epochs);
    }
    // A new run that fails before its first checkpoint leaves nothing behind: the folder it
    // made is removed, a folder that was empty is emptied again.
    // (A link counts as there: the folder it names is never removed through it.)
    let existed = std::fs::symlink_metadata(&out).is_ok();
    let was_empty = existed
        && std::fs::read_dir(&out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    let s = match train::run(cfg, &out, resume, interrupt) {
        Ok(s) => s,
        Err(e) => {
            if !resume && !out.join("checkpoints/latest").exists() {
                if !existed {
                    let _ = std::fs::remove_dir_all(&out);
                } else if was_empty {
                    for entry in std::fs::read_dir(&out).into_iter().flatten().flatten() {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            }
            return Err(e.into());
        }
    };
    let losses: Vec<String> = s
        .last_losses
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "generator_total"
                    | "depth_anchor"
                    | "seg_anchor"
                    | "triplet_total"
                    | "discriminator"
            )
        })
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect();
    let verb = match s.outcome {
        train::Outcome::Finished => "trained",
        train::Outcome::Interrupted => "interrupted: checkpoint written after",
    };
    if s.first_step == s.steps_done {
        println!(
            "nothing to train: the run is already at step {} of {} (raise --steps or --epochs \
             to continue it)",
            s.steps_done, s.total_steps
        );
    } else {
        println!(
            "{verb} steps {}..{} of {} on {} in {}; last losses: {}",
            s.first_step,
            s.steps_done,
            s.total_steps,
            s.device,
            dasgil::progress::format_secs(s.seconds),
            losses.join(", ")
        );
    }
    if let Some((path, why)) = s.skipped.first() {
        println!(
            "skipped {} unreadable training images (each replaced by the next readable frame of \
             its scene and variation), e.g. {path}: {why}",
            s.skipped.len()
        );
    }
    println!(
        "generator: {}; curves: {}; predictions: {}",
        s.out.join("generator.safetensors").display(),
        s.out.join("loss_curves.png").display(),
        s.out.join("predictions.png").display()
    );
    if let Some(png) = &s.batch_picture {
        println!("first batch as the network receives it: {}", png.display());
    }
    if s.outcome == train::Outcome::Interrupted {
        println!(
            "continue with: dasgil-tools train --resume {}",
            s.out.display()
        );
    }
    Ok(())
}
