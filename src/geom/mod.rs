//! Poses, cameras and the datasets' pose conventions, each stated once and converted at the
//! dataset boundary. Poses are nalgebra `Isometry3<f64>` named for the frames they map:
//! `world_from_cam` takes points from camera to world coordinates (camera-to-world), its
//! inverse is `cam_from_world`. Camera frames follow the computer-vision convention: x right,
//! y down, z forward (optical axis).

use nalgebra::{
    Isometry3, Matrix3, Point2, Point3, Quaternion, Rotation3, Translation3, UnitQuaternion,
    Vector3,
};

pub mod conventions;

pub use conventions::*;

/// A rigid transform named by the frames it maps (`a_from_b`).
pub type Pose = Isometry3<f64>;

/// Pinhole intrinsics in pixels for an image of `width` x `height`. Pixel (u, v) = (0, 0) is the
/// centre of the top-left pixel, as in OpenCV / COLMAP's OPENCV and PINHOLE models.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pinhole {
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Pinhole {
    /// Projects a point in camera coordinates; None behind the camera (z <= 0).
    pub fn project(&self, p_cam: &Point3<f64>) -> Option<Point2<f64>> {
        (p_cam.z > 0.0).then(|| {
            Point2::new(
                self.fx * p_cam.x / p_cam.z + self.cx,
                self.fy * p_cam.y / p_cam.z + self.cy,
            )
        })
    }

    /// The viewing ray through pixel (u, v), in camera coordinates, scaled so that z = 1 (so a
    /// hit at ray parameter t has z-depth t).
    pub fn ray(&self, u: f64, v: f64) -> Vector3<f64> {
        Vector3::new((u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0)
    }

    /// The same camera for an image resized to `width` x `height`.
    pub fn scaled(&self, width: u32, height: u32) -> Self {
        let sx = width as f64 / self.width as f64;
        let sy = height as f64 / self.height as f64;
        // Pixel centres: u' + 0.5 = (u + 0.5) s.
        Self {
            width,
            height,
            fx: self.fx * sx,
            fy: self.fy * sy,
            cx: (self.cx + 0.5) * sx - 0.5,
            cy: (self.cy + 0.5) * sy - 0.5,
        }
    }
}

/// 3x4 row-major [R | t] -> isometry (R re-orthonormalised).
pub fn isometry_from_rows(m: &[f64; 12]) -> Pose {
    let r = Matrix3::new(m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]);
    Isometry3::from_parts(
        Translation3::new(m[3], m[7], m[11]),
        rotation_from_matrix(&r),
    )
}

/// Isometry -> 3x4 row-major [R | t].
pub fn rows_from_isometry(p: &Pose) -> [f64; 12] {
    let r = p.rotation.to_rotation_matrix();
    let r = r.matrix();
    let t = p.translation.vector;
    [
        r[(0, 0)],
        r[(0, 1)],
        r[(0, 2)],
        t.x,
        r[(1, 0)],
        r[(1, 1)],
        r[(1, 2)],
        t.y,
        r[(2, 0)],
        r[(2, 1)],
        r[(2, 2)],
        t.z,
    ]
}

/// Nearest rotation to a (nearly orthonormal) 3x3 matrix.
pub fn rotation_from_matrix(m: &Matrix3<f64>) -> UnitQuaternion<f64> {
    UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix(m))
}

/// Unit quaternion from (w, x, y, z), normalised.
pub fn quaternion_wxyz(q: [f64; 4]) -> UnitQuaternion<f64> {
    UnitQuaternion::from_quaternion(Quaternion::new(q[0], q[1], q[2], q[3]))
}

/// (w, x, y, z) of a unit quaternion, with w >= 0 (q and -q are the same rotation).
pub fn wxyz(q: &UnitQuaternion<f64>) -> [f64; 4] {
    let c = q.coords; // (x, y, z, w)
    let s = if c.w < 0.0 { -1.0 } else { 1.0 };
    [s * c.w, s * c.x, s * c.y, s * c.z]
}

