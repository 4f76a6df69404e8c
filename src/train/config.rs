//! The training configuration (`config/train.yaml`): the paper's hyper-parameters, every field
//! required, unknown fields rejected, each value checked before anything is allocated.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::preprocess::Photometric;
use crate::data::vkitti2::Layout;
use crate::model::config::ModelConfig;
use crate::model::losses::TripletLayer;
use crate::model::DiscriminatorKind;

/// Largest batch accepted (a 1024x4096 batch of 64 needs far more memory than any machine
/// this runs on has; the limit turns an abort into a message). The largest input side is the
/// network's, [`crate::model::config::MAX_INPUT_SIDE`].
pub const MAX_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VkittiLayout {
    Official,
    Dasgil,
}

impl From<VkittiLayout> for Layout {
    fn from(l: VkittiLayout) -> Self {
        match l {
            VkittiLayout::Official => Layout::Official,
            VkittiLayout::Dasgil => Layout::Dasgil,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub vkitti: Vec<PathBuf>,
    pub vkitti_layout: VkittiLayout,
    pub kitti: Option<PathBuf>,
    pub discriminator: DiscriminatorKind,
    pub adversarial: bool,
    pub input_height: i64,
    pub input_width: i64,
    pub batch: usize,
    pub epochs: u64,
    pub steps_per_epoch: Option<u64>,
    pub max_steps: Option<u64>,
    pub lr_generator: f64,
    pub betas_generator: [f64; 2],
    pub lr_discriminator: f64,
    pub betas_discriminator: [f64; 2],
    pub lr_step_epochs: u64,
    pub lr_gamma: f64,
    pub lambda_depth: f64,
    pub lambda_seg: f64,
    pub lambda_adversarial: f64,
    pub triplet: Vec<TripletLayer>,
    pub positive_window: usize,
    pub seed: u64,
    pub device: String,
    pub checkpoint_every: u64,
    pub loader_threads: usize,
    pub prefetch: usize,
    /// libtorch intra-op threads on the CPU. 0 (the default): one per core, resolved when the run
    /// starts and recorded in config.yaml, so a resume uses the same count (the order of float
    /// sums, and so the losses' last digits, depend on it). Older runs without the field: 0.
    #[serde(default)]
    pub threads: usize,
    /// Photometric and small geometric augmentation of every labelled image in the loader
    /// (`train::augment`); false reproduces the paper. Older runs without the field: false.
    #[serde(default)]
    pub augment: bool,
    /// With `augment`, also remap each augmented image's palette (channel swap and mix, tone
    /// curves; `train::augment`). Not in the paper. Older runs without the field: false.
    #[serde(default)]
    pub augment_palette: bool,
    /// With `augment`, turn each augmented image's camera (p 0.5) by a yaw drawn within +- this
    /// many degrees about its vertical axis, with the frame's intrinsics (`train::augment`;
    /// 0: never). Not in the paper. Older runs without the field: 0 (left out of config.yaml
    /// then).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub augment_yaw_deg: f64,
    /// Per-image photometric normalisation of every training image (labelled and real-domain)
    /// after augmentation, as `build-map --photometric` applies it at inference; recorded in
    /// the generator checkpoints (`dasgil.photometric`), so maps built with them follow it.
    /// Not in the paper. Older runs without the field: none (left out of config.yaml then).
    #[serde(default, skip_serializing_if = "Photometric::is_none")]
    pub photometric: Photometric,
    /// A new run starts from these generator weights (`train --init-generator`: a run's
    /// generator.safetensors, a shipped model, an imported authors' checkpoint) instead of the
    /// reference initialisation; the optimizer and the discriminator start fresh. Not in the
    /// paper. Older runs without the field: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_generator: Option<PathBuf>,
    /// The share of triplets (0 to 1) whose negative is drawn from the anchor's scene, any
    /// variation, more than `positive_window` frames away: another place of the same street
    /// (`train::sampler`). Not in the paper (0: its random negatives). Older runs without the
    /// field: 0 (left out of config.yaml then).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hard_negatives: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Fields a resume may change: how long, where and how often, none of what is computed.
pub const RESUMABLE_FIELDS: [&str; 5] = [
    "epochs",
    "max_steps",
    "device",
    "checkpoint_every",
    "threads",
];

/// One field that differs between a run's recorded configuration and a resume's.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub field: String,
    pub recorded: String,
    pub given: String,
}

impl TrainConfig {
    /// Fields outside [`RESUMABLE_FIELDS`] whose values differ (data paths compared after
    /// resolving them, so `./vk` and `/abs/vk` are the same folder).
    pub fn fixed_differences(&self, given: &TrainConfig) -> Vec<Changed> {
        fn canonical(paths: &mut [PathBuf]) {
            for p in paths {
                if let Ok(c) = std::fs::canonicalize(&*p) {
                    *p = c;
                }
            }
        }
        let (mut a, mut b) = (self.clone(), given.clone());
        for c in [&mut a, &mut b] {
            canonical(&mut c.vkitti);
            if let Some(k) = c.kitti.as_mut() {
                canonical(std::slice::from_mut(k));
            }
            if let Some(k) = c.init_generator.as_mut() {
                canonical(std::slice::from_mut(k));
            }
        }
        // A run recorded before paths were recorded absolute has them relative to the folder
        // it started in: a given path that ends with the recorded one is the same data, given
        // from another folder.
        let same_data = |recorded: &mut PathBuf, given: &PathBuf| {
            // `./vk` and `../data/vk` end as `vk` and `data/vk` do.
            let parts: Vec<_> = recorded.components().collect();
            let from = parts
                .iter()
                .rposition(|c| matches!(c, std::path::Component::ParentDir))
                .map_or(0, |i| i + 1);
            let tail: PathBuf = parts[from..]
                .iter()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            if recorded.is_relative()
                && !recorded.exists()
                && !tail.as_os_str().is_empty()
                && given.ends_with(&tail)
            {
                *recorded = given.clone();
            }
        };
        if a.vkitti.len() == b.vkitti.len() {
            for (r, g) in a.vkitti.iter_mut().zip(&b.vkitti) {
                same_data(r, g);
            }
        }
        if let (Some(r), Some(g)) = (a.kitti.as_mut(), b.kitti.as_ref()) {
            same_data(r, g);
        }
        let to_map = |c: &TrainConfig| match serde_yaml::to_value(c) {
            Ok(serde_yaml::Value::Mapping(mut m)) => {
                // Left out when 0 (as runs before the field wrote it): compared, and named in
                // a refusal, as the 0 it is.
                for field in ["hard_negatives", "augment_yaw_deg"] {
                    m.entry(field.into())
                        .or_insert_with(|| serde_yaml::Value::from(0.0));
                }
                m
            }
            _ => serde_yaml::Mapping::new(),
        };
        let (ma, mb) = (to_map(&a), to_map(&b));
        let text = |v: Option<&serde_yaml::Value>| match v {
            // A list as `a, b` (not YAML's `- a - b`).
            Some(serde_yaml::Value::Sequence(items)) => items
                .iter()
                .map(|i| match i {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim().replace('\n', " "))
                        .unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => v
                .and_then(|v| serde_yaml::to_string(v).ok())
                .map(|s| s.trim().replace('\n', " "))
                .unwrap_or_else(|| "none".into()),
        };
        let mut out = Vec::new();
        // Both sides' keys: a field left out when empty (init_generator) may be on one only.
        let mut keys: Vec<&serde_yaml::Value> = ma.keys().collect();
        keys.extend(mb.keys().filter(|k| !ma.contains_key(*k)));
        for k in keys {
            let Some(name) = k.as_str() else { continue };
            if RESUMABLE_FIELDS.contains(&name) || mb.get(k) == ma.get(k) {
                continue;
            }
            out.push(Changed {
                field: name.to_string(),
                recorded: text(ma.get(k)),
                given: text(mb.get(k)),
            });
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the training config {path}: {}",
        crate::error::io_words(source)
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{origin}: field `{field}`: expected {expected}, found {found}")]
    Field {
        origin: String,
        field: &'static str,
        expected: String,
        found: String,
    },
}

/// What a config field accepts, in words: the one source of [`TrainConfig::validate`]'s
/// messages and of a file's value of the wrong type (`batch: eight`: "expected 1 to 64"
/// rather than the type's "a whole number"). `triplet.F` is a field of every triplet entry.
pub fn expected_of(field: &str) -> Option<String> {
    Some(match field {
        "input_height" | "input_width" => format!(
            "a multiple of {} up to {} (the network's input; e.g. 256 by 512 or 1024)",
            crate::model::config::SIDE_MULTIPLE,
            crate::model::config::MAX_INPUT_SIDE
        ),
        "batch" => format!("1 to {MAX_BATCH}"),
        "epochs" | "lr_step_epochs" | "checkpoint_every" => "at least 1".into(),
        "steps_per_epoch" | "max_steps" => "at least 1 or null".into(),
        "lr_generator" | "lr_discriminator" | "triplet.margin" => "a finite number > 0".into(),
        // StepLR's decay: above 1 the rates would grow without bound every lr_step_epochs.
        "lr_gamma" => "more than 0 and at most 1 (the rates' decay per lr_step_epochs)".into(),
        "lambda_depth" | "lambda_seg" | "lambda_adversarial" | "triplet.weight" => {
            "a finite number >= 0".into()
        }
        "betas_generator" | "betas_discriminator" => "two numbers in [0, 1)".into(),
        "triplet.layer" => "1 to 8".into(),
        "positive_window" => "0 to 1000 frames".into(),
        "hard_negatives" => "a share from 0 to 1".into(),
        "augment_yaw_deg" => format!(
            "0 to {} degrees (0: no turn; more than 0 needs augment: true)",
            crate::map::views::MAX_YAW_DEG
        ),
        "threads" => "0 (one per core) to 1024".into(),
        "loader_threads" => "1 to 32".into(),
        "prefetch" => "1 to 64".into(),
        "device" => "cpu, cuda, cuda:N or auto".into(),
        "seed" => "a whole number, 0 or more".into(),
        _ => return None,
    })
}

/// The 1-based line of a top-level `field:` in a YAML config's text (where an error about
/// the field points), if the file sets it.
pub fn line_of_field(text: &str, field: &str) -> Option<usize> {
    lines_of_field(text, field).next()
}

/// Every 1-based line that writes a top-level `field:` (a field written twice has two).
fn lines_of_field<'a>(text: &'a str, field: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.lines()
        .enumerate()
        .filter(move |(_, l)| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

/// The 1-based line where a config file's text writes the value an error about `field` found
/// (`found`, as the error shows it), if the file writes it there; `None` when the value came
/// from elsewhere (a flag) or cannot be placed. `field` is a top-level field (`batch`) or a key
/// of a list section's entries (`triplet.margin`: the first entry, not a comment, that writes
/// that key with that value, or the section's line). Numbers compare by value, so `2.0`
/// written is the `2` found.
pub fn line_of_value(text: &str, field: &str, found: &str) -> Option<usize> {
    // The value after `key:` on line n, up to a comment; within a `{...}` entry, up to the
    // next key or the entry's end.
    let written_at = |n: usize, key: &str, in_entry: bool| -> Option<String> {
        let line = text.lines().nth(n - 1)?;
        let after = &line[line.find(&format!("{key}:"))? + key.len() + 1..];
        let value = after.split(" #").next()?;
        let value = if in_entry {
            value.split([',', '}']).next()?
        } else {
            value
        };
        Some(value.trim().to_string())
    };
    if let Some((section, key)) = field.split_once('.') {
        let start = line_of_field(text, section)?;
        // "layer 3 twice" (a value listed twice) is at the second entry that writes it.
        let (found, nth) = match found.strip_suffix(" twice") {
            Some(v) => (v.strip_prefix(&format!("{key} ")).unwrap_or(v), 1),
            None => (found, 0),
        };
        let entry = text
            .lines()
            .enumerate()
            .skip(start)
            .take_while(|(_, l)| l.is_empty() || l.starts_with([' ', '\t', '-', '#']))
            .filter(|(_, l)| !l.trim_start().starts_with('#'))
            .map(|(i, _)| i + 1)
            .filter(|&n| written_at(n, key, true).is_some_and(|w| same_value(&w, found)))
            .nth(nth);
        return entry.or(Some(start));
    }
    let n = line_of_field(text, field)?;
    same_value(&written_at(n, field, false)?, found).then_some(n)
}

/// serde's errors about the mapping as a whole, which it places where the mapping starts (the
/// file's first key): a field given twice is placed at its second line; a missing field has no
/// line of its own, so none is given, and the message says where to find every field.
fn whole_file_errors(text: &str, line: Option<usize>, message: String) -> (Option<usize>, String) {
    let field = |kind: &str| {
        let rest = message.strip_prefix(kind)?.strip_prefix('`')?;
        rest.split_once('`').map(|(f, _)| f.to_string())
    };
    if let Some(f) = field("duplicate field ") {
        let second = lines_of_field(text, &f).nth(1);
        let message = format!("{message}: expected each field once");
        return (second.or(line), message);
    }
    if field("missing field ").is_some() {
        let message = format!(
            "{message}: expected every field (config/train.yaml in dasgil's source writes them \
             all, each with its comment)"
        );
        return (None, message);
    }
    (line, message)
}

/// A value as a YAML file writes it and as an error shows it (Rust's formatting) are the same:
/// the same text, or the same number (`2.0` and `2`, `.nan` and `NaN`, `1e-3` and `0.001`).
fn same_value(written: &str, found: &str) -> bool {
    if written == found {
        return true;
    }
    match (serde_yaml::from_str::<f64>(written), found.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b || (a.is_nan() && b.is_nan()),
        _ => false,
    }
}

impl TrainConfig {
    /// Reads a YAML config file (its syntax and field names; the values are checked by
    /// [`Self::validate`] once flags have had their say).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_yaml::from_str(&text).map_err(|e| {
            let message = crate::yaml::explain_in(&text, &e, expected_of);
            let line = crate::yaml::error_line(&e);
            let (line, message) = whole_file_errors(&text, line, message);
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message,
            }
        })?;
        Ok(cfg)
    }

    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            input_height: self.input_height,
            input_width: self.input_width,
            ..ModelConfig::paper()
        }
    }

