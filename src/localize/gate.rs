//! The search gate around a position prior: the node's `prior_topic` (`gate_radius`,
//! `gate_sigmas`) and `evaluate --gate-radius` (`--gate-sigmas`) build it alike.
//!
//! A gate searches only the map images near the prior's position. It must hold the truth: a
//! gate narrower than the prior's error leaves the right place out and lets a wrong one match
//! with full confidence (docs/sequence-filter.md, "Map size"). So the gate is an ellipsoid
//! that adds, along each of its axes, `gate_radius` (the map's spacing, heights that are not
//! the prior source's, an error the source does not state) and `gate_sigmas` standard
//! deviations of the prior's own covariance in quadrature:
//!
//!   d^T (r^2 I + k^2 Sigma)^-1 d <= 1,   d = map image position - prior position,
//!
//! r = `gate_radius`, k = `gate_sigmas`, Sigma the prior's position covariance (m^2). Its semi-axes are
//! sqrt(r^2 + k^2 lambda_i) along Sigma's eigenvectors: a prior without a covariance gates
//! with the sphere of radius r; a GNSS fix of 2 m horizontally and an unknown height gates a
//! few metres across and far up and down, not a sphere as wide as its height's error.

use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};

/// The default `gate_sigmas`: an ellipsoid of 4 standard deviations holds 99.89% of a 3-D
/// Gaussian error (chi-square, 3 degrees of freedom, 16), and 99.97% of a horizontal one (2
/// degrees of freedom).
pub const GATE_SIGMAS: f64 = 4.0;

/// The most `gate_radius` and `evaluate --gate-radius` take, metres, and the longest semi-axis
/// of a gate: a longer one (an infinite variance along it, say) is cut to this, and a gate
/// this long along every axis gates nothing (the whole map is searched).
pub const MAX_GATE_RADIUS: f64 = 1e6;

/// What a prior's position covariance says.
#[derive(Debug, Clone, PartialEq)]
pub enum PositionCovariance {
    /// The position block (m^2), symmetric and positive semi-definite; a variance may be
    /// +infinity (the prior does not know that coordinate: a GNSS fix without its height),
    /// its row and column then 0 off the diagonal.
    Known(Matrix3<f64>),
    /// No estimate given: a position block of zeros (many drivers publish zeros), or -1 as
    /// the first entry (the sensor_msgs convention for "no estimate").
    Unknown,
    /// Not a covariance: the reason, for the log.
    Invalid(String),
}

/// The position block of a `geometry_msgs/PoseWithCovariance` covariance (row-major 6x6, x y
/// z and the rotation about x y z; m^2 in its position block), checked.
pub fn position_covariance(cov: &[f64]) -> PositionCovariance {
    use PositionCovariance::*;
    if cov.len() != 36 {
        return Invalid(format!(
            "its covariance has {} entries, expected 36",
            cov.len()
        ));
    }
    let mut p = Matrix3::from_fn(|r, c| cov[r * 6 + c]);
    if cov[0] == -1.0 || p.iter().all(|&v| v == 0.0) {
        return Unknown;
    }
    // An infinite variance: that coordinate is unknown, its correlations meaningless (NaN
    // where a rotation multiplied the infinity by 0). The rest is checked as a covariance of
    // its own.
    let unknown: Vec<usize> = (0..3).filter(|&i| p[(i, i)] == f64::INFINITY).collect();
    for &i in &unknown {
        for j in 0..3 {
            p[(i, j)] = 0.0;
            p[(j, i)] = 0.0;
        }
    }
    if let Some(v) = p.iter().find(|v| v.is_nan()) {
        return Invalid(format!("its position covariance has an entry {v}"));
    }
    if p.iter().any(|v| v.is_infinite()) {
        return Invalid(
            "its position covariance has an infinite entry off its diagonal or below 0".into(),
        );
    }
    let known = |mut p: Matrix3<f64>| {
        for &i in &unknown {
            p[(i, i)] = f64::INFINITY;
        }
        Known(p)
    };
    if p.iter().all(|&v| v == 0.0) {
        return known(p);
    }
    // Scaled to its largest entry, so that nothing overflows on the way.
    let scale = p.abs().max();
    let s = p / scale;
    let asym = (s - s.transpose()).abs().max();
    if asym > 1e-6 {
        return Invalid(format!(
            "its position covariance is not symmetric (entries differ by {:e} m^2)",
            asym * scale
        ));
    }
    let eig = (0.5 * (s + s.transpose())).symmetric_eigenvalues();
    if eig.min() < -1e-9 {
        return Invalid(format!(
            "its position covariance is not positive semi-definite (eigenvalues {:e} to {:e} m^2)",
            eig.min() * scale,
            eig.max() * scale
        ));
    }
    // Each correlation at most 1 (what a check relative to the largest entry misses next to
    // a huge variance).
    for i in 0..3 {
        for j in 0..i {
            let bound = (p[(i, i)].max(0.0) * p[(j, j)].max(0.0)).sqrt();
            let c = 0.5 * (p[(i, j)] + p[(j, i)]);
            if c.abs() > bound * (1.0 + 1e-6) + 1e-12 {
                return Invalid(format!(
                    "its position covariance is not positive semi-definite (entry ({i}, {j}) \
                     {c:e} m^2 exceeds sqrt(variance {i} x variance {j}) = {bound:e} m^2)"
                ));
            }
        }
    }
    // And as a whole, scale-free: the correlation matrix of the axes with a variance.
    let d = Vector3::from_fn(|i, _| p[(i, i)]);
    let corr = Matrix3::from_fn(|i, j| {
        if d[i] > 0.0 && d[j] > 0.0 {
            0.5 * (p[(i, j)] + p[(j, i)]) / (d[i].sqrt() * d[j].sqrt())
        } else {
            f64::from(u8::from(i == j))
        }
    });
    let lo = corr.symmetric_eigenvalues().min();
    if lo < -1e-9 {
        return Invalid(format!(
            "its position covariance is not positive semi-definite (its correlation matrix has \
             an eigenvalue {lo:e})"
        ));
    }
    known(0.5 * (s + s.transpose()) * scale)
}

