//! A camera's intrinsics and lens from its `sensor_msgs/CameraInfo` (REP 104), for what needs
//! them in a map built from a recording (`build-map --bag --yaw-views`).
//!
//! Which CameraInfo: image_transport's convention, the `camera_info` topic beside the image
//! topic (`/cam/image_raw` and `/cam/image_raw/compressed` -> `/cam/camera_info`). Which
//! numbers: for a raw image (`image_raw`, `image_color`, ...) the camera matrix K and the
//! distortion D; for a rectified one (a topic named `image_rect...`, as image_proc publishes
//! it) the projection matrix P and no distortion (REP 104: P holds the intrinsics of the
//! rectified image).

use crate::geom::Pinhole;
use crate::map::views::{Distortion, Lens};

/// The fields of a CameraInfo message this needs (REP 104 names).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    pub width: u32,
    pub height: u32,
    pub distortion_model: String,
    pub d: Vec<f64>,
    pub k: [f64; 9],
    pub p: [f64; 12],
    pub binning_x: u32,
    pub binning_y: u32,
    /// x_offset, y_offset, width, height of the region of interest (all 0: the full image).
    pub roi: [u32; 4],
}

/// What a recording's notes say of an image topic whose frames got no intrinsics:
/// `<topic>: no intrinsics: <why>` (build-map quotes these notes when `--yaw-views` needs them).
pub const NO_INTRINSICS: &str = ": no intrinsics: ";

/// The base topic of an image topic: a `sensor_msgs/CompressedImage` topic is image_transport's
/// `<base>/<transport>` (`compressed`, `zstd`, `compressedDepth`, ...).
fn base_topic(image_topic: &str, compressed: bool) -> &str {
    if compressed {
        image_topic.rsplit_once('/').map_or("", |(base, _)| base)
    } else {
        image_topic
    }
}

/// The `camera_info` topic of an image topic (image_transport's convention): the namespace of
/// its base topic (without the transport of a `compressed` one) and `camera_info`.
pub fn camera_info_topic(image_topic: &str, compressed: bool) -> String {
    let base = base_topic(image_topic, compressed);
    let ns = base.rsplit_once('/').map_or("", |(ns, _)| ns);
    format!("{ns}/camera_info")
}

/// Whether an image topic carries rectified images (image_proc's `image_rect`,
/// `image_rect_color`): its intrinsics are P's, with no distortion.
pub fn is_rectified(image_topic: &str, compressed: bool) -> bool {
    base_topic(image_topic, compressed)
        .rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with("image_rect"))
}

/// The intrinsics (at the calibrated size) and the lens of images of `info`'s camera, as
/// OpenCV's radial-tangential model (`plumb_bob`; `rational_polynomial` when its k4-k6 are 0),
/// the one this code undistorts, or why not (a fisheye is refused here: [`camera_lens`] reads
/// it, for comparing lenses).
pub fn lens(info: &CameraInfo, rectified: bool) -> Result<(Pinhole, Option<Distortion>), String> {
    let (k, lens) = read_lens(
        info,
        rectified,
        "plumb_bob (up to 5), rational_polynomial (up to 8, its k4-k6 zero), or none with D all \
         zero",
    )?;
    match lens {
        Lens::Brown(d) => Ok((k, crate::map::views::lens_of(Some(&d)).copied())),
        Lens::Rational(d) => Err(format!(
            "rational_polynomial k4-k6 {:?}: only OpenCV's k1, k2, p1, p2, k3 model is \
             supported (expected them 0)",
            &d[5..]
        )),
        Lens::Equidistant(_) => Err(format!(
            "distortion_model `{}` (a fisheye): only OpenCV's k1, k2, p1, p2, k3 model \
             (plumb_bob, or rational_polynomial with k4-k6 zero) is undistorted; rectify the \
             images first (image_proc) and record the image_rect topic",
            info.distortion_model
        )),
    }
}

/// The intrinsics (at the calibrated size) and the lens of images of `info`'s camera in any of
/// the models ROS names (`plumb_bob`, `rational_polynomial`, `equidistant`; [`Lens`]), or why
/// not; for comparing lenses (`map::views::lens_mismatch`).
pub fn camera_lens(info: &CameraInfo, rectified: bool) -> Result<(Pinhole, Lens), String> {
    read_lens(
        info,
        rectified,
        "plumb_bob (up to 5), rational_polynomial (up to 8), equidistant (4; more only if zero), \
         or none with D all zero",
    )
}

