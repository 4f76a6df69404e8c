//! Model hyper-parameters that fix the network's shapes (paper section III-A; reference
//! `networks.py` and `options/base_options.py`).

use serde::{Deserialize, Serialize};

/// Largest input side accepted (a 4096x4096 input already needs ~20 GB for the generator's
/// activations; larger sizes in a flag or a checkpoint's metadata are refused, not attempted).
pub const MAX_INPUT_SIDE: i64 = 4096;

/// Number of stride-2 encoder layers (e1..e8); input sides must be multiples of 2^8.
pub const ENCODER_LAYERS: usize = 8;
pub const SIDE_MULTIPLE: i64 = 1 << ENCODER_LAYERS;

/// Shapes of the DASGIL generator and discriminators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Network input height in pixels (paper: 256). Images are resized to it.
    pub input_height: i64,
    /// Network input width in pixels (paper: 1024).
    pub input_width: i64,
    /// Base channel width d of the generator (paper: 8; e1 has d channels, e4..e8 have 8d).
    pub base_width: i64,
    /// Segmentation classes (Virtual KITTI 2: 15).
    pub num_classes: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::paper()
    }
}

/// The input size cannot be used by the network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "input size {height}x{width} (HxW) does not fit the DASGIL network: height and width must be \
     positive multiples of 256 up to 4096 (eight stride-2 encoder layers halve the image down to e8 at \
     H/256 x W/256, and every U-Net skip must match its decoder layer exactly); sizes that work: \
     256x1024 (paper), 256x256, 256x512, 512x1024, 512x2048, ..."
)]
pub struct InputSizeError {
    pub height: i64,
    pub width: i64,
}

/// One side of the network's input: a positive multiple of [`SIDE_MULTIPLE`] up to
/// [`MAX_INPUT_SIDE`].
pub fn input_side_ok(v: i64) -> bool {
    v > 0 && v % SIDE_MULTIPLE == 0 && v <= MAX_INPUT_SIDE
}

/// Whether the network takes `height` x `width` images: positive multiples of 256 up to
/// [`MAX_INPUT_SIDE`].
pub fn check_input_size(height: i64, width: i64) -> Result<(), InputSizeError> {
    if input_side_ok(height) && input_side_ok(width) {
        Ok(())
    } else {
        Err(InputSizeError { height, width })
    }
}

/// A base width or class count that makes no network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("model config field `{field}` must be {min} to {max}, found {found}")]
pub struct ConfigFieldError {
    pub field: &'static str,
    pub min: i64,
    pub max: i64,
    pub found: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    InputSize(#[from] InputSizeError),
    #[error(transparent)]
    Field(#[from] ConfigFieldError),
}

impl ModelConfig {
    /// The paper's and reference code's defaults: 256x1024 input, d = 8, 15 classes.
    pub const fn paper() -> Self {
        Self {
            input_height: 256,
            input_width: 1024,
            base_width: 8,
            num_classes: 15,
        }
    }

    /// Same network widths at another input size (checked).
    pub fn with_input_size(self, height: i64, width: i64) -> Result<Self, ConfigError> {
        let cfg = Self {
            input_height: height,
            input_width: width,
            ..self
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_input_size(self.input_height, self.input_width)?;
        for (field, min, max, found) in [
            ("base_width", 1, 256, self.base_width),
            ("num_classes", 2, 1024, self.num_classes),
        ] {
            if !(min..=max).contains(&found) {
                return Err(ConfigFieldError {
                    field,
                    min,
                    max,
                    found,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Channels of encoder feature e_l (l = 1..8): d, 2d, 4d, then 8d.
    pub fn feature_channels(&self, layer: usize) -> i64 {
        let d = self.base_width;
        match layer {
            1 => d,
            2 => 2 * d,
            3 => 4 * d,
            _ => 8 * d,
        }
    }

    /// Shape [C, H, W] of encoder feature e_l (l = 1..8) for one image.
    pub fn feature_shape(&self, layer: usize) -> [i64; 3] {
        let s = 1i64 << layer;
        [
            self.feature_channels(layer),
            self.input_height / s,
            self.input_width / s,
        ]
    }

    /// Total number of values in e1..e8 for one image (paper size: 1,004,800).
    pub fn total_feature_len(&self) -> i64 {
        (1..=ENCODER_LAYERS)
            .map(|l| self.feature_shape(l).iter().product::<i64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_has_the_reference_feature_length() {
        let cfg = ModelConfig::paper();
        cfg.validate().unwrap();
        // The Flatten Discriminator's BatchNorm1d width in the reference code.
        assert_eq!(cfg.total_feature_len(), 1_004_800);
        assert_eq!(cfg.feature_shape(5), [64, 8, 32]);
        assert_eq!(cfg.feature_shape(8), [64, 1, 4]);
    }

    #[test]
    fn sizes_that_do_not_halve_eight_times_are_rejected_with_the_sizes_that_work() {
        let err = ModelConfig::paper().with_input_size(375, 1242).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("375x1242"), "{msg}");
        assert!(msg.contains("multiples of 256"), "{msg}");
        assert!(ModelConfig::paper().with_input_size(128, 1024).is_err());
        assert!(ModelConfig::paper().with_input_size(256, 256).is_ok());
    }
}
