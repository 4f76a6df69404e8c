//! Yaw views of a map's images (`build-map --yaw-views`): each database image is also encoded as
//! the camera would have seen it turned by a few degrees about its vertical axis, and a query's
//! distance to the map entry is the smallest over the entry's image and its views.
//!
//! Why: a map image is one heading at one place; a vehicle passing it later drives a little
//! aside and turned, and a turn of a few degrees shifts the whole image sideways. The
//! descriptor (flattened encoder feature maps, paper section III-D) keeps where things are in
//! the image, so a turned query lands far from its place's map image (maps/models/MODEL_CARD.md,
//! "The drive protocol": queries turned 4-6 degrees from the nearest map image are retrieved
//! within 5 m far less often). A pure rotation needs no depth: for pinhole intrinsics K, the
//! view turned by yaw `a` is the homography `p_src ~ K R_a^T K^-1 p_view`, exact for every scene
//! point (the view synthesis of Torii et al., "24/7 place recognition by view synthesis", CVPR
//! 2015, restricted to rotations). With lens distortion (OpenCV's k1, k2, p1, p2, k3, as Extended
//! CMU-Seasons' `intrinsics.txt` (k3 = 0) and a ROS camera's `plumb_bob` CameraInfo give them) each view pixel is undistorted to its ray, turned,
//! and distorted again into the image: the view is what the same (distorting) camera would have
//! taken turned. Pixels the original image does not show stay black.
//!
//! Convention: a positive yaw turns the camera to its left (counter-clockwise seen from above,
//! as REP 103's yaw about an up axis), so the scene moves right in the view. The view's
//! `world_from_cam` would be the image's times `view_from_cam(yaw)^T` (cam_from_view); the map
//! keeps the image's pose (the entry is the place; the view only matches).

use image::{Rgb, RgbImage};
use nalgebra::{Matrix3, Vector3};

use crate::geom::Pinhole;

/// At most this many distinct angles (each used both ways: 8 views per image).
pub const MAX_ANGLES: usize = 4;
/// The largest angle, in degrees: beyond it a view is mostly black at the usual fields of view.
pub const MAX_YAW_DEG: f64 = 20.0;

/// The angles of build-map's and evaluate's default views (`--yaw-views 3,6`: four views per
/// image, +3, -3, +6, -6 degrees), where every map image has intrinsics. Chosen on the
/// validation worlds (maps/models/MODEL_CARD.md, "Yaw views by default"): the six validation
/// worlds' mean (5 m, 10 deg) 78.2% without views, 85.2% with, none lower.
pub const DEFAULT_ANGLES: [f64; 2] = [3.0, 6.0];

/// The signed yaws of [`DEFAULT_ANGLES`], in the order a map stores them.
pub fn default_yaw_views() -> Vec<f64> {
    DEFAULT_ANGLES.iter().flat_map(|&a| [a, -a]).collect()
}

/// Parses `--yaw-views`: comma-separated angles in degrees, each in (0, 20], at most four
/// distinct; each becomes two views (left and right). Returns the signed yaws in the order the
/// map stores its views, the angles ascending whatever order they were given in (`6,3` builds
/// the same map as `3,6`): +a1, -a1, +a2, -a2, ...; `none` (any case): no views (empty).
pub fn parse_yaw_views(s: &str) -> Result<Vec<f64>, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut angles: Vec<f64> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.eq_ignore_ascii_case("none") {
            return Err(format!(
                "`none` (no views) stands alone; found it among angles in `{s}`"
            ));
        }
        let a: f64 = part.parse().map_err(|_| {
            format!(
                "expected angles in degrees separated by commas (e.g. 3,6) or none, found `{part}` in `{s}`"
            )
        })?;
        if !(a > 0.0 && a <= MAX_YAW_DEG) {
            return Err(format!(
                "each angle must be more than 0 and at most {MAX_YAW_DEG} degrees (each is used \
                 both ways, left and right), found {part}"
            ));
        }
        if angles.contains(&a) {
            return Err(format!("angle {part} is given twice in `{s}`"));
        }
        angles.push(a);
    }
    if angles.len() > MAX_ANGLES {
        return Err(format!(
            "at most {MAX_ANGLES} angles ({} views per image), found {} in `{s}`",
            2 * MAX_ANGLES,
            angles.len()
        ));
    }
    angles.sort_by(f64::total_cmp);
    Ok(angles.iter().flat_map(|&a| [a, -a]).collect())
}

/// `+3,-3,+6,-6` as a report writes it: `±3,±6 deg`; `none` without views; a set that is not
/// symmetric (a map written otherwise) with its signs: `+3,-6 deg`.
pub fn describe(yaws: &[f64]) -> String {
    if yaws.is_empty() {
        return "none".into();
    }
    if !yaws.iter().all(|y| yaws.contains(&-y)) {
        let signed: Vec<String> = yaws.iter().map(|y| format!("{y:+}")).collect();
        return format!("{} deg", signed.join(","));
    }
    let mut shown: Vec<String> = Vec::new();
    for &y in yaws {
        let a = format!("±{}", y.abs());
        if !shown.contains(&a) {
            shown.push(a);
        }
    }
    format!("{} deg", shown.join(","))
}

/// The rotation from the image's camera frame to the view's (camera axes: x right, y down, z
/// forward), for a view turned left by `yaw_deg`.
pub fn view_from_cam(yaw_deg: f64) -> Matrix3<f64> {
    let (s, c) = yaw_deg.to_radians().sin_cos();
    // The view's x, y, z axes as rows in the image's frame: turned left, its optical axis
    // points to the image's -x.
    Matrix3::new(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)
}

