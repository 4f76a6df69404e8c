//! One conversion per dataset pose convention (see ../shared/reference/dataset-formats.md).

use nalgebra::{Isometry3, Matrix4, Point3, Translation3};

use super::{isometry_from_rows, quaternion_wxyz, rotation_rpy, wxyz, Pose};

/// Extended CMU-Seasons ground truth (`ground-truth-database-images-sliceN.txt`,
/// `camera-poses/*.txt`): `qw qx qy qz cx cy cz`, where q is the world->camera rotation R
/// (scalar first) and c the camera centre in world coordinates (C = -R^T t).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmuPose {
    pub q_wxyz: [f64; 4],
    pub centre: [f64; 3],
}

impl CmuPose {
    pub fn cam_from_world(&self) -> Pose {
        let r = quaternion_wxyz(self.q_wxyz);
        let c = nalgebra::Vector3::from(self.centre);
        Isometry3::from_parts(Translation3::from(-(r * c)), r)
    }

    pub fn from_cam_from_world(p: &Pose) -> Self {
        let c = p.inverse().translation.vector;
        Self {
            q_wxyz: wxyz(&p.rotation),
            centre: [c.x, c.y, c.z],
        }
    }
}

/// One line of a visuallocalization.net submission: `name qw qx qy qz tx ty tz`, the
/// world->camera rotation and translation (t = -R C), not the camera centre.
pub fn cmu_submission_line(name: &str, cam_from_world: &Pose) -> String {
    let q = wxyz(&cam_from_world.rotation);
    let t = cam_from_world.translation.vector;
    format!(
        "{name} {} {} {} {} {} {} {}",
        q[0], q[1], q[2], q[3], t.x, t.y, t.z
    )
}

/// KITTI odometry `poses/NN.txt`: 12 floats, the first three rows of the 4x4 camera-to-world
/// transform (world = the first cam0 frame).
pub fn kitti_world_from_cam(rows: &[f64; 12]) -> Pose {
    isometry_from_rows(rows)
}

/// Virtual KITTI 2 `extrinsic.txt`: the 16 entries of the 4x4 world->camera matrix, row-major.
pub fn vkitti2_cam_from_world(m: &[f64; 16]) -> Pose {
    let rows: [f64; 12] = [
        m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11],
    ];
    isometry_from_rows(&rows)
}

/// The 16 row-major entries of a pose's 4x4 matrix (for writing `extrinsic.txt`).
pub fn matrix_rows(p: &Pose) -> [f64; 16] {
    let m: Matrix4<f64> = p.to_homogeneous();
    let mut out = [0.0; 16];
    for r in 0..4 {
        for c in 0..4 {
            out[r * 4 + c] = m[(r, c)];
        }
    }
    out
}

/// Oxford RobotCar `gps/ins.csv`: northing, easting, down (metres, UTM + down) and roll, pitch,
/// yaw (radians) -> world_from_vehicle in the local NED frame (x north, y east, z down), the
/// RobotCar SDK's `build_se3_transform([n, e, d, r, p, y])` (R = Rz(yaw) Ry(pitch) Rx(roll)).
pub fn robotcar_world_from_vehicle(
    northing: f64,
    easting: f64,
    down: f64,
    roll: f64,
    pitch: f64,
    yaw: f64,
) -> Pose {
    Isometry3::from_parts(
        Translation3::new(northing, easting, down),
        rotation_rpy(roll, pitch, yaw),
    )
}

/// Camera centre of a cam_from_world pose, in world coordinates.
pub fn centre(cam_from_world: &Pose) -> Point3<f64> {
    cam_from_world.inverse() * Point3::origin()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ECMU README's sanity check: a database image submitted as a query must give back its
    /// reference pose with the stored centre turned into a translation, t = -R C.
    #[test]
    fn cmu_centre_and_submission_translation_round_trip() {
        // The README's example line.
        let gt = CmuPose {
            q_wxyz: [0.636779, 0.569692, 0.379586, -0.354792],
            centre: [-85.392177, 55.210379, -2.980700],
        };
        let cam_from_world = gt.cam_from_world();
        let r = cam_from_world.rotation.to_rotation_matrix();
        let t = cam_from_world.translation.vector;
        let c = nalgebra::Vector3::from(gt.centre);
        assert!((t + r * c).norm() < 1e-9, "t = -R C");
        assert!((centre(&cam_from_world).coords - c).norm() < 1e-9);
        let back = CmuPose::from_cam_from_world(&cam_from_world);
        for i in 0..3 {
            assert!((back.centre[i] - gt.centre[i]).abs() < 1e-9);
        }
        let norm = gt.q_wxyz.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..4 {
            assert!((back.q_wxyz[i] - gt.q_wxyz[i] / norm).abs() < 1e-9);
        }
        let line = cmu_submission_line("img_00122_c0_1303398475046031us.jpg", &cam_from_world);
        let f: Vec<f64> = line
            .split(' ')
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!((f[4] - t.x).abs() < 1e-9 && (f[6] - t.z).abs() < 1e-9);
        assert!(line.starts_with("img_00122_c0_1303398475046031us.jpg 0.6"));
    }

    #[test]
    fn vkitti_extrinsic_rows_invert_to_the_camera_position() {
        let world_from_cam = Isometry3::from_parts(
            Translation3::new(10.0, -2.0, 1.5),
            rotation_rpy(0.0, 0.0, 0.7),
        );
        let m = matrix_rows(&world_from_cam.inverse());
        assert_eq!(&m[12..], &[0.0, 0.0, 0.0, 1.0]);
        let back = vkitti2_cam_from_world(&m).inverse();
        assert!((back.translation.vector - world_from_cam.translation.vector).norm() < 1e-12);
    }
}
