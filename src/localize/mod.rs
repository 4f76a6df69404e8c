//! The one Localizer: a camera frame in; a pose prior (pose, covariance, confidence,
//! candidates) or the reason there is none out. `dasgil-tools localize`, `evaluate` and the
//! ROS 2 node all go through it, with the same defaults ([`Options::default`], which the node's
//! parameters and the CLI flags start from), so the figures `evaluate` reports are what the
//! node publishes.
//!
//! The steps, in order:
//! 1. decode: the frame as its source describes it (`data::raw_image`: a `sensor_msgs/Image`
//!    encoding, a `CompressedImage` format, or an image file) becomes RGB the way the map's own
//!    images did (`MapMeta::decoding`): a raw Bayer frame is demosaiced with its stated pattern,
//!    a single-channel frame is used only for a grey or a Bayer map; anything else is rejected;
//! 2. encode with the map's encoder (the map's checkpoint, layers, size and adapted statistics);
//!    centred ([`centring`]; `running`, or `auto`, the default, where the map allows it): the
//!    descriptor minus the mean of the camera's recent frames, searched among the map's rows
//!    minus the map's mean;
//! 3. retrieve the top-K map images (exact or compressed search, per camera, geo-gated);
//! 4. the prior from the top-K ([`prior`]; at a bend of the map its orientation turned towards
//!    the neighbouring image the frame matches best, [`prior::bend_share`], and its yaw bound
//!    widened to halfway to the neighbours, [`prior::between_rotation`]), withheld as ambiguous
//!    when its confidence is below `min_confidence`, moved to base_link when an extrinsic is
//!    given;
//! 5. with `filter: sequence`, the frames of every camera go through one Bayes filter over the
//!    map's places ([`sequence`]) first: the prior is made from the place the filter believes in.

pub mod centring;
pub mod gate;
pub mod odometry;
pub mod prior;
pub mod sequence;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::data::raw_image::{self, Pixels};
use crate::data::Decode;
use crate::error::PipelineError;
use crate::extract::MapEncoder;
use crate::geom::Pose;
use crate::map::file::MapFile;
use crate::retrieval::{search, Hit, MapIndex, Metric};
pub use prior::{pose_prior, to_base, PosePrior};

/// A frame as its source gave it.
pub enum Frame<'a> {
    /// A `sensor_msgs/Image`.
    Raw {
        width: u32,
        height: u32,
        encoding: &'a str,
        big_endian: bool,
        step: u32,
        data: &'a [u8],
    },
    /// A `sensor_msgs/CompressedImage`.
    Compressed { format: &'a str, data: &'a [u8] },
    /// An image file as the data set stores it (decoded by the map's recipe, as at build time).
    File(&'a Path),
}

/// The settings every path shares; `Default` is the node's defaults (config/localize.yaml)
/// except `filter`: the node's is `sequence`, evaluate's `none` (the paper's protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Distance; None: the map's own.
    pub metric: Option<Metric>,
    /// Map images the prior is computed from (and published on pose_candidates).
    pub top_k: usize,
    /// A match with confidence ([`prior::confidence`]: 1 - d_1 / d_alt) below this is withheld
    /// as ambiguous.
    pub min_confidence: f64,
    /// Single frames, or a filter over the sequence of frames.
    pub filter: Filter,
    /// With `filter: sequence`: a frame whose probability of being off the map
    /// ([`sequence::Step::off_map`]) is at least this is withheld (counted as ambiguous, and
    /// as off the map); 1: never withheld for it.
    pub off_map_threshold: f64,
    /// Descriptor centring ([`centring`]): none, the map and each camera's queries by their
    /// own means (running), or running where the map allows it (auto, the default).
    pub centring: centring::Centring,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            metric: None,
            top_k: 5,
            min_confidence: prior::DEFAULT_MIN_CONFIDENCE,
            filter: Filter::None,
            off_map_threshold: sequence::OFF_MAP_WITHHOLD,
            centring: centring::Centring::Auto,
        }
    }
}

/// How frames are combined (node parameter `filter`, `evaluate --filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Each frame on its own.
    #[default]
    None,
    /// A Bayes filter over the map's places across frames, cameras and time ([`sequence`]).
    Sequence,
}

impl Filter {
    pub fn name(self) -> &'static str {
        match self {
            Filter::None => "none",
            Filter::Sequence => "sequence",
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Filter::None),
            "sequence" => Ok(Filter::Sequence),
            _ => Err(format!("expected none or sequence, found `{s}`")),
        }
    }
}

/// Where to search for one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// The map camera the frame is from (None: all map images).
    pub camera: Option<&'a str>,
    /// Geo-gating: only map images inside this gate ([`gate`]).
    pub near: Option<gate::Gate>,
    /// base_link from camera: the prior is then base_link's.
    pub base_from_cam: Option<&'a Pose>,
    /// Which of the vehicle's cameras took the frame, searched in the map or not (the node:
    /// its image topic; `evaluate`: the query's camera): the sequence filter weighs each
    /// camera's frames by its trust in that camera. Empty: the one camera there is.
    pub source: &'a str,
}

