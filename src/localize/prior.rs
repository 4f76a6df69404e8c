//! The pose prior published for a query: the pose of the best map image, with a 6x6
//! covariance (x y z roll pitch yaw, world frame, metres and radians) derived from the top-K.
//!
//! Formula (docs/pose-prior.md says the same):
//! - weights w_k = exp(-(d_k / d_1 - 1) / TAU) for the K candidates (d_1 the best distance,
//!   TAU = 0.05): candidates nearly as close in descriptor space as the best count fully,
//!   clearly worse ones hardly at all;
//! - position: Sigma_t = sum_k w_k (t_k - t_1)(t_k - t_1)^T / sum_k w_k + s_t^2 I, with
//!   s_t = SIGMA_POSITION (the spacing of map images is the floor of what retrieval can say);
//! - rotation: the same over the rotation vectors log(R_1^T R_k) mapped to the world frame,
//!   plus s_r^2 I with s_r = SIGMA_ROTATION;
//! - ambiguity: with gap g = 1 - d_1 / d_2 (0 when the two best are equally close), the whole
//!   matrix is multiplied by 1 + GAP_SCALE / (g + 0.01), so an ambiguous match reports a wide
//!   prior;
//! - calibration: the position block is then multiplied by POSITION_CALIBRATION, chosen so
//!   that the true position lies inside the 95% position ellipsoid for 95% of the queries of a
//!   calibration world (`cmu_calibration`, seed 5151) with the shipped model; the held-out
//!   `cmu_slice` is only used to report the resulting coverage (docs/pose-prior.md);
//! - confidence = g, clamped to [0, 1].
//!
//! Position and rotation blocks are independent (off-diagonal blocks zero).

use nalgebra::{Matrix3, Vector3};

use crate::geom::Pose;
use crate::map::file::MapFile;
use crate::retrieval::Hit;

pub const TAU: f64 = 0.05;
pub const SIGMA_POSITION: f64 = 1.0;
pub const SIGMA_ROTATION: f64 = 0.035; // 2 degrees
pub const GAP_SCALE: f64 = 0.02;
/// Measured with `tools/demo.sh --sequence cmu_calibration` (the shipped model of 2026-11-28,
/// wide appearance): the 95th percentile of the squared Mahalanobis distance of the true
/// position under the uncalibrated position block was 2.56; the chi-square(3) 95% quantile is
/// 7.81; 2.56 / 7.81 = 0.33. (The model before it measured 2.40, 0.31.)
pub const POSITION_CALIBRATION: f64 = 0.33;

#[derive(Debug, Clone)]
pub struct PosePrior {
    /// world_from_cam of the best candidate.
    pub pose: Pose,
    /// Row-major 6x6, x y z roll pitch yaw.
    pub covariance: [f64; 36],
    /// 1 - d_1/d_2 in [0, 1].
    pub confidence: f64,
}

/// The prior from `hits` (best first, at least one) of `map`.
pub fn pose_prior(map: &MapFile, hits: &[Hit]) -> Option<PosePrior> {
    let ranked: Vec<(Pose, f64)> = hits
        .iter()
        .map(|h| (map.pose(h.index), h.distance as f64))
        .collect();
    prior_from_ranked(&ranked)
}

/// The prior from candidates' poses and descriptor distances, best first (the formula above).
pub fn prior_from_ranked(ranked: &[(Pose, f64)]) -> Option<PosePrior> {
    let (p1, d1) = ranked.first()?;
    let p1 = *p1;
    let d1 = d1.max(1e-12);
    let gap = ranked
        .get(1)
        .map(|(_, d2)| (1.0 - d1 / d2.max(1e-12)).clamp(0.0, 1.0))
        .unwrap_or(0.0);
    let (mut st, mut sr, mut wsum) = (Matrix3::zeros(), Matrix3::zeros(), 0.0);
    for (pk, dk) in ranked {
        let w = (-(dk / d1 - 1.0) / TAU).exp();
        let dt: Vector3<f64> = pk.translation.vector - p1.translation.vector;
        let rv = p1.rotation * (p1.rotation.inverse() * pk.rotation).scaled_axis();
        st += w * dt * dt.transpose();
        sr += w * rv * rv.transpose();
        wsum += w;
    }
    let inflate = 1.0 + GAP_SCALE / (gap + 0.01);
    let st =
        (st / wsum + Matrix3::identity() * SIGMA_POSITION.powi(2)) * inflate * POSITION_CALIBRATION;
    let sr = (sr / wsum + Matrix3::identity() * SIGMA_ROTATION.powi(2)) * inflate;
    let mut cov = [0.0; 36];
    for r in 0..3 {
        for c in 0..3 {
            cov[r * 6 + c] = st[(r, c)];
            cov[(r + 3) * 6 + c + 3] = sr[(r, c)];
        }
    }
    Some(PosePrior {
        pose: p1,
        covariance: cov,
        confidence: gap,
    })
}