/// [`camera_lens`], naming `expected` models when the model or D's length is not one of them.
fn read_lens(
    info: &CameraInfo,
    rectified: bool,
    expected: &str,
) -> Result<(Pinhole, Lens), String> {
    if info.width == 0 || info.height == 0 {
        return Err(format!(
            "width x height {} x {}: expected the calibrated image size",
            info.width, info.height
        ));
    }
    if info.binning_x > 1 || info.binning_y > 1 {
        return Err(format!(
            "binning {} x {}: binned images are not supported (expected 0 or 1)",
            info.binning_x, info.binning_y
        ));
    }
    let [rx, ry, rw, rh] = info.roi;
    if (rw, rh) != (0, 0) && (rx, ry, rw, rh) != (0, 0, info.width, info.height) {
        return Err(format!(
            "roi x_offset {rx}, y_offset {ry}, width {rw}, height {rh} in {} x {}: cropped \
             images are not supported (expected all 0, or the full image)",
            info.width, info.height
        ));
    }
    let (fx, fy, cx, cy, skew, what) = if rectified {
        (info.p[0], info.p[5], info.p[2], info.p[6], info.p[1], "P")
    } else {
        (info.k[0], info.k[4], info.k[2], info.k[5], info.k[1], "K")
    };
    if skew != 0.0 {
        return Err(format!(
            "{what}[1] (skew) {skew}: expected 0 (a camera with skewed pixels is not supported)"
        ));
    }
    if !([fx, fy, cx, cy].iter().all(|v| v.is_finite()) && fx > 0.0 && fy > 0.0) {
        return Err(format!(
            "{what} gives fx {fx}, fy {fy}, cx {cx}, cy {cy}: expected positive focal lengths \
             (an all-zero {what} is an uncalibrated camera)"
        ));
    }
    let k = Pinhole {
        width: info.width,
        height: info.height,
        fx,
        fy,
        cx,
        cy,
    };
    if rectified {
        return Ok((k, Lens::PINHOLE));
    }
    if info.d.iter().any(|v| !v.is_finite()) {
        return Err(format!("D {:?}: a value is not finite", info.d));
    }
    // D padded with zeros to the model's length.
    fn padded<const N: usize>(d: &[f64]) -> [f64; N] {
        std::array::from_fn(|i| d.get(i).copied().unwrap_or(0.0))
    }
    let model = info.distortion_model.as_str();
    let lens = match model {
        "plumb_bob" if info.d.len() <= 5 => Lens::Brown(padded(&info.d)),
        "rational_polynomial" if info.d.len() <= 8 => {
            let d: [f64; 8] = padded(&info.d);
            if d[5..].iter().all(|&v| v == 0.0) {
                Lens::Brown(padded(&d))
            } else {
                Lens::Rational(d)
            }
        }
        // OpenCV's fisheye model (`fisheye` is what some drivers write for it); realsense-ros
        // pads its D to 5 values with a zero.
        "equidistant" | "fisheye" if info.d.iter().skip(4).all(|&v| v == 0.0) => {
            Lens::Equidistant(padded(&info.d))
        }
        "" | "none" if info.d.iter().all(|&v| v == 0.0) => Lens::PINHOLE,
        _ => {
            return Err(format!(
                "distortion_model `{model}` with {} coefficients: expected {expected}",
                info.d.len()
            ))
        }
    };
    Ok((k, lens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> CameraInfo {
        CameraInfo {
            width: 640,
            height: 480,
            distortion_model: "plumb_bob".into(),
            d: vec![-0.29, 0.08, 0.0004, -0.0002, -0.01],
            k: [500.0, 0.0, 321.5, 0.0, 502.0, 239.0, 0.0, 0.0, 1.0],
            p: [
                480.0, 0.0, 318.0, 0.0, 0.0, 481.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0,
            ],
            binning_x: 0,
            binning_y: 0,
            roi: [0; 4],
        }
    }

    #[test]
    fn the_camera_info_topic_sits_beside_the_image_topic() {
        assert_eq!(
            camera_info_topic("/cam/image_raw", false),
            "/cam/camera_info"
        );
        // Any transport of a CompressedImage topic.
        for transport in ["compressed", "zstd", "compressedDepth"] {
            assert_eq!(
                camera_info_topic(&format!("/cam/image_raw/{transport}"), true),
                "/cam/camera_info"
            );
        }
        assert_eq!(
            camera_info_topic("/robot/front/image_rect_color", false),
            "/robot/front/camera_info"
        );
        assert_eq!(camera_info_topic("/image_raw", false), "/camera_info");
        assert!(is_rectified("/cam/image_rect/compressed", true));
        assert!(is_rectified("/cam/image_rect_color", false));
        assert!(!is_rectified("/cam/image_raw", false));
        assert!(!is_rectified("/rect/image_raw", false));
        assert!(!is_rectified("/cam/image_raw/compressed", true));
    }

    #[test]
    fn raw_images_take_k_and_d_and_rectified_ones_take_p() {
        let (k, d) = lens(&info(), false).unwrap();
        assert_eq!((k.width, k.height), (640, 480));
        assert_eq!((k.fx, k.fy, k.cx, k.cy), (500.0, 502.0, 321.5, 239.0));
        assert_eq!(d, Some([-0.29, 0.08, 0.0004, -0.0002, -0.01]));
        let (k, d) = lens(&info(), true).unwrap();
        assert_eq!((k.fx, k.fy, k.cx, k.cy), (480.0, 481.0, 318.0, 240.5));
        assert_eq!(d, None);
        // Four coefficients (no k3), rational_polynomial with k4-k6 zero, no distortion.
        let mut i = info();
        i.d = vec![-0.2, 0.05, 0.0, 0.0];
        assert_eq!(
            lens(&i, false).unwrap().1,
            Some([-0.2, 0.05, 0.0, 0.0, 0.0])
        );
        i.distortion_model = "rational_polynomial".into();
        i.d = vec![-0.2, 0.05, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0];
        assert_eq!(
            lens(&i, false).unwrap().1,
            Some([-0.2, 0.05, 0.0, 0.0, 0.01])
        );
        i.d = vec![0.0; 5];
        i.distortion_model = "plumb_bob".into();
        assert_eq!(lens(&i, false).unwrap().1, None);
        i.distortion_model = String::new();
        i.d = Vec::new();
        assert_eq!(lens(&i, false).unwrap().1, None);
    }

    #[test]
    fn what_the_model_cannot_follow_is_refused_with_the_field() {
        let why = |f: &dyn Fn(&mut CameraInfo)| {
            let mut i = info();
            f(&mut i);
            lens(&i, false).unwrap_err()
        };
        assert!(why(&|i| i.k = [0.0; 9]).contains("uncalibrated"));
        assert!(why(&|i| i.width = 0).contains("calibrated image size"));
        assert!(why(&|i| i.binning_x = 2).contains("binning 2 x 0"));
        assert!(why(&|i| i.roi = [10, 10, 320, 240]).contains("width 320, height 240"));
        assert!(why(&|i| i.roi = [4, 0, 640, 480]).contains("x_offset 4"));
        assert!(why(&|i| i.k[1] = 0.5).contains("K[1] (skew) 0.5"));
        assert!(why(&|i| i.distortion_model = "equidistant".into()).contains("`equidistant`"));
        assert!(why(&|i| {
            i.distortion_model = "equidistant".into();
            i.d = vec![-0.007, 0.043, -0.041, 0.008];
        })
        .contains("`equidistant` (a fisheye)"));
        assert!(why(&|i| {
            i.distortion_model = "rational_polynomial".into();
            i.d = vec![-0.2, 0.05, 0.0, 0.0, 0.01, 0.3, 0.0, 0.0];
        })
        .contains("k4-k6"));
        assert!(why(&|i| i.d[0] = f64::NAN).contains("not finite"));
        // A full-image region of interest is the image.
        let mut i = info();
        i.roi = [0, 0, 640, 480];
        assert!(lens(&i, false).is_ok());
    }

    #[test]
    fn camera_lens_reads_fisheye_and_rational_lenses_too() {
        let mut i = info();
        assert_eq!(
            camera_lens(&i, false).unwrap().1,
            Lens::Brown([-0.29, 0.08, 0.0004, -0.0002, -0.01])
        );
        i.distortion_model = "equidistant".into();
        i.d = vec![-0.007, 0.043, -0.041, 0.008];
        assert_eq!(
            camera_lens(&i, false).unwrap().1,
            Lens::Equidistant([-0.007, 0.043, -0.041, 0.008])
        );
        // All zero: still a fisheye; rectified: a pinhole.
        i.d = vec![0.0; 4];
        assert_eq!(
            camera_lens(&i, false).unwrap().1,
            Lens::Equidistant([0.0; 4])
        );
        assert_eq!(camera_lens(&i, true).unwrap().1, Lens::PINHOLE);
        i.distortion_model = "rational_polynomial".into();
        i.d = vec![-0.2, 0.05, 0.0, 0.0, 0.01, 0.3, 0.0, 0.0];
        assert_eq!(
            camera_lens(&i, false).unwrap().1,
            Lens::Rational([-0.2, 0.05, 0.0, 0.0, 0.01, 0.3, 0.0, 0.0])
        );
        // As realsense-ros publishes a fisheye: D padded to 5 with a zero.
        i.distortion_model = "equidistant".into();
        i.d = vec![-0.007, 0.043, -0.041, 0.008, 0.0];
        assert_eq!(
            camera_lens(&i, false).unwrap().1,
            Lens::Equidistant([-0.007, 0.043, -0.041, 0.008])
        );
        i.d = vec![-0.007, 0.043, -0.041, 0.008, 0.1];
        assert!(camera_lens(&i, false)
            .unwrap_err()
            .contains("`equidistant` with 5 coefficients: expected plumb_bob"));
        // Unknown models: camera_lens names the fisheye among those it reads, lens (which
        // undistorts) does not.
        i.distortion_model = "kannala_brandt".into();
        assert!(camera_lens(&i, false)
            .unwrap_err()
            .contains("equidistant (4;"));
        assert!(!lens(&i, false).unwrap_err().contains("equidistant"));
    }
}