/// A prior and what it came from.
#[derive(Debug, Clone)]
pub struct Answer {
    pub prior: PosePrior,
    /// The retrieved map rows, best first (at least `top_k` and prior::QUALITY_HITS when the
    /// map has them; more when the caller asked for more).
    pub hits: Vec<Hit>,
    /// The poses of the first `top_k` hits (base_link's when an extrinsic is given).
    pub candidates: Vec<Pose>,
    /// The frame's own single-frame confidence (1 - d_1 / d_alt, [`prior::confidence`]): the
    /// prior's `confidence` without a filter; with `filter: sequence`, where the prior's is
    /// the posterior mass, still how well this frame alone matched the map (what tells a
    /// camera that has stopped matching while another camera keeps the belief up).
    pub frame_confidence: f64,
    /// With `filter: sequence`: the belief about the published place, nearest first
    /// ([`sequence::Step::profile`]); empty without the filter.
    pub belief_profile: Vec<sequence::BeliefAt>,
    /// With `filter: sequence`: the probability that the vehicle is off the map
    /// ([`sequence::Step::off_map`]); a prior is withheld while it is at least
    /// [`Options::off_map_threshold`]. None without the filter.
    pub off_map: Option<f64>,
    /// With `filter: sequence`: [`sequence::Step::evidence`].
    pub evidence: Option<f64>,
    /// With `filter: sequence`: [`sequence::Step::mean_likelihood`].
    pub mean_likelihood: Option<f64>,
    /// With `filter: sequence`: [`sequence::Step::beyond_end`] (metres; 0 away from a map's
    /// end); None without the filter.
    pub beyond_end: Option<f64>,
    /// Withheld because the filter believes the vehicle is off the map (`off_map` at least
    /// `Options::off_map_threshold`).
    pub off_the_map: bool,
    /// With `filter: sequence`: the say the frame's camera had in the belief
    /// ([`sequence::Step::camera_weight`]); None without the filter.
    pub camera_weight: Option<f64>,
    /// On a map with yaw views: the angle (degrees, positive turned left) of the chosen map
    /// image's view that matched the frame better than the image itself, whose orientation the
    /// prior took ([`prior::viewed_from`]); None when the image itself matched best or the map
    /// has no views.
    pub view_yaw_deg: Option<f64>,
}

/// What the sequence filter adds to a frame's prior.
struct Filtered {
    /// The belief's reach about the published place ((R + beyond_end)^2 / 7.81 in the ground
    /// plane), added to the prior's position block before the move to base_link.
    spread: nalgebra::Matrix3<f64>,
    /// The posterior mass near the published place: the prior's confidence, which
    /// `min_confidence` compares and which weighs the room for a wrong match.
    mass: f64,
    /// The frame's own single-frame confidence (`Answer::frame_confidence`).
    frame_confidence: f64,
    /// `Answer::belief_profile`.
    profile: Vec<sequence::BeliefAt>,
    off_map: f64,
    evidence: Option<f64>,
    mean_likelihood: f64,
    beyond_end: f64,
    camera_weight: f64,
}

/// What one frame gave.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A prior to publish.
    Prior(Answer),
    /// A match below `min_confidence`: computed, not published.
    Ambiguous(Answer),
    /// The frame is not a camera image of the map's kind, or cannot be decoded.
    Rejected(String),
    /// No map image to match (the camera or the geo-gate left none).
    NoCandidates(String),
}

impl Outcome {
    /// The prior whether or not it would be published.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Outcome::Prior(a) | Outcome::Ambiguous(a) => Some(a),
            _ => None,
        }
    }

    /// What the node publishes.
    pub fn published(&self) -> Option<&Answer> {
        match self {
            Outcome::Prior(a) => Some(a),
            _ => None,
        }
    }
}

/// Whether a prior of `confidence` is withheld as ambiguous at `min_confidence`: below it; a
/// match exactly at the threshold is published.
pub fn withheld(confidence: f64, min_confidence: f64) -> bool {
    confidence < min_confidence
}

/// Whether a prior is withheld as off the map: the filter's probability of being off the map
/// (None without the filter) at least `threshold`, unless the threshold is 1 (never).
pub fn off_map_withheld(off_map: Option<f64>, threshold: f64) -> bool {
    threshold < 1.0 && off_map.is_some_and(|p| p >= threshold)
}

/// Counts of outcomes (the node keeps one per camera; `localize` and `evaluate` report theirs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub localized: u64,
    pub ambiguous: u64,
    pub rejected: u64,
    pub no_candidates: u64,
    /// Of the ambiguous, those withheld as off the map (filter sequence).
    pub off_the_map: u64,
}