/// OpenCV's radial-tangential lens model: `[k1, k2, p1, p2, k3]` (OpenCV's and ROS
/// `plumb_bob`'s order) on normalised coordinates (so the same at any image size).
pub type Distortion = [f64; 5];

/// A lens as a camera's calibration gives it, for comparing lenses ([`lens_shift`]): OpenCV's
/// three models as ROS CameraInfo names them (REP 104, `sensor_msgs/distortion_models`). Only
/// [`Lens::Brown`] is undistorted and rectified here (`build-map --rectify`, `replay --rectify`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lens {
    /// `plumb_bob`, and `rational_polynomial` with k4-k6 zero: [`Distortion`].
    Brown(Distortion),
    /// `rational_polynomial`: k1, k2, p1, p2, k3, k4, k5, k6; radial factor
    /// (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6).
    Rational([f64; 8]),
    /// `equidistant` (OpenCV's fisheye model): k1-k4; a ray at angle theta from the optical axis
    /// (r = tan theta) lands at radius theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 +
    /// k4 theta^8). With all k zero it is still a fisheye (radius theta), not a pinhole.
    Equidistant([f64; 4]),
}

impl Lens {
    /// An ideal pinhole (no distortion).
    pub const PINHOLE: Lens = Lens::Brown([0.0; 5]);

    /// The radial factor g at r^2 = `r2` (normalised, undistorted): a ray at r lands at g r.
    fn radial(&self, r2: f64) -> f64 {
        match self {
            Lens::Brown(d) => radial(d, r2),
            Lens::Rational(d) => {
                let [k1, k2, _, _, k3, k4, k5, k6] = *d;
                (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
            }
            Lens::Equidistant([k1, k2, k3, k4]) => {
                if r2 < 1e-12 {
                    return 1.0;
                }
                let r = r2.sqrt();
                let t = r.atan();
                let t2 = t * t;
                t * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) / r
            }
        }
    }

    /// The r^2 where the lens stops keeping the order of rays (r g(r) no longer grows), if any
    /// before r^2 = 1e4 ([`fold_r2`] for Brown's model; a 1% grid for the others).
    fn fold_r2(&self) -> Option<f64> {
        if let Lens::Brown(d) = self {
            return fold_r2(d);
        }
        let out = |s: f64| s.sqrt() * self.radial(s);
        let (mut s, mut last) = (1e-6, out(1e-6));
        while s <= 1e4 {
            let v = out(s * 1.01);
            if !(v.is_finite() && v > last) {
                return Some(s);
            }
            (s, last) = (s * 1.01, v);
        }
        None
    }

    /// The lens in words, as messages quote it: `a pinhole (no distortion)`, `a distorting lens
    /// (k1 -0.399, k2 0.189)`, `a fisheye lens (equidistant: k1 ...)`.
    pub fn describe(&self) -> String {
        match self {
            Lens::Brown(d) => match lens_of(Some(d)) {
                None => "a pinhole (no distortion)".to_string(),
                Some(d) => format!("a distorting lens ({})", coefficients(d)),
            },
            Lens::Rational(d) => format!(
                "a distorting lens (rational_polynomial: {}, k4 {:.3}, k5 {:.3}, k6 {:.3})",
                coefficients(&[d[0], d[1], d[2], d[3], d[4]]),
                d[5],
                d[6],
                d[7]
            ),
            Lens::Equidistant([k1, k2, k3, k4]) => format!(
                "a fisheye lens (equidistant: k1 {k1:.3}, k2 {k2:.3}, k3 {k3:.3}, k4 {k4:.3})"
            ),
        }
    }
}

/// How much further out one lens puts a ray than the other, at most over the image: the largest
/// ratio of their radial factors g (for Brown's model 1 + k1 r^2 + k2 r^4 + k3 r^6; [`Lens`]
/// for the others), less 1, for r from the centre to the corner of `k` farthest from (cx, cy)
/// (at the calibration's focal length), within the field where both lenses keep the order of
/// rays (before [`fold_r2`]); tangential terms, a thousandth at most in real lenses, are left
/// out. 0 for the same lens; about 0.21 for an Extended CMU-Seasons camera against a pinhole
/// (the lens draws the pinhole's corner 17% nearer the centre).
pub fn lens_shift(k: &Pinhole, a: &Lens, b: &Lens) -> f64 {
    let corner = [(0.0, 0.0), (k.width as f64, 0.0), (0.0, k.height as f64)]
        .into_iter()
        .chain([(k.width as f64, k.height as f64)])
        .map(|(u, v)| ((u - k.cx) / k.fx).powi(2) + ((v - k.cy) / k.fy).powi(2))
        .fold(0.0, f64::max);
    let field = [a.fold_r2(), b.fold_r2()]
        .into_iter()
        .flatten()
        .fold(corner, f64::min);
    (0..=32)
        .map(|i| {
            let r2 = field * i as f64 / 32.0;
            let (ga, gb) = (a.radial(r2), b.radial(r2));
            (ga / gb).max(gb / ga) - 1.0
        })
        .fold(0.0, f64::max)
}

/// A camera's frames are said to come through another lens than the map's images when
/// [`lens_shift`] to every map camera they are compared with is over this. Not measured: the
/// one case measured (maps/models/MODEL_CARD.md, "Lenses") is a shift of 0.21, a pinhole map
/// searched with frames through the Extended CMU-Seasons lenses losing 8.8 points, with the
/// truth inside the priors' 95% ellipsoid for 82% of them (1.9 points the other way round).
pub const LENS_WARNING_SHIFT: f64 = 0.02;

