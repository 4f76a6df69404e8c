//! `dasgil-tools`: the command-line side of DASGIL: toolchain info, checkpoint import,
//! embedding one image (training, map building and synthetic data come with their issues).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dasgil::data::preprocess;
use dasgil::model::checkpoint;
use dasgil::model::import::{import_pth, ImportOptions};
use dasgil::model::DiscriminatorKind;

#[derive(Parser)]
#[command(
    name = "dasgil-tools",
    version,
    about = "DASGIL training, data and map tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the toolchain: libtorch version, CUDA availability, ROS 2 distro and RMW.
    Info {
        /// Print as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Convert an authors' checkpoint (N_net_gen.pth or N_net_dis.pth) to a dasgil checkpoint.
    ImportCheckpoint {
        /// The PyTorch state_dict file (.pth). Read with weights_only=True: no pickled code runs.
        input: PathBuf,
        /// The safetensors checkpoint to write.
        output: PathBuf,
        /// Network input size HxW the model is used at (default 256x1024, the paper's).
        #[arg(long, value_parser = parse_size)]
        input_size: Option<(i64, i64)>,
        /// Epoch to record (default: N from the N_net_*.pth file name).
        #[arg(long)]
        epoch: Option<u64>,
        /// For a generator: the discriminator it was trained with (FD or CD), recorded in the
        /// metadata; it decides the default descriptor layers.
        #[arg(long)]
        trained_with: Option<DiscriminatorKind>,
        /// Python interpreter with torch (default: DASGIL_PYTHON, the project venv, python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Remove this prefix from every tensor name (`module.` for a state_dict saved from
        /// nn.DataParallel).
        #[arg(long)]
        strip_prefix: Option<String>,
    },
    /// Run the generator (eval mode) on one image; write e1..e8, depth_0..depth_3 and seg.
    Embed {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        image: PathBuf,
        /// Output safetensors file.
        #[arg(long)]
        output: PathBuf,
        /// cpu, cuda or auto (CUDA when available).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Train DASGIL on Virtual KITTI 2 (+ KITTI images as the unlabelled real domain).
    ///
    /// Writes OUT/config.yaml, losses.csv, loss_curves.png, predictions.png,
    /// generator.safetensors and checkpoints/ (resume with --resume OUT). Ctrl-C or SIGTERM
    /// writes a checkpoint and exits 0.
    Train(Box<TrainArgs>),
    /// Encode a geotagged image sequence's database images into a descriptor map.
    BuildMap(Box<BuildMapArgs>),
    /// Find the nearest map images of each image and the pose prior the node would publish.
    Localize(Box<LocalizeArgs>),
    /// Score a model (or a baseline) on a sequence with query ground truth.
    Evaluate(Box<EvaluateArgs>),
    /// Play a sequence's query frames to a running dasgil_node over ROS 2 at camera rate and
    /// score the pose priors it publishes (accuracy per condition, latency, frames dropped,
    /// covariance coverage); writes OUT/priors.csv, summary.json and route.png.
    #[cfg(feature = "ros")]
    Replay(Box<ReplayArgs>),
    /// Render a synthetic data set in a real data set's on-disk format.
    Synth {
        #[command(subcommand)]
        format: SynthFormat,
    },
}

#[derive(clap::Args)]
struct SourceArgs {
    /// A named sequence of config/sequences.yaml (cmu_slice: a synthetic Extended CMU-Seasons
    /// slice, rendered on first use under $DASGIL_DATA or ~/.cache/dasgil).
    #[arg(long)]
    sequence: Option<String>,
    /// Another sequences file instead of the built-in config/sequences.yaml.
    #[arg(long)]
    sequences: Option<PathBuf>,
    /// Ad hoc: the data set's layout, cmu, robotcar, kitti or vkitti2 (with --root).
    #[arg(long)]
    format: Option<String>,
    #[arg(long)]
    root: Option<PathBuf>,
    /// The CMU slice, or the KITTI odometry sequence number.
    #[arg(long)]
    slice: Option<u32>,
    /// Cameras to use, comma-separated (cmu: c0,c1).
    #[arg(long, value_delimiter = ',')]
    cameras: Option<Vec<String>>,
}

impl SourceArgs {
    fn open(&self) -> Result<dasgil::maps::SourceImages> {
        Ok(dasgil::maps::commands::source(
            self.sequence.as_deref(),
            self.sequences.as_deref(),
            self.format.as_deref(),
            self.root.as_deref(),
            self.slice,
            self.cameras.clone(),
        )?)
    }
}

#[derive(clap::Args)]
struct ModelArgs {
    /// Generator checkpoint (default: the shipped model, maps/models/). With --baseline
    /// untrained: the model whose shape (input size, layers) the untrained network takes.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A baseline instead of a model: raw-pixels or untrained (the paper's initialisation).
    #[arg(long)]
    baseline: Option<String>,
    /// Descriptor layers, e.g. 5,6 (default: the paper's for the model's discriminator).
    #[arg(long, value_parser = dasgil::maps::commands::parse_layers)]
    layers: Option<dasgil::model::DescriptorSpec>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
}

impl ModelArgs {
    fn choice(&self) -> Result<dasgil::maps::commands::ModelChoice> {
        use dasgil::maps::commands::ModelChoice;
        Ok(match self.baseline.as_deref() {
            None => ModelChoice::Checkpoint(self.checkpoint.clone()),
            Some("raw-pixels") if self.checkpoint.is_some() => {
                anyhow::bail!("--baseline raw-pixels uses no network: drop --checkpoint")
            }
            Some("raw-pixels") => ModelChoice::RawPixels,
            Some("untrained") => ModelChoice::Untrained(self.checkpoint.clone()),
            Some(other) => {
                anyhow::bail!("--baseline: expected raw-pixels or untrained, found `{other}`")
            }
        })
    }
    fn device(&self) -> Result<tch::Device> {
        dasgil::toolchain::parse_device(&self.device, "--device").map_err(anyhow::Error::msg)
    }
}

#[derive(clap::Args)]
struct BuildMapArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The map file to write (default: SEQUENCE.map.safetensors in the current folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Map-time adaptation: re-estimate the encoder's BatchNorm statistics on the map's images
    /// (no labels) and store them in the map. Default off: the checkpoint's statistics, the
    /// paper's behaviour, which scored as well on held-out-world validation (maps/models/MODEL_CARD.md).
    #[arg(long)]
    adapt: bool,
    /// Store descriptors as float16 (half the size; distances change by ~1e-3 relative).
    #[arg(long)]
    f16: bool,
    /// The compressed search mode for large maps: also store int8 codes of a DIMS-value random
    /// projection of each descriptor; queries scan the codes and re-rank a shortlist exactly
    /// (16 to 4096; e.g. 256).
    #[arg(long, value_name = "DIMS")]
    compress: Option<usize>,
    /// Rows re-ranked exactly per query in the compressed mode.
    #[arg(long, default_value_t = 100)]
    shortlist: usize,
    /// The map's default metric: l1 (the reference's), l2 or cosine.
    #[arg(long, default_value = "l1")]
    metric: dasgil::maps::search::Metric,
}

#[derive(clap::Args)]
struct LocalizeArgs {
    #[arg(long)]
    map: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Candidates to report and to compute the prior from (1 to 1000; default the node's).
    #[arg(long, default_value_t = dasgil::localize::Options::default().top_k, value_parser = parse_top_k)]
    top_k: usize,
    /// l1, l2 or cosine (default: the map's).
    #[arg(long)]
    metric: Option<dasgil::maps::search::Metric>,
    /// Search every camera's entries (default: only the query's camera, as the reference).
    #[arg(long)]
    shared: bool,
    /// Camera of the images when their names do not say (CMU names do).
    #[arg(long)]
    camera: Option<String>,
    /// Geo-gating: only entries within --radius metres of this X,Y,Z (map frame).
    #[arg(long, requires = "radius")]
    near: Option<String>,
    #[arg(long)]
    radius: Option<f64>,
    /// Matches with confidence (1 - d1/d2) below this are reported as `ambiguous` (the node
    /// would not publish them); 0 to 1, default the node's.
    #[arg(long, default_value_t = dasgil::localize::Options::default().min_confidence, value_parser = parse_unit)]
    min_confidence: f64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Images to localize.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[cfg(feature = "ros")]
#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The map the node runs (names the map image each prior came from in route.png).
    #[arg(long)]
    map: Option<PathBuf>,
    /// Camera topics, comma-separated, parallel to --cameras.
    #[arg(long, value_delimiter = ',', default_value = "/camera/image_raw")]
    topics: Vec<String>,
    /// The query camera played on each topic, comma-separated, parallel to --topics.
    #[arg(long, value_delimiter = ',', default_value = "c0")]
    camera_ids: Vec<String>,
    /// Frames per second and camera.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// raw (sensor_msgs/Image rgb8) or compressed (sensor_msgs/CompressedImage, the files' bytes).
    #[arg(long, default_value = "raw")]
    transport: String,
    /// The node's pose prior topic.
    #[arg(long, default_value = "/pose_prior")]
    prior_topic: String,
    /// The frame_id the priors must carry.
    #[arg(long, default_value = "map")]
    frame_id: String,
    /// Seconds to wait for the node to subscribe.
    #[arg(long, default_value_t = 120.0)]
    wait: f64,
    /// At most this many frames per camera.
    #[arg(long)]
    limit: Option<usize>,
    /// Play for this many seconds, cycling through the frames (for load tests).
    #[arg(long)]
    duration: Option<f64>,
    /// Output folder: priors.csv, summary.json, route.png.
    #[arg(long)]
    out: PathBuf,
}

#[cfg(feature = "ros")]
fn run_replay(a: ReplayArgs) -> Result<()> {
    use dasgil::maps::replay;
    if a.topics.len() != a.camera_ids.len() {
        anyhow::bail!(
            "--topics and --camera-ids: expected one camera per topic, found {} topics and {} camera ids",
            a.topics.len(),
            a.camera_ids.len()
        );
    }
    if !matches!(a.transport.as_str(), "raw" | "compressed") {
        anyhow::bail!(
            "--transport: expected raw or compressed, found `{}`",
            a.transport
        );
    }
    if !(a.wait.is_finite() && a.wait > 0.0 && a.wait <= 86400.0) {
        anyhow::bail!("--wait: expected seconds in (0, 86400], found {}", a.wait);
    }
    if a.out.is_file() {
        anyhow::bail!("--out {}: is a file; expected a folder", a.out.display());
    }
    let src = a.source.open()?;
    if !src.queries.iter().any(|q| q.world_from_cam.is_some()) {
        anyhow::bail!(
            "{}: no query images with ground truth to replay and score",
            src.source.root
        );
    }
    let map = a
        .map
        .as_deref()
        .map(dasgil::maps::file::MapFile::open)
        .transpose()?;
    let labels = dasgil::maps::evaluate::condition_labels(&src);
    let (sent, received) = dasgil::node::replay::replay(
        &src,
        &dasgil::node::replay::ReplayOptions {
            topics: a.topics.clone(),
            cameras: a.camera_ids.clone(),
            rate: a.rate,
            compressed: a.transport == "compressed",
            prior_topic: a.prior_topic.clone(),
            wait: std::time::Duration::from_secs_f64(a.wait),
            limit: a.limit,
            duration: a
                .duration
                .map(|d| {
                    if d.is_finite() && d > 0.0 && d <= 86400.0 {
                        Ok(std::time::Duration::from_secs_f64(d))
                    } else {
                        Err(anyhow::anyhow!(
                            "--duration: expected seconds in (0, 86400], found {d}"
                        ))
                    }
                })
                .transpose()?,
        },
    )?;
    let summary = replay::score(&src, &labels, map.as_ref(), &sent, &received, &a.frame_id);
    let png = replay::write_outputs(&a.out, &summary, &src, &received)?;
    print!("{}", replay::summary_text(&summary));
    println!(
        "wrote {}: priors.csv, summary.json; picture: {}",
        a.out.display(),
        png.display()
    );
    if summary.priors_received == 0 {
        anyhow::bail!(
            "no pose prior came back from the node for {} frames",
            summary.frames_sent
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct EvaluateArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder: report.json, report.md, submission.txt, recall_curves.png, matches.png.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "l1")]
    metric: dasgil::maps::search::Metric,
    /// Search every camera's entries (default: per camera, as the reference).
    #[arg(long)]
    shared: bool,
    /// Report the adapted map first (both are always reported for a network; the first one is
    /// also written as submission.txt).
    #[arg(long)]
    adapt: bool,
}

fn run_build_map(a: BuildMapArgs) -> Result<()> {
    use dasgil::maps::commands;
    let src = a.source.open()?;
    let (mut enc, _) = commands::make_encoder(
        &a.model.choice()?,
        a.model.layers.clone(),
        a.model.device()?,
    )?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.map.safetensors",
            a.source
                .sequence
                .clone()
                .or(a.source.format.clone())
                .unwrap_or_else(|| "map".into())
        ))
    });
    let line = commands::build_map(
        &mut enc,
        &src,
        &out,
        &dasgil::maps::BuildOptions {
            adapt: a.adapt,
            f16: a.f16,
            metric: a.metric,
            compress: compress_option(a.compress, a.shortlist)?,
        },
    )?;
    println!("{line}");
    Ok(())
}

