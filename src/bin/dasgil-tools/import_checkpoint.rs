//! `dasgil-tools import-checkpoint`: the authors' .pth (weights only, no pickled code) -> a
//! dasgil checkpoint.

use std::path::PathBuf;

use anyhow::Result;

use super::args::parse_input_size;
use dasgil::model::import::{import_pth, ImportOptions};
use dasgil::model::DiscriminatorKind;

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The PyTorch state_dict file (.pth). Read with weights_only=True: no pickled code runs.
    pub(crate) input: PathBuf,
    /// The safetensors checkpoint to write.
    pub(crate) output: PathBuf,
    /// Network input size HxW the model is used at (default 256x1024, the paper's).
    #[arg(long, value_parser = parse_input_size)]
    pub(crate) input_size: Option<(i64, i64)>,
    /// Epoch to record (default: N from the N_net_*.pth file name).
    #[arg(long)]
    pub(crate) epoch: Option<u64>,
    /// For a generator: the discriminator it was trained with (FD or CD), recorded in the
    /// metadata; it decides the default descriptor layers.
    #[arg(long)]
    pub(crate) trained_with: Option<DiscriminatorKind>,
    /// Python interpreter with torch (default: DASGIL_PYTHON, the project venv, python3).
    #[arg(long)]
    pub(crate) python: Option<PathBuf>,
    /// Remove this prefix from every tensor name (`module.` for a state_dict saved from
    /// nn.DataParallel).
    #[arg(long)]
    pub(crate) strip_prefix: Option<String>,
}

pub(crate) fn run_import(a: ImportArgs) -> Result<()> {
    let input = a.input;
    let output = a.output;
    let input_size = a.input_size;
    let epoch = a.epoch;
    let trained_with = a.trained_with;
    let python = a.python;
    let strip_prefix = a.strip_prefix;
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
    Ok(())
}
