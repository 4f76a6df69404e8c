//! The one shape in which every reader hands out geotagged images: map building, evaluation
//! and training take `PosedImage`s whatever the dataset.

use std::path::PathBuf;

use image::RgbImage;

use super::error::DataError;
use crate::geom::{Pinhole, Pose};

/// An image with where and when it was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct PosedImage {
    pub path: PathBuf,
    /// Camera id as the dataset names it: `Camera_0` (VKITTI2), `image_02` (KITTI), `c0` (CMU),
    /// `stereo/centre` (RobotCar).
    pub camera: String,
    /// Microseconds since the UNIX epoch (or since the sequence start for KITTI odometry).
    pub timestamp_us: Option<i64>,
    /// Camera-to-world pose in the dataset's world frame, when the dataset gives one.
    pub world_from_cam: Option<Pose>,
    /// Intrinsics at the stored image size, when known.
    pub intrinsics: Option<Pinhole>,
}

/// Decoding recipe for an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Colour or grey image, converted to RGB.
    Rgb,
    /// Raw Bayer mosaic (RobotCar), demosaiced with the given pattern.
    Bayer(super::robotcar::BayerPattern),
}

impl PosedImage {
    /// Reads the image as 8-bit RGB.
    pub fn load_rgb(&self, decode: Decode) -> Result<RgbImage, DataError> {
        let img = super::error::open_image(&self.path, "an image file")?;
        Ok(match decode {
            Decode::Rgb => img.to_rgb8(),
            Decode::Bayer(pattern) => super::robotcar::demosaic(&img.to_luma8(), pattern),
        })
    }
}
