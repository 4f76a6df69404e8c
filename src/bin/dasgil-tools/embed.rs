//! `dasgil-tools embed`: the generator's outputs (features, depth, segmentation) for one image.

use std::path::PathBuf;

use anyhow::{Context, Result};

use dasgil::data::preprocess;
use dasgil::model::checkpoint;

#[derive(clap::Args)]
pub(crate) struct EmbedArgs {
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto", value_parser = dasgil::toolchain::device_syntax)]
    pub(crate) device: String,
}

pub(crate) fn run_embed(a: EmbedArgs) -> Result<()> {
    let ckpt = a.checkpoint;
    let image = a.image;
    let output = a.output;
    let device = a.device;
    let device =
        dasgil::toolchain::parse_device(&device, "--device").map_err(anyhow::Error::msg)?;
    dasgil::atomic::refuse_overwriting_inputs(
        ("--output", &output),
        &[("--checkpoint", &ckpt), ("--image", &image)],
    )?;
    let loaded = checkpoint::load_generator(&ckpt, device, None)?;
    let cfg = loaded.meta.config;
    let img = preprocess::load_rgb(&image)?;
    let xs =
        preprocess::to_network_input(&img, cfg.input_height, cfg.input_width)?.to_device(device);
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
    Ok(())
}
