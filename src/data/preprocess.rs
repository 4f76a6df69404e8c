//! The one image preprocessing path, shared by training, map building, `embed` and the node:
//! RGB, bicubic resize to the network size when needed, /255, then mean 0.5 / std 0.5 per
//! channel, so pixel values lie in [-1, 1] (reference `data.py`: `Resize(BICUBIC)`,
//! `ToTensor`, `Normalize((0.5,)*3, (0.5,)*3)`).
//!
//! Unlike the reference's Extended CMU-Seasons test code, database and query images are
//! normalised the same way.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read image {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("image {what} is empty ({width}x{height})")]
    Empty {
        what: String,
        width: u32,
        height: u32,
    },
    #[error(
        "image is {width}x{height} pixels, too small to match: the network sees {input_width}x\
         {input_height} and enlarges an image at most {MAX_UPSCALE} times in each direction, so \
         an image needs at least {}x{} (a thumbnail, a region of interest or a test frame is \
         not a camera image)",
        min_side(*input_width, MAX_UPSCALE),
        min_side(*input_height, MAX_UPSCALE)
    )]
    TooSmall {
        width: u32,
        height: u32,
        input_width: u32,
        input_height: u32,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The most an image is enlarged, in either direction, to the network's input size: a
/// smaller image holds too little of the scene to match (a 17x5 frame stretched to 512x256 is
/// a few blurred colours, which match some map image at a confidence that says nothing), so
/// it is refused with [`PreprocessError::TooSmall`] rather than encoded.
pub const MAX_UPSCALE: u32 = 8;

fn min_side(input: u32, upscale: u32) -> u32 {
    input.div_ceil(upscale)
}

/// Refuses an image of `width` x `height` pixels that is empty, or that reaches an input of
/// `input_width` x `input_height` only by enlarging it more than [`MAX_UPSCALE`] times in a
/// direction.
pub fn check_size(
    width: u32,
    height: u32,
    input_width: u32,
    input_height: u32,
) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty {
            what: "given for preprocessing".into(),
            width,
            height,
        });
    }
    if width < min_side(input_width, MAX_UPSCALE) || height < min_side(input_height, MAX_UPSCALE) {
        return Err(PreprocessError::TooSmall {
            width,
            height,
            input_width,
            input_height,
        });
    }
    Ok(())
}

/// Opens any image file the `image` crate reads and converts it to 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, PreprocessError> {
    if path.is_dir() {
        return Err(PreprocessError::Read {
            path: path.to_path_buf(),
            message: "is a folder, expected an image file".into(),
        });
    }
    let img = super::error::decode_image(path).map_err(|message| PreprocessError::Read {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(img.to_rgb8())
}

/// Bicubic (Catmull-Rom, a = -0.5 like PIL's BICUBIC, with the kernel widened when
/// shrinking) resize to `width` x `height`; a no-op copy when the size already matches.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    image::imageops::resize(img, width, height, FilterType::CatmullRom)
}

/// A photometric normalisation applied to each image on its own, after the resize and before
/// the network's fixed normalisation: what a map was built with is stored in it (as part of
/// its preprocessing description), and queries follow the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Photometric {
    /// The image as the camera gave it (the paper's and the reference code's behaviour).
    #[default]
    None,
    /// Per-channel contrast stretch: in each of R, G and B the value at the
    /// [`AUTOCONTRAST_CUT`] quantile from the bottom becomes 0, the one at the same quantile
    /// from the top becomes 255, linearly in between, clamped outside. It undoes a global
    /// exposure, contrast or colour-cast change (dusk, haze, a sepia or teal grade), not the
    /// content: a channel with no spread (all one value within the cut) is left as it is.
    Autocontrast,
}

/// Share of pixels at each end of a channel that [`Photometric::Autocontrast`] clips (1%).
pub const AUTOCONTRAST_CUT: f64 = 0.01;

impl Photometric {
    /// The name users give (`--photometric`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Autocontrast => "autocontrast",
        }
    }

    /// Whether this is [`Photometric::None`] (serde's `skip_serializing_if`).
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// Every mode, for messages and parsing.
    pub const ALL: [Photometric; 2] = [Photometric::None, Photometric::Autocontrast];

    /// Applies the normalisation in place.
    pub fn apply(self, img: &mut RgbImage) {
        match self {
            Self::None => {}
            Self::Autocontrast => autocontrast(img, AUTOCONTRAST_CUT),
        }
    }
}