/// `--compress DIMS --shortlist S`, checked.
fn compress_option(dims: Option<usize>, shortlist: usize) -> Result<Option<(usize, usize)>> {
    let Some(dims) = dims else { return Ok(None) };
    if !(16..=4096).contains(&dims) {
        anyhow::bail!("--compress: expected 16 to 4096 projected values, found {dims}");
    }
    if !(1..=100_000).contains(&shortlist) {
        anyhow::bail!("--shortlist: expected 1 to 100000 rows, found {shortlist}");
    }
    Ok(Some((dims, shortlist)))
}

/// Candidates per query: 1 to 1000.
fn parse_top_k(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|v| (1..=1000).contains(v))
        .ok_or_else(|| format!("expected 1 to 1000, found {s}"))
}

/// A number from 0 to 1.
fn parse_unit(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("expected a number from 0 to 1, found `{s}`"))
}

fn run_localize(a: LocalizeArgs) -> Result<()> {
    use dasgil::maps::commands;
    let near = match (&a.near, a.radius) {
        (Some(text), Some(r)) => {
            let p: Vec<f64> = text
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .ok()
                .filter(|v: &Vec<f64>| v.len() == 3)
                .ok_or_else(|| {
                    anyhow::anyhow!("--near: expected X,Y,Z in metres, found `{text}`")
                })?;
            if !(r.is_finite() && r > 0.0) || p.iter().any(|v| !v.is_finite()) {
                anyhow::bail!("--near/--radius: expected finite coordinates and a radius > 0, found {p:?} and {r}");
            }
            Some(([p[0], p[1], p[2]], r))
        }
        _ => None,
    };
    let map = dasgil::maps::file::MapFile::open(&a.map)?;
    let choice = match (&a.model.baseline, &a.model.checkpoint) {
        (Some(_), _) | (None, Some(_)) => a.model.choice()?,
        (None, None) if map.meta.encoder.kind == "raw-pixels" => commands::ModelChoice::RawPixels,
        (None, None) => commands::ModelChoice::Checkpoint(
            map.meta
                .encoder
                .checkpoint
                .as_ref()
                .map(PathBuf::from)
                .filter(|p| p.is_file()),
        ),
    };
    let layers = a.model.layers.clone().or_else(|| {
        (!map.meta.encoder.layers.is_empty()).then(|| map.meta.encoder.descriptor_spec())
    });
    let (enc, _) = commands::make_encoder(&choice, layers, a.model.device()?)?;
    if let Some(c) = &a.camera {
        if !map.meta.cameras.contains(c) {
            let mut have = map.meta.cameras.clone();
            have.sort();
            have.dedup();
            anyhow::bail!(
                "--camera {c}: the map {} has no images of this camera (it has: {})",
                a.map.display(),
                have.join(", ")
            );
        }
    }
    let loc = dasgil::localize::Localizer::new(
        enc,
        std::sync::Arc::new(map),
        dasgil::localize::Options {
            metric: a.metric,
            top_k: a.top_k,
            min_confidence: a.min_confidence,
        },
    )?;
    let results = commands::localize(
        &loc,
        &a.images,
        &commands::LocalizeOptions {
            shared: a.shared,
            camera: a.camera.clone(),
            near,
        },
    );
    let mut failed = 0;
    for r in &results {
        if matches!(r.status, "rejected" | "no_candidates") {
            failed += 1;
        }
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
            continue;
        }
        println!("{}", r.image);
        for c in &r.candidates {
            println!(
                "  {:>2}. {} ({}) distance {:.5}  t [{:.2}, {:.2}, {:.2}]  q_wxyz [{:.4}, {:.4}, {:.4}, {:.4}]",
                c.rank, c.name, c.camera, c.distance, c.t[0], c.t[1], c.t[2], c.q_wxyz[0], c.q_wxyz[1], c.q_wxyz[2], c.q_wxyz[3]
            );
        }
        if let Some(p) = &r.prior {
            let sd: Vec<String> = (0..6)
                .map(|i| format!("{:.2}", p.covariance[i * 7].sqrt()))
                .collect();
            println!(
                "  prior: t [{:.2}, {:.2}, {:.2}]  q_wxyz [{:.4}, {:.4}, {:.4}, {:.4}]  sd (x y z m, roll pitch yaw rad) [{}]  confidence {:.3}",
                p.t[0], p.t[1], p.t[2], p.q_wxyz[0], p.q_wxyz[1], p.q_wxyz[2], p.q_wxyz[3], sd.join(", "), p.confidence
            );
        }
        if let Some(why) = &r.reason {
            println!("  {}: {why}", r.status);
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} image(s) could not be localized (each is reported above, with the reason)",
            results.len()
        );
    }
    Ok(())
}

