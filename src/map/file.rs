//! The map file: one safetensors file (readable from Python with `safetensors.numpy`), read
//! into memory and checked when opened.
//!
//! Tensors:
//! - `descriptors` [N, D] F32 (or F16 with `--f16`): one row per map image;
//! - `poses` [N, 7] F64: `world_from_cam` of each image as tx ty tz qw qx qy qz (the camera
//!   centre in world coordinates and the camera-to-world rotation; camera axes x right, y down,
//!   z forward);
//! - `timestamps_us` `[N]` I64 (-1 where unknown);
//! - `adapted.<bn>.running_mean` / `.running_var` F32: the encoder's BatchNorm statistics
//!   re-estimated on this map's images (map-time adaptation), when used;
//! - `view_descriptors` [N * V, D] (the dtype of `descriptors`): each image's V yaw views
//!   (`build-map --yaw-views`, metadata `yaw_views_deg`), when used.
//!
//! Metadata `dasgil.map` holds a JSON [`MapMeta`]: format version, image names and cameras, the
//! encoder (model fingerprint, input size, layers and weights, normalisation, adaptation),
//! source, creation time, and a checksum of every tensor's bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::atomic::PathIoError;

pub const MAP_FORMAT: &str = "dasgil-map/1";

/// Which encoder made the descriptors; a query must be encoded the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderMeta {
    /// `dasgil` (a generator checkpoint) or `raw-pixels` (the baseline).
    pub kind: EncoderKind,
    /// Hash of the generator's weights and BatchNorm statistics as loaded from the checkpoint
    /// (before adaptation); for raw pixels, a name of the recipe.
    pub model_fingerprint: String,
    /// Where the weights came from (informative).
    pub checkpoint: Option<String>,
    pub input_height: i64,
    pub input_width: i64,
    /// Encoder layers (1-based) and their weights.
    pub layers: Vec<(usize, f64)>,
    /// Image preprocessing, in words (compared as text).
    pub normalisation: String,
    /// `adabn` (BatchNorm statistics re-estimated on the map's images, stored in the file) or
    /// `none` (the checkpoint's statistics, the paper's behaviour).
    pub adaptation: Adaptation,
    /// Images the statistics were estimated on.
    pub adaptation_images: usize,
    /// Whether each image was rectified with its intrinsics and lens before encoding
    /// (`build-map --rectify`: what an ideal pinhole with the same intrinsics would have
    /// taken); queries of `evaluate --map` follow the map, the node's frames must come rectified
    /// (an `image_rect` topic). Absent in older maps: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rectified: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// What made a map's descriptors (stored by these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncoderKind {
    /// A generator checkpoint's encoder.
    #[serde(rename = "dasgil")]
    Dasgil,
    /// The raw-pixel baseline.
    #[serde(rename = "raw-pixels")]
    RawPixels,
}

/// Which BatchNorm statistics encode (stored by these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Adaptation {
    /// The checkpoint's statistics (the paper's behaviour).
    None,
    /// Re-estimated on the map's images (AdaBN), stored in the map.
    Adabn,
}

impl EncoderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Dasgil => "dasgil",
            Self::RawPixels => "raw-pixels",
        }
    }
}

impl Adaptation {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Adabn => "adabn",
        }
    }
}

impl std::fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Adaptation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl MapMeta {
    /// The metadata of a map written by hand rather than by build-map (tests, benchmarks): `n`
    /// entries named `0`, `1`, ... on camera `c0`, from the source format `source`, encoded by a
    /// DASGIL encoder whose fingerprint is `source` too (256 x 512 input, descriptor layer e6,
    /// no photometric normalisation or adaptation), L1 metric, exact search only, no views.
    /// Change the fields that differ before writing it with [`write_map`], which fills in the
    /// checksum and the time.
    pub fn by_hand(n: usize, source: &str) -> MapMeta {
        MapMeta {
            format: MAP_FORMAT.into(),
            names: (0..n).map(|i| i.to_string()).collect(),
            cameras: vec!["c0".into(); n],
            encoder: EncoderMeta {
                kind: EncoderKind::Dasgil,
                model_fingerprint: source.into(),
                checkpoint: None,
                input_height: 256,
                input_width: 512,
                layers: vec![(6, 1.0)],
                normalisation: "none".into(),
                adaptation: Adaptation::None,
                adaptation_images: 0,
                rectified: false,
            },
            metric: "l1".into(),
            source: SourceMeta {
                format: source.into(),
                root: String::new(),
                slice: None,
                sequence: None,
                bag: None,
            },
            created_unix: 0,
            payload_checksum: String::new(),
            compression: None,
            decoding: Default::default(),
            yaw_views_deg: Vec::new(),
            lenses: BTreeMap::new(),
        }
    }