/// A camera's lens against a map's ([`lens_mismatch`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LensCompare {
    /// Within [`LENS_WARNING_SHIFT`] of a map camera it is compared with.
    Same,
    /// Another lens.
    Other(LensMismatch),
    /// The map recorded no lens for the cameras it would be compared with (older maps, sources
    /// without intrinsics).
    Unknown,
}

/// How a camera's lens differs from the map's ([`lens_mismatch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LensMismatch {
    /// The smallest [`lens_shift`] to a map camera compared with.
    pub shift: f64,
    /// The camera's lens as its frames are encoded, in words.
    pub frames: String,
    /// Each map camera compared with and its lens as its images were encoded, in words.
    pub map: Vec<String>,
    /// Whether the map's images were rectified (and the frames are not).
    map_rectified: bool,
    /// Whether the frames' lens is one this code rectifies (OpenCV's radial-tangential model).
    frames_rectifiable: bool,
}

impl LensMismatch {
    /// The two lenses and what that costs, after naming the frames: `taken through ..., map
    /// images through ...: ...`.
    pub fn describe(&self) -> String {
        format!(
            "taken through {}, map images through {}: one puts rays up to {:.1}% further out \
             than the other. Expect fewer matches and 95% ellipsoids that hold the truth less \
             often (maps/models/MODEL_CARD.md, \"Lenses\": at 21%, 8.8 points fewer and the \
             truth inside 82% of the ellipsoids for frames through a lens on a pinhole map; \
             1.9 points fewer the other way round)",
            self.frames,
            self.map.join("; "),
            100.0 * self.shift
        )
    }

    /// [`Self::describe`] and what to do, for frames that arrive as they are (the node).
    pub fn explain(&self) -> String {
        let advice = if self.map_rectified {
            "subscribe the rectified images (image_proc's image_rect topic)"
        } else if !self.frames_rectifiable {
            "rectify the frames with image_proc and subscribe its image_rect topic, and build \
             the map from rectified images (build-map --rectify, or a recording of the \
             image_rect topic)"
        } else {
            "build the map from images of this camera, or rectify both (build-map --rectify, \
             and the image_rect topic)"
        };
        format!("{}; {advice}", self.describe())
    }
}

/// Whether frames of `camera` (intrinsics `k`, lens `lens`; `rectified`: the frames are
/// rectified images, a pinhole whatever the lens) are encoded through another lens than the
/// map's images (`lenses`: `MapMeta::lenses`; `map_rectified`: every map image was rectified,
/// a pinhole, whatever it recorded). Compared with the map camera of the same name when
/// `per_camera` (the search keeps to it), else with every map camera (the nearest counts).
pub fn lens_mismatch(
    lenses: &std::collections::BTreeMap<String, Distortion>,
    map_rectified: bool,
    camera: &str,
    k: &Pinhole,
    lens: &Lens,
    rectified: bool,
    per_camera: bool,
) -> LensCompare {
    let theirs: Vec<(String, Lens)> = if map_rectified {
        vec![("rectified".to_string(), Lens::PINHOLE)]
    } else if per_camera {
        match lenses.get(camera) {
            Some(d) => vec![(camera.to_string(), Lens::Brown(*d))],
            None => return LensCompare::Unknown,
        }
    } else if lenses.is_empty() {
        return LensCompare::Unknown;
    } else {
        lenses
            .iter()
            .map(|(c, d)| (c.clone(), Lens::Brown(*d)))
            .collect()
    };
    let mine = if rectified { Lens::PINHOLE } else { *lens };
    let shift = theirs
        .iter()
        .map(|(_, d)| lens_shift(k, &mine, d))
        .fold(f64::INFINITY, f64::min);
    if shift <= LENS_WARNING_SHIFT {
        return LensCompare::Same;
    }
    LensCompare::Other(LensMismatch {
        shift,
        frames: mine.describe(),
        map: theirs
            .iter()
            .map(|(c, d)| format!("{c}: {}", d.describe()))
            .collect(),
        map_rectified,
        frames_rectifiable: matches!(mine, Lens::Brown(_)),
    })
}

