//! Training DASGIL (paper section III; reference `train.py` / `model.py`): each step updates
//! the generator on depth + segmentation for A, A+ and B, the multi-scale triplet loss and the
//! LSGAN generator term, then the feature discriminator on E(real) against E(virtual).
//!
//! A run lives in one folder: `config.yaml` (resolved), `losses.csv` (every term, every step),
//! `loss_curves.png`, `predictions.png`, `batch.png` (the first batch of the latest start, as
//! the network receives it), `generator.safetensors` (the latest generator, ready for `embed`,
//! `build-map` and the node) and `checkpoints/` (everything a resume needs:
//! both networks, both optimizers' moments, the step and the config; the batch of a step is a
//! pure function of the seed and the step, so no other random state exists).

pub mod adam;
pub mod augment;
pub mod config;
pub mod loader;
pub mod report;
pub mod sampler;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::atomic::{write_atomic, PathIoError};
use crate::data::vkitti2::Vkitti2Roots;
use crate::model::checkpoint::{self, CheckpointMeta, NetworkRole};
use crate::model::losses::{
    depth_loss, lsgan_discriminator_loss, lsgan_generator_loss, segmentation_loss, triplet_loss,
};
use crate::model::{Discriminator, DiscriminatorKind, Generator, WeightInit};
use crate::progress::Progress;
use crate::tensor_io;
use adam::Adam;
pub use config::TrainConfig;
use loader::{Batch, BatchSpec, Loader, TrainingData};

/// Value of `format` in a checkpoint's state.json.
pub const STATE_FORMAT: &str = "dasgil-train-state/1";
/// Step checkpoints kept (older ones are removed once a newer one is complete).
const KEEP_CHECKPOINTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("training data: {0}")]
    Data(#[from] loader::LoadError),
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    TensorFile(#[from] tensor_io::TensorFileError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(
        "step {step}: loss term `{term}` is {value}; training stopped. The last good checkpoint \
         ({last}) is intact: lower the learning rates or check the data, then --resume"
    )]
    NonFinite {
        step: u64,
        term: String,
        value: f64,
        last: String,
    },
    #[error("{path}: {message}")]
    Resume { path: PathBuf, message: String },
    #[error("{0}")]
    Loader(String),
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// What a checkpoint's state.json holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    pub format: String,
    /// Steps completed.
    pub step: u64,
    pub epoch: u64,
    pub config: TrainConfig,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    /// Stopped by SIGINT/SIGTERM after writing a checkpoint.
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    pub first_step: u64,
    pub steps_done: u64,
    pub total_steps: u64,
    pub seconds: f64,
    pub last_losses: Vec<(String, f64)>,
    pub out: PathBuf,
    pub device: String,
    /// Unreadable training images met (path, why), each replaced by the next readable frame.
    pub skipped: Vec<(String, String)>,
    /// batch.png, the first batch of this invocation as the network receives it (none when
    /// nothing was trained).
    pub batch_picture: Option<PathBuf>,
}

