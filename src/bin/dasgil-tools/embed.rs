//! `dasgil-tools embed`: the generator's outputs (features, depth, segmentation) for one image.

use std::path::PathBuf;

use anyhow::{Context, Result};

use dasgil::data::preprocess;
use dasgil::model::checkpoint;

#[derive(clap::Args)]
pub(crate) struct EmbedArgs {
    /// A generator checkpoint (.safetensors from `train` or `import-checkpoint`).
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// The image (PNG or JPEG), resized (bicubic) to the checkpoint's input size and normalised
    /// (--photometric) as build-map prepares map images.
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// Per-image photometric normalisation after the resize (as build-map --photometric):
    /// none or autocontrast. Default: what the checkpoint was trained with (`train
    /// --photometric`, its `dasgil.photometric`), else none.
    #[arg(long, value_parser = super::args::photometric_parser())]
    pub(crate) photometric: Option<preprocess::Photometric>,
    /// Output safetensors file (its folder must exist): float32 tensors [1, C, H, W], each at
    /// its own resolution for an input of the network's size: encoder features e1..e8 (e8 the
    /// coarsest), the depth outputs depth_0..depth_3 (coarse to full size, metres as trained:
    /// Virtual KITTI 2 depth / 100) and the segmentation logits seg (15 classes, full size).
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
    // A missing folder is a typo more often than a wish: refused (as build-map's --out),
    // before the network runs, not created wherever the path points.
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            let why = match dasgil::atomic::blocked_by(&output) {
                Some(file) => format!(
                    "{} is not a folder (choose another --output)",
                    file.display()
                ),
                None => "the folder does not exist (create it, or choose another --output)".into(),
            };
            anyhow::bail!(
                "--output {}: cannot write into {}: {why}",
                output.display(),
                dir.display()
            );
        }
    }
    if output.is_dir() || output.as_os_str().to_string_lossy().ends_with('/') {
        anyhow::bail!(
            "--output {}: is a folder; expected a file path such as image.embedding.safetensors",
            output.display()
        );
    }
    let loaded = checkpoint::load_generator(&ckpt, device, None)?;
    let cfg = loaded.meta.config;
    let img = preprocess::load_rgb(&image)?;
    let photometric = a
        .photometric
        .or(loaded.meta.photometric)
        .unwrap_or_default();
    let xs =
        preprocess::to_network_batch_with(&[&img], cfg.input_height, cfg.input_width, photometric)
            .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?
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
        "embedded {} ({}x{} -> {}x{}, height x width, photometric {photometric}) with {}: {} tensors -> {}",
        image.display(),
        img.height(),
        img.width(),
        cfg.input_height,
        cfg.input_width,
        ckpt.display(),
        named.len(),
        output.display()
    );
    Ok(())
}