impl Tally {
    pub fn record(&mut self, o: &Outcome) {
        match o {
            Outcome::Prior(_) => self.localized += 1,
            Outcome::Ambiguous(a) => {
                self.ambiguous += 1;
                self.off_the_map += u64::from(a.off_the_map);
            }
            Outcome::Rejected(_) => self.rejected += 1,
            Outcome::NoCandidates(_) => self.no_candidates += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.localized + self.ambiguous + self.rejected + self.no_candidates
    }
}

/// Pixels as the source described them -> RGB the way the map's images were made.
pub fn to_map_rgb(pixels: Pixels, map: Decode) -> Result<RgbImage, String> {
    let grey = |rgb: RgbImage| {
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(rgb).to_luma8()).to_rgb8()
    };
    Ok(match (pixels, map) {
        (Pixels::Mosaic(raw, pattern), Decode::Grey) => {
            grey(crate::data::robotcar::demosaic(&raw, pattern))
        }
        (Pixels::Mosaic(raw, pattern), _) => crate::data::robotcar::demosaic(&raw, pattern),
        (Pixels::Colour(rgb), Decode::Grey) => grey(rgb),
        (Pixels::Colour(rgb), _) => rgb,
        (Pixels::Mono(g), Decode::Grey) => image::DynamicImage::ImageLuma8(g).to_rgb8(),
        // The map's own raw images were single-channel mosaics of this pattern.
        (Pixels::Mono(g), Decode::Bayer(pattern)) => crate::data::robotcar::demosaic(&g, pattern),
        (Pixels::Mono(_), Decode::Rgb) => {
            return Err(
                "a single-channel frame for a map of colour images: the map cannot \
                 match it (publish a colour encoding such as rgb8 or bgr8, or bayer_* for a raw \
                 sensor; a map built from grey images takes mono8)"
                    .into(),
            )
        }
    })
}

/// Decodes a frame for a map whose images were decoded by `map`.
pub fn decode_frame(frame: &Frame, map: Decode) -> Result<RgbImage, String> {
    let pixels = match frame {
        Frame::Raw {
            width,
            height,
            encoding,
            big_endian,
            step,
            data,
        } => raw_image::decode(*width, *height, encoding, *big_endian, *step, data)
            .map_err(|e| e.to_string())?,
        Frame::Compressed { format, data } => {
            raw_image::decode_compressed(format, data).map_err(|e| e.to_string())?
        }
        Frame::File(path) => {
            // A raw mosaic file (single channel) for a Bayer map is decoded exactly as the
            // map's own files were; otherwise the file's channels say colour or mono.
            let img =
                crate::data::error::open_image(path, "an image file").map_err(|e| e.to_string())?;
            if img.color().has_color() {
                Pixels::Colour(img.to_rgb8())
            } else {
                Pixels::Mono(img.to_luma8())
            }
        }
    };
    to_map_rgb(pixels, map)
}

/// One vehicle's state across frames, made anew for each map (a reload starts it again): its
/// sequence filter and its cameras' centring windows.
#[derive(Default)]
pub struct Sequence {
    state: Option<(Arc<MapFile>, sequence::SequenceFilter)>,
    centring: Option<(Arc<MapFile>, centring::QueryCentring)>,
}

impl Sequence {
    /// The filter's relocalizations and resets since it started (on this map), and the
    /// probability now that the vehicle is off the map; None before its first frame.
    pub fn counts(&self) -> Option<(u64, u64, f64)> {
        self.state
            .as_ref()
            .map(|(_, f)| (f.relocalizations, f.resets, f.off_map()))
    }

    /// The stamp (seconds) of the last frame the filter moved to, on `map`: where the motion to
    /// the next frame starts (None before the first frame, or after a map change).
    pub fn last_time(&self, map: &Arc<MapFile>) -> Option<f64> {
        self.state
            .as_ref()
            .filter(|(m, _)| Arc::ptr_eq(m, map))
            .and_then(|(_, f)| f.last_time())
    }
}

pub struct Localizer {
    pub encoder: MapEncoder,
    pub map: Arc<MapFile>,
    pub index: MapIndex,
    pub metric: Metric,
    pub options: Options,
    /// The map's places, the sequence filter's states.
    pub places: sequence::Places,
    /// What was warned about when it was made (a metric the covariance was not fitted for, a
    /// cosine map that `auto` could not centre), for reports that outlive the terminal
    /// (`evaluate`'s report.json and report.md).
    pub warnings: Vec<String>,
    /// With `centring: running` (or `auto` where the map allows it): the map's mean (already
    /// taken from its rows). None: searched as encoded.
    pub centre: Option<centring::MapCentre>,
    /// Different for every Localizer made in this process: the node tells a reloaded map from
    /// the one before by it (an address could be reused).
    pub generation: u64,
}

/// The checkpoint to encode with: the given one, else the map's own when it exists, else the
/// shipped model.
pub fn checkpoint_for(map: &MapFile, given: Option<&Path>) -> Result<PathBuf, PipelineError> {
    if let Some(g) = given {
        return Ok(g.into());
    }
    match map.meta.encoder.checkpoint.as_deref().map(PathBuf::from) {
        Some(p) if p.is_file() => Ok(p),
        _ => crate::extract::choice::default_checkpoint(),
    }
}