impl std::fmt::Display for Photometric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Photometric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("expected none or autocontrast, found `{s}`"))
    }
}

/// Per-channel linear stretch between the `cut` and `1 - cut` quantiles of each channel's
/// histogram (see [`Photometric::Autocontrast`]).
pub fn autocontrast(img: &mut RgbImage, cut: f64) {
    let n = (img.width() as u64) * (img.height() as u64);
    if n == 0 {
        return;
    }
    // Pixels allowed below the low end and above the high end of each channel.
    let clip = (n as f64 * cut).floor() as u64;
    let mut lut = [[0u8; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        let mut hist = [0u64; 256];
        for px in img.pixels() {
            hist[px.0[c] as usize] += 1;
        }
        // The lowest value with more than `clip` pixels at or below it; the highest with more
        // than `clip` at or above it.
        let (mut below, mut lo) = (0u64, 0usize);
        for (v, &h) in hist.iter().enumerate() {
            below += h;
            if below > clip {
                lo = v;
                break;
            }
        }
        let (mut above, mut hi) = (0u64, 255usize);
        for (v, &h) in hist.iter().enumerate().rev() {
            above += h;
            if above > clip {
                hi = v;
                break;
            }
        }
        for (v, out) in table.iter_mut().enumerate() {
            *out = if hi <= lo {
                v as u8
            } else {
                let t = (v as f64 - lo as f64) * 255.0 / (hi - lo) as f64;
                t.round().clamp(0.0, 255.0) as u8
            };
        }
    }
    for px in img.pixels_mut() {
        for c in 0..3 {
            px.0[c] = lut[c][px.0[c] as usize];
        }
    }
}

/// An 8-bit RGB image at the network size -> normalised CHW floats, written into `out`
/// (length 3 * H * W).
pub fn normalise_into(img: &RgbImage, out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            // (v / 255 - 0.5) / 0.5
            out[c * plane + i] = (px.0[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
}

/// Images -> network input [B, 3, height, width] (CPU, float32), each resized if needed.
pub fn to_network_batch(
    images: &[&RgbImage],
    height: i64,
    width: i64,
) -> Result<Tensor, PreprocessError> {
    to_network_batch_with(images, height, width, Photometric::None)
}

/// [`to_network_batch`] with a photometric normalisation of each image after its resize (as
/// build-map encodes and `train --photometric` trains).
pub fn to_network_batch_with(
    images: &[&RgbImage],
    height: i64,
    width: i64,
    photometric: Photometric,
) -> Result<Tensor, PreprocessError> {
    let plane = (height * width) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (img, out) in images.iter().zip(data.chunks_mut(3 * plane)) {
        check_size(img.width(), img.height(), width as u32, height as u32)?;
        let mut resized = resize_bicubic(img, width as u32, height as u32);
        photometric.apply(&mut resized);
        normalise_into(&resized, out);
    }
    Ok(Tensor::f_from_slice(&data)?
        .f_view([images.len() as i64, 3, height, width])?
        .to_kind(Kind::Float))
}

/// One image -> [1, 3, height, width].
pub fn to_network_input(
    img: &RgbImage,
    height: i64,
    width: i64,
) -> Result<Tensor, PreprocessError> {
    to_network_batch(&[img], height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_minus_one_one_in_chw_order() {
        let mut img = RgbImage::new(256, 256);
        img.put_pixel(0, 0, image::Rgb([0, 255, 51]));
        let t = to_network_input(&img, 256, 256).unwrap();
        assert_eq!(t.size(), [1, 3, 256, 256]);
        let v = |c: i64| t.double_value(&[0, c, 0, 0]);
        assert_eq!(v(0), -1.0);
        assert_eq!(v(1), 1.0);
        assert!((v(2) - (-0.6)).abs() < 1e-6);
        // Untouched pixel: black.
        assert_eq!(t.double_value(&[0, 1, 5, 5]), -1.0);
    }

    #[test]
    fn autocontrast_stretches_each_channel_between_its_quantiles() {
        // 100 pixels: red 50..149 (one each), green all 7, blue 0 except one 200.
        let mut img = RgbImage::new(10, 10);
        for (i, px) in img.pixels_mut().enumerate() {
            *px = image::Rgb([50 + i as u8, 7, if i == 99 { 200 } else { 0 }]);
        }
        let mut out = img.clone();
        autocontrast(&mut out, 0.01);
        // Red: one pixel may lie below the low end and one above the high end, so 51 -> 0
        // and 148 -> 255; 50 and 149 are clamped.
        let red: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(red[0], 0);
        assert_eq!(red[1], 0);
        assert_eq!(red[98], 255);
        assert_eq!(red[99], 255);
        // 100 lies 49 of 97 steps above 51.
        assert_eq!(red[50], (49.0f64 * 255.0 / 97.0).round() as u8);
        // Green has no spread: unchanged. Blue: the one bright pixel is cut, nothing is left
        // above 0, so it stays as it was too.
        assert!(out.pixels().all(|p| p.0[1] == 7));
        assert_eq!(out.get_pixel(9, 9).0[2], 200);
        assert_eq!(out.get_pixel(0, 0).0[2], 0);
    }

    #[test]
    fn autocontrast_undoes_a_global_exposure_and_contrast_change() {
        let mut img = RgbImage::new(64, 32);
        for (x, y, px) in img.enumerate_pixels_mut() {
            *px = image::Rgb([(x * 4) as u8, (y * 8) as u8, ((x + y) * 2) as u8]);
        }
        // The same scene, darker and flatter: v -> 40 + v / 3.
        let mut dim = img.clone();
        for px in dim.pixels_mut() {
            for c in 0..3 {
                px.0[c] = 40 + px.0[c] / 3;
            }
        }
        Photometric::Autocontrast.apply(&mut img);
        Photometric::Autocontrast.apply(&mut dim);
        let worst = img
            .pixels()
            .zip(dim.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (a.0[c] as i32 - b.0[c] as i32).abs()))
            .max()
            .unwrap();
        // Within the rounding of the darkening (v / 3 loses up to 2 levels, times ~3).
        assert!(worst <= 8, "largest difference {worst}");
        let mut same = img.clone();
        Photometric::None.apply(&mut same);
        assert_eq!(same, img);
    }

    #[test]
    fn photometric_names_round_trip() {
        for m in Photometric::ALL {
            assert_eq!(m.name().parse::<Photometric>().unwrap(), m);
        }
        let e = "histeq".parse::<Photometric>().unwrap_err();
        assert!(
            e.contains("none or autocontrast") && e.contains("`histeq`"),
            "{e}"
        );
    }

    #[test]
    fn refuses_images_too_small_to_match() {
        // 512x256 input: at least 64x32.
        assert!(check_size(64, 32, 512, 256).is_ok());
        assert!(
            check_size(1, 1, 8, 8).is_ok(),
            "a 1x1 image for an 8x8 input: 8 times"
        );
        let e = check_size(17, 5, 512, 256).unwrap_err().to_string();
        assert_eq!(
            e,
            "image is 17x5 pixels, too small to match: the network sees 512x256 and enlarges an \
             image at most 8 times in each direction, so an image needs at least 64x32 (a \
             thumbnail, a region of interest or a test frame is not a camera image)"
        );
        assert!(check_size(63, 400, 512, 256).is_err());
        assert!(check_size(640, 31, 512, 256).is_err());
        // Rounded up: a 1001-wide input needs 126 (125 would be enlarged 8.008 times).
        assert!(check_size(125, 40, 1001, 256).is_err());
        assert!(check_size(126, 32, 1001, 256).is_ok());
        assert!(matches!(
            check_size(0, 10, 512, 256),
            Err(PreprocessError::Empty { .. })
        ));
        let tiny = RgbImage::new(17, 5);
        assert!(matches!(
            to_network_input(&tiny, 256, 512),
            Err(PreprocessError::TooSmall { .. })
        ));
    }

    #[test]
    fn resizes_to_the_network_size() {
        let img = RgbImage::from_pixel(1242, 375, image::Rgb([128, 64, 32]));
        let t = to_network_input(&img, 256, 1024).unwrap();
        assert_eq!(t.size(), [1, 3, 256, 1024]);
        // A flat image stays flat through bicubic resampling.
        let expected = 128.0 / 255.0 * 2.0 - 1.0;
        assert!((t.double_value(&[0, 0, 100, 500]) - expected).abs() < 1e-6);
    }
}
