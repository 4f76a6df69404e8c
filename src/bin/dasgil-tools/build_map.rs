//! `dasgil-tools build-map`: a sequence's database images -> a descriptor map.

use std::path::PathBuf;

use anyhow::Result;

use super::args::*;

#[derive(clap::Args)]
pub(crate) struct BuildMapArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    bag: BagArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The map file to write (default: SEQUENCE.map.safetensors in the current folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Map-time adaptation: re-estimate the encoder's BatchNorm statistics on the map's images
    /// (no labels) and store them in the map. Default off: the checkpoint's statistics, the
    /// paper's behaviour, which scored better on the validation worlds with the shipped model
    /// (maps/models/MODEL_CARD.md); `evaluate` reports both ways.
    #[arg(long)]
    adapt: bool,
    /// Per-image photometric normalisation before encoding, stored in the map (queries follow
    /// it): none, or autocontrast (each colour channel stretched so its 1% and 99% quantiles
    /// become 0 and 255, which undoes a global exposure, contrast or colour-cast change).
    /// Default: what the checkpoint was trained with (`train --photometric`), else none.
    #[arg(long, value_parser = photometric_parser())]
    photometric: Option<dasgil::data::preprocess::Photometric>,
    /// Rectify each image with its camera's intrinsics and lens before encoding (what an ideal
    /// pinhole with the same intrinsics and size would have taken; stored in the map, and
    /// evaluate's queries follow it), as the paper's authors did with Extended CMU-Seasons
    /// (their database_rect/ and query_rect/). For images that keep their lens (Extended
    /// CMU-Seasons, a recording's image_raw topics) searched with queries through another lens:
    /// a map and queries through different lenses lose retrieval (maps/models/MODEL_CARD.md,
    /// "Lenses"); replay --rectify plays rectified frames to the node. The node encodes frames
    /// as they arrive and cannot rectify: on a robot, build the map from the kind of topic the
    /// node will subscribe to (image_raw frames: a map of raw images; image_rect frames: a map
    /// of image_rect images, no --rectify needed), as image_proc's image_rect maps to the
    /// calibration's P where --rectify keeps K. Needs intrinsics (as --yaw-views); images
    /// without a lens are encoded as they are.
    #[arg(long)]
    rectify: bool,
    /// Store descriptors as float16 (half the size; distances change by ~1e-3 relative).
    #[arg(long)]
    f16: bool,
    /// The compressed search mode for large maps: also store int8 codes of a DIMS-value random
    /// projection of each descriptor; queries scan the codes and re-rank a shortlist exactly
    /// (16 to 4096; e.g. 256).
    #[arg(long, value_name = "DIMS", value_parser = whole_in(16u64, 4096),
          allow_negative_numbers = true)]
    compress: Option<u64>,
    /// Rows re-ranked exactly per query in the compressed mode (1 to 100000).
    #[arg(long, default_value_t = 100, requires = "compress",
          value_parser = whole_in(1u64, 100_000), allow_negative_numbers = true)]
    shortlist: u64,
    /// The map's metric: l1 (the reference's), l2 or cosine. Default: the one the checkpoint
    /// records (the shipped model's: cosine, chosen on validation), else l1; l1 for baselines.
    #[arg(long)]
    metric: Option<dasgil::retrieval::Metric>,
    /// Yaw views: also encode each map image as its camera turned by these angles (degrees,
    /// each both ways, e.g. 3,6: four views), a homography of the image by its intrinsics; a
    /// query's distance to an entry is the smallest over the image and its views, so a query
    /// taken aside of the mapping line or turned a few degrees from the map image still finds
    /// it (docs/map-format.md). Each view costs the map one more descriptor per entry (size and
    /// search time). Default: 3,6 where every map image has intrinsics (chosen on the
    /// validation worlds: maps/models/MODEL_CARD.md, "Yaw views by default"), none otherwise
    /// (said after the summary); none: the reference's map, one descriptor per image.
    #[arg(long, value_name = "DEGREES|none", value_parser = parse_yaw_views, allow_negative_numbers = true)]
    yaw_views: Option<YawViews>,
}

pub(crate) fn run_build_map(a: BuildMapArgs) -> Result<()> {
    if a.adapt && a.model.baseline == Some(Baseline::RawPixels) {
        anyhow::bail!(
            "--adapt re-estimates a network's BatchNorm statistics, and --baseline raw-pixels \
             uses no network: drop --adapt (or use --baseline untrained)"
        );
    }
    // Before a synthetic sequence is rendered: the map may not replace the file naming it.
    if let (Some(out), Some(sequences)) = (&a.out, &a.source.sequences) {
        dasgil::atomic::refuse_overwriting_inputs(("--out", out), &[("--sequences", sequences)])?;
    }
    let src = match a.bag.options() {
        Some(o) => open_bag(&o?)?,
        None => a.source.open()?,
    };
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.map.safetensors",
            a.source
                .sequence
                .clone()
                .or(a.source.format.clone())
                .or(a
                    .bag
                    .bag
                    .as_ref()
                    .and_then(|b| { b.file_stem().map(|s| s.to_string_lossy().into_owned()) }))
                .unwrap_or_else(|| "map".into())
        ))
    });
    // Not among the images it reads (a folder reader lists every file of an image folder).
    if let Some(parent) = std::path::absolute(&out)
        .ok()
        .and_then(|o| o.parent().and_then(|p| p.canonicalize().ok()))
    {
        if let Some(images) = dasgil::eval::image_folders(&src.database)
            .into_iter()
            .find(|f| parent.starts_with(f))
        {
            // --out onto an image itself is said as such when the map is written.
            let onto_an_image = out.canonicalize().is_ok_and(|o| {
                src.database
                    .iter()
                    .any(|i| i.path.canonicalize().is_ok_and(|p| p == o))
            });
            if !onto_an_image {
                anyhow::bail!(
                    "--out {}: is inside {}, a folder of the data set's images; expected a path \
                     outside its image folders, so the map never mixes with the images",
                    out.display(),
                    images.display()
                );
            }
        }
    }
    let (mut enc, _) = dasgil::extract::choice::make_encoder(
        &a.model.choice()?,
        a.model.layers.clone(),
        a.model.device()?,
    )?;
    if let Some(p) = a.photometric {
        if let Some(warning) = enc.photometric_departure(p) {
            tracing::warn!("{warning}");
        }
        enc.set_photometric(p);
    }
    enc.set_rectified(a.rectify);
    let metric = a.metric.unwrap_or(enc.default_metric());
    if let Some(recorded) = enc.recorded_metric().filter(|&m| m != metric) {
        tracing::warn!(
            "--metric {}: the checkpoint {}: priors from this map will not be calibrated; leave --metric out \
             to build with {}",
            metric.name(),
            dasgil::localize::recorded_metric_reason(recorded),
            recorded.name()
        );
    }
    // An earlier map at --out is replaced (only a map: anything else is refused): said.
    let replaces = out.is_file();
    let line = dasgil::map::build_map_summary(
        &mut enc,
        &src,
        &out,
        &dasgil::map::BuildOptions {
            adapt: a.adapt,
            f16: a.f16,
            metric,
            // Both within ranges clap checked (at most 100000).
            compress: a.compress.map(|dims| (dims as usize, a.shortlist as usize)),
            yaw_views: a
                .yaw_views
                .clone()
                .map_or_else(dasgil::map::views::default_yaw_views, |v| v.0),
            yaw_views_by_default: a.yaw_views.is_none(),
        },
    )?;
    println!("{line}");
    if replaces {
        println!("replaced the map that was at {}", out.display());
    }
    Ok(())
}