    /// Checks every value; `origin` names where they came from (the file, or "flags").
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let err = |field: &'static str, expected: &str, found: String| ConfigError::Field {
            origin: origin.to_string(),
            field,
            expected: expected.to_string(),
            found,
        };
        let ex = |field: &str| expected_of(field).unwrap_or_else(|| "a valid value".into());
        if self.vkitti.is_empty() {
            return Err(err(
                "vkitti",
                "at least one Virtual KITTI 2 root (--vkitti DIR)",
                "none".into(),
            ));
        }
        // Each side on its own, so that the error names the field (and its line) at fault.
        for (field, side) in [
            ("input_height", self.input_height),
            ("input_width", self.input_width),
        ] {
            if !crate::model::config::input_side_ok(side) {
                return Err(err(field, &ex(field), side.to_string()));
            }
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(err("batch", &ex("batch"), self.batch.to_string()));
        }
        if self.epochs == 0 {
            return Err(err("epochs", &ex("epochs"), "0".into()));
        }
        if self.steps_per_epoch == Some(0) {
            return Err(err("steps_per_epoch", &ex("steps_per_epoch"), "0".into()));
        }
        if self.max_steps == Some(0) {
            return Err(err("max_steps", &ex("max_steps"), "0".into()));
        }
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(err(field, &ex(field), v.to_string()))
            }
        };
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(err(field, &ex(field), v.to_string()))
            }
        };
        positive("lr_generator", self.lr_generator)?;
        positive("lr_discriminator", self.lr_discriminator)?;
        if !(self.lr_gamma > 0.0 && self.lr_gamma <= 1.0) {
            return Err(err("lr_gamma", &ex("lr_gamma"), self.lr_gamma.to_string()));
        }
        non_negative("lambda_depth", self.lambda_depth)?;
        non_negative("lambda_seg", self.lambda_seg)?;
        non_negative("lambda_adversarial", self.lambda_adversarial)?;
        for (field, b) in [
            ("betas_generator", self.betas_generator),
            ("betas_discriminator", self.betas_discriminator),
        ] {
            if !b.iter().all(|v| v.is_finite() && (0.0..1.0).contains(v)) {
                return Err(err(field, &ex(field), format!("{b:?}")));
            }
        }
        if self.lr_step_epochs == 0 {
            return Err(err("lr_step_epochs", &ex("lr_step_epochs"), "0".into()));
        }
        if self.triplet.is_empty() {
            return Err(err(
                "triplet",
                "at least one layer (paper: 3..6)",
                "none".into(),
            ));
        }
        for (i, t) in self.triplet.iter().enumerate() {
            // A layer listed twice would weigh its term twice (that is what `weight` is for).
            if self.triplet[..i].iter().any(|u| u.layer == t.layer) {
                return Err(err(
                    "triplet.layer",
                    "each layer at most once (the paper's: 3, 4, 5, 6; `weight` weighs one)",
                    format!("layer {} twice", t.layer),
                ));
            }
            if !(1..=8).contains(&t.layer) {
                return Err(err(
                    "triplet.layer",
                    &ex("triplet.layer"),
                    t.layer.to_string(),
                ));
            }
            positive("triplet.margin", t.margin)?;
            non_negative("triplet.weight", t.weight)?;
        }
        if self.positive_window > 1000 {
            return Err(err(
                "positive_window",
                &ex("positive_window"),
                self.positive_window.to_string(),
            ));
        }
        if !(self.hard_negatives.is_finite() && (0.0..=1.0).contains(&self.hard_negatives)) {
            return Err(err(
                "hard_negatives",
                &ex("hard_negatives"),
                self.hard_negatives.to_string(),
            ));
        }
        let yaw = self.augment_yaw_deg;
        if !(yaw.is_finite() && (0.0..=crate::map::views::MAX_YAW_DEG).contains(&yaw)) {
            return Err(err(
                "augment_yaw_deg",
                &ex("augment_yaw_deg"),
                yaw.to_string(),
            ));
        }
        if yaw > 0.0 && !self.augment {
            return Err(err(
                "augment_yaw_deg",
                "0, or more with augment: true (--augment --augment-yaw DEG)",
                format!("{yaw} with augment: false"),
            ));
        }
        if self.augment_palette && !self.augment {
            return Err(err(
                "augment_palette",
                "false, or true with augment: true (--augment --augment-palette)",
                "true with augment: false".into(),
            ));
        }
        if self.adversarial && self.discriminator == DiscriminatorKind::Flatten && self.batch < 2 {
            return Err(err(
                "batch",
                "at least 2 with the FD discriminator (its BatchNorm1d needs two samples)",
                self.batch.to_string(),
            ));
        }
        if self.kitti.is_none() {
            return Err(err(
                "kitti",
                "a folder of real-domain (KITTI) images (--kitti DIR)",
                "none".into(),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(err("checkpoint_every", &ex("checkpoint_every"), "0".into()));
        }
        if self.threads > 1024 {
            return Err(err("threads", &ex("threads"), self.threads.to_string()));
        }
        if !(1..=32).contains(&self.loader_threads) {
            return Err(err(
                "loader_threads",
                &ex("loader_threads"),
                self.loader_threads.to_string(),
            ));
        }
        if !(1..=64).contains(&self.prefetch) {
            return Err(err("prefetch", &ex("prefetch"), self.prefetch.to_string()));
        }
        if crate::toolchain::device_syntax(&self.device).is_err() {
            return Err(err("device", &ex("device"), self.device.clone()));
        }
        // Spelt right, but not a device libtorch sees here.
        crate::toolchain::parse_device(&self.device, "device").map_err(|e| {
            err(
                "device",
                "a device libtorch sees on this machine (`dasgil-tools info`)",
                format!(
                    "{} ({})",
                    self.device,
                    e.split_once(", but ").map_or(e.as_str(), |(_, why)| why)
                ),
            )
        })?;
        Ok(())
    }

    /// The learning rate of epoch `epoch` (0-based) under StepLR.
    pub fn lr_at(&self, base: f64, epoch: u64) -> f64 {
        base * self.lr_gamma.powi((epoch / self.lr_step_epochs) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> TrainConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/train.yaml");
        TrainConfig::read(&path).unwrap()
    }

    #[test]
    fn a_fields_line_is_that_of_its_top_level_key() {
        let text = "# batch: 2 in a comment\nbatch_norm: 1\ntriplet:\n  - batch: 3\nbatch : 4\n";
        assert_eq!(line_of_field(text, "batch"), Some(5));
        assert_eq!(line_of_field(text, "triplet"), Some(3));
        assert_eq!(line_of_field(text, "epochs"), None);
    }

    #[test]
    fn a_field_twice_is_at_its_second_line_and_a_missing_one_at_none() {
        let text = "batch_size: 1\nbatch: 2\n  batch: 9\n# batch: 3\nepochs: 1\nbatch : 4\n";
        let (line, message) =
            whole_file_errors(text, Some(1), "duplicate field `batch`".to_string());
        assert_eq!(line, Some(6));
        assert_eq!(message, "duplicate field `batch`: expected each field once");
        let (line, message) = whole_file_errors(text, Some(1), "missing field `seed`".into());
        assert_eq!(line, None);
        assert!(message.starts_with("missing field `seed`: expected every field"));
        let other = whole_file_errors(text, Some(3), "unknown field `x`".into());
        assert_eq!(other, (Some(3), "unknown field `x`".to_string()));
    }

    #[test]
    fn an_errors_line_is_where_the_file_writes_the_value_found() {
        let text = "batch: 2\nhard_negatives: 2.0 # too much\nlr_gamma: .nan\ninput_height: 256\n\
                    input_width: 100\ntriplet:\n  # - {layer: 4, margin: -1.0}\n  - {layer: 3, margin: 1.0}\n\n  \
                    - {layer: 4, margin: -1.0}\nepochs: 3\nbetas_generator: [0.9, 1.0]\n";
        assert_eq!(line_of_value(text, "hard_negatives", "2"), Some(2));
        assert_eq!(
            line_of_value(text, "hard_negatives", "0.5"),
            None,
            "a flag's value"
        );
        assert_eq!(line_of_value(text, "lr_gamma", "NaN"), Some(3));
        assert_eq!(line_of_value(text, "batch", "2"), Some(1));
        assert_eq!(line_of_value(text, "input_width", "100"), Some(5));
        // The entry that writes the value, not a commented-out one above it.
        assert_eq!(line_of_value(text, "triplet.margin", "-1"), Some(10));
        assert_eq!(line_of_value(text, "triplet.layer", "3"), Some(8));
        // A layer listed twice: the second entry that lists it.
        let twice = text.replace(
            "layer: 4, margin: -1.0}\nepochs",
            "layer: 3, margin: -1.0}\nepochs",
        );
        assert_eq!(
            line_of_value(&twice, "triplet.layer", "layer 3 twice"),
            Some(10)
        );
        // A value no entry writes as the error shows it points at the section.
        assert_eq!(line_of_value(text, "triplet.margin", "0.1"), Some(6));
        assert_eq!(line_of_value(text, "epochs", "3"), Some(11));
        assert_eq!(
            line_of_value(text, "betas_generator", "[0.9, 1.0]"),
            Some(12)
        );
        assert_eq!(line_of_value(text, "seed", "3"), None);
    }

    #[test]
    fn the_shipped_config_holds_the_papers_values() {
        let c = shipped();
        assert_eq!(c.lr_generator, 2e-3);
        assert_eq!(c.lr_discriminator, 1e-3);
        assert_eq!(c.betas_generator, [0.9, 0.999]);
        assert_eq!(c.betas_discriminator, [0.5, 0.9]);
        assert_eq!(c.lambda_seg, 100.0);
        assert_eq!(c.batch, 8);
        assert_eq!((c.input_height, c.input_width), (256, 1024));
        assert_eq!(c.triplet, crate::model::losses::paper_triplet_layers());
        // The paper's distance is written as no field at all, and a run recorded before the
        // field existed (no `distance`) reads as the paper's.
        assert!(!serde_yaml::to_string(&c).unwrap().contains("distance"));
        let old: crate::model::losses::TripletLayer =
            serde_json::from_str(r#"{"layer": 6, "margin": 1.0, "weight": 25.0}"#).unwrap();
        assert_eq!(old.distance, crate::model::losses::TripletDistance::Mse);
        assert_eq!(c.discriminator, DiscriminatorKind::Cascade);
        // It needs only the data roots to be valid.
        let mut c = c;
        c.vkitti = vec!["/data/vkitti2".into()];
        let e = c.validate("config/train.yaml").unwrap_err().to_string();
        assert!(e.contains("field `kitti`"), "{e}");
        c.kitti = Some("/data/kitti".into());
        c.validate("config/train.yaml").unwrap();
        let mut twice = c.clone();
        twice.triplet[1].layer = twice.triplet[0].layer;
        let e = twice.validate("t.yaml").unwrap_err().to_string();
        assert!(
            e.contains("field `triplet.layer`: expected each layer at most once")
                && e.contains("found layer 3 twice"),
            "{e}"
        );
        assert_eq!(c.lr_at(2e-3, 49), 2e-3);
        assert_eq!(c.lr_at(2e-3, 50), 1e-3);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/train.yaml"),
        )
        .unwrap();
        std::fs::write(&p, text.replace("lambda_seg:", "lambda_segg:")).unwrap();
        let e = TrainConfig::read(&p).unwrap_err().to_string();
        assert!(e.contains("lambda_segg") && e.contains("t.yaml:"), "{e}");
        let mut c = shipped();
        c.vkitti = vec!["x".into()];
        c.lr_generator = f64::NAN;
        let e = c.validate("flags").unwrap_err().to_string();
        assert_eq!(
            e,
            "flags: field `lr_generator`: expected a finite number > 0, found NaN"
        );
        c.lr_generator = 1e-3;
        c.input_width = 1000;
        assert!(c.validate("f").unwrap_err().to_string().contains("1000"));
    }
}