fn skew(v: &Vector3<f64>) -> Matrix3<f64> {
    Matrix3::new(0.0, -v.z, v.y, v.z, 0.0, -v.x, -v.y, v.x, 0.0)
}

/// The prior of base_link from the camera's: world_from_base = world_from_cam * cam_from_base.
/// The rotation block is unchanged (one rigid body); the position block gains the lever arm's
/// share of the rotation uncertainty: S Sigma_r S^T with S = [v]x, v = the world-frame offset
/// from the camera to base_link.
pub fn to_base(prior: &PosePrior, base_from_cam: &Pose) -> PosePrior {
    let world_from_base = prior.pose * base_from_cam.inverse();
    let v = world_from_base.translation.vector - prior.pose.translation.vector;
    let s = skew(&v);
    let mut sr = Matrix3::zeros();
    for r in 0..3 {
        for c in 0..3 {
            sr[(r, c)] = prior.covariance[(r + 3) * 6 + c + 3];
        }
    }
    let extra = s * sr * s.transpose();
    let mut cov = prior.covariance;
    for r in 0..3 {
        for c in 0..3 {
            cov[r * 6 + c] += extra[(r, c)];
        }
    }
    PosePrior {
        pose: world_from_base,
        covariance: cov,
        confidence: prior.confidence,
    }
}

/// The map's up direction, from its cameras: the mean of their -y axes (a camera's y points down
/// in the image, and vehicle cameras are mounted about level), whatever the world frame's
/// convention (ENU z up, RobotCar's NED z down). None for an empty map.
pub fn map_up(poses: impl Iterator<Item = Pose>) -> Option<Vector3<f64>> {
    let sum: Vector3<f64> = poses.map(|p| p.rotation * -Vector3::y()).sum();
    (sum.norm() > 1e-9).then(|| sum.normalize())
}