/// What a checkpoint's recorded metric is ("[the checkpoint] records ..."), for the warnings about searching or building
/// with another (`metric_warning`, `build-map --metric`).
pub fn recorded_metric_reason(recorded: Metric) -> String {
    format!(
        "records {} (the metric chosen for it on validation, for which the shipped pose prior's \
         and sequence filter's constants were fitted, docs/pose-prior.md)",
        recorded.name()
    )
}

/// What a search with another metric than the one the checkpoint records means: a map built
/// before the checkpoint recorded it (the shipped model's, cosine since 2026-12-04, searched
/// with L1 before) or with `build-map --metric`, or (`asked`) a metric asked for at search
/// time (`--metric`, the node's `metric` parameter).
pub fn metric_warning(map: &MapFile, searched: Metric, recorded: Metric, asked: bool) -> String {
    // A map's descriptors do not depend on the metric: asking for the recorded one at search
    // time is as good as rebuilding the map.
    let ask = format!(
        "give --metric {} (the node: its `metric` parameter)",
        recorded.name()
    );
    let (how, fix) = if asked && map.meta.metric == recorded.name() {
        (
            "as asked: --metric, or the node's `metric` parameter".to_string(),
            format!(
                "leave the metric unset (the map's own, {}) to search",
                map.meta.metric
            ),
        )
    } else if asked {
        (
            "as asked: --metric, or the node's `metric` parameter".to_string(),
            format!("{ask} to search"),
        )
    } else {
        (
            "the map's own".to_string(),
            format!(
                "{ask}, or rebuild the map (build-map without --metric; the descriptors are \
                 the same either way), to search"
            ),
        )
    };
    format!(
        "map {} is searched with the {} metric ({how}), and its checkpoint {}: its priors' covariance is \
         not calibrated for this metric (with l1, single-frame priors are many times wider than \
         their errors; another metric may make them too narrow); {fix} with {}",
        map.path.display(),
        searched.name(),
        recorded_metric_reason(recorded),
        recorded.name()
    )
}