/// Rotation from roll (x), pitch (y), yaw (z) in radians, applied as R = Rz(yaw) Ry(pitch) Rx(roll).
pub fn rotation_rpy(roll: f64, pitch: f64, yaw: f64) -> UnitQuaternion<f64> {
    UnitQuaternion::from_euler_angles(roll, pitch, yaw)
}

/// Linear interpolation of translation and spherical interpolation of rotation, `s` in [0, 1].
pub fn interpolate(a: &Pose, b: &Pose, s: f64) -> Pose {
    let t = a.translation.vector.lerp(&b.translation.vector, s);
    let r = a
        .rotation
        .try_slerp(&b.rotation, s, 1e-12)
        .unwrap_or(if s < 0.5 { a.rotation } else { b.rotation });
    Isometry3::from_parts(Translation3::from(t), r)
}

/// `"x y z qx qy qz qw"` (spaces or commas; the quaternion within 10% of norm 1) -> a pose:
/// the form of the node's `base_from_camera` and of `--base-from-camera`.
pub fn parse_xyz_qxyzw(s: &str) -> Result<Pose, String> {
    let v: Vec<f64> = s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| format!("`{t}` is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if v.len() != 7 || v.iter().any(|x| !x.is_finite()) {
        return Err(format!(
            "expected 7 finite numbers \"x y z qx qy qz qw\", found {} in `{s}`",
            v.len()
        ));
    }
    let q = nalgebra::Quaternion::new(v[6], v[3], v[4], v[5]);
    let n = q.norm();
    if !(0.9..=1.1).contains(&n) {
        return Err(format!(
            "the quaternion (qx qy qz qw) must have norm 1, found norm {n:.4} in `{s}`"
        ));
    }
    Ok(Pose::from_parts(
        nalgebra::Translation3::new(v[0], v[1], v[2]),
        nalgebra::UnitQuaternion::from_quaternion(q),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_projects_where_the_intrinsics_say() {
        let cam = Pinhole {
            width: 1242,
            height: 375,
            fx: 725.0087,
            fy: 725.0087,
            cx: 620.5,
            cy: 187.0,
        };
        let p = cam.project(&Point3::new(2.0, -1.0, 10.0)).unwrap();
        assert!((p.x - (620.5 + 725.0087 * 0.2)).abs() < 1e-9);
        assert!((p.y - (187.0 - 72.50087)).abs() < 1e-9);
        let ray = cam.ray(p.x, p.y) * 10.0;
        assert!((ray - Vector3::new(2.0, -1.0, 10.0)).norm() < 1e-9);
        assert!(cam.project(&Point3::new(0.0, 0.0, -1.0)).is_none());
    }

    #[test]
    fn scaling_keeps_the_image_centre() {
        let cam = Pinhole {
            width: 1024,
            height: 768,
            fx: 868.99,
            fy: 866.06,
            cx: 511.5,
            cy: 383.5,
        };
        let s = cam.scaled(512, 384);
        assert_eq!((s.cx, s.cy), (255.5, 191.5));
        assert!((s.fx - 434.495).abs() < 1e-9);
    }

    #[test]
    fn rows_round_trip_and_interpolation_is_halfway() {
        let p = Isometry3::from_parts(
            Translation3::new(1.0, 2.0, 3.0),
            rotation_rpy(0.1, -0.2, 0.3),
        );
        let back = isometry_from_rows(&rows_from_isometry(&p));
        assert!((back.to_homogeneous() - p.to_homogeneous()).norm() < 1e-12);
        let q = Isometry3::from_parts(
            Translation3::new(3.0, 2.0, 3.0),
            rotation_rpy(0.1, -0.2, 0.5),
        );
        let mid = interpolate(&p, &q, 0.5);
        assert!((mid.translation.vector - Vector3::new(2.0, 2.0, 3.0)).norm() < 1e-12);
        assert!((mid.rotation.euler_angles().2 - 0.4).abs() < 1e-9);
    }
}