/// The columns of losses.csv after `step,epoch,lr_generator,lr_discriminator`.
pub fn loss_columns(cfg: &TrainConfig) -> Vec<String> {
    let mut cols: Vec<String> = [
        "generator_total",
        "depth_anchor",
        "depth_positive",
        "depth_negative",
        "seg_anchor",
        "seg_positive",
        "seg_negative",
        "triplet_total",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for t in &cfg.triplet {
        cols.push(format!("triplet_e{}", t.layer));
        cols.push(format!("dpos_e{}", t.layer));
        cols.push(format!("dneg_e{}", t.layer));
    }
    cols.extend(
        [
            "adversarial_generator",
            "discriminator",
            "d_real",
            "d_virtual",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    cols
}

fn csv_header(cfg: &TrainConfig) -> String {
    format!(
        "step,epoch,lr_generator,lr_discriminator,{}\n",
        loss_columns(cfg).join(",")
    )
}

/// The networks, their optimizers and the run's bookkeeping.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub device: Device,
    pub gen_vs: nn::VarStore,
    pub gen: Generator,
    pub dis: Option<(nn::VarStore, Discriminator, Adam)>,
    pub opt_g: Adam,
    /// Steps completed.
    pub step: u64,
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

impl Trainer {
    /// Fresh networks with the reference initialisation, seeded by the config.
    pub fn new(cfg: TrainConfig) -> Result<Self, TrainError> {
        let device = crate::toolchain::parse_device(&cfg.device, "device")
            .map_err(|e| TrainError::Loader(e.to_string()))?;
        let _rng = crate::model::TORCH_RNG
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(cfg.seed as i64);
        let model_cfg = cfg.model_config();
        let gen_vs = nn::VarStore::new(device);
        let gen = Generator::new(&gen_vs.root(), model_cfg, WeightInit::Reference)?;
        let opt_g = Adam::new(&gen_vs, cfg.lr_generator, cfg.betas_generator);
        let dis = if cfg.adversarial {
            let vs = nn::VarStore::new(device);
            let net = Discriminator::new(&vs.root(), &model_cfg, cfg.discriminator)?;
            let opt = Adam::new(&vs, cfg.lr_discriminator, cfg.betas_discriminator);
            Some((vs, net, opt))
        } else {
            None
        };
        Ok(Self {
            cfg,
            device,
            gen_vs,
            gen,
            dis,
            opt_g,
            step: 0,
        })
    }

    fn meta(&self, role: NetworkRole, epoch: u64) -> CheckpointMeta {
        CheckpointMeta {
            network: role,
            config: self.cfg.model_config(),
            discriminator: Some(self.cfg.discriminator),
            epoch: Some(epoch),
            step: Some(self.step),
            source: Some(format!(
                "dasgil-tools train (seed {}, step {})",
                self.cfg.seed, self.step
            )),
            // A trained generator's layers are chosen afterwards, on validation (the shipped
            // model's: tools/select-shipped-model.sh).
            descriptor_layers: None,
            metric: None,
            // What the network was trained to see; none is the paper's (not written).
            photometric: Some(self.cfg.photometric).filter(|p| !p.is_none()),
        }
    }

    /// One training step on `batch` at the given learning rates; returns the loss columns.
    pub fn step(&mut self, batch: &Batch, lr_g: f64, lr_d: f64) -> Result<Vec<f64>, TrainError> {
        let cfg = &self.cfg;
        let step = batch.step;
        self.opt_g.lr = lr_g;
        // Generator pass on A, A+ and B (each its own batch, as the reference).
        let outs = batch
            .triplet
            .iter()
            .map(|l| self.gen.forward_t(&l.rgb, true))
            .collect::<Result<Vec<_>, _>>()?;
        let mut depth = Vec::with_capacity(3);
        let mut seg = Vec::with_capacity(3);
        for (out, l) in outs.iter().zip(&batch.triplet) {
            depth.push(depth_loss(&out.depth, &l.depth)?);
            seg.push(segmentation_loss(&out.seg, &l.classes)?);
        }
        let trip = triplet_loss(
            &outs[0].features,
            &outs[1].features,
            &outs[2].features,
            &cfg.triplet,
        )?;
        // Real-domain features, for the discriminator step (BN sees the real domain too).
        let real_features = if self.dis.is_some() {
            Some(tch::no_grad(|| self.gen.encode_t(&batch.real, 8, true))?)
        } else {
            None
        };
        let adv_g = match &self.dis {
            Some((_, d, _)) => {
                lsgan_generator_loss(&d.forward_t(&outs[0].features, true)?)
                    * cfg.lambda_adversarial
            }
            None => Tensor::zeros([], (Kind::Float, self.device)),
        };
        let mut total = &trip.total + &adv_g;
        for t in &depth {
            total += t * cfg.lambda_depth;
        }
        for t in &seg {
            total += t * cfg.lambda_seg;
        }
        let mut row = vec![scalar(&total)];
        row.extend(depth.iter().map(scalar));
        row.extend(seg.iter().map(scalar));
        row.push(scalar(&trip.total));
        for (dp, dn, term) in &trip.per_layer {
            row.extend([scalar(term), scalar(dp), scalar(dn)]);
        }
        row.push(scalar(&adv_g));
        let columns = loss_columns(cfg);
        self.check_finite(step, &columns, &row)?;
        self.opt_g.zero_grad();
        total.backward();
        self.opt_g.step();

        // Discriminator step: LSGAN on E(real) (1) against E(virtual) (0), features detached.
        match (&mut self.dis, real_features) {
            (Some((_, d, opt_d)), Some(real)) => {
                opt_d.lr = lr_d;
                let virt: Vec<Tensor> = outs[0].features.iter().map(Tensor::detach).collect();
                let d_real = d.forward_t(&real, true)?;
                let d_virtual = d.forward_t(&virt, true)?;
                let loss = lsgan_discriminator_loss(&d_real, &d_virtual) * cfg.lambda_adversarial;
                let vals = [
                    scalar(&loss),
                    scalar(&d_real.mean(Kind::Float)),
                    scalar(&d_virtual.mean(Kind::Float)),
                ];
                row.extend(vals);
                if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
                    return Err(self.non_finite(step, &columns[columns.len() - 3 + i], vals[i]));
                }
                opt_d.zero_grad();
                loss.backward();
                opt_d.step();
            }
            _ => row.extend([0.0, 0.0, 0.0]),
        }
        self.step = step + 1;
        Ok(row)
    }

    fn non_finite(&self, step: u64, term: &str, value: f64) -> TrainError {
        TrainError::NonFinite {
            step,
            term: term.to_string(),
            value,
            last: if self.step == 0 {
                "none yet".into()
            } else {
                format!("step {}", self.step)
            },
        }
    }

    fn check_finite(&self, step: u64, columns: &[String], row: &[f64]) -> Result<(), TrainError> {
        match row.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(self.non_finite(step, &columns[i], row[i])),
            None => Ok(()),
        }
    }

    /// Writes a complete checkpoint folder `checkpoints/step-NNNNNNNN`, then points `latest` at
    /// it, then removes the oldest ones; also refreshes OUT/generator.safetensors.
    pub fn save_checkpoint(&self, out: &Path, epoch: u64) -> Result<PathBuf, TrainError> {
        let ckdir = out.join("checkpoints");
        std::fs::create_dir_all(&ckdir)
            .map_err(|e| PathIoError::new("cannot create folder", &ckdir, e))?;
        let name = format!("step-{:08}", self.step);
        let partial = ckdir.join(format!(".partial-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)
            .map_err(|e| PathIoError::new("cannot create folder", &partial, e))?;
        checkpoint::save(
            &self.gen_vs,
            &self.meta(NetworkRole::Generator, epoch),
            &partial.join("generator.safetensors"),
        )?;
        let mut optim: Vec<(String, Tensor)> = self
            .opt_g
            .state()
            .into_iter()
            .map(|(n, t)| (format!("g.{n}"), t))
            .collect();
        let mut optim_meta = std::collections::HashMap::new();
        optim_meta.insert("generator_steps".to_string(), self.opt_g.step.to_string());
        if let Some((vs, _, opt_d)) = &self.dis {
            checkpoint::save(
                vs,
                &CheckpointMeta {
                    discriminator: Some(self.cfg.discriminator),
                    ..self.meta(NetworkRole::Discriminator, epoch)
                },
                &partial.join("discriminator.safetensors"),
            )?;
            optim.extend(
                opt_d
                    .state()
                    .into_iter()
                    .map(|(n, t)| (format!("d.{n}"), t)),
            );
            optim_meta.insert("discriminator_steps".to_string(), opt_d.step.to_string());
        }
        tensor_io::write(&partial.join("optimizer.safetensors"), &optim, &optim_meta)?;
        let state = TrainState {
            format: STATE_FORMAT.into(),
            step: self.step,
            epoch,
            config: self.cfg.clone(),
        };
        let json = serde_json::to_string_pretty(&state).unwrap_or_default();
        write_atomic(&partial.join("state.json"), json.as_bytes())?;
        let dest = ckdir.join(&name);
        if dest.exists() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        std::fs::rename(&partial, &dest)
            .map_err(|e| PathIoError::new("cannot rename into place", &dest, e))?;
        write_atomic(&ckdir.join("latest"), format!("{name}\n").as_bytes())?;
        checkpoint::save(
            &self.gen_vs,
            &self.meta(NetworkRole::Generator, epoch),
            &out.join("generator.safetensors"),
        )?;
        // Keep the newest KEEP_CHECKPOINTS complete folders.
        let mut steps: Vec<PathBuf> = std::fs::read_dir(&ckdir)
            .map_err(|e| PathIoError::new("cannot list", &ckdir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
            })
            .collect();
        steps.sort();
        while steps.len() > KEEP_CHECKPOINTS {
            let _ = std::fs::remove_dir_all(steps.remove(0));
        }
        Ok(dest)
    }

    /// Replaces the generator's weights by those in `path` (every tensor, by name, shape and
    /// type; anything else is refused naming the file): a new run's starting point, and the
    /// generator part of a checkpoint.
    pub fn load_generator(&mut self, path: &Path) -> Result<(), TrainError> {
        let file = tensor_io::read(path)?;
        checkpoint::load_strict(&self.gen_vs, &file, path, "DASGIL generator")?;
        Ok(())
    }

    /// Restores networks, optimizers and the step from `out/checkpoints/latest`.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<u64, TrainError> {
        let resume_err = |path: &Path, message: String| TrainError::Resume {
            path: path.to_path_buf(),
            message,
        };
        self.load_generator(&dir.join("generator.safetensors"))?;
        let opt_path = dir.join("optimizer.safetensors");
        let opt_file = tensor_io::read(&opt_path)?;
        let steps = |key: &str| -> Result<u64, TrainError> {
            opt_file
                .metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    resume_err(
                        &opt_path,
                        format!("metadata `{key}`: expected an unsigned integer, found none"),
                    )
                })
        };
        let split = |prefix: &str| -> BTreeMap<String, Tensor> {
            opt_file
                .tensors
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(prefix)
                        .map(|n| (n.to_string(), v.tensor.to_device(self.device)))
                })
                .collect()
        };
        self.opt_g
            .load_state(&split("g."), steps("generator_steps")?)
            .map_err(|m| resume_err(&opt_path, m))?;
        if let Some((vs, _, opt_d)) = &mut self.dis {
            let dis_path = dir.join("discriminator.safetensors");
            let file = tensor_io::read(&dis_path)?;
            checkpoint::load_strict(vs, &file, &dis_path, "DASGIL discriminator")?;
            let d_steps = steps("discriminator_steps")?;
            opt_d
                .load_state(&split("d."), d_steps)
                .map_err(|m| resume_err(&opt_path, m))?;
        }
        Ok(self.opt_g.step)
    }
}