fn run_evaluate(a: EvaluateArgs) -> Result<()> {
    use dasgil::maps::evaluate::threshold_name;
    let src = a.source.open()?;
    let reports = dasgil::maps::commands::evaluate(
        &a.model.choice()?,
        a.model.layers.clone(),
        a.model.device()?,
        &src,
        &a.out,
        a.metric,
        !a.shared,
        a.adapt,
    )?;
    for r in &reports {
        let acc = |t| 100.0 * r.all.accuracy[&threshold_name(t)];
        println!(
            "{} (adaptation {}): {} queries, {} map images; (0.25 m, 2 deg) {:.1}%, (0.5 m, 5 deg) {:.1}%, (5 m, 10 deg) {:.1}%; recall@1 (25 m) {:.1}%; median error {:.1} m",
            r.model, r.adaptation, r.all.queries, r.map_entries,
            acc((0.25, 2.0)), acc((0.5, 5.0)), acc((5.0, 10.0)),
            100.0 * r.all.recall_at_n[&1], r.all.median_position_error
        );
        for (cond, s) in &r.by_condition {
            println!(
                "    {cond}: (5 m, 10 deg) {:.1}%, recall@1 {:.1}%, median {:.1} m",
                100.0 * s.accuracy[&threshold_name((5.0, 10.0))],
                100.0 * s.recall_at_n[&1],
                s.median_position_error
            );
        }
    }
    println!(
        "wrote {}: report.json, report.md, submission.txt, recall_curves.png, matches.png",
        a.out.display()
    );
    Ok(())
}

