//! Descriptor maps: building them from geotagged image sequences (`build-map`), searching them
//! (`localize`, the node) and measuring how well a model localizes (`evaluate`).

pub mod commands;
pub mod compress;
pub mod encode;
pub mod evaluate;
pub mod file;
pub mod replay;
pub mod search;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{cmu_seasons::CmuSlice, Decode, PosedImage};
use encode::{EncodeError, MapEncoder};
use file::{MapError, MapMeta, RawTensor, SourceMeta, MAP_FORMAT};
use safetensors::tensor::Dtype;

pub const SEQUENCES_YAML: &str = include_str!("../../config/sequences.yaml");

/// How a missing synthetic sequence is rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub seed: u64,
    pub places: usize,
    pub spacing: f64,
    pub conditions: Vec<String>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    pub format: String,
    pub root: PathBuf,
    #[serde(default)]
    pub slice: Option<u32>,
    #[serde(default)]
    pub cameras: Option<Vec<String>>,
    #[serde(default)]
    pub generate: Option<Generate>,
}

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    #[error(transparent)]
    Io(#[from] crate::atomic::PathIoError),
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    #[error(transparent)]
    SameFile(#[from] crate::atomic::SameFileError),
    #[error("{0}")]
    Other(String),
}

/// The data folder relative sequence roots live under.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DASGIL_DATA") {
        return d.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".cache/dasgil")
}

/// Named sequences from `file` (default: the built-in config/sequences.yaml).
pub fn sequences(file: Option<&Path>) -> Result<BTreeMap<String, Sequence>, MapsError> {
    let (text, origin) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| crate::atomic::PathIoError::new("cannot read", p, e))?,
            p.display().to_string(),
        ),
        None => (
            SEQUENCES_YAML.to_string(),
            "config/sequences.yaml".to_string(),
        ),
    };
    serde_yaml::from_str(&text).map_err(|e| {
        MapsError::Other(format!(
            "{origin}{}: {e}",
            e.location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default()
        ))
    })
}

/// The images of a data set: database (the map) and queries with ground truth where known.
pub struct SourceImages {
    pub source: SourceMeta,
    pub database: Vec<PosedImage>,
    pub queries: Vec<PosedImage>,
    pub decode: Decode,
}

fn keep_cameras(images: Vec<PosedImage>, cameras: &Option<Vec<String>>) -> Vec<PosedImage> {
    match cameras {
        None => images,
        Some(c) => images
            .into_iter()
            .filter(|i| c.contains(&i.camera))
            .collect(),
    }
}

impl Sequence {
    /// The sequence's root (relative roots under [`data_dir`]), rendered first when missing and
    /// a `generate` recipe is given.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, MapsError> {
        let root = if self.root.is_absolute() {
            self.root.clone()
        } else {
            data_dir().join(&self.root)
        };
        if !root.exists() {
            if let (Some(g), "cmu") = (&self.generate, self.format.as_str()) {
                tracing::info!(sequence = name, root = %root.display(), "rendering the synthetic sequence (first use)");
                render_cmu(&root, self.slice.unwrap_or(2), g)?;
            }
        }
        Ok(root)
    }

    /// Opens the sequence's images.
    pub fn open(&self, name: Option<&str>, root: &Path) -> Result<SourceImages, MapsError> {
        let mut source = SourceMeta {
            format: self.format.clone(),
            root: root.display().to_string(),
            slice: self.slice,
            sequence: name.map(str::to_string),
        };
        match self.format.as_str() {
            "cmu" => {
                let slice = self.slice.ok_or_else(|| {
                    MapsError::Other("format cmu needs a slice (--slice N)".into())
                })?;
                let s = CmuSlice::open(root, slice)?;
                Ok(SourceImages {
                    database: keep_cameras(s.database_images(), &self.cameras),
                    queries: keep_cameras(s.query_images(), &self.cameras),
                    source,
                    decode: Decode::Rgb,
                })
            }
            "kitti" => {
                let seq = format!("{:02}", self.slice.unwrap_or(0));
                let cam = self
                    .cameras
                    .as_ref()
                    .and_then(|c| c.first().cloned())
                    .unwrap_or_else(|| "image_2".into());
                let s = crate::data::kitti::OdometrySequence::open(root, &seq, &cam)?;
                source.slice = self.slice.or(Some(0));
                Ok(SourceImages {
                    database: s.images,
                    queries: Vec::new(),
                    source,
                    decode: Decode::Rgb,
                })
            }
            "vkitti2" => {
                let ds = crate::data::vkitti2::Vkitti2::open(
                    &crate::data::vkitti2::Vkitti2Roots::official(root),
                )?;
                Ok(SourceImages {
                    database: keep_cameras(ds.posed_images(), &self.cameras),
                    queries: Vec::new(),
                    source,
                    decode: Decode::Rgb,
                })
            }
            "robotcar" => {
                let cam = self
                    .cameras
                    .as_ref()
                    .and_then(|c| c.first().cloned())
                    .unwrap_or_else(|| "stereo/centre".into());
                let t = crate::data::robotcar::Traversal::open(root, &cam)?;
                let decode = t.decode();
                Ok(SourceImages {
                    database: t.images,
                    queries: Vec::new(),
                    source,
                    decode,
                })
            }
            other => Err(MapsError::Other(format!(
                "format: expected cmu, kitti, vkitti2 or robotcar, found `{other}`"
            ))),
        }
    }
}

