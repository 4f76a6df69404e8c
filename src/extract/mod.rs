//! The one way images become map and query descriptors: preprocessing, the network's encoder
//! (or the raw-pixel baseline), map-time adaptation of the BatchNorm statistics, and the
//! per-layer scaling that makes the L1 distance equal the reference's (the sum over layers of
//! each layer's mean absolute difference). `build-map`, `localize`, `evaluate` and the node all
//! encode through [`MapEncoder`], and queries always with the map's own statistics.

pub mod choice;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::sync_channel;

use image::RgbImage;
use rayon::prelude::*;
use tch::{nn, Device, Kind, Tensor};

use crate::data::preprocess::Photometric;
use crate::data::{preprocess, Decode, PosedImage};
use crate::map::file::{Adaptation, EncoderKind, EncoderMeta, Hasher64, MapError, MapFile};
use crate::model::checkpoint::{self, named_tensors};
use crate::model::{DescriptorEncoder, DescriptorSpec, Generator, ModelConfig, WeightInit};
use crate::progress::Progress;
use crate::retrieval::Metric;

/// The preprocessing every path uses, in words (stored in maps and compared).
pub const NORMALISATION: &str =
    "RGB, bicubic resize to the input size, /255, mean 0.5, std 0.5 per channel";
const RAW_NORMALISATION: &str =
    "grey (0.299 R + 0.587 G + 0.114 B), area resize to the input size, zero mean, unit std per image";
/// What [`Photometric::Autocontrast`] adds to the description.
const AUTOCONTRAST_STEP: &str = "per-channel autocontrast (1% cut at each end)";

/// A preprocessing description (as stored in maps) for an encoder and a photometric mode.
pub fn normalisation(raw: bool, photometric: Photometric) -> String {
    match (raw, photometric) {
        (false, Photometric::None) => NORMALISATION.to_string(),
        (true, Photometric::None) => RAW_NORMALISATION.to_string(),
        // The network's input: after the resize, where it is applied.
        (false, Photometric::Autocontrast) => NORMALISATION.replacen(
            "to the input size",
            &format!("to the input size, {AUTOCONTRAST_STEP}"),
            1,
        ),
        // Raw pixels: on the colour image, before it turns grey.
        (true, Photometric::Autocontrast) => format!("{AUTOCONTRAST_STEP}, {RAW_NORMALISATION}"),
    }
}

/// The photometric mode a stored preprocessing description names, if it is one this build
/// writes for that encoder.
pub fn photometric_of(raw: bool, description: &str) -> Option<Photometric> {
    Photometric::ALL
        .into_iter()
        .find(|&m| normalisation(raw, m) == description)
}

/// Raw-pixel baseline size.
pub const RAW_SIZE: (i64, i64) = (32, 128);
/// Most images map-time adaptation estimates statistics on (evenly spaced over the map).
pub const ADAPTATION_IMAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Preprocess(#[from] preprocess::PreprocessError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Other(String),
}

/// A checkpoint's descriptor layers: those its `dasgil.descriptor_layers` names (chosen on
/// validation, as the shipped model's), else the paper's for the discriminator it was trained
/// with (FD: e5 + e6, CD: e5; FD when the checkpoint does not say).
pub fn default_spec(meta: &crate::model::CheckpointMeta) -> DescriptorSpec {
    meta.descriptor_layers.clone().unwrap_or_else(|| {
        DescriptorSpec::paper(
            meta.discriminator
                .unwrap_or(crate::model::DiscriminatorKind::Flatten),
        )
    })
}

/// Overwrites a BatchNorm's running statistics.
fn set_bn_stats(bn: &crate::model::layers::BatchNorm, mean: &[f32], var: &[f32], device: Device) {
    let _guard = tch::no_grad_guard();
    let mut rm = bn.bn.running_mean.shallow_clone();
    let mut rv = bn.bn.running_var.shallow_clone();
    rm.copy_(&Tensor::from_slice(mean).to_device(device));
    rv.copy_(&Tensor::from_slice(var).to_device(device));
}

