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
    /// The lens's distortion (OpenCV's k1, k2, p1, p2, k3; `map::views::Distortion`), when the data
    /// set gives one; None: none known (an undistorted or rectified image).
    pub distortion: Option<crate::map::views::Distortion>,
}

/// How a data set's image files become RGB: the recipe a map records, so a query is decoded
/// the way the map's images were. Stored in map files by [`Decode::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decode {
    /// Colour images (a grey file is replicated to RGB).
    #[default]
    Rgb,
    /// Single-channel (grey) images, replicated to RGB: a grey camera's frames match them.
    Grey,
    /// Raw Bayer mosaic (RobotCar), demosaiced with the given pattern.
    Bayer(super::robotcar::BayerPattern),
}

impl Decode {
    /// `rgb`, `grey` or `bayer_<pattern>` (e.g. `bayer_gbrg`).
    pub fn name(self) -> String {
        match self {
            Decode::Rgb => "rgb".into(),
            Decode::Grey => "grey".into(),
            Decode::Bayer(p) => format!("bayer_{}", p.name()),
        }
    }

    pub fn is_rgb(&self) -> bool {
        *self == Decode::Rgb
    }
}

impl std::str::FromStr for Decode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rgb" => Ok(Decode::Rgb),
            "grey" => Ok(Decode::Grey),
            _ => s
                .strip_prefix("bayer_")
                .and_then(super::robotcar::BayerPattern::parse)
                .map(Decode::Bayer)
                .ok_or_else(|| {
                    format!("expected rgb, grey or bayer_rggb|bggr|gbrg|grbg, found `{s}`")
                }),
        }
    }
}

impl serde::Serialize for Decode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Decode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PosedImage {
    /// Reads the image as 8-bit RGB.
    pub fn load_rgb(&self, decode: Decode) -> Result<RgbImage, DataError> {
        decode_file(&self.path, decode)
    }
}

/// Reads an image file as 8-bit RGB by the recipe `decode` (the one path for map images and
/// query files).
pub fn decode_file(path: &std::path::Path, decode: Decode) -> Result<RgbImage, DataError> {
    let img = super::error::open_image(path, "an image file")?;
    Ok(match decode {
        Decode::Rgb => img.to_rgb8(),
        Decode::Grey => image::DynamicImage::ImageLuma8(img.to_luma8()).to_rgb8(),
        Decode::Bayer(pattern) => match already_colour(&img) {
            Some(rgb) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(
                        "{}: a colour image where a raw Bayer mosaic (one 8-bit channel, \
                         RobotCar's stereo and mono images as recorded) was expected: images \
                         already demosaiced (e.g. by the RobotCar SDK's image.py) are read as \
                         they are, not demosaiced again (said once)",
                        path.display()
                    )
                });
                rgb
            }
            None => super::robotcar::demosaic(&img.to_luma8(), pattern),
        },
    })
}

/// An image in colour (a channel differs from another somewhere) as RGB; None for a
/// single-channel image or one whose channels are all equal (a mosaic saved as RGB).
fn already_colour(img: &image::DynamicImage) -> Option<RgbImage> {
    if !img.color().has_color() {
        return None;
    }
    let rgb = img.to_rgb8();
    rgb.pixels()
        .any(|p| p[0] != p[1] || p[1] != p[2])
        .then_some(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::robotcar::{demosaic, BayerPattern};

    /// A RobotCar image already demosaiced (colour) is read as it is; a mosaic, whether saved
    /// with one channel or as RGB with three equal ones, is demosaiced.
    #[test]
    fn a_colour_image_is_not_demosaiced_again() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = BayerPattern::Gbrg;
        let colour = RgbImage::from_fn(8, 6, |x, y| {
            image::Rgb([(30 * x) as u8, 200, (40 * y) as u8])
        });
        let mosaic = image::GrayImage::from_fn(8, 6, |x, y| {
            image::Luma([colour.get_pixel(x, y)[pattern.channel(x, y)]])
        });
        let (c, m, m3) = (
            dir.path().join("colour.png"),
            dir.path().join("mosaic.png"),
            dir.path().join("mosaic-rgb.png"),
        );
        colour.save(&c).unwrap();
        mosaic.save(&m).unwrap();
        image::DynamicImage::ImageLuma8(mosaic.clone())
            .to_rgb8()
            .save(&m3)
            .unwrap();
        let decode = Decode::Bayer(pattern);
        assert_eq!(decode_file(&c, decode).unwrap(), colour);
        let want = demosaic(&mosaic, pattern);
        assert_eq!(decode_file(&m, decode).unwrap(), want);
        assert_eq!(decode_file(&m3, decode).unwrap(), want);
    }
}
