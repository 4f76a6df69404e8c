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
    /// Render a synthetic data set in a real data set's on-disk format.
    Synth {
        #[command(subcommand)]
        format: SynthFormat,
    },
}

#[derive(Subcommand)]
enum SynthFormat {
    /// Virtual KITTI 2: scenes x 10 variations, rgb/depth/classSegmentation + text ground truth.
    Vkitti2 {
        #[command(flatten)]
        common: SynthCommon,
        #[arg(long, default_value_t = 2)]
        scenes: usize,
        /// Frames per scene and variation.
        #[arg(long, default_value_t = 10)]
        frames: usize,
        #[arg(long, default_value_t = 1242)]
        width: u32,
        #[arg(long, default_value_t = 375)]
        height: u32,
        /// 1 (Camera_0) or 2 (stereo, Camera_1 0.53 m to the right).
        #[arg(long, default_value_t = 1)]
        cameras: u8,
        /// Write the authors' repackaged layout (vkitti_2.0.3_{rgb,depth,classSegmentation,textgt}
        /// roots, class-index segmentation) instead of the official one.
        #[arg(long)]
        dasgil_layout: bool,
    },
    /// KITTI odometry layout, the "real" domain (sensor noise, blur, vignetting, tone curve).
    Kitti {
        #[command(flatten)]
        common: SynthCommon,
        #[arg(long, default_value_t = 1)]
        sequences: usize,
        #[arg(long, default_value_t = 20)]
        frames: usize,
        #[arg(long, default_value_t = 1241)]
        width: u32,
        #[arg(long, default_value_t = 376)]
        height: u32,
    },
    /// An Extended CMU-Seasons slice: reference traversal as database, other seasons as queries.
    Cmu {
        #[command(flatten)]
        common: SynthCommon,
        #[arg(long, default_value_t = 2)]
        slice: u32,
        /// Database places along the route (two cameras each).
        #[arg(long, default_value_t = 20)]
        places: usize,
        /// Metres between places.
        #[arg(long, default_value_t = 4.0)]
        spacing: f64,
        /// Query conditions, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "foliage,snow,low-sun,overcast"
        )]
        conditions: Vec<String>,
        #[arg(long, default_value_t = 1024)]
        width: u32,
        #[arg(long, default_value_t = 768)]
        height: u32,
    },
    /// Oxford RobotCar traversals: Bayer stereo/centre images, timestamps and gps/ins.csv.
    Robotcar {
        #[command(flatten)]
        common: SynthCommon,
        #[arg(long, default_value_t = 3)]
        traversals: usize,
        /// Images per traversal, evenly along the loop.
        #[arg(long, default_value_t = 40)]
        frames: usize,
        #[arg(long, default_value_t = 1280)]
        width: u32,
        #[arg(long, default_value_t = 960)]
        height: u32,
    },
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
}

fn run_synth(format: SynthFormat) -> Result<()> {
    use dasgil::data::vkitti2::Layout;
    use dasgil::synth::{cmu, kitti, preview, robotcar, vkitti2};
    let started = std::time::Instant::now();
    let (summary, common) = match format {
        SynthFormat::Vkitti2 {
            common,
            scenes,
            frames,
            width,
            height,
            cameras,
            dasgil_layout,
        } => {
            let layout = if dasgil_layout {
                Layout::Dasgil
            } else {
                Layout::Official
            };
            let o = vkitti2::Options {
                out: common.out.clone(),
                seed: common.seed,
                scenes,
                frames,
                width,
                height,
                cameras,
                layout,
            };
            let s = vkitti2::generate(&o)?;
            if let Some(p) = &common.preview {
                preview::vkitti2(&o.out, layout, p)?;
            }
            (s, common)
        }
        SynthFormat::Kitti {
            common,
            sequences,
            frames,
            width,
            height,
        } => {
            let o = kitti::Options {
                out: common.out.clone(),
                seed: common.seed,
                sequences,
                frames,
                width,
                height,
            };
            let s = kitti::generate(&o)?;
            if let Some(p) = &common.preview {
                preview::kitti(&o.out, sequences, p)?;
            }
            (s, common)
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
            let o = cmu::Options {
                out: common.out.clone(),
                seed: common.seed,
                slice,
                places,
                spacing,
                conditions,
                width,
                height,
            };
            let s = cmu::generate(&o)?;
            if let Some(p) = &common.preview {
                preview::cmu(&o.out, slice, places, p)?;
            }
            (s, common)
        }
        SynthFormat::Robotcar {
            common,
            traversals,
            frames,
            width,
            height,
        } => {
            let o = robotcar::Options {
                out: common.out.clone(),
                seed: common.seed,
                traversals,
                frames,
                width,
                height,
            };
            let s = robotcar::generate(&o)?;
            if let Some(p) = &common.preview {
                preview::robotcar(&o.out, traversals, p)?;
            }
            (s, common)
        }
    };
    println!(
        "wrote {} images ({} files) to {} in {:.1} s{}",
        summary.images,
        summary.files,
        common.out.display(),
        started.elapsed().as_secs_f64(),
        common
            .preview
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
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth { format } => run_synth(format)?,
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
        } => {
            let opts = ImportOptions {
                python,
                input_size,
                epoch,
                trained_with,
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
        }
        Command::Embed {
            checkpoint: ckpt,
            image,
            output,
            device,
        } => {
            let device =
                dasgil::toolchain::parse_device(&device, "--device").map_err(anyhow::Error::msg)?;
            let loaded = checkpoint::load_generator(&ckpt, device, None)?;
            let cfg = loaded.meta.config;
            let img = preprocess::load_rgb(&image)?;
            let xs = preprocess::to_network_input(&img, cfg.input_height, cfg.input_width)?
                .to_device(device);
            let out = tch::no_grad(|| loaded.net.forward_t(&xs, false))?;
            let named = out.into_named();
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