    /// How the map's images became RGB: the recorded `decoding`; a RobotCar map written before
    /// the field existed was built from Bayer mosaics (the reader always demosaiced them).
    pub fn image_decoding(&self) -> crate::data::Decode {
        use crate::data::{robotcar::BayerPattern, Decode};
        match (
            self.decoding,
            self.source.format.as_str(),
            self.cameras.first(),
        ) {
            (Decode::Rgb, "robotcar", Some(cam)) => Decode::Bayer(BayerPattern::for_camera(cam)),
            (d, _, _) => d,
        }
    }
}

impl EncoderMeta {
    /// The photometric normalisation (`--photometric`) the stored preprocessing names, or
    /// `other` for a preprocessing this build does not write.
    pub fn photometric_name(&self) -> String {
        crate::extract::photometric_of(self.kind == EncoderKind::RawPixels, &self.normalisation)
            .map_or_else(|| "other".to_string(), |p| p.name().to_string())
    }

    /// The descriptor layers as `--layers` writes them (`6`, `5,6`, `5*0.5,6`); `none` for raw
    /// pixels, which has none.
    pub fn layers_name(&self) -> String {
        if self.layers.is_empty() {
            "none".into()
        } else {
            self.descriptor_spec().to_string()
        }
    }

    /// The descriptor layers and weights this encoder was built with.
    pub fn descriptor_spec(&self) -> crate::model::DescriptorSpec {
        crate::model::DescriptorSpec {
            layers: self
                .layers
                .iter()
                .map(|&(layer, weight)| crate::model::DescriptorLayer { layer, weight })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMeta {
    pub format: String,
    pub root: String,
    pub slice: Option<u32>,
    pub sequence: Option<String>,
    /// A map built from a rosbag2 recording (`build-map --bag`): the recording, its topics and
    /// frames. `root` is then the folder its frames were extracted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bag: Option<BagSourceMeta>,
}

/// Where a map's images came from in a rosbag2 recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BagSourceMeta {
    /// The recording (folder or file) as given.
    pub path: String,
    /// `mcap` or `sqlite3`.
    pub storage: String,
    pub image_topics: Vec<String>,
    /// The `header.frame_id` of each image topic's frames (the camera optical frames; several
    /// joined by `|`).
    pub camera_frames: Vec<String>,
    /// The camera id of each image topic (`--camera-id`, else the topic); empty in maps built
    /// before 2026-12-07.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub camera_ids: Vec<String>,
    /// The frame the poses are in (`--world-frame`, e.g. `map`).
    pub world_frame: String,
    /// Poses from this topic instead of TF (`--pose-topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose_topic: Option<String>,
}

impl BagSourceMeta {
    /// The `header.frame_id`s of camera `id`'s frames in the recording; None when it has no
    /// such camera (or the record predates `camera_ids`).
    pub fn frames_of(&self, id: &str) -> Option<Vec<&str>> {
        let i = self.camera_ids.iter().position(|c| c == id)?;
        Some(self.camera_frames.get(i)?.split('|').collect())
    }

    /// When camera `id`'s frames, in `frame`, are another camera's in this recording and not
    /// `id`'s own: the camera ids given in another order than when the recording was read
    /// (each frame is searched among its own camera's map images, so a crossed camera finds
    /// no place). The warning, naming both cameras and the map's pairs of topic and id.
    pub fn crossed(&self, id: &str, frame: &str) -> Option<String> {
        let own = self.frames_of(id)?;
        if own.contains(&frame) {
            return None;
        }
        let other = self
            .camera_ids
            .iter()
            .find(|c| *c != id && self.frames_of(c).is_some_and(|f| f.contains(&frame)))?;
        let pairs: Vec<String> = self
            .image_topics
            .iter()
            .zip(&self.camera_ids)
            .map(|(t, c)| format!("{t} as {c}"))
            .collect();
        Some(format!(
            "camera `{id}`'s frames are in `{frame}`, the frame of the map's camera `{other}` \
             (the map's `{id}` is in `{}`): are the camera ids in another order than when the \
             map was built ({})? Each frame is searched among its own camera's map images, so \
             a crossed camera finds the wrong places",
            own.join("|"),
            pairs.join(", ")
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapMeta {
    pub format: String,
    pub names: Vec<String>,
    pub cameras: Vec<String>,
    pub encoder: EncoderMeta,
    /// Default metric: `l1` (the reference's), `l2` or `cosine`.
    pub metric: String,
    pub source: SourceMeta,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    /// Checksum of the tensors' bytes (names sorted), see [`payload_checksum`].
    pub payload_checksum: String,
    /// The compressed search mode's parameters (tensors `projection`, `codes`, `code_scales`);
    /// absent: exact search only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::retrieval::compress::CompressionMeta>,
    /// How the map's image files became RGB (`grey`, `bayer_gbrg`, ...; absent: `rgb`): a query
    /// is decoded the same way (a raw RobotCar PNG is demosaiced, a mono8 frame matches only a
    /// grey or Bayer map).
    #[serde(default, skip_serializing_if = "crate::data::Decode::is_rgb")]
    pub decoding: crate::data::Decode,
    /// The yaw views stored per entry (`build-map --yaw-views`; degrees, positive turned left;
    /// tensor `view_descriptors`, entry-major: row `i * V + v` is entry i's view v); absent: none.
    /// A query's distance to an entry is the smallest over its descriptor and its views.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub yaw_views_deg: Vec<f64>,
    /// Each camera's lens as its database images were taken (OpenCV's k1, k2, p1, p2, k3; all
    /// zero: a pinhole or already rectified images), for the cameras whose images come with
    /// intrinsics; absent in older maps and for sources without intrinsics. `evaluate` warns
    /// when its queries were taken through another lens (see `crate::eval::offline::lens_warnings`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lenses: BTreeMap<String, crate::map::views::Distortion>,
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("{path}: not a dasgil map: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: the map file is damaged: its content checksum is {found}, the file says {expected} (truncated or modified since it was written); rebuild it with build-map")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: this map was built with another encoder than the one given: {differences}; encode queries with the map's own checkpoint and settings, or rebuild the map")]
    Mismatch { path: PathBuf, differences: String },
}

/// 64-bit hash of byte slices (four interleaved multiply-rotate lanes, then mixed); fast enough
/// to check a large map when it is opened. Not cryptographic.
pub struct Hasher64 {
    lanes: [u64; 4],
    len: u64,
    tail: Vec<u8>,
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

impl Default for Hasher64 {
    fn default() -> Self {
        Self {
            lanes: [P1, P2, P1 ^ P2, P2.rotate_left(17)],
            len: 0,
            tail: Vec::new(),
        }
    }
}

impl Hasher64 {
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.tail.is_empty() {
            let need = 32 - self.tail.len();
            let take = need.min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() == 32 {
                let block = std::mem::take(&mut self.tail);
                self.block(&block);
            }
        }
        let mut chunks = bytes.chunks_exact(32);
        for c in &mut chunks {
            self.block(c);
        }
        self.tail.extend_from_slice(chunks.remainder());
    }

    fn block(&mut self, c: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[i * 8..i * 8 + 8]);
            *lane = (lane.wrapping_add(u64::from_le_bytes(w).wrapping_mul(P2)))
                .rotate_left(31)
                .wrapping_mul(P1);
        }
    }

    pub fn finish(mut self) -> u64 {
        let tail = std::mem::take(&mut self.tail);
        let mut h = self.len.wrapping_mul(P1);
        for lane in self.lanes {
            h = (h ^ lane.wrapping_mul(P2)).rotate_left(27).wrapping_mul(P1);
        }
        for &b in &tail {
            h = (h ^ b as u64).wrapping_mul(P1).rotate_left(11);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^ (h >> 29)
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.finish())
    }
}

/// The checksum of named tensors' bytes, in name order (names included).
pub fn payload_checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Hasher64::default();
    for (name, bytes) in sorted {
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.hex()
}

/// A tensor to write: name, dtype, shape, little-endian bytes.
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// A tensor from plain values (stored little-endian, as on every platform this runs on).
    pub fn new<T: bytemuck::Pod>(
        name: &str,
        dtype: Dtype,
        shape: Vec<usize>,
        values: &[T],
    ) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
            data: bytemuck::cast_slice(values).to_vec(),
        }
    }
}

impl safetensors::tensor::View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes a map atomically; fills in the checksum.
pub fn write_map(path: &Path, tensors: &[RawTensor], meta: &mut MapMeta) -> Result<(), MapError> {
    meta.payload_checksum =
        payload_checksum(tensors.iter().map(|t| (t.name.as_str(), t.data.as_slice())));
    let mut md = HashMap::new();
    md.insert(
        "dasgil.map".to_string(),
        serde_json::to_string(meta).unwrap_or_default(),
    );
    let views: Vec<(String, &RawTensor)> = tensors.iter().map(|t| (t.name.clone(), t)).collect();
    let bytes = safetensors::serialize(views, Some(md)).map_err(|e| MapError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    crate::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

/// A file's bytes in memory, 8-byte aligned (f64 and i64 tensors are read in place).
#[derive(Clone)]
struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// The whole file, once its safetensors header says how long it is and the file has exactly
    /// that length (a large file that is no map is refused before it is read).
    fn read(file: &mut std::fs::File, path: &Path) -> Result<Self, MapError> {
        use std::io::{Read, Seek};
        let fmt = |message: String| MapError::Format {
            path: path.to_path_buf(),
            message,
        };
        let io = |e| PathIoError::new("cannot read", path, e);
        let len = file.metadata().map_err(io)?.len();
        let mut head = [0u8; 8];
        file.read_exact(&mut head)
            .map_err(|_| fmt(format!("{len} bytes: too short for a map")))?;
        let n = u64::from_le_bytes(head);
        if n > 100 << 20 || 8 + n > len {
            // An image given for a map (the commonest mix-up) is named as one.
            if let Ok(f) = image::guess_format(&head) {
                return Err(fmt(format!(
                    "a {} image ({len} bytes), not a map",
                    format!("{f:?}").to_uppercase()
                )));
            }
            return Err(fmt(format!(
                "header length {n} does not fit the file's {len} bytes (is this a map?)"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(io)?;
        let value: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| fmt(format!("header is not JSON: {e}")))?;
        let data_end = value
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if 8 + n + data_end != len {
            return Err(fmt(format!(
                "the header describes {} bytes, the file has {len}",
                8 + n + data_end
            )));
        }
        file.rewind().map_err(io)?;
        let len = len as usize;
        let mut words = vec![0u64; len.div_ceil(8)];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        file.read_exact(&mut bytes[..len]).map_err(io)?;
        Ok(Self { words, len })
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// An opened (read into memory, verified) map. Read, not memory-mapped: a map file replaced or
/// truncated in place while the node runs (`cp new.map map`) would otherwise kill it with a bus
/// error; the node keeps the map it loaded until `~/reload_map`.
#[derive(Clone)]
pub struct MapFile {
    pub path: PathBuf,
    pub meta: MapMeta,
    bytes: AlignedBytes,
    /// name -> (dtype, shape, byte range in the file)
    index: BTreeMap<String, (Dtype, Vec<usize>, std::ops::Range<usize>)>,
    /// Every row's squared norm, summed on the first cosine search.
    squared_norms: std::sync::OnceLock<crate::retrieval::SquaredNorms>,
}

impl MapFile {
    /// Opens and checks a map: format, shapes agree with the names, checksum of every byte.
    pub fn open(path: &Path) -> Result<Self, MapError> {
        let fmt = |message: String| MapError::Format {
            path: path.to_path_buf(),
            message,
        };
        if path.is_dir() {
            return Err(fmt("is a folder, expected a map file (.safetensors)".into()));
        }
        let mut file =
            std::fs::File::open(path).map_err(|e| PathIoError::new("cannot open", path, e))?;
        let bytes = AlignedBytes::read(&mut file, path)?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt(format!("{e}")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt(format!("{e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("dasgil.map"))
            .ok_or_else(|| fmt("no `dasgil.map` metadata (is this a checkpoint?)".into()))?;
        let meta: MapMeta =
            serde_json::from_str(json).map_err(|e| fmt(format!("metadata `dasgil.map`: {e}")))?;
        if meta.format != MAP_FORMAT {
            return Err(fmt(format!(
                "metadata field `format`: expected {MAP_FORMAT}, found `{}`",
                meta.format
            )));
        }
        let base = bytes.as_ptr() as usize;
        let mut index = BTreeMap::new();
        for (name, view) in st.tensors() {
            let start = view.data().as_ptr() as usize - base;
            let range = start..start + view.data().len();
            index.insert(name, (view.dtype(), view.shape().to_vec(), range));
        }
        let found = payload_checksum(
            index
                .iter()
                .map(|(n, (_, _, r))| (n.as_str(), &bytes[r.clone()])),
        );
        if found != meta.payload_checksum {
            return Err(MapError::Checksum {
                path: path.to_path_buf(),
                expected: meta.payload_checksum.clone(),
                found,
            });
        }
        let map = Self {
            path: path.to_path_buf(),
            meta,
            bytes,
            index,
            squared_norms: std::sync::OnceLock::new(),
        };
        map.check_shapes()?;
        Ok(map)
    }

    fn check_shapes(&self) -> Result<(), MapError> {
        let n = self.meta.names.len();
        let fmt = |message: String| MapError::Format {
            path: self.path.clone(),
            message,
        };
        if self.meta.cameras.len() != n {
            return Err(fmt(format!(
                "{} names but {} cameras",
                n,
                self.meta.cameras.len()
            )));
        }
        let want = |name: &str, dtypes: &[Dtype], shape0: usize| -> Result<(), MapError> {
            match self.index.get(name) {
                Some((dt, shape, _)) if dtypes.contains(dt) && shape.first() == Some(&shape0) => {
                    Ok(())
                }
                Some((dt, shape, _)) => Err(fmt(format!(
                    "tensor `{name}`: expected {dtypes:?} with {shape0} rows, found {dt:?} {shape:?}"
                ))),
                None => Err(fmt(format!("tensor `{name}` is missing"))),
            }
        };
        for (name, (dt, _, r)) in &self.index {
            let align = match dt {
                Dtype::F64 | Dtype::I64 => 8,
                Dtype::F32 | Dtype::I32 => 4,
                Dtype::F16 | Dtype::BF16 => 2,
                _ => 1,
            };
            if (self.bytes.as_ptr() as usize + r.start) % align != 0 {
                return Err(fmt(format!(
                    "tensor `{name}` is not aligned to {align} bytes"
                )));
            }
        }
        want("descriptors", &[Dtype::F32, Dtype::F16], n)?;
        let shape = &self.index["descriptors"].1;
        if shape.len() != 2 || shape[1] == 0 {
            return Err(fmt(format!(
                "tensor `descriptors`: expected [{n}, D] with D of at least 1 (one row of D values per entry), found {shape:?}"
            )));
        }
        let views = self.meta.yaw_views_deg.len();
        if let Some(bad) = self
            .meta
            .yaw_views_deg
            .iter()
            .find(|y| !(y.abs() > 0.0 && y.abs() <= crate::map::views::MAX_YAW_DEG))
        {
            return Err(fmt(format!(
                "metadata `yaw_views_deg`: expected angles of more than 0 and at most {} degrees either way, found {bad}",
                crate::map::views::MAX_YAW_DEG
            )));
        }
        if views > 0 {
            let dt = self.index["descriptors"].0;
            want("view_descriptors", &[dt], n * views)?;
            let shape = &self.index["view_descriptors"].1;
            if shape.get(1).copied() != Some(self.dim()) || shape.len() != 2 {
                return Err(fmt(format!(
                    "tensor `view_descriptors`: expected [{}, {}] ({} views of {n} entries), found {shape:?}",
                    n * views,
                    self.dim(),
                    views
                )));
            }
        } else if self.index.contains_key("view_descriptors") {
            return Err(fmt(
                "tensor `view_descriptors` without metadata `yaw_views_deg`: which views are they?"
                    .into(),
            ));
        }
        want("poses", &[Dtype::F64], n)?;
        want("timestamps_us", &[Dtype::I64], n)?;
        if let Some(c) = &self.meta.compression {
            if c.kind != crate::retrieval::compress::KIND || c.dims == 0 || c.shortlist == 0 {
                return Err(fmt(format!(
                    "metadata `compression`: expected kind {} with dims and shortlist > 0, found {c:?}",
                    crate::retrieval::compress::KIND
                )));
            }
            want("codes", &[Dtype::I8], n)?;
            want("code_scales", &[Dtype::F32], n)?;
            want("projection", &[Dtype::F32], c.dims)?;
            let d = self.dim();
            for (name, shape) in [("codes", vec![n, c.dims]), ("projection", vec![c.dims, d])] {
                if self.index[name].1 != shape {
                    return Err(fmt(format!(
                        "tensor `{name}`: expected {shape:?}, found {:?}",
                        self.index[name].1
                    )));
                }
            }
        }
        if self.index["poses"].1 != [n, 7] {
            return Err(fmt(format!(
                "tensor `poses`: expected [{n}, 7], found {:?}",
                self.index["poses"].1
            )));
        }
        // Every prior is one of these poses (or made from them): a pose that is no number, or a
        // rotation of zero length, would reach the node's messages as NaN.
        let (_, _, bytes) = self
            .bytes("poses")
            .ok_or_else(|| fmt("tensor `poses` is missing".into()))?;
        let v: &[f64] = bytemuck::cast_slice(bytes);
        for (i, r) in v.chunks_exact(7).enumerate() {
            let q = (r[3] * r[3] + r[4] * r[4] + r[5] * r[5] + r[6] * r[6]).sqrt();
            if !r.iter().all(|x| x.is_finite()) || q < 1e-6 {
                return Err(fmt(format!(
                    "tensor `poses` row {i} ({}): expected a position and a rotation \
                     quaternion (tx ty tz qw qx qy qz, finite, the quaternion not zero), found \
                     {r:?}",
                    self.meta.names.get(i).map(String::as_str).unwrap_or("?")
                )));
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.meta.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.names.is_empty()
    }

    /// Descriptor length D.
    pub fn dim(&self) -> usize {
        self.index["descriptors"].1.get(1).copied().unwrap_or(0)
    }

    pub fn bytes(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        self.index
            .get(name)
            .map(|(dt, shape, r)| (*dt, shape.as_slice(), &self.bytes[r.clone()]))
    }

    /// Names of the tensors in the file.
    pub fn tensor_names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    /// The descriptor rows as stored.
    pub fn descriptors(&self) -> Descriptors<'_> {
        let (dt, _, bytes) = self.bytes("descriptors").expect("checked on open");
        match dt {
            Dtype::F16 => Descriptors::F16(bytemuck::cast_slice(bytes)),
            _ => Descriptors::F32(bytemuck::cast_slice(bytes)),
        }
    }

    /// The squared norm of every row and view row, summed once (the first cosine search).
    pub fn squared_norms(&self) -> &crate::retrieval::SquaredNorms {
        if let Some(n) = self.squared_norms.get() {
            return n;
        }
        // Summed in parallel outside the cell (get_or_init would hold it while rayon runs the
        // sum, and a search waiting on the cell inside a rayon task could then deadlock):
        // racing callers sum twice, one result is kept.
        let n =
            crate::retrieval::SquaredNorms::of(&crate::retrieval::EntryRows::of(self), self.dim());
        let _ = self.squared_norms.set(n);
        self.squared_norms.get().expect("set just above")
    }

    /// Descriptor centring's map side (`localize::centring`): every row (images and yaw
    /// views) becomes `r / |r| - mean`, in memory (the file is not changed), stored in the
    /// rows' own type. `mean` has the descriptor's length.
    pub fn centre_rows(&mut self, mean: &[f32]) {
        let dim = self.dim();
        assert_eq!(mean.len(), dim, "a mean of the descriptor's length");
        for name in ["descriptors", "view_descriptors"] {
            let Some((dt, _, range)) = self.index.get(name).cloned() else {
                continue;
            };
            let len = self.bytes.len;
            let all: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut self.bytes.words)[..len];
            let bytes = &mut all[range];
            let centre = |row: &[f32]| -> Vec<f32> {
                crate::localize::centring::unit(row)
                    .iter()
                    .zip(mean)
                    .map(|(x, m)| x - m)
                    .collect()
            };
            match dt {
                Dtype::F16 => {
                    let rows: &mut [half::f16] = bytemuck::cast_slice_mut(bytes);
                    for r in rows.chunks_mut(dim.max(1)) {
                        let f: Vec<f32> = r.iter().map(|x| x.to_f32()).collect();
                        for (x, c) in r.iter_mut().zip(centre(&f)) {
                            *x = half::f16::from_f32(c);
                        }
                    }
                }
                _ => {
                    let rows: &mut [f32] = bytemuck::cast_slice_mut(bytes);
                    for r in rows.chunks_mut(dim.max(1)) {
                        let c = centre(r);
                        r.copy_from_slice(&c);
                    }
                }
            }
        }
        self.squared_norms = std::sync::OnceLock::new();
    }

    /// Yaw views per entry (0: none).
    pub fn views(&self) -> usize {
        self.meta.yaw_views_deg.len()
    }

    /// The views' descriptor rows as stored (entry-major), when the map has views.
    pub fn view_descriptors(&self) -> Option<Descriptors<'_>> {
        let (dt, _, bytes) = self.bytes("view_descriptors")?;
        Some(match dt {
            Dtype::F16 => Descriptors::F16(bytemuck::cast_slice(bytes)),
            _ => Descriptors::F32(bytemuck::cast_slice(bytes)),
        })
    }

    /// world_from_cam of entry i.
    pub fn pose(&self, i: usize) -> crate::geom::Pose {
        let (_, _, bytes) = self.bytes("poses").expect("checked on open");
        let v: &[f64] = bytemuck::cast_slice(bytes);
        let r = &v[i * 7..i * 7 + 7];
        crate::geom::Pose::from_parts(
            nalgebra::Translation3::new(r[0], r[1], r[2]),
            crate::geom::quaternion_wxyz([r[3], r[4], r[5], r[6]]),
        )
    }

    pub fn timestamp_us(&self, i: usize) -> Option<i64> {
        let (_, _, bytes) = self.bytes("timestamps_us").expect("checked on open");
        let v: &[i64] = bytemuck::cast_slice(bytes);
        (v[i] >= 0).then_some(v[i])
    }

    /// The adapted BatchNorm statistics stored in the map (name -> values).
    pub fn adapted_stats(&self) -> BTreeMap<String, Vec<f32>> {
        self.index
            .iter()
            .filter_map(|(n, (dt, _, r))| {
                let key = n.strip_prefix("adapted.")?;
                (*dt == Dtype::F32).then(|| {
                    (
                        key.to_string(),
                        bytemuck::cast_slice::<u8, f32>(&self.bytes[r.clone()]).to_vec(),
                    )
                })
            })
            .collect()
    }
}

/// Descriptor rows, f32 or f16.
pub enum Descriptors<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-entry map of 4-value descriptors with `views` yaw views per entry written from
    /// `view_rows` (as `dtype`), or with the tensor and metadata given as they are.
    fn views_map(
        dir: &Path,
        name: &str,
        yaws: Vec<f64>,
        view_tensor: Option<(Dtype, Vec<usize>, Vec<f32>)>,
    ) -> Result<MapFile, MapError> {
        let n = 3;
        let desc: Vec<f32> = (0..n * 4).map(|i| i as f32).collect();
        let poses: Vec<f64> = (0..n)
            .flat_map(|i| [i as f64, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
            .collect();
        let mut tensors = vec![
            RawTensor::new("descriptors", Dtype::F32, vec![n, 4], &desc),
            RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
            RawTensor::new("timestamps_us", Dtype::I64, vec![n], &[-1i64; 3]),
        ];
        if let Some((dt, shape, v)) = view_tensor {
            tensors.push(match dt {
                Dtype::F16 => {
                    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
                    RawTensor::new("view_descriptors", dt, shape, &h)
                }
                _ => RawTensor::new("view_descriptors", dt, shape, &v),
            });
        }
        let mut meta = MapMeta {
            yaw_views_deg: yaws,
            ..MapMeta::by_hand(n, "test")
        };
        let path = dir.join(name);
        write_map(&path, &tensors, &mut meta)?;
        MapFile::open(&path)
    }

    /// Descriptors that are not one row of at least one value per entry are refused when the
    /// map is opened, naming the tensor, the shape expected and the one found (a search over
    /// rows of no values would otherwise divide by nothing).
    #[test]
    fn descriptors_of_no_values_or_not_rows_are_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3;
        let poses: Vec<f64> = (0..n)
            .flat_map(|i| [i as f64, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
            .collect();
        for (name, shape, values, says) in [
            ("none.map", vec![n, 0], vec![], "found [3, 0]"),
            ("flat.map", vec![n], vec![1.0f32; 3], "found [3]"),
            (
                "cube.map",
                vec![n, 2, 2],
                vec![1.0f32; 12],
                "found [3, 2, 2]",
            ),
        ] {
            let tensors = vec![
                RawTensor::new("descriptors", Dtype::F32, shape, &values),
                RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
                RawTensor::new("timestamps_us", Dtype::I64, vec![n], &[-1i64; 3]),
            ];
            let path = dir.path().join(name);
            let mut meta = MapMeta::by_hand(n, "test");
            write_map(&path, &tensors, &mut meta).unwrap();
            let e = MapFile::open(&path).err().expect(name).to_string();
            assert!(
                e.contains(name)
                    && e.contains("tensor `descriptors`: expected [3, D] with D of at least 1")
                    && e.contains(says),
                "{e}"
            );
        }
    }

    /// A pose that is no number, or whose rotation is of zero length, is refused when the map
    /// is opened (it would reach the node's messages as NaN), naming the row.
    #[test]
    fn poses_that_are_no_number_or_no_rotation_are_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3;
        let good: Vec<f64> = (0..n)
            .flat_map(|i| [i as f64, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
            .collect();
        for (name, row, value) in [
            ("nan.map", 1usize, f64::NAN),
            ("inf.map", 2, f64::INFINITY),
            ("zero-rotation.map", 1, 0.0),
            ("fine.map", 0, 2.0),
        ] {
            let mut poses = good.clone();
            if name == "zero-rotation.map" {
                poses[row * 7 + 3] = 0.0;
            } else if name == "fine.map" {
                // A quaternion that is not of unit length still names a rotation.
                poses[row * 7 + 3] = value;
            } else {
                poses[row * 7 + 1] = value;
            }
            let tensors = vec![
                RawTensor::new("descriptors", Dtype::F32, vec![n, 2], &[1.0f32; 6]),
                RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
                RawTensor::new("timestamps_us", Dtype::I64, vec![n], &[-1i64; 3]),
            ];
            let path = dir.path().join(name);
            let mut meta = MapMeta::by_hand(n, "test");
            write_map(&path, &tensors, &mut meta).unwrap();
            match MapFile::open(&path) {
                Ok(m) if name == "fine.map" => {
                    assert!(m.pose(0).rotation.angle() < 1e-12);
                }
                Ok(_) => panic!("{name}: opened"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        name != "fine.map"
                            && e.contains(name)
                            && e.contains(&format!("tensor `poses` row {row} ("))
                            && e.contains("the quaternion not zero"),
                        "{name}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_entry_is_as_near_as_its_nearest_view_and_a_malformed_view_tensor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Entry i's two views: its descriptor shifted by +-100 (i + 1).
        let views: Vec<f32> = (0..3)
            .flat_map(|i| {
                let s = 100.0 * (i + 1) as f32;
                (0..8).map(move |j| (i * 4 + j % 4) as f32 + if j < 4 { s } else { -s })
            })
            .collect();
        for dt in [Dtype::F32, Dtype::F16] {
            let m = views_map(
                dir.path(),
                &format!("{dt:?}.map"),
                vec![3.0, -3.0],
                Some((dt, vec![6, 4], views.clone())),
            );
            // F16 views beside F32 descriptors: refused (one dtype per map).
            if dt == Dtype::F16 {
                let e = m.err().expect("mixed dtypes").to_string();
                assert!(
                    e.contains("tensor `view_descriptors`: expected [F32]"),
                    "{e}"
                );
                continue;
            }
            let m = m.unwrap();
            assert_eq!(m.views(), 2);
            // A query equal to entry 2's second view: entry 2 at distance 0; every entry at
            // the smallest L1 over its own row and its two view rows.
            let q: Vec<f32> = views[5 * 4..6 * 4].to_vec();
            let l1 = |row: &[f32]| -> f32 { row.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum() };
            let want = |i: usize| -> f32 {
                let own: Vec<f32> = (0..4).map(|j| (i * 4 + j) as f32).collect();
                l1(&own)
                    .min(l1(&views[(2 * i) * 4..(2 * i + 1) * 4]))
                    .min(l1(&views[(2 * i + 1) * 4..(2 * i + 2) * 4]))
            };
            let hits = crate::retrieval::top_k(&m, &q, 3, crate::retrieval::Metric::L1, None);
            assert_eq!((hits[0].index, hits[0].distance), (2, 0.0), "{hits:?}");
            for h in &hits {
                assert_eq!(h.distance, want(h.index), "{hits:?}");
            }
            // Entry 1 is found through its view (384), not its own row (1184).
            assert_eq!((hits[1].index, hits[1].distance), (1, 384.0), "{hits:?}");
        }
        for (name, yaws, tensor, says) in [
            (
                "no-meta",
                vec![],
                Some((Dtype::F32, vec![6, 4], views.clone())),
                "without metadata `yaw_views_deg`",
            ),
            (
                "rows",
                vec![3.0, -3.0, 6.0, -6.0],
                Some((Dtype::F32, vec![6, 4], views.clone())),
                "expected [F32] with 12 rows, found F32 [6, 4]",
            ),
            (
                "dim",
                vec![3.0, -3.0],
                Some((Dtype::F32, vec![6, 2, 2], views.clone())),
                "expected [6, 4] (2 views of 3 entries), found [6, 2, 2]",
            ),
            (
                "missing",
                vec![3.0, -3.0],
                None,
                "tensor `view_descriptors` is missing",
            ),
            (
                "angle",
                vec![3.0, 0.0],
                Some((Dtype::F32, vec![6, 4], views.clone())),
                "at most 20 degrees either way, found 0",
            ),
            (
                "wide",
                vec![25.0, -25.0],
                Some((Dtype::F32, vec![6, 4], views.clone())),
                "found 25",
            ),
        ] {
            let e = views_map(dir.path(), name, yaws, tensor)
                .err()
                .unwrap_or_else(|| panic!("{name}: opened"))
                .to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
    }

    #[test]
    fn a_camera_in_another_cameras_frame_is_said_to_be_crossed() {
        let bag = BagSourceMeta {
            path: "drive".into(),
            storage: "mcap".into(),
            image_topics: vec!["/front/image".into(), "/rear/image".into()],
            camera_frames: vec!["front_optical".into(), "rear_optical|rear_optical_2".into()],
            world_frame: "map".into(),
            pose_topic: None,
            camera_ids: vec!["front".into(), "rear".into()],
        };
        assert_eq!(
            bag.frames_of("rear"),
            Some(vec!["rear_optical", "rear_optical_2"])
        );
        // Its own frame, a frame no camera of the map had, a camera the map lacks: nothing.
        assert!(bag.crossed("front", "front_optical").is_none());
        assert!(bag.crossed("rear", "rear_optical_2").is_none());
        assert!(bag.crossed("front", "left_optical").is_none());
        assert!(bag.crossed("left", "rear_optical").is_none());
        let w = bag.crossed("front", "rear_optical_2").unwrap();
        assert!(
            w.starts_with(
                "camera `front`'s frames are in `rear_optical_2`, the frame of the map's camera \
                 `rear` (the map's `front` is in `front_optical`)"
            ) && w.contains("(/front/image as front, /rear/image as rear)"),
            "{w}"
        );
        // A map from before camera ids were recorded cannot tell.
        let old = BagSourceMeta {
            camera_ids: vec![],
            ..bag
        };
        assert!(old.crossed("front", "rear_optical").is_none());
    }

    #[test]
    fn the_hash_depends_on_every_byte_and_on_how_they_are_split_not() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut a = Hasher64::default();
        a.update(&data);
        let mut b = Hasher64::default();
        b.update(&data[..13]);
        b.update(&data[13..700]);
        b.update(&data[700..]);
        let ha = a.finish();
        assert_eq!(ha, b.finish());
        let mut flipped = data.clone();
        flipped[500] ^= 1;
        let mut c = Hasher64::default();
        c.update(&flipped);
        assert_ne!(ha, c.finish());
    }
}
