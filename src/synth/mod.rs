//! Synthetic worlds rendered in the real datasets' on-disk layouts (Virtual KITTI 2, KITTI,
//! Extended CMU-Seasons, Oxford RobotCar), so every reader, the training and the evaluation can
//! run before any real data is at hand, and accuracy can be measured against known poses.
//!
//! One procedural world (`world`), ray cast with a pinhole camera (`render`) under lighting,
//! weather and season (`condition`), then written by one module per format. Frames render in
//! parallel (rayon); every pixel is a pure function of the seed, so the same seed writes the
//! same bytes.

pub mod cmu;
pub mod condition;
pub mod kitti;
pub mod noise;
pub mod output;
pub mod preview;
pub mod render;
pub mod robotcar;
pub mod style;
pub mod vkitti2;
pub mod world;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, RgbImage};
use nalgebra::{Matrix3, Rotation3, Translation3, UnitQuaternion, Vector3};
use rayon::prelude::*;

use crate::atomic::{write_atomic, PathIoError};
use crate::geom::Pose;
use world::World;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("cannot encode {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("{0}")]
    Options(String),
}

/// Camera-to-world pose of a camera on a vehicle: `heading` of the vehicle (radians from +x),
/// camera `yaw` relative to it (radians, positive to the left), at `height` metres. Camera axes:
/// x right, y down, z forward.
pub fn camera_pose(position: [f64; 2], heading: f64, yaw: f64, height: f64) -> Pose {
    let a = heading + yaw;
    let forward = Vector3::new(a.cos(), a.sin(), 0.0);
    let right = Vector3::new(a.sin(), -a.cos(), 0.0);
    let down = Vector3::new(0.0, 0.0, -1.0);
    let r = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[right, down, forward]));
    Pose::from_parts(
        Translation3::new(position[0], position[1], height),
        UnitQuaternion::from_rotation_matrix(&r),
    )
}

/// Vehicle position on the world's route at arc length `s`, in its lane (plus `extra` metres to
/// the left), and the heading.
pub fn on_route(world: &World, s: f64, extra: f64) -> ([f64; 2], f64) {
    let (p, h) = world.route.sample(s);
    let off = world.lane_offset + extra;
    ([p[0] - h.sin() * off, p[1] + h.cos() * off], h)
}

/// Encoded image bytes written atomically.
pub fn save_png_rgb(path: &Path, img: &RgbImage) -> Result<(), SynthError> {
    save_encoded(path, |buf| img.write_to(buf, image::ImageFormat::Png))
}

pub fn save_png_gray(path: &Path, img: &GrayImage) -> Result<(), SynthError> {
    save_encoded(path, |buf| img.write_to(buf, image::ImageFormat::Png))
}

pub fn save_png_gray16(
    path: &Path,
    img: &ImageBuffer<Luma<u16>, Vec<u16>>,
) -> Result<(), SynthError> {
    save_encoded(path, |buf| img.write_to(buf, image::ImageFormat::Png))
}

pub fn save_jpeg(path: &Path, img: &RgbImage) -> Result<(), SynthError> {
    save_encoded(path, |buf| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(buf, 95).encode_image(img)
    })
}

fn save_encoded(
    path: &Path,
    encode: impl FnOnce(&mut Cursor<Vec<u8>>) -> image::ImageResult<()>,
) -> Result<(), SynthError> {
    let mut buf = Cursor::new(Vec::new());
    encode(&mut buf).map_err(|e| SynthError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, buf.get_ref())?;
    Ok(())
}

/// Runs `tasks` (one image each) in parallel with a progress bar, stopping at the first error.
pub fn run_parallel<T: Sync>(
    what: &str,
    tasks: &[T],
    f: impl Fn(&T) -> Result<(), SynthError> + Sync + Send,
) -> Result<(), SynthError> {
    let progress = crate::progress::Progress::new(what, "images", tasks.len() as u64, 0);
    let result = tasks.par_iter().try_for_each(|t| {
        f(t)?;
        progress.inc(1);
        Ok(())
    });
    progress.finish();
    result
}

/// Largest image side `synth` renders.
pub const MAX_SIDE: u32 = 8192;
/// Largest frame, place or image count `synth` renders per scene, sequence or traversal (the
/// flags and a sequences file's recipe alike: a typo such as --frames 1000000000 is refused up
/// front).
pub const MAX_COUNT: u64 = 100_000;
pub use output::MARKER;

/// What a `synth` command is about to make, checked before anything is rendered.
pub struct Plan<'a> {
    pub images: u64,
    pub width: u32,
    pub height: u32,
    /// (flag, value, largest accepted)
    pub counts: &'a [(&'static str, u64, u64)],
}

/// Checks sizes and counts, then the estimated disk and memory against what this machine has.
pub fn check_plan(plan: &Plan, out: &Path) -> Result<(), SynthError> {
    for (flag, v) in [("--width", plan.width), ("--height", plan.height)] {
        if !(16..=MAX_SIDE).contains(&v) {
            return Err(SynthError::Options(format!(
                "{flag}: expected 16 to {MAX_SIDE} pixels, found {v}"
            )));
        }
    }
    for &(flag, v, max) in plan.counts {
        if !(1..=max).contains(&v) {
            return Err(SynthError::Options(format!(
                "{flag}: expected 1 to {max}, found {v}"
            )));
        }
    }
    let pixels = plan.width as u64 * plan.height as u64;
    // Encoded RGB + 16-bit depth + classes, uncompressed at worst: 6 bytes a pixel.
    let disk = plan.images.saturating_mul(pixels).saturating_mul(6);
    if let Some(free) = crate::resources::free_disk(out) {
        if disk > free {
            return Err(SynthError::Options(format!(
                "{} images of {}x{} need up to {} on disk; {} is free where {} would go",
                plan.images,
                plan.width,
                plan.height,
                crate::resources::human_bytes(disk),
                crate::resources::human_bytes(free),
                out.display()
            )));
        }
    }
    // Each rendering thread holds an image's colour, depth, class and float buffers.
    let threads = rayon::current_num_threads() as u64;
    let memory = pixels.saturating_mul(64).saturating_mul(threads);
    if let Some(avail) = crate::resources::available_memory() {
        if memory > avail {
            return Err(SynthError::Options(format!(
                "rendering {}x{} images on {threads} threads needs about {} of memory; {} is \
                 available",
                plan.width,
                plan.height,
                crate::resources::human_bytes(memory),
                crate::resources::human_bytes(avail)
            )));
        }
    }
    Ok(())
}

/// What a generator wrote, for the summary line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub images: usize,
    pub files: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Point3;

    #[test]
    fn camera_pose_looks_along_the_heading_with_y_down() {
        let p = camera_pose([10.0, 5.0], std::f64::consts::FRAC_PI_2, 0.0, 1.6);
        // A point 7 m north of the camera is straight ahead at depth 7.
        let in_cam = p.inverse() * Point3::new(10.0, 12.0, 1.6);
        assert!((in_cam.coords - Vector3::new(0.0, 0.0, 7.0)).norm() < 1e-12);
        // The ground below is down (+y) in the image.
        let below = p.inverse() * Point3::new(10.0, 12.0, 0.0);
        assert!(below.y > 0.0);
        // East is to the right when heading north.
        assert!((p.inverse() * Point3::new(11.0, 12.0, 1.6)).x > 0.0);
    }
}