/// Hash of a var store's tensors (names and values, sorted by name).
pub fn fingerprint(vs: &nn::VarStore) -> String {
    let mut h = Hasher64::default();
    for (name, t) in named_tensors(vs) {
        let t = t.to_device(Device::Cpu).contiguous();
        let n = t.numel();
        let bytes = match t.kind() {
            Kind::Int64 => {
                let v: Vec<i64> = Vec::try_from(t.flatten(0, -1)).unwrap_or_default();
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            }
            _ => {
                let v: Vec<f32> =
                    Vec::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
                v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            }
        };
        h.update(name.as_bytes());
        h.update(&(n as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.hex()
}

/// Image -> encoder input (CHW network floats, or normalised grey pixels).
#[derive(Debug, Clone, Copy)]
pub struct Preparer {
    raw: bool,
    height: i64,
    width: i64,
    photometric: Photometric,
}

impl Preparer {
    pub fn prepare(&self, img: &RgbImage) -> Result<Vec<f32>, EncodeError> {
        let (h, w) = (self.height, self.width);
        preprocess::check_size(img.width(), img.height(), w as u32, h as u32)?;
        if !self.raw {
            let mut resized = preprocess::resize_bicubic(img, w as u32, h as u32);
            self.photometric.apply(&mut resized);
            let mut out = vec![0f32; (3 * h * w) as usize];
            preprocess::normalise_into(&resized, &mut out);
            return Ok(out);
        }
        let grey = if self.photometric == Photometric::None {
            image::imageops::grayscale(img)
        } else {
            let mut colour = img.clone();
            self.photometric.apply(&mut colour);
            image::imageops::grayscale(&colour)
        };
        let small = image::imageops::resize(
            &grey,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
        let v: Vec<f32> = small.pixels().map(|p| p.0[0] as f32).collect();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        let sd = var.sqrt().max(1e-3);
        // Scaled by 1/len so L1 is the mean absolute difference, like the network's layers.
        let n = v.len() as f32;
        Ok(v.iter().map(|x| (x - mean) / sd / n).collect())
    }
}

// One per encoder: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Net {
    Dasgil {
        _vs: nn::VarStore,
        gen: Generator,
        folded: DescriptorEncoder,
        spec: DescriptorSpec,
    },
    RawPixels,
}

/// An image as the encoder takes it: decoded, and with `rectify` rectified with its intrinsics
/// and lens (`crate::map::views::rectified`; an image without a lens as it is).
fn load(p: &PosedImage, decode: Decode, rectify: bool) -> Result<RgbImage, EncodeError> {
    let img = p.load_rgb(decode)?;
    if !rectify {
        return Ok(img);
    }
    let Some(k) = p.intrinsics else {
        return Err(EncodeError::Other(format!(
            "{}: no camera intrinsics, which rectification needs (--rectify, or a map built with \
             it)",
            p.path.display()
        )));
    };
    Ok(crate::map::views::rectified(
        &img,
        &k,
        p.distortion.as_ref(),
    ))
}

/// The images encoded for one source image (itself; with yaw views, its views too).
type MakeImages<'a> =
    dyn Fn(&PosedImage, RgbImage) -> Result<Vec<RgbImage>, EncodeError> + Sync + 'a;

/// Encodes images into map descriptors.
pub struct MapEncoder {
    net: Net,
    pub meta: EncoderMeta,
    pub device: Device,
    /// Per descriptor value: 1 / (values in its layer), so L1 = sum of per-layer means.
    scale: Option<Tensor>,
    /// Adapted statistics (bn name -> (mean, var)) when adaptation ran or came from a map.
    adapted: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
    /// The per-image photometric normalisation before the network (or the raw pixels).
    photometric: Photometric,
    /// The metric the encoder's checkpoint records (`dasgil.metric`), if any.
    recorded_metric: Option<Metric>,
    /// The photometric normalisation the checkpoint was trained with (`dasgil.photometric`).
    trained_photometric: Option<Photometric>,
}

impl MapEncoder {
    /// A trained (or imported) generator checkpoint; `layers` default to those it records
    /// (`dasgil.descriptor_layers`), else the paper's choice for the discriminator it was
    /// trained with (FD: e5+e6, CD: e5): `default_spec`. The photometric normalisation is the
    /// one it was trained with (`dasgil.photometric`), else none.
    pub fn from_checkpoint(
        path: &Path,
        device: Device,
        layers: Option<DescriptorSpec>,
    ) -> Result<Self, EncodeError> {
        let loaded = checkpoint::load_generator(path, device, None)?;
        let spec = layers.unwrap_or_else(|| default_spec(&loaded.meta));
        let metric = loaded.meta.metric;
        let photometric = loaded.meta.photometric;
        let mut enc = Self::from_generator(
            loaded.vs,
            loaded.net,
            spec,
            Some(path.display().to_string()),
        )?;
        enc.recorded_metric = metric;
        // What the network was trained to see (`train --photometric`); `set_photometric`
        // overrides it.
        enc.trained_photometric = photometric.filter(|p| !p.is_none());
        if let Some(p) = photometric {
            enc.set_photometric(p);
        }
        Ok(enc)
    }

    /// The metric to search this encoder's maps with when none is asked for: the one its
    /// checkpoint records (`dasgil.metric`, chosen on validation, as the shipped model's), else
    /// the reference's L1 (paper section IV, Extended CMU-Seasons); L1 for the baselines (raw
    /// pixels, the untrained network), as the reference scores them.
    pub fn default_metric(&self) -> Metric {
        self.recorded_metric.unwrap_or(Metric::L1)
    }

    /// The metric the checkpoint records (chosen on validation for it), None when it records
    /// none (and for the baselines).
    pub fn recorded_metric(&self) -> Option<Metric> {
        self.recorded_metric
    }

    /// The photometric normalisation images get before encoding (the map's once `use_map` ran).
    pub fn photometric(&self) -> Photometric {
        self.photometric
    }

    /// The photometric normalisation the checkpoint was trained with (`train --photometric`),
    /// None when it records none (the paper's way, and the baselines).
    pub fn trained_photometric(&self) -> Option<Photometric> {
        self.trained_photometric
    }

    /// The warning for `--photometric asked` when it departs from the normalisation the
    /// checkpoint was trained with (build-map and evaluate say it).
    pub fn photometric_departure(&self, asked: Photometric) -> Option<String> {
        self.trained_photometric
            .filter(|&t| t != asked)
            .map(|trained| {
                format!(
                    "--photometric {asked}: the checkpoint was trained on images normalised with \
                     {trained} (`train --photometric`), so it will see images unlike its training \
                     ones; leave --photometric out to use {trained}"
                )
            })
    }

    /// The paper's initialisation (seeded), never trained: a baseline.
    pub fn untrained(
        cfg: ModelConfig,
        device: Device,
        spec: DescriptorSpec,
    ) -> Result<Self, EncodeError> {
        let (vs, gen) = {
            let _rng = crate::model::TORCH_RNG
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            tch::manual_seed(0);
            let vs = nn::VarStore::new(device);
            let gen = Generator::new(&vs.root(), cfg, WeightInit::Reference)?;
            (vs, gen)
        };
        Self::from_generator(
            vs,
            gen,
            spec,
            Some("untrained (reference initialisation, seed 0)".into()),
        )
    }

    fn from_generator(
        vs: nn::VarStore,
        gen: Generator,
        spec: DescriptorSpec,
        checkpoint: Option<String>,
    ) -> Result<Self, EncodeError> {
        spec.validate()?;
        let cfg = *gen.config();
        let folded = DescriptorEncoder::new(&gen, spec.clone())?;
        let device = vs.device();
        let mut scale = Vec::new();
        for l in &spec.layers {
            let n = cfg.feature_shape(l.layer).iter().product::<i64>();
            scale.extend(std::iter::repeat_n(1.0f32 / n as f32, n as usize));
        }
        let meta = EncoderMeta {
            kind: EncoderKind::Dasgil,
            model_fingerprint: fingerprint(&vs),
            checkpoint,
            input_height: cfg.input_height,
            input_width: cfg.input_width,
            layers: spec.layers.iter().map(|l| (l.layer, l.weight)).collect(),
            normalisation: NORMALISATION.into(),
            adaptation: Adaptation::None,
            adaptation_images: 0,
            rectified: false,
        };
        Ok(Self {
            net: Net::Dasgil {
                _vs: vs,
                gen,
                folded,
                spec,
            },
            meta,
            device,
            scale: Some(Tensor::from_slice(&scale).to_device(device)),
            adapted: BTreeMap::new(),
            photometric: Photometric::None,
            recorded_metric: None,
            trained_photometric: None,
        })
    }

    /// Downsampled, normalised grey pixels (the raw-pixel baseline).
    pub fn raw_pixels() -> Self {
        Self {
            net: Net::RawPixels,
            meta: EncoderMeta {
                kind: EncoderKind::RawPixels,
                model_fingerprint: format!("raw-pixels-{}x{}", RAW_SIZE.0, RAW_SIZE.1),
                checkpoint: None,
                input_height: RAW_SIZE.0,
                input_width: RAW_SIZE.1,
                layers: Vec::new(),
                normalisation: RAW_NORMALISATION.into(),
                adaptation: Adaptation::None,
                adaptation_images: 0,
                rectified: false,
            },
            device: Device::Cpu,
            scale: None,
            adapted: BTreeMap::new(),
            photometric: Photometric::None,
            recorded_metric: None,
            trained_photometric: None,
        }
    }

    /// Sets the photometric normalisation images get before encoding (and the preprocessing
    /// description a map built with this encoder stores).
    pub fn set_photometric(&mut self, photometric: Photometric) {
        self.photometric = photometric;
        self.meta.normalisation = normalisation(self.is_raw(), photometric);
    }

    /// Sets whether each image is rectified with its intrinsics and lens before encoding
    /// (`build-map --rectify`; stored in a map built with this encoder).
    pub fn set_rectified(&mut self, on: bool) {
        self.meta.rectified = on;
    }

    fn is_raw(&self) -> bool {
        matches!(self.net, Net::RawPixels)
    }

    /// Whether this encoder has BatchNorm statistics to adapt.
    pub fn adaptable(&self) -> bool {
        matches!(self.net, Net::Dasgil { .. })
    }

    /// Descriptor length.
    pub fn dim(&self) -> usize {
        match &self.net {
            Net::Dasgil { gen, spec, .. } => spec.len(gen.config()) as usize,
            Net::RawPixels => (RAW_SIZE.0 * RAW_SIZE.1) as usize,
        }
    }

    /// What turns images into this encoder's inputs (plain data, shareable across threads).
    pub fn preparer(&self) -> Preparer {
        Preparer {
            raw: self.is_raw(),
            height: self.meta.input_height,
            width: self.meta.input_width,
            photometric: self.photometric,
        }
    }

    /// A mid-grey image of the encoder's input size (the node's warm-up frame).
    pub fn blank_input(&self) -> RgbImage {
        RgbImage::from_pixel(
            self.meta.input_width.max(1) as u32,
            self.meta.input_height.max(1) as u32,
            image::Rgb([128, 128, 128]),
        )
    }

    /// One image -> the encoder's input values.
    pub fn prepare(&self, img: &RgbImage) -> Result<Vec<f32>, EncodeError> {
        self.preparer().prepare(img)
    }

    /// Prepared inputs (each from [`MapEncoder::prepare`]) -> descriptors, row-major [B, D].
    pub fn encode(&self, prepared: &[Vec<f32>]) -> Result<Vec<f32>, EncodeError> {
        match &self.net {
            Net::RawPixels => Ok(prepared.concat()),
            Net::Dasgil { folded, .. } => {
                let (h, w) = (self.meta.input_height, self.meta.input_width);
                let flat: Vec<f32> = prepared.concat();
                let xs = Tensor::from_slice(&flat)
                    .view([prepared.len() as i64, 3, h, w])
                    .to_device(self.device);
                let d = folded.describe(&xs)?;
                let d = match &self.scale {
                    Some(s) => d * s,
                    None => d,
                };
                let d = d.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                let bad = d.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
                if bad > 0 {
                    return Err(EncodeError::Other(format!(
                        "the network gave {bad} non-finite descriptor value(s)"
                    )));
                }
                Ok(Vec::try_from(d.flatten(0, -1))?)
            }
        }
    }

    /// Map-time adaptation (AdaBN): re-estimates the running mean and variance of every
    /// BatchNorm the descriptor's layers use, layer by layer, on `prepared` images (each layer's
    /// statistics are computed with the layers below it already adapted), then refolds.
    pub fn adapt(&mut self, prepared: &[Vec<f32>]) -> Result<(), EncodeError> {
        let (h, w) = (self.meta.input_height, self.meta.input_width);
        let device = self.device;
        let Net::Dasgil {
            gen, folded, spec, ..
        } = &mut self.net
        else {
            return Ok(());
        };
        if prepared.len() < 2 {
            return Err(EncodeError::Other(format!(
                "map-time adaptation needs at least 2 images, found {}",
                prepared.len()
            )));
        }
        let deepest = spec.deepest();
        let _guard = tch::no_grad_guard();
        for layer in 2..=deepest {
            let Some(bn) = gen.encoder().bn(layer) else {
                continue;
            };
            let c = gen.config().feature_channels(layer) as usize;
            let (mut sum, mut sumsq, mut count) = (vec![0f64; c], vec![0f64; c], 0f64);
            for chunk in prepared.chunks(8) {
                let flat: Vec<f32> = chunk.concat();
                let xs = Tensor::from_slice(&flat)
                    .view([chunk.len() as i64, 3, h, w])
                    .to_device(device);
                let below = gen.encode_t(&xs, layer - 1, false)?;
                let x = crate::model::layers::leaky_relu(&below[layer - 2]);
                let y =
                    tch::nn::Module::forward(gen.encoder().conv(layer), &x).to_kind(Kind::Double);
                let s: Vec<f64> = Vec::try_from(
                    y.sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double)
                        .to_device(Device::Cpu),
                )?;
                let q: Vec<f64> = Vec::try_from(
                    y.square()
                        .sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double)
                        .to_device(Device::Cpu),
                )?;
                for i in 0..c {
                    sum[i] += s[i];
                    sumsq[i] += q[i];
                }
                let size = y.size();
                count += (size[0] * size[2] * size[3]) as f64;
            }
            let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
            let var: Vec<f32> = (0..c)
                .map(|i| {
                    let m = sum[i] / count;
                    (((sumsq[i] - count * m * m) / (count - 1.0)).max(0.0)) as f32
                })
                .collect();
            set_bn_stats(bn, &mean, &var, device);
            self.adapted.insert(format!("conv{layer}_bn"), (mean, var));
        }
        *folded = DescriptorEncoder::new(gen, spec.clone())?;
        self.meta.adaptation = Adaptation::Adabn;
        self.meta.adaptation_images = prepared.len();
        Ok(())
    }

    /// The adapted statistics as map tensors (`adapted.<bn>.running_mean` / `.running_var`).
    pub fn adapted_tensors(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        for (bn, (m, v)) in &self.adapted {
            out.push((format!("adapted.{bn}.running_mean"), m.clone()));
            out.push((format!("adapted.{bn}.running_var"), v.clone()));
        }
        out
    }

    /// Makes this encoder encode exactly as `map` was built: the same encoder (refused with
    /// every difference named otherwise), the map's photometric normalisation and, when the
    /// map was adapted, its statistics.
    pub fn use_map(&mut self, map: &MapFile) -> Result<(), EncodeError> {
        let m = &map.meta.encoder;
        let mine = &self.meta;
        let mut diffs = Vec::new();
        if m.kind != mine.kind {
            diffs.push(format!(
                "encoder kind: map `{}`, given `{}`",
                m.kind, mine.kind
            ));
        }
        if m.model_fingerprint != mine.model_fingerprint {
            diffs.push(format!(
                "model fingerprint: map {} ({}), given {} ({})",
                m.model_fingerprint,
                m.checkpoint.as_deref().unwrap_or("?"),
                mine.model_fingerprint,
                mine.checkpoint.as_deref().unwrap_or("?")
            ));
        }
        if (m.input_height, m.input_width) != (mine.input_height, mine.input_width) {
            diffs.push(format!(
                "input size: map {}x{}, given {}x{}",
                m.input_height, m.input_width, mine.input_height, mine.input_width
            ));
        }
        if m.layers != mine.layers {
            diffs.push(format!(
                "descriptor layers: map {}, given {}",
                m.layers_name(),
                mine.layers_name()
            ));
        }
        // The photometric normalisation follows the map; any other preprocessing must match.
        let map_photometric = photometric_of(self.is_raw(), &m.normalisation);
        if map_photometric.is_none() {
            diffs.push(format!(
                "preprocessing: map `{}`, this build encodes with `{}`",
                m.normalisation,
                Photometric::ALL
                    .map(|p| normalisation(self.is_raw(), p))
                    .join("` or `")
            ));
        }
        if map.dim() != self.dim() {
            diffs.push(format!(
                "descriptor length: map {}, given {}",
                map.dim(),
                self.dim()
            ));
        }
        if !diffs.is_empty() {
            return Err(MapError::Mismatch {
                path: map.path.clone(),
                differences: diffs.join("; "),
            }
            .into());
        }
        if let Some(p) = map_photometric {
            self.set_photometric(p);
        }
        self.set_rectified(m.rectified);
        if m.adaptation == Adaptation::Adabn {
            let stats = map.adapted_stats();
            let device = self.device;
            let Net::Dasgil {
                gen, folded, spec, ..
            } = &mut self.net
            else {
                return Ok(());
            };
            let _guard = tch::no_grad_guard();
            for layer in 2..=spec.deepest() {
                let Some(bn) = gen.encoder().bn(layer) else {
                    continue;
                };
                let key = format!("conv{layer}_bn");
                let (Some(mean), Some(var)) = (
                    stats.get(&format!("{key}.running_mean")),
                    stats.get(&format!("{key}.running_var")),
                ) else {
                    return Err(MapError::Format {
                        path: map.path.clone(),
                        message: format!("adapted statistics of `{key}` are missing"),
                    }
                    .into());
                };
                let c = gen.config().feature_channels(layer) as usize;
                if mean.len() != c || var.len() != c {
                    return Err(MapError::Format {
                        path: map.path.clone(),
                        message: format!("adapted statistics of `{key}`: expected {c} values"),
                    }
                    .into());
                }
                set_bn_stats(bn, mean, var, device);
                self.adapted.insert(key, (mean.clone(), var.clone()));
            }
            *folded = DescriptorEncoder::new(gen, spec.clone())?;
            self.meta.adaptation = m.adaptation;
            self.meta.adaptation_images = m.adaptation_images;
        }
        Ok(())
    }

    /// Encodes images in batches: a background thread decodes and prepares the next batches
    /// (in parallel) while the network runs on the current one. Rows in input order.
    pub fn encode_images(
        &self,
        images: &[PosedImage],
        decode: Decode,
        progress: Option<&Progress>,
    ) -> Result<Vec<f32>, EncodeError> {
        self.encode_with(images, decode, 1, &|_, img| Ok(vec![img]), progress)
    }

    /// [`Self::encode_images`] and each image's yaw views (`crate::map::views`, in the order of
    /// `yaws`): the images' rows, then the views' rows (entry-major, `yaws.len()` per image).
    /// Every image needs its intrinsics.
    pub fn encode_images_and_views(
        &self,
        images: &[PosedImage],
        decode: Decode,
        yaws: &[f64],
        progress: Option<&Progress>,
    ) -> Result<(Vec<f32>, Vec<f32>), EncodeError> {
        let per = 1 + yaws.len();
        // A rectified image has no lens left.
        let rectified = self.meta.rectified;
        let views = |p: &PosedImage, img: RgbImage| -> Result<Vec<RgbImage>, EncodeError> {
            let k = p.intrinsics.ok_or_else(|| {
                EncodeError::Other(format!(
                    "{}: no camera intrinsics, which yaw views need",
                    p.path.display()
                ))
            })?;
            let mut out = Vec::with_capacity(per);
            out.extend(crate::map::views::yaw_views(
                &img,
                &k,
                p.distortion.as_ref().filter(|_| !rectified),
                yaws,
            ));
            out.insert(0, img);
            Ok(out)
        };
        let rows = self.encode_with(images, decode, per, &views, progress)?;
        let dim = self.dim();
        let mut base = Vec::with_capacity(images.len() * dim);
        let mut view_rows = Vec::with_capacity(images.len() * yaws.len() * dim);
        for entry in rows.chunks_exact(per * dim) {
            base.extend_from_slice(&entry[..dim]);
            view_rows.extend_from_slice(&entry[dim..]);
        }
        Ok((base, view_rows))
    }

    /// Encodes `per_image` images made from each image by `make` (rows image-major).
    fn encode_with(
        &self,
        images: &[PosedImage],
        decode: Decode,
        per_image: usize,
        make: &MakeImages<'_>,
        progress: Option<&Progress>,
    ) -> Result<Vec<f32>, EncodeError> {
        let batch = 8;
        let dim = self.dim();
        let mut out = Vec::with_capacity(images.len() * per_image * dim);
        let preparer = self.preparer();
        let rectify = self.meta.rectified;
        let prepared_of = move |chunk: &[PosedImage]| -> Result<Vec<Vec<f32>>, EncodeError> {
            let per: Vec<Vec<Vec<f32>>> = chunk
                .par_iter()
                .map(|p| {
                    let img = load(p, decode, rectify)?;
                    make(p, img)?
                        .iter()
                        .map(|v| preparer.prepare(v).map_err(|e| named(p, e)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            Ok(per.into_iter().flatten().collect())
        };
        std::thread::scope(|s| -> Result<(), EncodeError> {
            let (tx, rx) = sync_channel::<Result<Vec<Vec<f32>>, EncodeError>>(2);
            let producer = s.spawn(move || {
                for chunk in images.chunks(batch) {
                    if tx.send(prepared_of(chunk)).is_err() {
                        return;
                    }
                }
            });
            for prepared in rx {
                let prepared = prepared?;
                for part in prepared.chunks(batch) {
                    out.extend(self.encode(part)?);
                }
                if let Some(p) = progress {
                    p.inc((prepared.len() / per_image) as u64);
                }
            }
            let _ = producer.join();
            Ok(())
        })?;
        if out.len() != images.len() * per_image * dim {
            return Err(EncodeError::Other(
                "the image decoder stopped before the last image".into(),
            ));
        }
        Ok(out)
    }

    /// Prepared inputs of up to [`ADAPTATION_IMAGES`] images evenly spaced over `images`.
    pub fn prepare_subset(
        &self,
        images: &[PosedImage],
        decode: Decode,
    ) -> Result<Vec<Vec<f32>>, EncodeError> {
        let n = images.len().min(ADAPTATION_IMAGES);
        let picks: Vec<usize> = (0..n).map(|i| i * images.len() / n.max(1)).collect();
        let preparer = self.preparer();
        let rectify = self.meta.rectified;
        picks
            .par_iter()
            .map(|&i| {
                let img = load(&images[i], decode, rectify)?;
                preparer.prepare(&img).map_err(|e| named(&images[i], e))
            })
            .collect()
    }
}

/// A preprocessing error, with the image file it came from (an image too small for the
/// network says which one).
fn named(p: &PosedImage, e: EncodeError) -> EncodeError {
    match e {
        EncodeError::Preprocess(e) => EncodeError::Other(format!("{}: {e}", p.path.display())),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DiscriminatorKind, ModelConfig};

    #[test]
    fn the_warm_up_frame_is_one_every_encoder_takes() {
        let spec = DescriptorSpec::paper(DiscriminatorKind::Cascade);
        let mut encoders = vec![MapEncoder::raw_pixels()];
        for (h, w) in [(256, 512), (256, 1024)] {
            let cfg = ModelConfig::paper().with_input_size(h, w).unwrap();
            encoders.push(MapEncoder::untrained(cfg, Device::Cpu, spec.clone()).unwrap());
        }
        for e in &encoders {
            let blank = e.blank_input();
            let prepared = e.prepare(&blank).unwrap();
            assert_eq!(e.encode(&[prepared]).unwrap().len(), e.dim());
        }
    }
}