impl Localizer {
    /// A Localizer over an opened map with an encoder made for it (the map's adapted statistics
    /// are applied here).
    pub fn new(
        mut encoder: MapEncoder,
        map: Arc<MapFile>,
        options: Options,
    ) -> Result<Self, PipelineError> {
        encoder.use_map(&map)?;
        let metric = match options.metric {
            Some(m) => m,
            None => map
                .meta
                .metric
                .parse()
                .map_err(|e: String| PipelineError::MapMetric {
                    path: map.path.clone(),
                    message: e,
                })?,
        };
        if !(1..=1000).contains(&options.top_k) {
            return Err(PipelineError::TopK(options.top_k));
        }
        let mut warnings = Vec::new();
        if let Some(recorded) = encoder.recorded_metric().filter(|&m| m != metric) {
            let asked = options.metric.is_some();
            let warning = metric_warning(&map, metric, recorded, asked);
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        if let Some(trained) = encoder
            .trained_photometric()
            .filter(|&t| t != encoder.photometric())
        {
            let warning = format!(
                "map {} was built with --photometric {}, and its checkpoint was trained on images \
                 normalised with {trained} (`train --photometric`): queries follow the map, so the \
                 network sees images unlike its training ones; rebuild the map without \
                 --photometric to use {trained}",
                map.path.display(),
                encoder.photometric()
            );
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        let index = MapIndex::new(&map);
        let mut map = map;
        // `auto`: running where the map allows it, else none (said why).
        let why_not = if metric != Metric::Cosine {
            Some(format!(
                "it is searched with the {} metric, and centred descriptors are compared by \
                 their directions: search it with --metric cosine (the node: `metric: cosine`)",
                metric.name()
            ))
        } else if map.meta.compression.is_some() {
            Some(
                "it is compressed (build-map --compress), and its codes are of the rows before \
                 centring: use a map built without --compress"
                    .into(),
            )
        } else {
            None
        };
        let centre = match (options.centring, why_not) {
            (centring::Centring::None, _) => None,
            (centring::Centring::Running, Some(why)) => {
                return Err(PipelineError::Centring {
                    path: map.path.clone(),
                    why,
                });
            }
            (centring::Centring::Auto, Some(why)) => {
                tracing::info!(
                    "centring: auto: map {} is searched as encoded (not centred): {why}",
                    map.path.display()
                );
                // A cosine map that cannot be centred (compressed): evaluate's report says why
                // too (an l1 map's reason is its metric, which the report states).
                if metric == Metric::Cosine {
                    warnings.push(format!(
                        "descriptors not centred (centring auto), the map cannot be: {why}"
                    ));
                }
                None
            }
            (centring::Centring::Running | centring::Centring::Auto, None) => {
                let centre = centring::MapCentre::of(&map, &index.by_camera);
                if let Some(c) = &centre {
                    // Every caller hands over a map it has just opened (Localizer::load, evaluate,
                    // the node's reload): centred in place. A map still held elsewhere is centred
                    // in a copy (said: a large map then takes twice its memory for a moment).
                    if Arc::get_mut(&mut map).is_none() {
                        tracing::warn!(
                            "map {}: centring a copy (the opened map is shared)",
                            map.path.display()
                        );
                    }
                    Arc::make_mut(&mut map).centre_rows(&c.mean);
                    tracing::info!(
                        "centring: {}: map {} centred by the mean of its {} images; each \
                         camera's frames by the mean of its last {} (docs/pose-prior.md, \
                         \"Descriptor centring\")",
                        options.centring.name(),
                        map.path.display(),
                        map.len(),
                        centring::WINDOW
                    );
                }
                centre
            }
        };
        // A cosine search reads the rows' squared norms: summed now, not on the first frame.
        if metric == Metric::Cosine && map.meta.compression.is_none() {
            map.squared_norms();
        }
        let places = sequence::Places::new(&map);
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            encoder,
            map,
            index,
            metric,
            options,
            places,
            warnings,
            centre,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Opens `map_path` and an encoder that encodes exactly as the map was built (the given
    /// checkpoint, else the map's own, else the shipped model). Returns the checkpoint used.
    pub fn load(
        map_path: &Path,
        checkpoint: Option<&Path>,
        device: tch::Device,
        options: Options,
    ) -> Result<(Self, PathBuf), PipelineError> {
        let map = Arc::new(MapFile::open(map_path)?);
        let checkpoint = checkpoint_for(&map, checkpoint)?;
        let layers = map.meta.encoder.descriptor_spec();
        let encoder = if map.meta.encoder.kind == crate::map::file::EncoderKind::RawPixels {
            MapEncoder::raw_pixels()
        } else {
            MapEncoder::from_checkpoint(&checkpoint, device, Some(layers))?
        };
        Ok((Self::new(encoder, map, options)?, checkpoint))
    }

    /// The map's cameras, sorted, once each.
    pub fn cameras(&self) -> Vec<String> {
        self.index.by_camera.keys().cloned().collect()
    }

    /// Refuses camera ids the map does not have.
    pub fn check_cameras(&self, ids: &[String]) -> Result<(), String> {
        for cam in ids {
            if !self.index.by_camera.contains_key(cam) {
                return Err(format!(
                    "`{cam}` is not a camera of the map {} (it has: {})",
                    self.map.path.display(),
                    self.cameras().join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Encodes one blank frame, so the first real frame does not pay for libtorch's first-call
    /// set-up (allocations, kernel selection: hundreds of milliseconds on a CPU).
    pub fn warm_up(&self) {
        let warmed = self
            .encoder
            .prepare(&self.encoder.blank_input())
            .and_then(|p| self.encoder.encode(&[p]));
        if let Err(e) = warmed {
            // Not fatal (a real frame will say what is wrong), but not silent either.
            tracing::warn!("warming up the encoder on a blank frame failed: {e}");
        }
    }

    /// Decodes and encodes one frame: its descriptor, or why the frame is rejected.
    pub fn describe(&self, frame: &Frame) -> Result<Vec<f32>, String> {
        let img = decode_frame(frame, self.map.meta.image_decoding())?;
        let prepared = self.encoder.prepare(&img).map_err(|e| e.to_string())?;
        self.encoder.encode(&[prepared]).map_err(|e| e.to_string())
    }

    /// Frame -> outcome, through `sequence` when `options.filter` is `sequence` (`time`: the
    /// frame's stamp in seconds; `travel`: the odometry's motion since
    /// [`Sequence::last_time`], when known; the node's path).
    pub fn localize_at(
        &self,
        sequence: &mut Sequence,
        frame: &Frame,
        query: &Query,
        time: f64,
        travel: Option<sequence::Travel>,
    ) -> Outcome {
        self.localize_at_checked(sequence, frame, query, time, travel, false)
            .0
    }

    /// [`Self::localize_at`], and with `check_camera` the camera of the map image nearest the
    /// frame's descriptor among every camera's images ([`Self::nearest_camera`]; None for a
    /// map of one camera or a frame that could not be described): the node's check that its
    /// `camera_ids` name each topic's camera.
    pub fn localize_at_checked(
        &self,
        sequence: &mut Sequence,
        frame: &Frame,
        query: &Query,
        time: f64,
        travel: Option<sequence::Travel>,
        check_camera: bool,
    ) -> (Outcome, Option<String>) {
        if self.options.filter == Filter::None && self.centre.is_none() && !check_camera {
            return (self.localize(frame, query), None);
        }
        let desc = match self.describe(frame) {
            Ok(d) => d,
            Err(e) => return (Outcome::Rejected(e), None),
        };
        // (Without centring this is the descriptor `localize` searches with.)
        let desc = self.centre_frame(sequence, query.source, time, desc);
        let nearest = check_camera.then(|| self.nearest_camera(&desc)).flatten();
        if self.options.filter == Filter::None {
            return (
                self.localize_descriptor(&desc, query, self.options.top_k),
                nearest,
            );
        }
        (
            self.localize_at_in_sequence(sequence, &desc, query, time, travel),
            nearest,
        )
    }

    /// The camera of the map image whose descriptor is nearest `desc` among all cameras' images
    /// (no gate); None when the map has one camera.
    pub fn nearest_camera(&self, desc: &[f32]) -> Option<String> {
        if self.index.by_camera.len() < 2 {
            return None;
        }
        let hit = search(&self.map, desc, 1, self.metric, None)
            .into_iter()
            .next()?;
        self.map.meta.cameras.get(hit.index).cloned()
    }

    /// The filter's step for a described frame (the map's filter made anew for a new map).
    fn localize_at_in_sequence(
        &self,
        sequence: &mut Sequence,
        desc: &[f32],
        query: &Query,
        time: f64,
        travel: Option<sequence::Travel>,
    ) -> Outcome {
        let fresh = sequence
            .state
            .as_ref()
            .is_none_or(|(map, _)| !Arc::ptr_eq(map, &self.map));
        if fresh {
            sequence.state = Some((
                self.map.clone(),
                sequence::SequenceFilter::new(&self.places),
            ));
        }
        let (_, filter) = sequence.state.as_mut().expect("just set");
        let travel = if fresh { None } else { travel };
        self.localize_in_sequence(filter, desc, query, time, travel, self.options.top_k)
    }

    /// What this Localizer does: `running` when it centres (asked, or `auto` where the map
    /// allows it), else `none`.
    pub fn centring_used(&self) -> centring::Centring {
        if self.centre.is_some() {
            centring::Centring::Running
        } else {
            centring::Centring::None
        }
    }

    /// A frame's descriptor centred by its camera's (`source`'s) window in `sequence` (the
    /// node's path; a new map starts every window again); unchanged without centring.
    pub fn centre_frame(
        &self,
        sequence: &mut Sequence,
        source: &str,
        time: f64,
        desc: Vec<f32>,
    ) -> Vec<f32> {
        let Some(centre) = &self.centre else {
            return desc;
        };
        let fresh = sequence
            .centring
            .as_ref()
            .is_none_or(|(map, _)| !Arc::ptr_eq(map, &self.map));
        if fresh {
            sequence.centring = Some((self.map.clone(), Default::default()));
        }
        let (_, windows) = sequence.centring.as_mut().expect("just set");
        windows.centre(centre, source, time, &desc)
    }

    /// Descriptors of frames (row-major, one row per frame) centred as the node centres them
    /// ([`centring`]), each with its camera (`sources`) and stamp (`times`, seconds), taken in
    /// time order (ties in list order); unchanged without centring.
    pub fn centre_descriptors(&self, desc: &mut [f32], sources: &[&str], times: &[f64]) {
        let Some(centre) = &self.centre else {
            return;
        };
        let dim = self.encoder.dim();
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by(|&a, &b| times[a].total_cmp(&times[b]));
        let mut windows = centring::QueryCentring::default();
        for i in order {
            let row = &mut desc[i * dim..(i + 1) * dim];
            let c = windows.centre(centre, sources[i], times[i], row);
            row.copy_from_slice(&c);
        }
    }

    /// Frame -> outcome (on its own: with centring, as a camera's first frame).
    pub fn localize(&self, frame: &Frame, query: &Query) -> Outcome {
        match self.describe(frame) {
            Ok(desc) => {
                let desc = match &self.centre {
                    Some(c) => {
                        centring::QueryCentring::default().centre(c, query.source, 0.0, &desc)
                    }
                    None => desc,
                };
                self.localize_descriptor(&desc, query, self.options.top_k)
            }
            Err(e) => Outcome::Rejected(e),
        }
    }

    /// A descriptor (made by this Localizer's encoder) -> outcome; retrieves at least `want`
    /// hits (the prior uses the first `top_k`).
    pub fn localize_descriptor(&self, desc: &[f32], query: &Query, want: usize) -> Outcome {
        let cands = self.index.candidates(query.camera, query.near.as_ref());
        if cands.as_ref().is_some_and(|c| c.is_empty()) {
            let of_camera = query
                .camera
                .map(|c| format!(" of camera {c}"))
                .unwrap_or_default();
            return Outcome::NoCandidates(match &query.near {
                Some(g) => format!(
                    "no map image{of_camera} {} of the gating position ({:.1}, {:.1}, {:.1})",
                    g.describe(),
                    g.centre[0],
                    g.centre[1],
                    g.centre[2]
                ),
                None => format!("the map has no image{of_camera}"),
            });
        }
        let k = self.options.top_k;
        let want = want.max(k).max(prior::QUALITY_HITS);
        let hits = search(&self.map, desc, want, self.metric, cands.as_deref());
        self.answer(hits, desc, query, None)
    }

    /// One frame of a sequence (`filter: sequence`): the frame's own search, then the filter's
    /// step at `time` (seconds; `travel`: the odometry's motion since the previous frame, when
    /// known). The prior is made from the row the filter chose, first, then the frame's
    /// other hits, and its position block gains the belief's reach. A frame that gives no
    /// answer (rejected, no candidates) leaves the filter as it was.
    pub fn localize_in_sequence(
        &self,
        filter: &mut sequence::SequenceFilter,
        desc: &[f32],
        query: &Query,
        time: f64,
        travel: Option<sequence::Travel>,
        want: usize,
    ) -> Outcome {
        let single = self.localize_descriptor(desc, query, want.max(sequence::HITS));
        let Some(answer) = single.answer() else {
            return single;
        };
        filter.predict(&self.places, time, travel);
        let of_camera = query.camera.and_then(|c| self.index.by_camera.get(c));
        let may_match = |r: usize| {
            of_camera.is_none_or(|rows| rows.binary_search(&r).is_ok())
                && query.near.is_none_or(|g| {
                    let t = self.map.pose(r).translation.vector;
                    g.contains([t.x, t.y, t.z])
                })
        };
        // The filter sees HITS hits whatever the caller retrieves (the node's top_k, evaluate's
        // recall@20), so the node and evaluate compute the same thing.
        let observed = &answer.hits[..answer.hits.len().min(sequence::HITS)];
        let Some(step) = filter.observe_from(
            &self.places,
            observed,
            answer.frame_confidence,
            query.source,
            may_match,
        ) else {
            return single;
        };
        let mut hits = vec![Hit {
            index: step.row,
            distance: step.distance,
        }];
        hits.extend(answer.hits.iter().filter(|h| h.index != step.row).copied());
        let filtered = Filtered {
            spread: step.spread,
            mass: step.mass,
            frame_confidence: answer.frame_confidence,
            profile: step.profile,
            off_map: step.off_map,
            evidence: step.evidence,
            mean_likelihood: step.mean_likelihood,
            beyond_end: step.beyond_end,
            camera_weight: step.camera_weight,
        };
        self.answer(hits, desc, query, Some(filtered))
    }

    /// The outcome from ranked hits (the first is the prior's pose), with what the sequence
    /// filter adds when it chose them.
    fn answer(
        &self,
        hits: Vec<Hit>,
        desc: &[f32],
        query: &Query,
        filtered: Option<Filtered>,
    ) -> Outcome {
        let k = self.options.top_k;
        let pick = filtered.as_ref().map(|f| prior::FilterPick {
            mass: f.mass,
            frame_confidence: f.frame_confidence,
        });
        let Some(mut prior) = pose_prior(&self.map, &hits, k, pick) else {
            return Outcome::NoCandidates("the map has no entries".into());
        };
        let frame_confidence = filtered
            .as_ref()
            .map_or(prior.confidence, |f| f.frame_confidence);
        let mut belief_profile = Vec::new();
        let camera_weight = filtered.as_ref().map(|f| f.camera_weight);
        let (off_map, evidence, mean_likelihood, beyond_end) =
            filtered.as_ref().map_or((None, None, None, None), |f| {
                (
                    Some(f.off_map),
                    f.evidence,
                    Some(f.mean_likelihood),
                    Some(f.beyond_end),
                )
            });
        if let Some(Filtered {
            spread: s, profile, ..
        }) = filtered
        {
            // The belief's reach on the floor (prior::filter_floor, in the prior).
            prior::add_to_position_block(&mut prior.covariance, &s);
            belief_profile = profile;
        } else {
            // A map sparser than the fitted floor knows: the floor grows with its spacing.
            // On the ground plane: a query lies between map images along the road, not above
            // them.
            let sparse = prior::sparse_map_floor(self.places.spacing);
            if sparse > 0.0 {
                let up = self.places.up;
                prior::add_to_position_block(
                    &mut prior.covariance,
                    &((nalgebra::Matrix3::identity() - up * up.transpose()) * sparse),
                );
            }
        }
        // At a bend the prior turns towards the neighbouring image the frame matches best
        // (prior::bend_share), and the truth's orientation lies between the chosen image's and
        // its neighbours' (prior::between_rotation): the image's own heading is tens of degrees
        // off there.
        let chosen = hits[0];
        let neighbours = prior::neighbour_rows(
            &self.index,
            |r| self.map.pose(r),
            self.map.meta.cameras.get(chosen.index).map(String::as_str),
            chosen.index,
            self.map.len(),
            self.places.spacing,
        );
        // The chosen image's pose: the prior's before it turns (pose_prior gives hits[0]'s).
        let image = prior.pose;
        let best_neighbour = hits
            .iter()
            .filter(|h| h.distance.is_finite() && neighbours.contains(&h.index))
            .min_by(|a, b| a.distance.total_cmp(&b.distance));
        let turned = best_neighbour.map_or(nalgebra::Vector3::zeros(), |n| {
            let share = prior::bend_share(chosen.distance as f64, n.distance as f64);
            prior::world_turn(&image, &self.map.pose(n.index)) * share
        });
        // A map with yaw views: when one of the chosen image's views matches the frame better
        // than the image itself, the frame's camera is turned from the image's by about that
        // view's angle, and the prior's orientation is the view's (its position the image's:
        // a view is the same camera turned). Not at a bend (the bend's turn at least half the
        // map's smallest view angle: prior::view_applies), where a view turned towards the
        // neighbour and the bend's turn would count the same turn twice and the bend's bound
        // (between_rotation) is centred on the bend's turn alone.
        // (The cheap test first: the views' distances are computed only where they count.)
        let view_yaw_deg = prior::view_applies(&turned, &self.map.meta.yaw_views_deg)
            .then(|| crate::retrieval::nearest_view(&self.map, self.metric, desc, chosen.index))
            .flatten()
            .and_then(|k| self.map.meta.yaw_views_deg.get(k).copied());
        let viewed = view_yaw_deg.map_or(image, |y| prior::viewed_from(&image, y));
        // The view's turn (in the camera's frame) and a small bend's (in the world's) compose.
        prior.pose = if turned != nalgebra::Vector3::zeros() {
            prior::turned_by(&viewed, &turned)
        } else {
            viewed
        };
        let floor = prior::between_rotation(
            &image,
            neighbours.iter().map(|&r| self.map.pose(r)),
            &turned,
        );
        // The rotation floor's growth for a frame unsure of itself (single frames: its own
        // confidence; the filter: the frame's, not the posterior mass).
        let unsure = nalgebra::Matrix3::identity() * prior::rotation_unsure_floor(frame_confidence);
        prior::add_to_rotation_block(&mut prior.covariance, &(floor + unsure));
        let mut candidates: Vec<Pose> = hits
            .iter()
            .take(k)
            .map(|h| self.map.pose(h.index))
            .collect();
        if let Some(bc) = query.base_from_cam {
            prior = to_base(&prior, bc);
            for c in &mut candidates {
                *c *= bc.inverse();
            }
        }
        prior::tidy_covariance(&mut prior.covariance);
        let answer = Answer {
            frame_confidence,
            prior,
            hits,
            candidates,
            belief_profile,
            off_map,
            evidence,
            mean_likelihood,
            beyond_end,
            off_the_map: off_map_withheld(off_map, self.options.off_map_threshold),
            camera_weight,
            view_yaw_deg,
        };
        if answer.off_the_map || withheld(answer.prior.confidence, self.options.min_confidence) {
            Outcome::Ambiguous(answer)
        } else {
            Outcome::Prior(answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::robotcar::BayerPattern;
    use image::{GrayImage, Rgb};

    #[test]
    fn a_match_exactly_at_min_confidence_is_published() {
        assert!(!withheld(0.5, 0.5));
        assert!(withheld(0.5 - 1e-12, 0.5));
        assert!(
            !withheld(0.0, 0.0),
            "min_confidence 0 publishes every match"
        );
        assert!(!withheld(1.0, 1.0));
    }

    #[test]
    fn pixels_become_what_the_map_was_built_from() {
        let rgb = RgbImage::from_fn(4, 4, |x, y| Rgb([(x * 60) as u8, (y * 60) as u8, 200]));
        let grey_of = |i: &RgbImage| {
            image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(i.clone()).to_luma8())
                .to_rgb8()
        };
        // Colour: as is for colour and Bayer maps, grey for a grey map.
        assert_eq!(
            to_map_rgb(Pixels::Colour(rgb.clone()), Decode::Rgb).unwrap(),
            rgb
        );
        let bayer = Decode::Bayer(BayerPattern::Gbrg);
        assert_eq!(to_map_rgb(Pixels::Colour(rgb.clone()), bayer).unwrap(), rgb);
        assert_eq!(
            to_map_rgb(Pixels::Colour(rgb.clone()), Decode::Grey).unwrap(),
            grey_of(&rgb)
        );
        // Mono: replicated for a grey map, demosaiced with the map's pattern for a Bayer map,
        // refused for a colour map.
        let mono = GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 10 + y * 50) as u8]));
        let g = to_map_rgb(Pixels::Mono(mono.clone()), Decode::Grey).unwrap();
        assert!(g
            .enumerate_pixels()
            .all(|(x, y, p)| p.0 == [mono.get_pixel(x, y).0[0]; 3]));
        assert_eq!(
            to_map_rgb(Pixels::Mono(mono.clone()), bayer).unwrap(),
            crate::data::robotcar::demosaic(&mono, BayerPattern::Gbrg)
        );
        let e = to_map_rgb(Pixels::Mono(mono.clone()), Decode::Rgb).unwrap_err();
        assert!(
            e.contains("single-channel frame for a map of colour images"),
            "{e}"
        );
        // A stated mosaic: its own pattern, whatever the map's; grey for a grey map.
        let rggb = crate::data::robotcar::demosaic(&mono, BayerPattern::Rggb);
        assert_eq!(
            to_map_rgb(Pixels::Mosaic(mono.clone(), BayerPattern::Rggb), bayer).unwrap(),
            rggb
        );
        assert_eq!(
            to_map_rgb(
                Pixels::Mosaic(mono.clone(), BayerPattern::Rggb),
                Decode::Rgb
            )
            .unwrap(),
            rggb
        );
        assert_eq!(
            to_map_rgb(Pixels::Mosaic(mono, BayerPattern::Rggb), Decode::Grey).unwrap(),
            grey_of(&rggb)
        );
    }
}
