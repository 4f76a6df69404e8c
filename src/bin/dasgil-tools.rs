//! `dasgil-tools`: the command-line side of DASGIL: toolchain info, checkpoint import,
//! embedding one image (training, map building and synthetic data come with their issues).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tch::Device;

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

fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch sees no CUDA device (see `dasgil-tools info`)");
            }
            Device::Cuda(0)
        }
        other => bail!("--device: expected cpu, cuda or auto, found `{other}`"),
    })
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
            let device = parse_device(&device)?;
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