/// Each camera's lens in a few words (`c0 pinhole, c1 distorting (k1 -0.399, k2 0.189)`), for
/// summaries.
pub fn describe_lenses(lenses: &std::collections::BTreeMap<String, Distortion>) -> String {
    lenses
        .iter()
        .map(|(c, d)| match lens_of(Some(d)) {
            None => format!("{c} pinhole"),
            Some(d) => format!("{c} distorting ({})", coefficients(d)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A lens's radial coefficients as the messages quote them: `k1 -0.399, k2 0.189` (and k3 when
/// it is not 0).
fn coefficients(d: &Distortion) -> String {
    let k3 = if d[4] != 0.0 {
        format!(", k3 {:.3}", d[4])
    } else {
        String::new()
    };
    format!("k1 {:.3}, k2 {:.3}{k3}", d[0], d[1])
}

/// `distortion` if it bends anything (a coefficient other than zero), else None: an all-zero
/// lens is an ideal pinhole.
pub fn lens_of(distortion: Option<&Distortion>) -> Option<&Distortion> {
    distortion.filter(|d| d.iter().any(|&c| c != 0.0))
}

/// Intrinsics `k` (given at any size) for an image of `w` x `h` pixels.
fn intrinsics_at(k: &Pinhole, w: u32, h: u32) -> Pinhole {
    if (k.width, k.height) == (w, h) {
        *k
    } else {
        k.scaled(w, h)
    }
}

/// How far `(x, y)` distorts from the distorted point `(xd, yd)`: distort(x, y) - (xd, yd).
fn residual(d: &Distortion, x: f64, y: f64, xd: f64, yd: f64) -> (f64, f64) {
    let (cx, cy) = distort(d, x, y);
    (cx - xd, cy - yd)
}

/// The radial factor `1 + k1 r^2 + k2 r^4 + k3 r^6` at `r2` = r^2.
fn radial(d: &Distortion, r2: f64) -> f64 {
    let [k1, k2, _, _, k3] = *d;
    1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
}

/// Normalised undistorted (x, y) -> distorted (OpenCV's model).
pub fn distort(d: &Distortion, x: f64, y: f64) -> (f64, f64) {
    let [_, _, p1, p2, _] = *d;
    let r2 = x * x + y * y;
    let radial = radial(d, r2);
    (
        x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
        y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y,
    )
}

/// The inverse of [`distort`]: fixed-point iteration (as OpenCV's undistortPoints, iterated to
/// convergence), and where that does not converge (a strong barrel far from the centre: the
/// iteration oscillates) Newton's method on the lens model from the distorted point. None where
/// neither finds a point that distorts back to (xd, yd) before the lens model folds back (far
/// outside the lens's valid field).
pub fn undistort(d: &Distortion, xd: f64, yd: f64) -> Option<(f64, f64)> {
    let [_, _, p1, p2, _] = *d;
    let (mut x, mut y) = (xd, yd);
    let miss = |x: f64, y: f64| {
        let (ex, ey) = residual(d, x, y, xd, yd);
        ex.hypot(ey)
    };
    for _ in 0..100 {
        let r2 = x * x + y * y;
        let radial = radial(d, r2);
        if radial <= 0.0 {
            break;
        }
        let dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
        let dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
        let (nx, ny) = ((xd - dx) / radial, (yd - dy) / radial);
        let step2 = (nx - x).powi(2) + (ny - y).powi(2);
        (x, y) = (nx, ny);
        if step2 < 1e-24 {
            break;
        }
    }
    if !(x.is_finite() && y.is_finite() && miss(x, y) < 1e-8) {
        (x, y) = newton_undistort(d, xd, yd)?;
    }
    let within_fold = fold_r2(d).is_none_or(|fold| x * x + y * y <= fold);
    (miss(x, y) < 1e-8 && within_fold).then_some((x, y))
}

/// Newton's method for [`undistort`], from the distorted point itself, each step halved until
/// the residual shrinks.
fn newton_undistort(d: &Distortion, xd: f64, yd: f64) -> Option<(f64, f64)> {
    let [k1, k2, p1, p2, k3] = *d;
    let (mut x, mut y) = (xd, yd);
    let (mut ex, mut ey) = residual(d, x, y, xd, yd);
    for _ in 0..100 {
        if ex.hypot(ey) < 1e-12 {
            break;
        }
        // The Jacobian of `distort` at (x, y); dr is the radial factor's derivative by r^2.
        let r2 = x * x + y * y;
        let rad = radial(d, r2);
        let dr = k1 + r2 * (2.0 * k2 + r2 * 3.0 * k3);
        let (a, b) = (
            rad + 2.0 * x * x * dr + 2.0 * p1 * y + 6.0 * p2 * x,
            2.0 * x * y * dr + 2.0 * p1 * x + 2.0 * p2 * y,
        );
        let (c, e) = (b, rad + 2.0 * y * y * dr + 6.0 * p1 * y + 2.0 * p2 * x);
        let det = a * e - b * c;
        if det.abs() < 1e-15 {
            return None;
        }
        let (sx, sy) = ((e * ex - b * ey) / det, (a * ey - c * ex) / det);
        let mut t = 1.0;
        loop {
            let (nx, ny) = (x - t * sx, y - t * sy);
            let (nex, ney) = residual(d, nx, ny, xd, yd);
            if nex.hypot(ney) < ex.hypot(ey) {
                (x, y, ex, ey) = (nx, ny, nex, ney);
                break;
            }
            t *= 0.5;
            if t < 1e-6 {
                return None;
            }
        }
    }
    Some((x, y))
}

/// The squared radius (of undistorted normalised coordinates) where the radial part of the
/// lens model folds back (`r (1 + k1 r^2 + k2 r^4 + k3 r^6)` stops growing): the smallest
/// positive root s of `1 + 3 k1 s + 5 k2 s^2 + 7 k3 s^3`; None if it never folds within
/// s = 1e4 (a ray 89.4 degrees off the optical axis).
pub fn fold_r2(d: &Distortion) -> Option<f64> {
    let [k1, k2, _, _, k3] = *d;
    let slope = |s: f64| 1.0 + s * (3.0 * k1 + s * (5.0 * k2 + s * 7.0 * k3));
    // The first sign change on a geometric grid (1% steps), then bisection.
    let (mut lo, mut hi) = (0.0, 1e-6);
    while hi <= 1e4 {
        if slope(hi) <= 0.0 {
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if mid <= lo || mid >= hi {
                    break;
                }
                if slope(mid) <= 0.0 {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return Some(hi);
        }
        (lo, hi) = (hi, hi * 1.01);
    }
    None
}

/// The image `img` (taken with intrinsics `k`, given at any size: scaled to the image's, and
/// lens `distortion`, None: none) as the camera turned left by `yaw_deg` would see it:
/// bilinear, black where the image shows nothing.
pub fn yaw_view(
    img: &RgbImage,
    k: &Pinhole,
    distortion: Option<&Distortion>,
    yaw_deg: f64,
) -> RgbImage {
    yaw_views(img, k, distortion, &[yaw_deg]).remove(0)
}

/// [`yaw_view`] for each of `yaws`; each view pixel's ray is undistorted once for all of them.
pub fn yaw_views(
    img: &RgbImage,
    k: &Pinhole,
    distortion: Option<&Distortion>,
    yaws: &[f64],
) -> Vec<RgbImage> {
    let (w, h) = img.dimensions();
    let k = intrinsics_at(k, w, h);
    let lens = lens_of(distortion);
    let to_norm = |u: f64, v: f64| ((u - k.cx) / k.fx, (v - k.cy) / k.fy);
    // The field the image covers: the largest undistorted radius of its corners, and never
    // past where the lens model folds back (beyond it a ray would land inside the image again,
    // a ghost of another direction; a corner that cannot be undistorted lies past the fold).
    let r2_max = lens.map(|d| {
        let fold = fold_r2(d).unwrap_or(f64::INFINITY);
        let (wm, hm) = ((w - 1) as f64, (h - 1) as f64);
        [(0.0, 0.0), (wm, 0.0), (0.0, hm), (wm, hm)]
            .iter()
            .map(|&(u, v)| {
                let (xd, yd) = to_norm(u, v);
                undistort(d, xd, yd).map_or(fold, |(x, y)| x * x + y * y)
            })
            .fold(0.0, f64::max)
            .min(fold)
    });
    // Each view pixel's ray (z = 1), the same for every yaw.
    let rays: Vec<Option<(f64, f64)>> = (0..h)
        .flat_map(|v| (0..w).map(move |u| (u, v)))
        .map(|(u, v)| {
            let (xd, yd) = to_norm(u as f64, v as f64);
            match lens {
                Some(d) => undistort(d, xd, yd),
                None => Some((xd, yd)),
            }
        })
        .collect();
    yaws.iter()
        .map(|&yaw| {
            let cam_from_view = view_from_cam(yaw).transpose();
            let mut out = RgbImage::new(w, h);
            for (px, ray) in out.pixels_mut().zip(&rays) {
                // The view pixel's ray, in the image's frame, to the image's pixel.
                let Some((x, y)) = *ray else { continue };
                let r = cam_from_view * Vector3::new(x, y, 1.0);
                if r.z <= 0.0 {
                    continue;
                }
                let (xs, ys) = (r.x / r.z, r.y / r.z);
                let (xs, ys) = match (lens, r2_max) {
                    (Some(d), Some(r2)) => {
                        if xs * xs + ys * ys > r2 {
                            continue;
                        }
                        distort(d, xs, ys)
                    }
                    _ => (xs, ys),
                };
                if let Some(c) = bilinear(img, k.fx * xs + k.cx, k.fy * ys + k.cy) {
                    *px = c;
                }
            }
            out
        })
        .collect()
}

/// The image `img` (taken with intrinsics `k`, given at any size: scaled to the image's, and
/// lens `distortion`) rectified: what an ideal pinhole camera with the same intrinsics and size
/// would have taken (`build-map --rectify`; OpenCV's undistort with K as the new camera
/// matrix. image_proc's `image_rect` maps to the calibration's P instead, which may differ
/// from K in focal length and centre). Each output pixel's ray is distorted into the image and
/// sampled bilinearly; black where the image shows nothing (with a barrel lens, nowhere: the
/// lens sees wider). No lens (None or all zero): the image unchanged.
pub fn rectified(img: &RgbImage, k: &Pinhole, distortion: Option<&Distortion>) -> RgbImage {
    let Some(d) = lens_of(distortion) else {
        return img.clone();
    };
    let (w, h) = img.dimensions();
    let k = intrinsics_at(k, w, h);
    // Rays past where the lens model folds back are not in the image (a ghost of another
    // direction would land there).
    let fold = fold_r2(d).unwrap_or(f64::INFINITY);
    RgbImage::from_fn(w, h, |u, v| {
        let (x, y) = ((u as f64 - k.cx) / k.fx, (v as f64 - k.cy) / k.fy);
        if x * x + y * y > fold {
            return Rgb([0, 0, 0]);
        }
        let (xd, yd) = distort(d, x, y);
        bilinear(img, k.fx * xd + k.cx, k.fy * yd + k.cy).unwrap_or(Rgb([0, 0, 0]))
    })
}

/// The colour at (x, y) (pixel centres at integers), None outside the image.
fn bilinear(img: &RgbImage, x: f64, y: f64) -> Option<Rgb<u8>> {
    let (w, h) = img.dimensions();
    // A hair of slack: the identity homography may land 1e-13 outside the last pixel.
    const SLACK: f64 = 1e-6;
    let (xm, ym) = ((w - 1) as f64, (h - 1) as f64);
    if !(x >= -SLACK && y >= -SLACK && x <= xm + SLACK && y <= ym + SLACK) {
        return None;
    }
    let (x, y) = (x.clamp(0.0, xm), y.clamp(0.0, ym));
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |xx, yy| img.get_pixel(xx, yy).0.map(f64::from);
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    Some(Rgb(std::array::from_fn(|i| {
        let top = a[i] + (b[i] - a[i]) * fx;
        let bottom = c[i] + (d[i] - c[i]) * fx;
        (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera() -> Pinhole {
        Pinhole {
            width: 160,
            height: 120,
            fx: 120.0,
            fy: 118.0,
            cx: 81.0,
            cy: 58.0,
        }
    }

    /// A strong barrel lens, as Extended CMU-Seasons' cameras (k1 about -0.4).
    const LENS: Distortion = [-0.35, 0.15, 0.0012, -0.0008, 0.0];

    /// The pixel of a ray (x, y, 1) through `lens`.
    fn pixel(k: &Pinhole, lens: Option<&Distortion>, x: f64, y: f64) -> (f64, f64) {
        let (x, y) = lens.map_or((x, y), |d| distort(d, x, y));
        (k.fx * x + k.cx, k.fy * y + k.cy)
    }

    #[test]
    fn the_corner_shift_is_how_much_further_out_one_lens_puts_the_outermost_corner() {
        let corner_shift = |k: &Pinhole, a: &Distortion, b: &Distortion| {
            lens_shift(k, &Lens::Brown(*a), &Lens::Brown(*b))
        };
        let k = camera();
        // The corner farthest from (81, 58) is (0, 120) (LENS keeps the order of rays out to it,
        // its factor falling all the way); its ray through LENS by OpenCV's model, tangential
        // terms included (the shift leaves them out; this lens's, twice a real camera's, move
        // the corner 0.35% of its radius).
        let (x, y) = ((0.0 - k.cx) / k.fx, (120.0 - k.cy) / k.fy);
        assert!(fold_r2(&LENS).is_none_or(|f| f > x * x + y * y));
        let (xd, yd) = distort(&LENS, x, y);
        let moved = ((xd * xd + yd * yd) / (x * x + y * y)).sqrt();
        let shift = corner_shift(&k, &LENS, &[0.0; 5]);
        assert!(
            (shift - (1.0 / moved - 1.0)).abs() < 8e-3,
            "{shift} {moved}"
        );
        assert!(shift > 0.15, "{shift}");
        assert_eq!(corner_shift(&k, &LENS, &LENS), 0.0);
        assert_eq!(corner_shift(&k, &[0.0; 5], &LENS), shift);
        // A narrower view reaches less far out, and the shift is smaller.
        let narrow = Pinhole {
            fx: 2.0 * k.fx,
            fy: 2.0 * k.fy,
            ..k
        };
        assert!(corner_shift(&narrow, &LENS, &[0.0; 5]) < 0.5 * shift);
        // Two lenses whose factors meet at the corner still differ inside the image.
        let r2 = x * x + y * y;
        let crossing = [-0.2, 0.0, 0.0, 0.0, 0.0];
        let other = [-0.4, 0.2 / r2, 0.0, 0.0, 0.0];
        assert!((radial(&crossing, r2) - radial(&other, r2)).abs() < 1e-12);
        assert!(corner_shift(&k, &crossing, &other) > 0.02);
    }

    #[test]
    fn fisheye_and_rational_lenses_are_compared_by_their_own_radial_factors() {
        // By hand: a ray at theta 0.5 rad (r = tan 0.5) through an equidistant lens with
        // k1 0.1 lands at 0.5 (1 + 0.1 * 0.25) = 0.5125.
        let fish = Lens::Equidistant([0.1, 0.0, 0.0, 0.0]);
        let r = 0.5f64.tan();
        assert!((fish.radial(r * r) * r - 0.5125).abs() < 1e-12);
        assert!((fish.radial(0.0) - 1.0).abs() < 1e-12);
        // The rational model with k4-k6 zero is Brown's; its denominator divides.
        let rational =
            |k4: f64| Lens::Rational([LENS[0], LENS[1], 0.0, 0.0, LENS[4], k4, 0.0, 0.0]);
        assert_eq!(rational(0.0).radial(0.3), Lens::Brown(LENS).radial(0.3));
        assert!((rational(0.5).radial(0.3) - radial(&LENS, 0.3) / 1.15).abs() < 1e-12);
        // Every coefficient in its place: at r^2 0.5, (1 + 0.05 + 0.0025 + 0.0005) /
        // (1 + 0.15 + 0.01 + 0.0025).
        let all = Lens::Rational([0.1, 0.01, 0.0, 0.0, 0.004, 0.3, 0.04, 0.02]);
        assert!((all.radial(0.5) - 1.053 / 1.1625).abs() < 1e-12);
        // A strong fisheye barrel stops keeping the order of rays where d(theta_d)/d(theta) =
        // 1 - 1.5 theta^2 = 0: theta = 0.816, r^2 = tan^2 = 1.0 (the 1% grid: within 1%).
        let folding = Lens::Equidistant([-0.5, 0.0, 0.0, 0.0]);
        let f = folding.fold_r2().unwrap();
        let expected = (1.5f64).recip().sqrt().tan().powi(2);
        assert!((f / expected - 1.0).abs() < 0.011, "{f} {expected}");
        // A rational lens whose denominator reaches zero folds before it.
        let pole = Lens::Rational([0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0]);
        assert!(pole.fold_r2().is_some_and(|f| f < 1.0));
        // A fisheye camera (848 x 800, f 286, as wide-angle tracking cameras) against a pinhole
        // map: far beyond the warning; against itself: the same.
        let k = Pinhole {
            width: 848,
            height: 800,
            fx: 286.0,
            fy: 286.0,
            cx: 424.0,
            cy: 400.0,
        };
        let t265 = Lens::Equidistant([-0.007, 0.043, -0.041, 0.008]);
        assert!(t265.fold_r2().is_none());
        let shift = lens_shift(&k, &t265, &Lens::PINHOLE);
        assert!(shift > 0.5, "{shift}");
        assert_eq!(lens_shift(&k, &t265, &t265), 0.0);
        let pin = std::collections::BTreeMap::from([("c0".to_string(), [0.0; 5])]);
        let LensCompare::Other(m) = lens_mismatch(&pin, false, "c0", &k, &t265, false, true) else {
            panic!("a fisheye on a pinhole map");
        };
        assert!(
            m.describe().starts_with(
                "taken through a fisheye lens (equidistant: k1 -0.007, k2 0.043, k3 -0.041, \
                 k4 0.008), map images through c0: a pinhole (no distortion)"
            ),
            "{}",
            m.describe()
        );
        // build-map --rectify cannot undistort a fisheye: the advice is image_proc's.
        assert!(
            m.explain().contains("rectify the frames with image_proc"),
            "{}",
            m.explain()
        );
        // Rectified, the same camera's frames are a pinhole's.
        assert_eq!(
            lens_mismatch(&pin, false, "c0", &k, &t265, true, true),
            LensCompare::Same
        );
    }

    #[test]
    fn a_lens_is_compared_with_the_map_camera_searched_and_unknown_without_a_record() {
        let k = camera();
        let lenses = |l: &[(&str, Distortion)]| -> std::collections::BTreeMap<String, Distortion> {
            l.iter().map(|(c, d)| (c.to_string(), *d)).collect()
        };
        let pin = [0.0; 5];
        let both = lenses(&[("c0", pin), ("c1", LENS)]);
        let other = |c: LensCompare| matches!(c, LensCompare::Other(_));
        // Per camera, c0's own record counts; across cameras the nearest.
        assert!(other(lens_mismatch(
            &both,
            false,
            "c0",
            &k,
            &Lens::Brown(LENS),
            false,
            true
        )));
        assert_eq!(
            lens_mismatch(&both, false, "c0", &k, &Lens::Brown(LENS), false, false),
            LensCompare::Same
        );
        // A camera without a record, or a map with none: unknown, whatever the lens.
        let only_c1 = lenses(&[("c1", LENS)]);
        assert_eq!(
            lens_mismatch(&only_c1, false, "c0", &k, &Lens::Brown(LENS), false, true),
            LensCompare::Unknown
        );
        assert_eq!(
            lens_mismatch(&lenses(&[]), false, "c0", &k, &Lens::PINHOLE, false, false),
            LensCompare::Unknown
        );
        // Rectified frames are pinholes; a rectified map's images are, recorded or not.
        assert_eq!(
            lens_mismatch(&both, false, "c0", &k, &Lens::Brown(LENS), true, true),
            LensCompare::Same
        );
        let LensCompare::Other(m) = lens_mismatch(
            &lenses(&[]),
            true,
            "c0",
            &k,
            &Lens::Brown(LENS),
            false,
            true,
        ) else {
            panic!("raw frames through a lens on a rectified map");
        };
        assert!(
            m.explain()
                .contains("map images through rectified: a pinhole (no distortion)")
                && m.explain().contains("subscribe the rectified images")
        );
        assert_eq!(
            lens_mismatch(&lenses(&[]), true, "c0", &k, &Lens::PINHOLE, false, true),
            LensCompare::Same
        );
    }

    #[test]
    fn undistort_inverts_distort_across_the_image() {
        // OpenCV's model at one point, by hand: (0.5, -0.3) -> (0.448138, -0.268638).
        let (xd, yd) = distort(&LENS, 0.5, -0.3);
        assert!(
            (xd - 0.448138).abs() < 1e-6 && (yd + 0.268638).abs() < 1e-6,
            "{xd} {yd}"
        );
        for (x, y) in [(0.0, 0.0), (0.3, -0.2), (-0.6, 0.45), (0.66, 0.5)] {
            let (xd, yd) = distort(&LENS, x, y);
            let (ux, uy) = undistort(&LENS, xd, yd).unwrap();
            assert!(
                (ux - x).abs() < 1e-9 && (uy - y).abs() < 1e-9,
                "{x} {y}: {ux} {uy}"
            );
        }
        // The image's corners, through this lens and through Extended CMU-Seasons' c0.
        let k = camera();
        let cmu_c0: Distortion = [-0.399431, 0.188924, 0.000153, 0.000571, 0.0];
        // A plumb_bob calibration with k3 (a ROS camera's CameraInfo).
        let plumb_bob: Distortion = [-0.29, 0.08, 0.0004, -0.0002, -0.01];
        for d in [LENS, cmu_c0, plumb_bob] {
            for (u, v) in [(0.0, 0.0), (159.0, 0.0), (0.0, 119.0), (159.0, 119.0)] {
                let (xd, yd) = ((u - k.cx) / k.fx, (v - k.cy) / k.fy);
                let (x, y) = undistort(&d, xd, yd).expect("a corner undistorts");
                let back = distort(&d, x, y);
                assert!((back.0 - xd).abs() < 1e-9 && (back.1 - yd).abs() < 1e-9);
            }
        }
        // Where the radial model folds back: k1 -0.5 alone at r^2 = 2/3; k3 -1/7 alone at 1;
        // CMU's never.
        assert!((fold_r2(&[-0.5, 0.0, 0.0, 0.0, 0.0]).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((fold_r2(&[0.0, 0.0, 0.0, 0.0, -1.0 / 7.0]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(fold_r2(&cmu_c0), None);
        assert_eq!(fold_r2(&[0.1, 0.0, 0.0, 0.0, 0.0]), None);
        // k3 by hand: (0.5, -0.3), r^2 0.34, radial 1 - 0.01 * 0.34^3.
        let (xd, _) = distort(&[0.0, 0.0, 0.0, 0.0, -0.01], 0.5, -0.3);
        assert!((xd - 0.5 * (1.0 - 0.01 * 0.34f64.powi(3))).abs() < 1e-12);
    }

    /// A strong barrel far from the centre, where the fixed-point iteration oscillates (a
    /// corner of a wide Virtual KITTI 2 rig through k1 = -0.42): Newton's method inverts it.
    #[test]
    fn a_strong_barrel_far_out_is_undistorted_all_the_same() {
        let d = [-0.42, 0.163, 0.0003, 0.0001, 0.0];
        let (xd, yd) = (-1.14, -0.345);
        let (x, y) = undistort(&d, xd, yd).expect("undistorted");
        let (cx, cy) = distort(&d, x, y);
        assert!((cx - xd).hypot(cy - yd) < 1e-9, "({cx}, {cy})");
        assert!(x.hypot(y) > 1.3, "pushed out: ({x}, {y})");
        // A lens that folds back: nothing past the fold is returned.
        let folding = [-0.5, 0.0, 0.0, 0.0, 0.0];
        let fold = fold_r2(&folding).unwrap();
        let (x, y) = undistort(&folding, 0.3, 0.0).unwrap();
        assert!(x * x + y * y <= fold);
        assert!(undistort(&folding, 0.6, 0.0).is_none());
    }

    #[test]
    fn a_point_moves_where_the_turned_camera_sees_it() {
        for lens in [None, Some(&LENS)] {
            a_point_moves_with(lens);
        }
    }

    fn a_point_moves_with(lens: Option<&Distortion>) {
        let k = camera();
        // A white 3x3 spot on black, centred on a whole pixel far enough out that the lens
        // bends it (ray about (-0.45, 0.3)); the spot's own ray is that pixel's.
        let (u, v) = pixel(&k, lens, -0.45, 0.3);
        let (u, v) = (u.round(), v.round());
        let mut img = RgbImage::new(k.width, k.height);
        for du in -1..=1 {
            for dv in -1..=1 {
                img.put_pixel(
                    (u as i32 + du) as u32,
                    (v as i32 + dv) as u32,
                    Rgb([255; 3]),
                );
            }
        }
        let (xd, yd) = ((u - k.cx) / k.fx, (v - k.cy) / k.fy);
        let (x, y) = lens.map_or((xd, yd), |d| undistort(d, xd, yd).unwrap());
        let ray = Vector3::new(x, y, 1.0);
        for yaw in [5.0, -5.0, 12.0] {
            let view = yaw_view(&img, &k, lens, yaw);
            let r = view_from_cam(yaw) * ray;
            let want = pixel(&k, lens, r.x / r.z, r.y / r.z);
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for (x, y, p) in view.enumerate_pixels() {
                let m = p.0[0] as f64;
                sx += m * x as f64;
                sy += m * y as f64;
                n += m;
            }
            assert!(n > 0.0, "the spot left the view at yaw {yaw}");
            let got = (sx / n, sy / n);
            assert!(
                (got.0 - want.0).abs() < 0.3 && (got.1 - want.1).abs() < 0.3,
                "yaw {yaw}, lens {lens:?}: spot at {got:?}, expected {want:?}"
            );
            // Turned left, the scene moves right.
            assert_eq!(got.0 > u, yaw > 0.0, "yaw {yaw}: {got:?} from {u}");
        }
    }

    #[test]
    fn no_turn_is_the_image_and_uncovered_pixels_are_black() {
        let k = camera();
        let img = RgbImage::from_fn(k.width, k.height, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 200])
        });
        assert_eq!(yaw_view(&img, &k, None, 0.0), img);
        assert_eq!(yaw_view(&img, &k, Some(&[0.0; 5]), 0.0), img);
        // Through a lens, no turn is the image too (up to the undistortion's rounding).
        let same = yaw_view(&img, &k, Some(&LENS), 0.0);
        for (a, b) in same.pixels().zip(img.pixels()) {
            for c in 0..3 {
                assert!(a.0[c].abs_diff(b.0[c]) <= 1, "{a:?} {b:?}");
            }
        }
        // Turned 10 degrees left, the left edge shows what lies beyond the image: black.
        let view = yaw_view(&img, &k, None, 10.0);
        assert_eq!(view.get_pixel(0, 60).0, [0, 0, 0]);
        assert_ne!(view.get_pixel(159, 60).0, [0, 0, 0]);
        // Intrinsics given for another size are scaled to the image's.
        let half = Pinhole {
            width: 80,
            height: 60,
            fx: 60.0,
            fy: 59.0,
            cx: 40.25,
            cy: 28.75,
        };
        assert_eq!(yaw_view(&img, &half, None, 10.0), view);
    }

    #[test]
    fn the_angles_parse_into_left_and_right_views_or_say_what_is_wrong() {
        assert_eq!(parse_yaw_views("3,6").unwrap(), vec![3.0, -3.0, 6.0, -6.0]);
        assert_eq!(describe(&parse_yaw_views("3, 6").unwrap()), "±3,±6 deg");
        assert_eq!(describe(&[]), "none");
        assert_eq!(parse_yaw_views("none").unwrap(), Vec::<f64>::new());
        assert_eq!(parse_yaw_views(" NONE ").unwrap(), Vec::<f64>::new());
        // Ascending whatever the order given: the same angles make the same map.
        assert_eq!(
            parse_yaw_views("6,3").unwrap(),
            parse_yaw_views("3,6").unwrap()
        );
        assert_eq!(describe(&parse_yaw_views("6, 3").unwrap()), "±3,±6 deg");
        assert_eq!(default_yaw_views(), parse_yaw_views("3,6").unwrap());
        assert_eq!(describe(&[3.0, -6.0]), "+3,-6 deg");
        for (bad, says) in [
            ("0", "more than 0"),
            ("-3", "more than 0"),
            ("25", "at most 20"),
            ("nan", "more than 0"),
            ("3,x", "found `x`"),
            ("none,3", "`none` (no views) stands alone"),
            ("3,None", "`none` (no views) stands alone"),
            ("", "found ``"),
            ("3,3", "given twice"),
            ("1,2,3,4,5", "at most 4 angles"),
        ] {
            let e = parse_yaw_views(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