/// A search gate: the map images within it may match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The gating position (the map's frame, metres).
    pub centre: [f64; 3],
    /// (r^2 I + k^2 Sigma)^-1 (m^-2); None: the sphere of radius `reach`.
    shape: Option<Matrix3<f64>>,
    /// The longest semi-axis (metres): the sphere that holds the gate.
    pub reach: f64,
    /// The shortest semi-axis (metres).
    pub narrowest: f64,
    /// The semi-axes (metres) along the columns of `axes_rotation`: what [`Gate::ellipsoid`]
    /// draws, kept from the decomposition that built `shape`.
    axes: [f64; 3],
    axes_rotation: UnitQuaternion<f64>,
}

impl Gate {
    /// The sphere of `radius` metres around `centre`.
    pub fn sphere(centre: [f64; 3], radius: f64) -> Gate {
        Gate {
            centre,
            shape: None,
            reach: radius,
            narrowest: radius,
            axes: [radius; 3],
            axes_rotation: UnitQuaternion::identity(),
        }
    }

    /// The gate around a prior at `centre`: `radius` (> 0) and `sigmas` standard deviations
    /// of `covariance` (m^2, as [`position_covariance`] gives it; None: the sphere) in
    /// quadrature along each axis, each semi-axis at most [`MAX_GATE_RADIUS`]. None: every
    /// semi-axis that long, or a sphere wider: the prior gates nothing.
    pub fn around(
        centre: [f64; 3],
        radius: f64,
        sigmas: f64,
        covariance: Option<&Matrix3<f64>>,
    ) -> Option<Gate> {
        let cov = match covariance {
            Some(c) if sigmas > 0.0 && c.iter().any(|&v| v != 0.0) => c,
            _ => return (radius <= MAX_GATE_RADIUS).then(|| Gate::sphere(centre, radius)),
        };
        // The whole covariance scaled, never entry by entry (that would bend the ellipsoid);
        // an infinite variance (its row and column 0) becomes the largest, so its axis is an
        // exact eigenvector and reaches the cap. Semi-axes: sqrt(r^2 + k^2 lambda), between r
        // and the cap.
        let cap2 = MAX_GATE_RADIUS * MAX_GATE_RADIUS;
        let r2 = radius * radius;
        let k2 = sigmas * sigmas;
        let mut sig = *cov;
        let open: Vec<usize> = (0..3).filter(|&i| sig[(i, i)] == f64::INFINITY).collect();
        let finite_max = sig
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        // Beyond what reaches the cap, and at least the finite part's largest entry.
        let big = (4.0 * cap2 / k2).max(4.0 * finite_max).min(f64::MAX / 16.0);
        for &i in &open {
            for j in 0..3 {
                sig[(i, j)] = 0.0;
                sig[(j, i)] = 0.0;
            }
            sig[(i, i)] = big;
        }
        if !sig.iter().all(|v| v.is_finite()) {
            return None;
        }
        let scale = sig.abs().max();
        let (values, vectors) = if scale > 0.0 {
            let e = (sig / scale).symmetric_eigen();
            (e.eigenvalues.map(|l| l * scale), e.eigenvectors)
        } else {
            (Vector3::zeros(), Matrix3::identity())
        };
        let axes2 = values.map(|l| {
            if !open.is_empty() && l >= 0.5 * big {
                return cap2;
            }
            let a = r2 + k2 * l;
            if a.is_nan() {
                cap2
            } else {
                a.clamp(r2.min(cap2), cap2)
            }
        });
        let (lo, hi) = (axes2.min(), axes2.max());
        if lo >= cap2 {
            return None;
        }
        // Right-handed, so that the eigenvectors are a rotation (one column's sign is free).
        let mut v = vectors;
        if v.determinant() < 0.0 {
            v.set_column(2, &(-v.column(2)));
        }
        let inv = v * Matrix3::from_diagonal(&axes2.map(|a| 1.0 / a)) * v.transpose();
        Some(Gate {
            centre,
            shape: Some(inv),
            reach: hi.sqrt(),
            narrowest: lo.sqrt(),
            axes: [0, 1, 2].map(|i| axes2[i].sqrt()),
            axes_rotation: UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(
                v,
            )),
        })
    }

    /// Whether a map image at `p` is in the gate.
    pub fn contains(&self, p: [f64; 3]) -> bool {
        let d = Vector3::new(
            p[0] - self.centre[0],
            p[1] - self.centre[1],
            p[2] - self.centre[2],
        );
        match &self.shape {
            None => d.norm_squared() <= self.reach * self.reach,
            Some(a) => (d.transpose() * a * d)[0] <= 1.0 + 1e-12,
        }
    }

    /// Its semi-axes (metres) and the rotation whose columns are their directions in the
    /// map's frame (right-handed): the ellipsoid RViz draws for a visualization_msgs/Marker
    /// SPHERE of scale 2 x semi-axes and that orientation (the node's `prior_gate`). A sphere:
    /// three equal semi-axes and the identity.
    pub fn ellipsoid(&self) -> ([f64; 3], UnitQuaternion<f64>) {
        (self.axes, self.axes_rotation)
    }

    /// Its size in words: "within 5.0 m", or "within 2.1-4000.0 m (an ellipsoid)".
    pub fn describe(&self) -> String {
        if self.reach - self.narrowest <= 0.05 {
            format!("within {:.1} m", self.reach)
        } else {
            format!(
                "within {:.1}-{:.1} m (an ellipsoid: gate_radius and the prior's covariance)",
                self.narrowest, self.reach
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PositionCovariance::*;

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

    fn known(c: &[f64; 36]) -> Matrix3<f64> {
        match position_covariance(c) {
            Known(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_ellipsoid_drawn_is_the_gate() {
        // A covariance along generic axes (a rotation of 0.7 rad about (1, 2, 3)): 10 m, 2 m
        // and 1 m; radius 3, 2 sigmas: semi-axes sqrt(9 + 400), sqrt(9 + 16) = 5, sqrt(9 + 4).
        let r = Rotation3::from_axis_angle(
            &nalgebra::Unit::new_normalize(Vector3::new(1.0, 2.0, 3.0)),
            0.7,
        );
        let sigma = r.matrix()
            * Matrix3::from_diagonal(&Vector3::new(100.0, 4.0, 1.0))
            * r.matrix().transpose();
        let mut rows = [[0.0; 3]; 3];
        for (i, row) in rows.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = sigma[(i, j)];
            }
        }
        let centre = [1.0, 2.0, 3.0];
        let g = Gate::around(centre, 3.0, 2.0, Some(&known(&cov(rows)))).unwrap();
        let (axes, q) = g.ellipsoid();
        assert!((q.to_rotation_matrix().matrix().determinant() - 1.0).abs() < 1e-12);
        // Each drawn axis has the length and (up to sign) the direction of the covariance's.
        let want = [409f64.sqrt(), 5.0, 13f64.sqrt()];
        for i in 0..3 {
            let j = (0..3)
                .min_by(|&a, &b| {
                    (axes[i] - want[a])
                        .abs()
                        .total_cmp(&(axes[i] - want[b]).abs())
                })
                .unwrap();
            assert!((axes[i] - want[j]).abs() < 1e-9, "{axes:?}");
            let drawn = q * Vector3::ith(i, 1.0);
            assert!(
                drawn.dot(&r.matrix().column(j)).abs() > 1.0 - 1e-9,
                "axis {i}: {drawn:?}"
            );
        }
        // Points inside the drawn ellipsoid are in the gate, points outside are not.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 50.0 - 25.0
        };
        for _ in 0..2000 {
            let d = Vector3::new(next(), next(), next());
            let local = q.inverse() * d;
            let norm = (0..3).map(|i| (local[i] / axes[i]).powi(2)).sum::<f64>();
            if (norm - 1.0).abs() < 1e-6 {
                continue;
            }
            let p = [centre[0] + d.x, centre[1] + d.y, centre[2] + d.z];
            assert_eq!(g.contains(p), norm < 1.0, "{d:?}: {norm}");
        }
        let (axes, q) = Gate::sphere([0.0; 3], 7.0).ellipsoid();
        assert_eq!((axes, q), ([7.0; 3], UnitQuaternion::identity()));
    }

    #[test]
    fn the_gate_adds_the_radius_and_the_prior_s_spread_in_quadrature_per_axis() {
        // 10 m along x and y, 1 m up; gate_radius 30, 4 sigmas: 50 m across, 30.3 m up.
        let c = known(&cov([
            [100.0, 0.0, 0.0],
            [0.0, 100.0, 0.0],
            [0.0, 0.0, 1.0],
        ]));
        let g = Gate::around([0.0; 3], 30.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert!((g.reach - 50.0).abs() < 1e-9, "{g:?}");
        assert!((g.narrowest - 916f64.sqrt()).abs() < 1e-9, "{g:?}");
        assert!(g.contains([49.9, 0.0, 0.0]) && !g.contains([50.1, 0.0, 0.0]));
        assert!(g.contains([0.0, -49.9, 0.0]) && !g.contains([0.0, 0.0, 30.5]));
        assert!(g.contains([0.0, 0.0, 30.2]));
        // A GNSS fix: 2 m across, its height unknown (1e6 m^2): a few metres across, far up.
        let c = known(&cov([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1e6]]));
        let g = Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert!((g.narrowest - 89f64.sqrt()).abs() < 1e-9, "{g:?}");
        assert!(g.contains([0.0, 0.0, 3000.0]) && !g.contains([10.0, 0.0, 0.0]));
        // Correlated x and y: eigenvalues 90 and 10 along (1, 1) and (1, -1).
        let c = known(&cov([
            [50.0, 40.0, 0.0],
            [40.0, 50.0, 0.0],
            [0.0, 0.0, 4.0],
        ]));
        let g = Gate::around([1.0, 2.0, 3.0], 1.0, 1.0, Some(&c)).unwrap();
        assert!((g.reach - 91f64.sqrt()).abs() < 1e-9, "{g:?}");
        let along = |t: f64, u: [f64; 2]| [1.0 + t * u[0], 2.0 + t * u[1], 3.0];
        let (diag, anti) = (
            [0.5f64.sqrt(), 0.5f64.sqrt()],
            [0.5f64.sqrt(), -(0.5f64.sqrt())],
        );
        assert!(g.contains(along(9.5, diag)) && !g.contains(along(9.6, diag)));
        assert!(g.contains(along(3.3, anti)) && !g.contains(along(3.4, anti)));
        // Without a covariance, or with sigmas 0: the sphere of gate_radius, exactly.
        for g in [
            Gate::around([0.0; 3], 3.0, GATE_SIGMAS, None).unwrap(),
            Gate::around([0.0; 3], 3.0, 0.0, Some(&c)).unwrap(),
        ] {
            assert_eq!(g, Gate::sphere([0.0; 3], 3.0));
            assert!(g.contains([3.0, 0.0, 0.0]) && !g.contains([3.0 + 1e-9, 0.0, 0.0]));
            assert_eq!(g.describe(), "within 3.0 m");
        }
        // Wider than 1e6 m along x: cut to 1e6 m there, 5 m across the others; along every
        // axis: no gate.
        let c = known(&cov([[1e12, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]));
        let g = Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert_eq!((g.reach, g.narrowest), (MAX_GATE_RADIUS, 5.0));
        assert!(g.contains([9e5, 0.0, 0.0]) && !g.contains([0.0, 6.0, 0.0]));
        let c = known(&cov([[1e12, 0.0, 0.0], [0.0, 1e12, 0.0], [0.0, 0.0, 1e12]]));
        assert_eq!(Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)), None);
    }

    #[test]
    fn zeros_and_minus_one_say_nothing_an_infinite_variance_opens_its_axis() {
        assert_eq!(position_covariance(&[0.0; 36]), Unknown);
        let mut c = [0.0; 36];
        c[0] = -1.0;
        assert_eq!(position_covariance(&c), Unknown);
        // Only the rotation block set: no position estimate.
        assert_eq!(position_covariance(&cov([[0.0; 3]; 3])), Unknown);
        // A GNSS fix without its height: 3 m across, an infinite variance up (its correlations
        // with it dropped). The gate is sqrt(5^2 + 12^2) = 13 m across and open up and down.
        let c = known(&cov([
            [9.0, 0.0, 7.0],
            [0.0, 9.0, 0.0],
            [7.0, 0.0, f64::INFINITY],
        ]));
        assert_eq!((c[(0, 2)], c[(2, 0)], c[(2, 2)]), (0.0, 0.0, f64::INFINITY));
        let g = Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert!(
            (g.narrowest - 13.0).abs() < 1e-9 && g.reach == MAX_GATE_RADIUS,
            "{g:?}"
        );
        assert!(g.contains([12.9, 0.0, 1e4]) && !g.contains([13.1, 0.0, 0.0]));
        // Unknown everywhere: no gate.
        let inf = f64::INFINITY;
        let c = known(&cov([[inf, 0.0, 0.0], [0.0, inf, 0.0], [0.0, 0.0, inf]]));
        assert_eq!(Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)), None);
        // A huge height variance in a map tilted 0.01 rad from the fix's frame: the gate is the
        // same ellipsoid turned, 9.4 m across (sqrt(5^2 + 8^2)) along the tilted x, not bent.
        let (c_, s_) = (0.01f64.cos(), 0.01f64.sin());
        let rot = Matrix3::new(c_, 0.0, s_, 0.0, 1.0, 0.0, -s_, 0.0, c_);
        let tilted = rot * Matrix3::from_diagonal(&Vector3::new(4.0, 4.0, 1e12)) * rot.transpose();
        let mut m = [0.0; 36];
        for r in 0..3 {
            for k in 0..3 {
                m[r * 6 + k] = tilted[(r, k)];
            }
        }
        let g = Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&known(&m))).unwrap();
        assert!((g.narrowest - 89f64.sqrt()).abs() < 1e-3, "{g:?}");
        let x = rot * Vector3::new(1.0, 0.0, 0.0);
        let at = |t: f64| [t * x[0], t * x[1], t * x[2]];
        assert!(g.contains(at(9.4)) && !g.contains(at(9.5)), "{g:?}");
        assert!(g.contains([0.0, 9.4, 0.0]) && !g.contains([0.0, 9.5, 0.0]));
        // A rotation of an infinite height variance multiplies it by 0 (NaN) off its diagonal:
        // that row is dropped, not the prior.
        let mut c = cov([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, f64::INFINITY]]);
        c[2] = f64::NAN;
        c[12] = f64::NAN;
        assert!(matches!(position_covariance(&c), Known(_)));
        // Near f64::MAX: nothing overflows; cut to 1e6 m along x and y.
        let c = known(&cov([
            [1e308, 0.0, 0.0],
            [0.0, 1e308, 0.0],
            [0.0, 0.0, 1.0],
        ]));
        let g = Gate::around([0.0; 3], 5.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert!((g.narrowest - 41f64.sqrt()).abs() < 1e-9 && g.reach == MAX_GATE_RADIUS);
        // Rank-deficient (horizontal only, as evaluate's drawn errors): known, and the gate is
        // gate_radius along up.
        let c = known(&cov([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]));
        let g = Gate::around([0.0; 3], 2.0, GATE_SIGMAS, Some(&c)).unwrap();
        assert!((g.narrowest - 2.0).abs() < 1e-9 && (g.reach - 148f64.sqrt()).abs() < 1e-9);
        for (m, want) in [
            (
                cov([[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                "NaN",
            ),
            (
                cov([[1.0, 5.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                "not symmetric",
            ),
            (
                cov([[-4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                "not positive semi-definite",
            ),
            (
                cov([[1.0, f64::INFINITY, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                "infinite entry",
            ),
            // Indefinite, though small next to a huge variance (-96 against 1e12).
            (
                cov([[4.0, 100.0, 0.0], [100.0, 4.0, 0.0], [0.0, 0.0, 1e12]]),
                "exceeds sqrt(variance 1 x variance 0)",
            ),
            // Every correlation below 1, yet indefinite as a whole (-1.5 m^2 next to 1e12).
            (
                cov([[1.0, 0.9, 0.9e6], [0.9, 1.0, -0.9e6], [0.9e6, -0.9e6, 1e12]]),
                "correlation matrix has an eigenvalue",
            ),
        ] {
            assert!(
                matches!(position_covariance(&m), Invalid(ref s) if s.contains(want)),
                "{want}: {:?}",
                position_covariance(&m)
            );
        }
        assert!(matches!(position_covariance(&[1.0; 9]), Invalid(s) if s.contains("9 entries")));
    }
}