#[derive(clap::Args)]
struct TrainArgs {
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
    /// Epochs (1 to 100000).
    #[arg(long)]
    epochs: Option<u64>,
    /// Steps per epoch (default: anchor frames / batch).
    #[arg(long)]
    steps_per_epoch: Option<u64>,
    /// Stop after this many steps in all.
    #[arg(long)]
    steps: Option<u64>,
    /// Triplets per step (1 to 64).
    #[arg(long)]
    batch: Option<usize>,
    /// Network input HxW, multiples of 256 up to 4096 (e.g. 256x1024, 256x512).
    #[arg(long, value_parser = parse_size)]
    size: Option<(i64, i64)>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    device: Option<String>,
    /// Checkpoint every N steps (and at every epoch's end).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// libtorch CPU threads (default: one per core). Recorded in the run; a resume keeps the
    /// run's count unless given (a resume with another count is not bit-identical to an
    /// unbroken run).
    #[arg(long)]
    threads: Option<usize>,
    /// Output folder of a new run (must be empty or new).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (--epochs, --steps, --device,
    /// --checkpoint-every and --threads may change; other flags must repeat the run's values).
    #[arg(long)]
    resume: Option<PathBuf>,
}

fn run_train(a: TrainArgs) -> Result<()> {
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
            refuse_non_empty(&out)?;
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
                // What a resume may change comes from flags, not from the file.
                c.epochs = r.epochs;
                c.max_steps = r.max_steps;
                c.device = r.device.clone();
                c.checkpoint_every = r.checkpoint_every;
                c.threads = r.threads;
            }
            c
        }
        (None, Some(r)) => r.clone(),
        (None, None) => serde_yaml::from_str(include_str!("../../config/train.yaml"))
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
        cfg.batch = v;
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
        cfg.threads = v;
    }
    if let (Some(dir), Some(r)) = (&a.resume, &recorded) {
        if let Some(c) = r.fixed_differences(&cfg).first() {
            let flag = match c.field.as_str() {
                "input_height" | "input_width" => "--size".to_string(),
                "discriminator" => "--dis".to_string(),
                "adversarial" => "--no-adversarial".to_string(),
                "vkitti_layout" => "--dasgil-layout".to_string(),
                "vkitti" | "kitti" | "batch" | "seed" | "steps_per_epoch" => {
                    format!("--{}", c.field.replace('_', "-"))
                }
                other => format!("--config field `{other}`"),
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
    if cfg.epochs > 100_000 {
        anyhow::bail!("--epochs: expected 1 to 100000, found {}", cfg.epochs);
    }
    let s = train::run(cfg, &out, resume, interrupt)?;
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
    println!(
        "generator: {}; curves: {}; predictions: {}",
        s.out.join("generator.safetensors").display(),
        s.out.join("loss_curves.png").display(),
        s.out.join("predictions.png").display()
    );
    if s.outcome == train::Outcome::Interrupted {
        println!(
            "continue with: dasgil-tools train --resume {}",
            s.out.display()
        );
    }
    Ok(())
}

/// A new run's (or data set's) output folder must be new or empty: nothing is mixed or lost.
fn refuse_non_empty(out: &std::path::Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            anyhow::bail!("{}: exists and is not a folder", out.display());
        }
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))?;
        if entries.next().is_some() {
            anyhow::bail!(
                "{}: folder is not empty; choose a new or empty folder (or --resume it)",
                out.display()
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum SynthFormat {
    /// Virtual KITTI 2: scenes x 10 variations, rgb/depth/classSegmentation + text ground truth.
    Vkitti2 {
        #[command(flatten)]
        common: SynthCommon,
        /// Scenes, 1 to 1000 (each its own procedural world).
        #[arg(long, default_value_t = 2)]
        scenes: usize,
        /// Frames per scene and variation (1 to 100000).
        #[arg(long, default_value_t = 10)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1242)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 375)]
        height: u32,
        /// 1 (Camera_0) or 2 (stereo, Camera_1 0.53 m to the right).
        #[arg(long, default_value_t = 1)]
        cameras: u8,
        /// Write the authors' repackaged layout (vkitti_2.0.3_{rgb,depth,classSegmentation,textgt}
        /// roots, class-index segmentation) instead of the official one.
        #[arg(long)]
        dasgil_layout: bool,
        /// fixed: each variation's light and weather, one season everywhere (Virtual KITTI 2's
        /// look); wide: each scene and variation also draws its own season and light (leaves,
        /// grass, snow, sun), so that positives differ in season too (for training).
        #[arg(long, default_value = "fixed", value_parser = parse_appearance)]
        appearance: dasgil::synth::condition::Appearance,
    },
    /// KITTI odometry layout, the "real" domain (sensor noise, blur, vignetting, tone curve).
    Kitti {
        #[command(flatten)]
        common: SynthCommon,
        /// Sequences, 1 to 100.
        #[arg(long, default_value_t = 1)]
        sequences: usize,
        /// Frames per sequence, 1 to 100000.
        #[arg(long, default_value_t = 20)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1241)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 376)]
        height: u32,
    },
    /// An Extended CMU-Seasons slice: reference traversal as database, other seasons as queries.
    Cmu {
        #[command(flatten)]
        common: SynthCommon,
        /// Slice number, 0 to 1000.
        #[arg(long, default_value_t = 2)]
        slice: u32,
        /// Database places along the route (two cameras each), 1 to 100000.
        #[arg(long, default_value_t = 20)]
        places: usize,
        /// Metres between places, more than 0 and at most 1000.
        #[arg(long, default_value_t = 4.0)]
        spacing: f64,
        /// Query conditions, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "foliage,snow,low-sun,overcast"
        )]
        conditions: Vec<String>,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1024)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 768)]
        height: u32,
    },
    /// Oxford RobotCar traversals: Bayer stereo/centre images, timestamps and gps/ins.csv.
    Robotcar {
        #[command(flatten)]
        common: SynthCommon,
        /// Traversals, 1 to 100.
        #[arg(long, default_value_t = 3)]
        traversals: usize,
        /// Images per traversal, evenly along the loop, 1 to 100000.
        #[arg(long, default_value_t = 40)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 960)]
        height: u32,
    },
}

