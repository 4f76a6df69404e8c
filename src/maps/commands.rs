//! The `build-map`, `localize` and `evaluate` commands (argument parsing is the binary's).

use std::path::{Path, PathBuf};

use super::encode::MapEncoder;
use super::evaluate::{self, Report};
use super::file::MapFile;
use super::search::Metric;
use super::{BuildOptions, MapsError, Sequence, SourceImages};
use crate::data::cmu_seasons::ImageName;
use crate::localize::{Frame, Localizer, Outcome, Query};
use crate::model::{DescriptorLayer, DescriptorSpec};

/// File name of the shipped model (in maps/models/).
pub const SHIPPED_MODEL: &str = "dasgil-synth-cd-256x512.safetensors";

/// The shipped model: $DASGIL_MODEL, else maps/models/ beside the executable's tree (source
/// checkout `target/release/..`, or a colcon install's `share/dasgil/maps/models`), else the
/// source tree this binary was built from.
pub fn default_checkpoint() -> Result<PathBuf, MapsError> {
    if let Some(p) = std::env::var_os("DASGIL_MODEL") {
        return Ok(p.into());
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for rel in ["../../maps/models", "../../share/dasgil/maps/models"] {
                tried.push(dir.join(rel).join(SHIPPED_MODEL));
            }
        }
    }
    tried.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("maps/models")
            .join(SHIPPED_MODEL),
    );
    for p in &tried {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(MapsError::Other(format!(
        "no --checkpoint given and the shipped model {SHIPPED_MODEL} was not found (looked in: {}); pass --checkpoint FILE or set DASGIL_MODEL",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

/// `--layers 5,6` -> a descriptor spec (weights 1).
pub fn parse_layers(s: &str) -> Result<DescriptorSpec, String> {
    let layers = s
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=8).contains(l))
                .map(|layer| DescriptorLayer { layer, weight: 1.0 })
                .ok_or_else(|| format!("expected encoder layers 1 to 8 such as 5,6, found `{s}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DescriptorSpec { layers })
}

/// Which encoder a command uses.
pub enum ModelChoice {
    Checkpoint(Option<PathBuf>),
    RawPixels,
    /// The paper's initialisation at the shape of the given (or shipped) checkpoint.
    Untrained(Option<PathBuf>),
}

pub fn make_encoder(
    choice: &ModelChoice,
    layers: Option<DescriptorSpec>,
    device: tch::Device,
) -> Result<(MapEncoder, String), MapsError> {
    match choice {
        ModelChoice::RawPixels => Ok((MapEncoder::raw_pixels(), "raw-pixels".into())),
        ModelChoice::Checkpoint(c) => {
            let path = match c {
                Some(p) => p.clone(),
                None => default_checkpoint()?,
            };
            let enc = MapEncoder::from_checkpoint(&path, device, layers)?;
            let name = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((enc, name))
        }
        ModelChoice::Untrained(c) => {
            let path = match c {
                Some(p) => p.clone(),
                None => default_checkpoint()?,
            };
            let loaded = crate::model::checkpoint::load_generator(&path, tch::Device::Cpu, None)
                .map_err(super::encode::EncodeError::from)?;
            let spec = layers.unwrap_or_else(|| super::encode::default_spec(&loaded.meta));
            Ok((
                MapEncoder::untrained(loaded.meta.config, device, spec)?,
                "untrained".into(),
            ))
        }
    }
}

/// A named sequence, or an ad hoc one from --format/--root.
pub fn source(
    name: Option<&str>,
    sequences_file: Option<&Path>,
    format: Option<&str>,
    root: Option<&Path>,
    slice: Option<u32>,
    cameras: Option<Vec<String>>,
) -> Result<SourceImages, MapsError> {
    match (name, format, root) {
        (Some(n), None, None) => {
            let all = super::sequences(sequences_file)?;
            let seq = all.get(n).ok_or_else(|| {
                MapsError::Other(format!(
                    "--sequence {n}: no such sequence; known: {}",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let mut seq = seq.clone();
            if let Some(c) = cameras {
                seq.cameras = Some(c);
            }
            let root = seq.resolve(n)?;
            seq.open(Some(n), &root)
        }
        (None, Some(f), Some(r)) => {
            let seq = Sequence {
                format: f.to_string(),
                root: r.to_path_buf(),
                slice,
                cameras,
                generate: None,
            };
            seq.open(None, r)
        }
        (Some(_), _, _) => Err(MapsError::Other(
            "give either --sequence NAME or --format with --root, not both".into(),
        )),
        _ => Err(MapsError::Other(
            "which images? give --sequence NAME (e.g. cmu_slice) or --format cmu|robotcar|kitti|vkitti2 with --root DIR".into(),
        )),
    }
}

/// build-map: encodes the database images and writes the map; returns a summary line.
pub fn build_map(
    enc: &mut MapEncoder,
    src: &SourceImages,
    out: &Path,
    opts: &BuildOptions,
) -> Result<String, MapsError> {
    if let Some(c) = enc.meta.checkpoint.as_deref() {
        crate::atomic::refuse_overwriting_inputs(
            ("--out", out),
            &[("--checkpoint", Path::new(c))],
        )?;
    }
    let started = std::time::Instant::now();
    let meta = super::build_map(enc, src, out, opts)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "map {}: {} images ({} cameras: {}), {}-d descriptors ({}), encoder {} {} (adaptation: {}), {} in {}",
        out.display(),
        meta.names.len(),
        {
            let mut c = meta.cameras.clone();
            c.sort();
            c.dedup();
            c.len()
        },
        {
            let mut c = meta.cameras.clone();
            c.sort();
            c.dedup();
            c.join(",")
        },
        enc.dim(),
        if opts.f16 { "f16" } else { "f32" },
        meta.encoder.kind,
        meta.encoder.model_fingerprint,
        meta.encoder.adaptation,
        crate::resources::human_bytes(bytes),
        crate::progress::format_secs(started.elapsed().as_secs_f64())
    ))
}

/// One image's answer of `localize`.
#[derive(Debug, serde::Serialize)]
pub struct Localized {
    pub image: String,
    /// `localized` (the node would publish it), `ambiguous` (below --min-confidence: the node
    /// would not), `rejected` (the file cannot be a query for this map) or `no_candidates`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior: Option<Prior>,
}

#[derive(Debug, serde::Serialize)]
pub struct Candidate {
    pub rank: usize,
    pub name: String,
    pub camera: String,
    pub distance: f32,
    pub t: [f64; 3],
    pub q_wxyz: [f64; 4],
}

#[derive(Debug, serde::Serialize)]
pub struct Prior {
    pub t: [f64; 3],
    pub q_wxyz: [f64; 4],
    pub covariance: Vec<f64>,
    pub confidence: f64,
}

/// Where `localize` searches (the Localizer's own settings are in its `Options`).
pub struct LocalizeOptions {
    /// Search all cameras' entries, not only the query's camera.
    pub shared: bool,
    /// The camera of the images when their names do not say (CMU names do).
    pub camera: Option<String>,
    pub near: Option<([f64; 3], f64)>,
}

fn pose_parts(p: &crate::geom::Pose) -> ([f64; 3], [f64; 4]) {
    let t = p.translation.vector;
    ([t.x, t.y, t.z], crate::geom::wxyz(&p.rotation))
}

/// Localizes each image against the Localizer's map; an image that fails is reported in its
/// place (the others are still localized).
pub fn localize(loc: &Localizer, images: &[PathBuf], opts: &LocalizeOptions) -> Vec<Localized> {
    let map = &loc.map;
    images
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let camera = opts
                .camera
                .clone()
                .or_else(|| ImageName::parse(&name).map(|n| n.camera));
            let camera = camera.filter(|c| !opts.shared && loc.index.by_camera.contains_key(c));
            let outcome = loc.localize(
                &Frame::File(path),
                &Query {
                    camera: camera.as_deref(),
                    near: opts.near,
                    base_from_cam: None,
                },
            );
            let (status, reason) = match &outcome {
                Outcome::Prior(_) => ("localized", None),
                Outcome::Ambiguous(a) => (
                    "ambiguous",
                    Some(format!(
                        "confidence {:.3} is below --min-confidence {}",
                        a.prior.confidence, loc.options.min_confidence
                    )),
                ),
                Outcome::Rejected(e) => ("rejected", Some(e.clone())),
                Outcome::NoCandidates(e) => ("no_candidates", Some(e.clone())),
            };
            let answer = outcome.answer();
            Localized {
                image: path.display().to_string(),
                status,
                reason,
                candidates: answer
                    .map(|a| {
                        a.hits
                            .iter()
                            .take(loc.options.top_k)
                            .enumerate()
                            .map(|(r, h)| {
                                let (t, q) = pose_parts(&map.pose(h.index));
                                Candidate {
                                    rank: r + 1,
                                    name: map.meta.names[h.index].clone(),
                                    camera: map.meta.cameras[h.index].clone(),
                                    distance: h.distance,
                                    t,
                                    q_wxyz: q,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                prior: answer.map(|a| {
                    let (t, q) = pose_parts(&a.prior.pose);
                    Prior {
                        t,
                        q_wxyz: q,
                        covariance: a.prior.covariance.to_vec(),
                        confidence: a.prior.confidence,
                    }
                }),
            }
        })
        .collect()
}

/// evaluate: builds the map(s) in `out` and scores the queries; both ways (with and without
/// map-time adaptation) for a network. Returns the reports, primary first.
#[allow(clippy::too_many_arguments)] // the command's options, one each
pub fn evaluate(
    choice: &ModelChoice,
    layers: Option<DescriptorSpec>,
    device: tch::Device,
    src: &SourceImages,
    out: &Path,
    metric: Metric,
    per_camera: bool,
    adapt_first: bool,
) -> Result<Vec<Report>, MapsError> {
    if !src.queries.iter().any(|q| q.world_from_cam.is_some()) {
        return Err(MapsError::Other(format!(
            "{}: no query images with ground truth to evaluate on (evaluate needs a data set \
             with queries and their poses, such as an Extended CMU-Seasons slice)",
            src.source.root
        )));
    }
    if out.is_file() {
        return Err(MapsError::Other(format!(
            "--out {}: is a file; expected a folder for the report",
            out.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| crate::atomic::PathIoError::new("cannot create folder", out, e))?;
    let labels = evaluate::condition_labels(src);
    let mut reports = Vec::new();
    // Raw pixels have no statistics to adapt; a network is evaluated both ways.
    let ways: Vec<bool> = match choice {
        ModelChoice::RawPixels => vec![false],
        _ => vec![adapt_first, !adapt_first],
    };
    let mut submission = None;
    for adapt in ways {
        let (mut enc, name) = make_encoder(choice, layers.clone(), device)?;
        let map_path = out.join(format!(
            "map-{}.safetensors",
            if adapt { "adabn" } else { "none" }
        ));
        super::build_map(
            &mut enc,
            src,
            &map_path,
            &BuildOptions {
                adapt,
                f16: false,
                metric,
                compress: None,
            },
        )?;
        // Queries go through the same Localizer as localize and the node: the map, as
        // opened, with the node's defaults.
        let map = std::sync::Arc::new(MapFile::open(&map_path)?);
        let loc = Localizer::new(
            enc,
            map,
            crate::localize::Options {
                metric: Some(metric),
                ..Default::default()
            },
        )?;
        let (report, sub) = evaluate::evaluate(&loc, src, &labels, per_camera, &name)?;
        if submission.is_none() {
            submission = Some(sub);
        }
        reports.push(report);
    }
    if let Some(sub) = submission {
        crate::data::cmu_seasons::write_submission(&out.join("submission.txt"), &sub)?;
    }
    let refs: Vec<&Report> = reports.iter().collect();
    crate::atomic::write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "reports": reports }))
            .unwrap_or_default()
            .as_bytes(),
    )?;
    crate::atomic::write_atomic(&out.join("report.md"), evaluate::markdown(&refs).as_bytes())?;
    evaluate::recall_curves(&out.join("recall_curves.png"), &refs)?;
    evaluate::match_sheet(&out.join("matches.png"), &reports[0], src)?;
    Ok(reports)
}