/// Where a run's latest checkpoint is, and its state.
pub fn latest_checkpoint(out: &Path) -> Result<(PathBuf, TrainState), TrainError> {
    let latest = out.join("checkpoints").join("latest");
    let err = |path: &Path, message: String| TrainError::Resume {
        path: path.to_path_buf(),
        message,
    };
    // The folder itself first: a missing folder or a file is said as such, not as the inner
    // checkpoints/latest it lacks.
    let expects = "--resume expects the --out folder of an earlier run";
    match std::fs::metadata(out) {
        Err(e) => {
            return Err(err(
                out,
                format!("{}; {expects}", crate::error::io_words(&e)),
            ))
        }
        Ok(m) if !m.is_dir() => return Err(err(out, format!("is a file; {expects}"))),
        Ok(_) => {}
    }
    // No checkpoints/: a run stopped before its first one, or no run at all, said as such.
    if !out.join("checkpoints").exists() {
        let started = out.join("config.yaml").exists() && out.join("losses.csv").exists();
        return Err(err(
            out,
            if started {
                "holds a run stopped before its first checkpoint (one is written every \
                 --checkpoint-every steps): nothing to resume; start it again with --out in a \
                 new or empty folder"
                    .to_string()
            } else {
                format!("holds no training run (no checkpoints/); {expects}")
            },
        ));
    }
    let name = std::fs::read_to_string(&latest).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "missing: no checkpoint was written there (one is written every \
                 --checkpoint-every steps)"
                    .to_string()
            }
            _ => format!("cannot read it ({})", crate::error::io_words(&e)),
        };
        err(&latest, format!("{why}; {expects}"))
    })?;
    let name = name.trim();
    if !name.starts_with("step-") || name.contains('/') {
        return Err(err(
            &latest,
            format!("expected a checkpoint folder name step-NNNNNNNN, found `{name}`"),
        ));
    }
    let dir = out.join("checkpoints").join(name);
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| err(&state_path, format!("cannot read it: {e}")))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| {
        err(
            &state_path,
            format!("line {}: not a training state: {e}", e.line()),
        )
    })?;
    if state.format != STATE_FORMAT {
        return Err(err(
            &state_path,
            format!(
                "field `format`: expected {STATE_FORMAT}, found `{}`",
                state.format
            ),
        ));
    }
    Ok((dir, state))
}