fn parse_appearance(s: &str) -> Result<dasgil::synth::condition::Appearance, String> {
    dasgil::synth::condition::Appearance::parse(s)
        .ok_or_else(|| format!("expected fixed or wide, found `{s}`"))
}

#[derive(clap::Args)]
struct SynthCommon {
    /// Output folder (the data set root).
    #[arg(long)]
    out: PathBuf,
    /// World and noise seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write a contact sheet of what was made (read back through the dataset reader).
    #[arg(long)]
    preview: Option<PathBuf>,
    /// Replace an earlier `synth` output in --out as a whole (never mixes two data sets; a
    /// folder that is not a synth output is never replaced).
    #[arg(long)]
    force: bool,
}

/// Largest counts `synth` accepts (a typo such as --frames 1000000000 is refused up front).
const MAX_FRAMES: u64 = 100_000;
const MAX_SCENES: u64 = 1_000;

type SynthResult<T> = Result<T, dasgil::synth::SynthError>;
/// Renders a data set into the given folder.
type Generate = Box<dyn FnOnce(&std::path::Path) -> SynthResult<dasgil::synth::Summary>>;
/// Writes a contact sheet of the data set in the first folder to the second path.
type Preview = Box<dyn FnOnce(&std::path::Path, &std::path::Path) -> SynthResult<()>>;