/// Renders a synthetic CMU slice into `root` (staged beside it, moved into place when done).
fn render_cmu(root: &Path, slice: u32, g: &Generate) -> Result<(), MapsError> {
    let staging = crate::synth::output::staging(root, false)?;
    crate::synth::cmu::generate(&crate::synth::cmu::Options {
        out: staging.clone(),
        seed: g.seed,
        slice,
        places: g.places,
        spacing: g.spacing,
        conditions: g.conditions.clone(),
        width: g.width,
        height: g.height,
    })?;
    crate::synth::output::finish(
        &staging,
        root,
        serde_json::json!({"dataset": "cmu", "generate": g}),
    )?;
    Ok(())
}

/// Options of `build-map`.
pub struct BuildOptions {
    pub adapt: bool,
    pub f16: bool,
    pub metric: search::Metric,
    /// The compressed search mode: projected dimensions and shortlist (`maps::compress`).
    pub compress: Option<(usize, usize)>,
}

/// Seed of the compressed mode's projection.
pub const PROJECTION_SEED: u64 = 0xDA5_617;

/// The name a map stores for an image: its file name (CMU names carry camera and time).
pub fn image_name(p: &PosedImage) -> String {
    p.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The decoding a map records: the source's, with colour files told apart from grey ones
/// (a grey data set's map takes mono8 frames; a colour one refuses them).
fn recorded_decoding(src: &SourceImages) -> Result<Decode, MapsError> {
    if src.decode != Decode::Rgb {
        return Ok(src.decode);
    }
    let Some(first) = src.database.first() else {
        return Ok(Decode::Rgb);
    };
    let img = crate::data::error::open_image(&first.path, "a database image")?;
    Ok(if img.color().has_color() {
        Decode::Rgb
    } else {
        Decode::Grey
    })
}

/// Encodes `src.database` into a map written to `out`.
pub fn build_map(
    encoder: &mut MapEncoder,
    src: &SourceImages,
    out: &Path,
    opts: &BuildOptions,
) -> Result<MapMeta, MapsError> {
    let db = &src.database;
    if db.is_empty() {
        return Err(MapsError::Other(format!(
            "{}: no database images to build a map from",
            src.source.root
        )));
    }
    let missing: Vec<String> = db
        .iter()
        .filter(|p| p.world_from_cam.is_none())
        .take(3)
        .map(|p| p.path.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(MapsError::Other(format!(
            "images without a pose cannot be map entries: {}{}",
            missing.join(", "),
            if missing.len() == 3 { ", ..." } else { "" }
        )));
    }
    if opts.adapt && encoder.adaptable() {
        let subset = encoder.prepare_subset(db, src.decode)?;
        encoder.adapt(&subset)?;
    }
    let progress = crate::progress::Progress::new("build-map", "images", db.len() as u64, 0);
    let desc = encoder.encode_images(db, src.decode, Some(&progress))?;
    progress.finish();
    let n = db.len();
    let dim = encoder.dim();
    let descriptors = if opts.f16 {
        let h: Vec<half::f16> = desc.iter().map(|&v| half::f16::from_f32(v)).collect();
        RawTensor::new("descriptors", Dtype::F16, vec![n, dim], &h)
    } else {
        RawTensor::new("descriptors", Dtype::F32, vec![n, dim], &desc)
    };
    let mut poses = Vec::with_capacity(n * 7);
    let mut times = Vec::with_capacity(n);
    for p in db {
        let pose = p.world_from_cam.expect("checked above");
        let t = pose.translation.vector;
        let q = crate::geom::wxyz(&pose.rotation);
        poses.extend([t.x, t.y, t.z, q[0], q[1], q[2], q[3]]);
        times.push(p.timestamp_us.unwrap_or(-1));
    }
    let mut tensors = vec![
        descriptors,
        RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
        RawTensor::new("timestamps_us", Dtype::I64, vec![n], &times),
    ];
    let compression = opts.compress.map(|(dims, shortlist)| {
        let (t, meta) = compress::map_tensors(&desc, n, dim, dims, shortlist);
        tensors.extend(t);
        meta
    });
    for (name, values) in encoder.adapted_tensors() {
        tensors.push(RawTensor::new(
            &name,
            Dtype::F32,
            vec![values.len()],
            &values,
        ));
    }
    let mut meta = MapMeta {
        format: MAP_FORMAT.into(),
        names: db.iter().map(image_name).collect(),
        cameras: db.iter().map(|p| p.camera.clone()).collect(),
        encoder: encoder.meta.clone(),
        metric: opts.metric.name().into(),
        source: src.source.clone(),
        created_unix: file::now_unix(),
        payload_checksum: String::new(),
        compression,
        decoding: recorded_decoding(src)?,
    };
    file::write_map(out, &tensors, &mut meta)?;
    Ok(meta)
}
