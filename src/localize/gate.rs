//! The search gate around a position prior: the node's `prior_topic` (`gate_radius`,
//! `gate_sigmas`) and `evaluate --gate-radius` (`--gate-sigmas`) size it alike.
//!
//! A gate searches only the map images within a radius of the prior's position. It must hold
//! the truth: a gate narrower than the prior's error leaves the right place out and lets a wrong
//! one match with full confidence (docs/sequence-filter.md, "Map size"). So the radius is at
//! least `gate_radius` and grows with the prior's own covariance to `gate_sigmas` times its
//! largest position standard deviation.

use nalgebra::Matrix3;

/// The default `gate_sigmas`: a sphere of 4 standard deviations of the prior's largest position
/// spread holds 99.89% of a 3-D Gaussian error (chi-square, 3 degrees of freedom, 16), and
/// 99.97% of a horizontal one (2 degrees of freedom).
pub const GATE_SIGMAS: f64 = 4.0;

/// The most `gate_radius` and `evaluate --gate-radius` take, metres.
pub const MAX_GATE_RADIUS: f64 = 1e6;

/// What a prior's position covariance says about its error.
#[derive(Debug, Clone, PartialEq)]
pub enum Spread {
    /// The largest standard deviation of the position (metres): the square root of the largest
    /// eigenvalue of the covariance's position block.
    Sigma(f64),
    /// No estimate given: a position block of zeros (many drivers publish zeros), or -1 as the
    /// first entry (the sensor_msgs convention for "no estimate").
    Unknown,
    /// Not a covariance: the reason, for the log.
    Invalid(String),
}

/// The spread of a `geometry_msgs/PoseWithCovariance` covariance (row-major 6x6, x y z and
/// the rotation about x y z; m^2 in its position block).
pub fn position_spread(cov: &[f64; 36]) -> Spread {
    let p: Matrix3<f64> = super::prior::position_block(cov);
    if cov[0] == -1.0 || p.iter().all(|&v| v == 0.0) {
        return Spread::Unknown;
    }
    if let Some(v) = p.iter().find(|v| !v.is_finite()) {
        return Spread::Invalid(format!("its position covariance has an entry {v}"));
    }
    let asym = (p - p.transpose()).abs().max();
    let scale = p.abs().max();
    if asym > 1e-6 * scale {
        return Spread::Invalid(format!(
            "its position covariance is not symmetric (entries differ by {asym:e} m^2)"
        ));
    }
    let eig = (0.5 * (p + p.transpose())).symmetric_eigenvalues();
    let (lo, hi) = (eig.min(), eig.max());
    if lo < -1e-9 * scale.max(f64::MIN_POSITIVE) || hi <= 0.0 {
        return Spread::Invalid(format!(
            "its position covariance is not positive semi-definite (eigenvalues {lo:e} to {hi:e} m^2)"
        ));
    }
    Spread::Sigma(hi.sqrt())
}

/// The gate's radius (metres): `floor`, widened to `sigmas` standard deviations of the prior's
/// largest position spread when it gives one (`sigma`, metres); `sigmas` 0 leaves it at `floor`.
/// Never more than [`MAX_GATE_RADIUS`] unless `floor` is.
pub fn gate_radius(floor: f64, sigmas: f64, sigma: Option<f64>) -> f64 {
    match sigma {
        Some(s) if sigmas > 0.0 && s.is_finite() => floor.max((sigmas * s).min(MAX_GATE_RADIUS)),
        _ => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(p: [[f64; 3]; 3]) -> [f64; 36] {
        let mut c = [0.0; 36];
        for r in 0..3 {
            for k in 0..3 {
                c[r * 6 + k] = p[r][k];
            }
        }
        // The rotation block, which the gate does not use.
        for r in 3..6 {
            c[r * 6 + r] = 0.01;
        }
        c
    }

    #[test]
    fn the_largest_position_spread_sizes_the_gate() {
        // 10 m along x and y, 1 m up: sigma 10.
        let c = cov([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(position_spread(&c), Spread::Sigma(10.0));
        assert_eq!(gate_radius(30.0, GATE_SIGMAS, Some(10.0)), 40.0);
        // A narrow prior keeps the floor; sigmas 0 never widens.
        assert_eq!(gate_radius(30.0, GATE_SIGMAS, Some(2.0)), 30.0);
        assert_eq!(gate_radius(30.0, 0.0, Some(100.0)), 30.0);
        assert_eq!(gate_radius(30.0, GATE_SIGMAS, None), 30.0);
        assert_eq!(gate_radius(30.0, GATE_SIGMAS, Some(1e12)), MAX_GATE_RADIUS);
        // Correlated x and y: the eigenvalues of [[50, 40], [40, 50]] are 90 and 10.
        let c = cov([[50.0, 40.0, 0.0], [40.0, 50.0, 0.0], [0.0, 0.0, 4.0]]);
        match position_spread(&c) {
            Spread::Sigma(s) => assert!((s - 90f64.sqrt()).abs() < 1e-9, "{s}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zeros_and_minus_one_say_nothing_and_broken_covariances_are_named() {
        assert_eq!(position_spread(&[0.0; 36]), Spread::Unknown);
        let mut c = [0.0; 36];
        c[0] = -1.0;
        assert_eq!(position_spread(&c), Spread::Unknown);
        let c = cov([[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(matches!(position_spread(&c), Spread::Invalid(m) if m.contains("NaN")));
        let c = cov([[1.0, 5.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(matches!(position_spread(&c), Spread::Invalid(m) if m.contains("not symmetric")));
        let c = cov([[-4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(
            matches!(position_spread(&c), Spread::Invalid(m) if m.contains("not positive semi-definite"))
        );
        // Only the rotation block set: no position estimate.
        assert_eq!(position_spread(&cov([[0.0; 3]; 3])), Spread::Unknown);
    }
}