/// One `synth` command, taken apart once: what it will make (checked before anything is
/// rendered), how to render it into a folder, and how to preview the result.
struct SynthJob {
    name: &'static str,
    common: SynthCommon,
    width: u32,
    height: u32,
    images: u64,
    counts: Vec<(&'static str, u64, u64)>,
    generate: Generate,
    preview: Preview,
}

fn synth_job(format: SynthFormat) -> Result<SynthJob> {
    use dasgil::data::vkitti2::Layout;
    use dasgil::synth::{cmu, kitti, preview, robotcar, vkitti2};
    Ok(match format {
        SynthFormat::Vkitti2 {
            common,
            scenes,
            frames,
            width,
            height,
            cameras,
            dasgil_layout,
            appearance,
        } => {
            let layout = if dasgil_layout {
                Layout::Dasgil
            } else {
                Layout::Official
            };
            let seed = common.seed;
            SynthJob {
                name: "vkitti2",
                width,
                height,
                images: (scenes as u64) * 10 * (frames as u64) * (cameras as u64),
                counts: vec![
                    ("--scenes", scenes as u64, MAX_SCENES),
                    ("--frames", frames as u64, MAX_FRAMES),
                    ("--cameras", cameras as u64, 2),
                ],
                generate: Box::new(move |out| {
                    vkitti2::generate(&vkitti2::Options {
                        out: out.to_path_buf(),
                        seed,
                        scenes,
                        frames,
                        width,
                        height,
                        cameras,
                        layout,
                        appearance,
                    })
                }),
                preview: Box::new(move |out, p| preview::vkitti2(out, layout, p)),
                common,
            }
        }
        SynthFormat::Kitti {
            common,
            sequences,
            frames,
            width,
            height,
        } => {
            let seed = common.seed;
            SynthJob {
                name: "kitti",
                width,
                height,
                images: (sequences as u64) * (frames as u64),
                counts: vec![
                    ("--sequences", sequences as u64, 100),
                    ("--frames", frames as u64, MAX_FRAMES),
                ],
                generate: Box::new(move |out| {
                    kitti::generate(&kitti::Options {
                        out: out.to_path_buf(),
                        seed,
                        sequences,
                        frames,
                        width,
                        height,
                    })
                }),
                preview: Box::new(move |out, p| preview::kitti(out, sequences, p)),
                common,
            }
        }
        SynthFormat::Cmu {
            common,
            slice,
            places,
            spacing,
            conditions,
            width,
            height,
        } => {
            if !(spacing.is_finite() && spacing > 0.0 && spacing <= 1000.0) {
                anyhow::bail!(
                    "--spacing: expected metres, more than 0 and at most 1000, found {spacing}"
                );
            }
            if slice > 1000 {
                anyhow::bail!("--slice: expected 0 to 1000, found {slice}");
            }
            let seed = common.seed;
            SynthJob {
                name: "cmu",
                width,
                height,
                images: (places as u64) * 2 * (1 + conditions.len() as u64),
                counts: vec![
                    ("--places", places as u64, MAX_FRAMES),
                    ("--conditions (count)", conditions.len() as u64, 16),
                ],
                generate: Box::new(move |out| {
                    cmu::generate(&cmu::Options {
                        out: out.to_path_buf(),
                        seed,
                        slice,
                        places,
                        spacing,
                        conditions,
                        width,
                        height,
                    })
                }),
                preview: Box::new(move |out, p| preview::cmu(out, slice, places, p)),
                common,
            }
        }
        SynthFormat::Robotcar {
            common,
            traversals,
            frames,
            width,
            height,
        } => {
            let seed = common.seed;
            SynthJob {
                name: "robotcar",
                width,
                height,
                images: (traversals as u64) * (frames as u64) * 3,
                counts: vec![
                    ("--traversals", traversals as u64, 100),
                    ("--frames", frames as u64, MAX_FRAMES),
                ],
                generate: Box::new(move |out| {
                    robotcar::generate(&robotcar::Options {
                        out: out.to_path_buf(),
                        seed,
                        traversals,
                        frames,
                        width,
                        height,
                    })
                }),
                preview: Box::new(move |out, p| preview::robotcar(out, traversals, p)),
                common,
            }
        }
    })
}

fn run_synth(format: SynthFormat) -> Result<()> {
    use dasgil::synth::{check_plan, output, Plan};
    let started = std::time::Instant::now();
    let job = synth_job(format)?;
    let out = job.common.out.clone();
    check_plan(
        &Plan {
            images: job.images,
            width: job.width,
            height: job.height,
            counts: &job.counts,
        },
        &out,
    )?;
    let preview_path = job.common.preview.clone();
    if let Some(p) = &preview_path {
        if p.starts_with(&out) {
            anyhow::bail!(
                "--preview {} is inside --out {}: put the picture outside the data set",
                p.display(),
                out.display()
            );
        }
    }
    let staging = output::staging(&out, job.common.force)?;
    let summary = match (job.generate)(&staging) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.into());
        }
    };
    let marker = serde_json::json!({
        "dataset": job.name,
        "images": summary.images,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    output::finish(&staging, &out, marker)?;
    if let Some(p) = &preview_path {
        (job.preview)(&out, p)?;
    }
    println!(
        "wrote {} images ({} files) to {} in {:.1} s{}",
        summary.images,
        summary.files,
        out.display(),
        started.elapsed().as_secs_f64(),
        preview_path
            .map(|p| format!("; preview {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// "256x1024" -> (256, 1024).
fn parse_size(s: &str) -> Result<(i64, i64), String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected HxW such as 256x1024, found `{s}`"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| format!("expected HxW such as 256x1024, found `{s}`"))
    };
    Ok((parse(h)?, parse(w)?))
}

fn main() {
    init_tracing();
    if let Err(err) = run(Cli::parse()) {
        eprintln!("{}", dasgil::report::error_report(&err));
        std::process::exit(1);
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth { format } => run_synth(format)?,
        Command::Train(args) => run_train(*args)?,
        Command::BuildMap(args) => run_build_map(*args)?,
        Command::Localize(args) => run_localize(*args)?,
        Command::Evaluate(args) => run_evaluate(*args)?,
        #[cfg(feature = "ros")]
        Command::Replay(args) => run_replay(*args)?,
        Command::Info { json } => {
            let info = dasgil::toolchain::ToolchainInfo::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
            }
        }
        Command::ImportCheckpoint {
            input,
            output,
            input_size,
            epoch,
            trained_with,
            python,
            strip_prefix,
        } => {
            let opts = ImportOptions {
                python,
                input_size,
                epoch,
                trained_with,
                strip_prefix,
            };
            let report = import_pth(&input, &output, &opts)?;
            let cfg = report.meta.config;
            println!(
                "imported {} from {}: {} tensors, {} float values (d = {}, {} classes, input {}x{}{}) -> {}",
                report.network_name,
                input.display(),
                report.tensors,
                report.float_values,
                cfg.base_width,
                cfg.num_classes,
                cfg.input_height,
                cfg.input_width,
                report.meta.epoch.map(|e| format!(", epoch {e}")).unwrap_or_default(),
                output.display()
            );
            if report.upcast > 0 {
                println!(
                    "note: {} half-precision tensor(s) were converted to float32 (lossless)",
                    report.upcast
                );
            }
        }
        Command::Embed {
            checkpoint: ckpt,
            image,
            output,
            device,
        } => {
            let device =
                dasgil::toolchain::parse_device(&device, "--device").map_err(anyhow::Error::msg)?;
            dasgil::atomic::refuse_overwriting_inputs(
                ("--output", &output),
                &[("--checkpoint", &ckpt), ("--image", &image)],
            )?;
            let loaded = checkpoint::load_generator(&ckpt, device, None)?;
            let cfg = loaded.meta.config;
            let img = preprocess::load_rgb(&image)?;
            let xs = preprocess::to_network_input(&img, cfg.input_height, cfg.input_width)?
                .to_device(device);
            let out = tch::no_grad(|| loaded.net.forward_t(&xs, false))?;
            let named = out.into_named();
            for (name, t) in &named {
                let bad = t
                    .isfinite()
                    .logical_not()
                    .sum(tch::Kind::Int64)
                    .int64_value(&[]);
                if bad > 0 {
                    anyhow::bail!(
                        "the network output `{name}` for {} holds {bad} non-finite value(s); \
                         nothing was written to {}",
                        image.display(),
                        output.display()
                    );
                }
            }
            dasgil::tensor_io::write(&output, &named, &Default::default())
                .with_context(|| format!("writing the embedding of {}", image.display()))?;
            println!(
                "embedded {} ({}x{} -> {}x{}) with {}: {} tensors -> {}",
                image.display(),
                img.width(),
                img.height(),
                cfg.input_width,
                cfg.input_height,
                ckpt.display(),
                named.len(),
                output.display()
            );
        }
    }
    Ok(())
}