/// Degrees between base_link's z axis and `up` when the camera stands at `world_from_cam` and
/// base_link is `base_from_cam` from it: near 0 for a right extrinsic (REP 103 base_link: z up);
/// about 90 when the camera's body frame (x forward) was given instead of its optical frame, or
/// the quaternion was written w first.
pub fn base_tilt_deg(world_from_cam: &Pose, base_from_cam: &Pose, up: &Vector3<f64>) -> f64 {
    let world_from_base = world_from_cam * base_from_cam.inverse();
    (world_from_base.rotation * Vector3::z())
        .dot(up)
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

#[cfg(test)]
mod tests {
    //! Every number below is worked out by hand from the formula in the module comment
    //! (docs/pose-prior.md), not by calling the code under test another way.
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};

    fn at(x: f64, y: f64, yaw: f64) -> Pose {
        Pose::from_parts(
            Translation3::new(x, y, 0.0),
            UnitQuaternion::from_euler_angles(0.0, 0.0, yaw),
        )
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{what}: got {got}, want {want}"
        );
    }

    #[test]
    fn base_link_tilt_tells_an_optical_extrinsic_from_a_body_frame_one() {
        // A level camera looking along world +x, optical axes: x right (-y world), y down.
        let world_from_cam = crate::synth::camera_pose([0.0, 0.0], 0.0, 0.0, 1.5);
        let up = map_up(std::iter::repeat_n(world_from_cam, 3)).unwrap();
        assert!((up - Vector3::z()).norm() < 1e-9, "{up:?}");
        // The right extrinsic: base_link (x forward, z up) from the optical frame.
        let optical_in_base = Pose::from_parts(
            Translation3::new(0.2, 0.0, 1.0),
            UnitQuaternion::from_matrix(&Matrix3::new(
                0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0,
            )),
        );
        close(
            base_tilt_deg(&world_from_cam, &optical_in_base, &up),
            0.0,
            "optical",
        );
        // The camera body frame given instead (identity rotation): base_link's z points forward.
        let body = Pose::from_parts(Translation3::new(0.2, 0.0, 1.0), UnitQuaternion::identity());
        close(
            base_tilt_deg(&world_from_cam, &body, &up),
            90.0,
            "body frame",
        );
        // RobotCar's NED world: up is -z, and the same right extrinsic is still level.
        let ned = Pose::from_parts(
            Translation3::identity(),
            UnitQuaternion::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI),
        ) * world_from_cam;
        let up_ned = map_up(std::iter::once(ned)).unwrap();
        assert!((up_ned + Vector3::z()).norm() < 1e-9, "{up_ned:?}");
        close(base_tilt_deg(&ned, &optical_in_base, &up_ned), 0.0, "NED");
    }

    #[test]
    fn two_entries_at_one_pose_at_distances_1_and_2() {
        let p = at(3.0, 4.0, 0.2);
        let prior = prior_from_ranked(&[(p, 1.0), (p, 2.0)]).unwrap();
        // Gap 1 - 1/2 = 0.5 is the confidence.
        close(prior.confidence, 0.5, "confidence");
        assert_eq!(prior.pose, p);
        // No spread: the floors, inflated by 1 + 0.02 / (0.5 + 0.01), position block times the
        // calibration factor 0.33.
        let inflate = 1.0 + 0.02 / 0.51;
        for i in 0..3 {
            close(
                prior.covariance[i * 7],
                1.0 * inflate * 0.33,
                "position variance",
            );
            close(
                prior.covariance[(i + 3) * 7],
                0.035 * 0.035 * inflate,
                "rotation variance",
            );
        }
        // Blocks are independent; the matrix is diagonal here.
        for r in 0..6 {
            for c in 0..6 {
                if r != c {
                    assert_eq!(prior.covariance[r * 6 + c], 0.0, "({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn a_near_candidate_4_m_away_widens_x_by_its_weight() {
        // d2 / d1 = 1.05: weight exp(-(1.05 - 1) / 0.05) = exp(-1).
        let w = (-1.0f64).exp();
        let prior =
            prior_from_ranked(&[(at(0.0, 0.0, 0.0), 2.0), (at(4.0, 0.0, 0.0), 2.1)]).unwrap();
        let gap = 1.0 - 2.0 / 2.1;
        close(prior.confidence, gap, "confidence");
        let inflate = 1.0 + 0.02 / (gap + 0.01);
        let spread = w * 16.0 / (1.0 + w);
        close(prior.covariance[0], (spread + 1.0) * inflate * 0.33, "xx");
        close(prior.covariance[7], 1.0 * inflate * 0.33, "yy");
        close(prior.covariance[14], 1.0 * inflate * 0.33, "zz");
    }

    #[test]
    fn a_single_hit_has_confidence_0_and_the_widest_floor() {
        let prior = prior_from_ranked(&[(at(1.0, 2.0, 0.0), 0.7)]).unwrap();
        assert_eq!(prior.confidence, 0.0);
        // Gap 0: inflate 1 + 0.02 / 0.01 = 3.
        close(prior.covariance[0], 3.0 * 0.33, "xx");
        close(prior.covariance[35], 0.035 * 0.035 * 3.0, "yaw");
        assert!(prior_from_ranked(&[]).is_none());
    }

    #[test]
    fn an_equally_close_rotated_candidate_widens_yaw() {
        // Both at distance 1 (weights 1, gap 0), the second turned 0.1 rad about z: the mean
        // outer product of the rotation vectors is 0.01 / 2 on yaw.
        let prior =
            prior_from_ranked(&[(at(0.0, 0.0, 0.0), 1.0), (at(0.0, 0.0, 0.1), 1.0)]).unwrap();
        close(prior.covariance[35], (0.005 + 0.035 * 0.035) * 3.0, "yaw");
        close(prior.covariance[21], 0.035 * 0.035 * 3.0, "roll");
        close(prior.covariance[0], 0.99, "xx");
    }

    #[test]
    fn a_zero_best_distance_does_not_divide_by_zero() {
        let p = at(0.0, 0.0, 0.0);
        let prior = prior_from_ranked(&[(p, 0.0), (p, 0.5)]).unwrap();
        close(prior.confidence, 1.0, "confidence");
        assert!(prior.covariance.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn base_prior_moves_by_the_extrinsic_and_widens_with_the_lever_arm() {
        let mut cov = [0.0; 36];
        for i in 0..3 {
            cov[i * 6 + i] = 1.0;
            cov[(i + 3) * 6 + i + 3] = 0.01;
        }
        let prior = PosePrior {
            pose: at(10.0, 0.0, 0.5),
            covariance: cov,
            confidence: 0.3,
        };
        // The camera sits 2 m ahead of base_link.
        let bc = Pose::from_parts(Translation3::new(2.0, 0.0, 0.0), UnitQuaternion::identity());
        let b = to_base(&prior, &bc);
        let back = b.pose * bc;
        assert!((back.translation.vector - prior.pose.translation.vector).norm() < 1e-12);
        close(
            (b.pose.translation.vector - prior.pose.translation.vector).norm(),
            2.0,
            "lever arm",
        );
        // 0.01 rad^2 of rotation variance about each axis over a 2 m lever arm in the ground
        // plane: 0.01 (|v|^2 I - v v^T) adds 0.04 m^2 to z and 0.04 m^2 to x + y.
        close(b.covariance[0] + b.covariance[7], 2.04, "xx + yy");
        close(b.covariance[14], 1.04, "zz");
        assert_eq!(b.covariance[35], 0.01);
        assert_eq!(b.confidence, 0.3);
    }
}