/// Bytes of host memory one triplet (A, A+, B and a real image) costs per input pixel in a CPU
/// training step (activations kept for the backward pass), and the fixed part; measured here:
/// peak RSS 0.80 GB at 256x512 batch 1, 2.20 GB at batch 4.
const BYTES_PER_TRIPLET_PIXEL: f64 = 3600.0;
const FIXED_BYTES: f64 = 350e6;
/// The FD's first Linear (1,004,800 x 64 at the paper's size): weights, gradient, Adam moments.
const FD_BYTES_PER_FEATURE: f64 = 64.0 * 4.0 * 4.0;

/// Refuses, before anything is allocated, a CPU run whose estimated memory exceeds what the
/// machine has available.
fn check_memory(cfg: &TrainConfig) -> Result<(), TrainError> {
    let device =
        crate::toolchain::parse_device(&cfg.device, "device").map_err(TrainError::Loader)?;
    if device != Device::Cpu {
        return Ok(());
    }
    let pixels = (cfg.input_height * cfg.input_width) as f64;
    let mut bytes = FIXED_BYTES + cfg.batch as f64 * pixels * BYTES_PER_TRIPLET_PIXEL;
    if cfg.adversarial && cfg.discriminator == DiscriminatorKind::Flatten {
        bytes += cfg.model_config().total_feature_len() as f64 * FD_BYTES_PER_FEATURE;
    }
    if let Some(avail) = crate::resources::available_memory() {
        if bytes > avail as f64 {
            return Err(TrainError::Loader(format!(
                "training at {}x{} with batch {} on the CPU needs about {} of memory; {} is \
                 available: use a smaller --size or --batch, or a GPU (--device cuda)",
                cfg.input_height,
                cfg.input_width,
                cfg.batch,
                crate::resources::human_bytes(bytes as u64),
                crate::resources::human_bytes(avail)
            )));
        }
    }
    Ok(())
}

