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
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
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
    let plane = (height * width) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (img, out) in images.iter().zip(data.chunks_mut(3 * plane)) {
        if img.width() == 0 || img.height() == 0 {
            return Err(PreprocessError::Empty {
                what: "given for preprocessing".into(),
                width: img.width(),
                height: img.height(),
            });
        }
        let resized = resize_bicubic(img, width as u32, height as u32);
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
    fn resizes_to_the_network_size() {
        let img = RgbImage::from_pixel(1242, 375, image::Rgb([128, 64, 32]));
        let t = to_network_input(&img, 256, 1024).unwrap();
        assert_eq!(t.size(), [1, 3, 256, 1024]);
        // A flat image stays flat through bicubic resampling.
        let expected = 128.0 / 255.0 * 2.0 - 1.0;
        assert!((t.double_value(&[0, 0, 100, 500]) - expected).abs() < 1e-6);
    }
}
