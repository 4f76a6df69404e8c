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

use super::file::MapFile;
use super::search::Hit;
use crate::geom::Pose;

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

/// The prior from `hits` (best first, at least one).
pub fn pose_prior(map: &MapFile, hits: &[Hit]) -> Option<PosePrior> {
    let best = hits.first()?;
    let p1 = map.pose(best.index);
    let d1 = (best.distance as f64).max(1e-12);
    let gap = hits
        .get(1)
        .map(|h| (1.0 - d1 / (h.distance as f64).max(1e-12)).clamp(0.0, 1.0))
        .unwrap_or(0.0);
    let (mut st, mut sr, mut wsum) = (Matrix3::zeros(), Matrix3::zeros(), 0.0);
    for h in hits {
        let w = (-((h.distance as f64) / d1 - 1.0) / TAU).exp();
        let pk = map.pose(h.index);
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