/// Pins libtorch's intra-op thread count to `cfg.threads` (0: resolved to libtorch's default,
/// one per core, and recorded), so a resume, or a second run of the same config on this
/// machine, splits every parallel sum the same way. An explicit count also turns off MKL's
/// dynamic threading (which may otherwise pick a thread count per call).
pub fn fix_threads(cfg: &mut TrainConfig) {
    if cfg.threads == 0 {
        cfg.threads = tch::get_num_threads().max(1) as usize;
    }
    tch::set_num_threads(cfg.threads as i32);
}

/// The run: opens the data, builds or restores the networks, trains with a background loader,
/// writes losses, pictures and checkpoints; stops cleanly on `interrupt`.
pub fn run(
    mut cfg: TrainConfig,
    out: &Path,
    resume: bool,
    interrupt: Arc<AtomicBool>,
) -> Result<Summary, TrainError> {
    let started = Instant::now();
    let origin = out.join("config.yaml").display().to_string();
    // (dasgil-tools train checks it first, naming the --config file's line.)
    cfg.validate(&origin)?;
    fix_threads(&mut cfg);
    check_memory(&cfg)?;
    let roots: Vec<Vkitti2Roots> = cfg
        .vkitti
        .iter()
        .map(|p| match cfg.vkitti_layout {
            config::VkittiLayout::Official => Vkitti2Roots::official(p),
            config::VkittiLayout::Dasgil => Vkitti2Roots::dasgil(p),
        })
        .collect();
    let kitti = cfg
        .kitti
        .clone()
        .ok_or_else(|| config::ConfigError::Field {
            origin: origin.clone(),
            field: "kitti",
            expected: "a folder of real-domain (KITTI) images (--kitti DIR)".into(),
            found: "none".into(),
        })?;
    let data = Arc::new(TrainingData::open(&roots, &kitti)?);
    if cfg.augment_yaw_deg > 0.0 {
        if let Some(frame) = data.frame_without_intrinsics() {
            return Err(loader::LoadError::Other(format!(
                "augment_yaw_deg {} turns each camera with its frame's intrinsics, and {} has \
                 none{}",
                cfg.augment_yaw_deg,
                frame.display(),
                loader::NEEDS_INTRINSICS
            ))
            .into());
        }
    }
    let steps_per_epoch = cfg
        .steps_per_epoch
        .unwrap_or((data.space.anchors() / cfg.batch).max(1) as u64);
    let total = (cfg.epochs * steps_per_epoch).min(cfg.max_steps.unwrap_or(u64::MAX));

    let mut trainer = Trainer::new(cfg.clone())?;
    std::fs::create_dir_all(out).map_err(|e| PathIoError::new("cannot create folder", out, e))?;
    let csv_path = out.join("losses.csv");
    if resume {
        let (dir, state) = latest_checkpoint(out)?;
        let restored = trainer.load_checkpoint(&dir)?;
        if restored != state.step {
            return Err(TrainError::Resume {
                path: dir,
                message: format!(
                    "optimizer says {restored} steps, state.json says {}",
                    state.step
                ),
            });
        }
        trainer.step = state.step;
        // Drop rows past the checkpoint (written after it by the interrupted run).
        let text = std::fs::read_to_string(&csv_path).unwrap_or_default();
        let mut kept = csv_header(&cfg);
        for line in text.lines().skip(1) {
            let s: Option<u64> = line.split(',').next().and_then(|v| v.parse().ok());
            if s.is_some_and(|s| s < state.step) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&csv_path, kept.as_bytes())?;
        tracing::info!(step = state.step, checkpoint = %dir.display(), "resuming");
    } else {
        if let Some(init) = &cfg.init_generator {
            trainer.load_generator(init)?;
            tracing::info!(generator = %init.display(), "starting from these generator weights");
        }
        write_atomic(&csv_path, csv_header(&cfg).as_bytes())?;
    }
    let yaml = serde_yaml::to_string(&cfg).unwrap_or_default();
    write_atomic(
        &out.join("config.yaml"),
        format!("# Resolved configuration of this run (dasgil-tools train).\n{yaml}").as_bytes(),
    )?;
    let first_step = trainer.step;
    let spec = BatchSpec {
        seed: cfg.seed,
        batch: cfg.batch,
        window: cfg.positive_window,
        hard_negatives: cfg.hard_negatives,
        height: cfg.input_height as u32,
        width: cfg.input_width as u32,
        augment: cfg.augment,
        augment_palette: cfg.augment_palette,
        augment_yaw_deg: cfg.augment_yaw_deg,
        photometric: cfg.photometric,
    };
    let mut loader = Loader::start(
        Arc::clone(&data),
        spec,
        first_step,
        total,
        cfg.loader_threads,
        cfg.prefetch,
    );
    let mut csv = std::fs::OpenOptions::new()
        .append(true)
        .open(&csv_path)
        .map_err(|e| PathIoError::new("cannot open", &csv_path, e))?;
    let progress = Progress::new("train", "steps", total, first_step);
    let columns = loss_columns(&cfg);
    let mut last = Vec::new();
    let mut outcome = Outcome::Finished;
    let val = report::ValidationSample::pick(&data, &spec)?;
    let mut batch_picture = None;
    while let Some(host) = loader.next_batch() {
        let host = host.map_err(TrainError::Loader)?;
        let step = host.step;
        if step == first_step {
            let png = out.join("batch.png");
            report::write_batch(&png, &data, &spec, &host)?;
            tracing::info!(picture = %png.display(), "the first batch as the network receives it");
            batch_picture = Some(png);
        }
        let epoch = step / steps_per_epoch;
        let _span = tracing::info_span!("train", epoch, step).entered();
        let (lr_g, lr_d) = (
            cfg.lr_at(cfg.lr_generator, epoch),
            cfg.lr_at(cfg.lr_discriminator, epoch),
        );
        let batch = host.to_device(trainer.device, cfg.input_height, cfg.input_width);
        let row = trainer.step(&batch, lr_g, lr_d)?;
        let line = format!(
            "{step},{epoch},{lr_g},{lr_d},{}\n",
            row.iter()
                .map(|v| format!("{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        csv.write_all(line.as_bytes())
            .map_err(|e| PathIoError::new("cannot write", &csv_path, e))?;
        tracing::debug!(loss = row[0], "step done");
        last = columns.iter().cloned().zip(row.iter().copied()).collect();
        // The message first: the bar draws on `inc`, with this step's losses.
        progress.set_message(format!(
            "G {:.3} depth {:.3} seg {:.3} trip {:.3} D {:.3}",
            row[0],
            row[1],
            row[4],
            row[7],
            row[row.len() - 3]
        ));
        progress.inc(1);
        let done = trainer.step;
        let epoch_end = done % steps_per_epoch == 0;
        let stop = interrupt.load(Ordering::SeqCst);
        if epoch_end || done == total || done % cfg.checkpoint_every == 0 || stop {
            let _ = csv.flush();
            trainer.save_checkpoint(out, done / steps_per_epoch)?;
        }
        if epoch_end || done == total || stop {
            report::write_pictures(out, &cfg, &trainer, &val)?;
        }
        if stop {
            outcome = Outcome::Interrupted;
            break;
        }
    }
    progress.finish();
    Ok(Summary {
        outcome,
        first_step,
        steps_done: trainer.step,
        total_steps: total,
        seconds: started.elapsed().as_secs_f64(),
        last_losses: last,
        out: out.to_path_buf(),
        device: format!("{:?}", trainer.device),
        skipped: data.skipped(),
        batch_picture,
    })
}
