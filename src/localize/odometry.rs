//! The distance a robot travelled between two frames, from its odometry (the node's
//! `odometry_topic`, nav_msgs/Odometry): the sequence filter's motion (docs/sequence-filter.md,
//! "Odometry"). Only the path length is used, not the direction: odometry's frame (`odom`) is
//! not the map's, and its heading drifts, while the distance it reports stays good for the
//! short stretches between two frames.

use std::collections::VecDeque;

/// Samples further apart than this (seconds) leave a hole: no distance is given across it.
pub const MAX_GAP: f64 = 1.0;
/// Seconds of odometry kept (older samples are dropped).
pub const KEEP: f64 = 120.0;
/// The path is measured in steps of at least this (metres), so that odometry jitter while the
/// robot stands does not add up to distance.
pub const MIN_STEP: f64 = 0.25;

/// Odometry positions in stamp order.
#[derive(Debug, Clone, Default)]
pub struct OdometryTrack {
    samples: VecDeque<(f64, [f64; 3])>,
    /// Samples dropped: stamped before the newest one (out of order), or not finite.
    pub dropped: u64,
    /// Samples taken.
    pub taken: u64,
}

impl OdometryTrack {
    /// Adds the position `p` (metres, odometry's frame) at stamp `t` (seconds). A sample older
    /// than the newest, or with a non-finite value, is dropped and counted; false then.
    pub fn push(&mut self, t: f64, p: [f64; 3]) -> bool {
        let newest = self.samples.back().map(|s| s.0);
        if !t.is_finite() || p.iter().any(|v| !v.is_finite()) || newest.is_some_and(|n| t < n) {
            self.dropped += 1;
            return false;
        }
        self.samples.push_back((t, p));
        self.taken += 1;
        while self.samples.front().is_some_and(|s| s.0 < t - KEEP) {
            self.samples.pop_front();
        }
        true
    }

    /// The newest sample's stamp.
    pub fn newest(&self) -> Option<f64> {
        self.samples.back().map(|s| s.0)
    }

    /// Path length (metres) of the odometry between stamps `t0` and `t1` (either order): the
    /// sum of the steps between the samples inside, plus the interpolated pieces at both ends.
    /// None unless the samples reach from `t0` to `t1` without a gap over [`MAX_GAP`]; an end
    /// up to [`MAX_GAP`] beyond the first or newest sample holds that sample's position (the
    /// frame arrived a little before or after the odometry).
    pub fn travelled(&self, t0: f64, t1: f64) -> Option<f64> {
        let (t0, t1) = if t0 <= t1 { (t0, t1) } else { (t1, t0) };
        let (first, last) = (self.samples.front()?.0, self.samples.back()?.0);
        if !(t0.is_finite() && t1.is_finite()) || t0 < first - MAX_GAP || t1 > last + MAX_GAP {
            return None;
        }
        // The samples from the last one at or before t0 to the first one at or after t1 (or the
        // ends) must follow each other within MAX_GAP.
        let n = self.samples.len();
        let lo = self
            .samples
            .partition_point(|s| s.0 <= t0)
            .saturating_sub(1);
        let hi = self.samples.partition_point(|s| s.0 < t1).min(n - 1);
        if (lo..hi).any(|j| self.samples[j + 1].0 - self.samples[j].0 > MAX_GAP) {
            return None;
        }
        // Steps shorter than MIN_STEP are joined with the next ones: the jitter of a standing
        // robot's odometry does not add up to distance.
        let mut length = 0.0;
        let mut anchor = self.at(t0);
        for (_, p) in self.samples.range(lo..=hi).filter(|s| s.0 > t0 && s.0 < t1) {
            let step = dist(&anchor, p);
            if step >= MIN_STEP {
                length += step;
                anchor = *p;
            }
        }
        Some(length + dist(&anchor, &self.at(t1)))
    }

    /// The position at `t`: interpolated between the samples around it, else the nearest end's.
    fn at(&self, t: f64) -> [f64; 3] {
        let i = self.samples.partition_point(|s| s.0 < t);
        match (
            i.checked_sub(1).map(|j| self.samples[j]),
            self.samples.get(i),
        ) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let w = (t - a.0) / (b.0 - a.0);
                [0, 1, 2].map(|k| a.1[k] + w * (b.1[k] - a.1[k]))
            }
            (_, Some(b)) => b.1,
            (Some(a), None) => a.1,
            (None, None) => [0.0; 3],
        }
    }
}

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Option<f64>, want: f64, what: &str) {
        let got = got.unwrap_or_else(|| panic!("{what}: no distance, expected {want}"));
        assert!(
            (got - want).abs() < 1e-9,
            "{what}: travelled {got}, expected {want}"
        );
    }

    /// A drive at 2 m/s along x sampled at 10 Hz, then a turn north: the path length, not the
    /// straight-line distance; the ends interpolated.
    #[test]
    fn the_path_length_between_two_stamps() {
        let mut o = OdometryTrack::default();
        for i in 0..=50 {
            let t = 100.0 + i as f64 * 0.1;
            o.push(t, [0.2 * i as f64, 0.0, 0.0]);
        }
        for i in 1..=50 {
            let t = 105.0 + i as f64 * 0.1;
            o.push(t, [10.0, 0.2 * i as f64, 0.0]);
        }
        close(o.travelled(100.0, 101.0), 2.0, "1 s straight");
        close(o.travelled(100.05, 100.15), 0.2, "between samples");
        close(
            o.travelled(104.0, 106.0),
            4.0,
            "around the corner: 2 m east then 2 m north",
        );
        close(o.travelled(106.0, 104.0), 4.0, "either order");
        close(o.travelled(100.0, 110.0), 20.0, "the whole drive");
        close(o.travelled(103.0, 103.0), 0.0, "no time");
        // Half a second past the newest sample: its position is held.
        close(o.travelled(109.0, 110.5), 2.0, "past the newest");
        assert_eq!(o.travelled(109.0, 111.5), None, "too far past the newest");
        assert_eq!(o.travelled(98.5, 101.0), None, "too far before the first");
    }

    /// A robot standing still for 70 s with 2 cm of odometry jitter at 50 Hz: a path length of
    /// every sample-to-sample step would be about 70 m; it is the last sample's offset only.
    #[test]
    fn jitter_while_standing_does_not_add_up() {
        let mut o = OdometryTrack::default();
        for i in 0..=3500 {
            let j = if i % 2 == 0 { 0.01 } else { -0.01 };
            o.push(i as f64 * 0.02, [j, -j, 0.0]);
        }
        let d = o.travelled(0.0, 70.0).unwrap();
        assert!(d < 0.05, "a standing robot travelled {d} m");
    }

    #[test]
    fn a_hole_in_the_odometry_gives_no_distance_and_bad_samples_are_counted() {
        let mut o = OdometryTrack::default();
        for (t, x) in [(0.0, 0.0), (0.5, 1.0), (2.0, 4.0), (2.5, 5.0)] {
            assert!(o.push(t, [x, 0.0, 0.0]));
        }
        assert_eq!(o.travelled(0.0, 2.5), None, "a 1.5 s hole inside");
        close(o.travelled(2.0, 2.5), 1.0, "after the hole");
        close(o.travelled(0.0, 0.5), 1.0, "before the hole");
        assert!(!o.push(1.0, [0.0; 3]), "older than the newest");
        assert!(!o.push(3.0, [f64::NAN, 0.0, 0.0]), "not finite");
        assert_eq!((o.taken, o.dropped), (4, 2));
        // Samples older than KEEP seconds are let go.
        assert!(o.push(2.5 + KEEP + 1.0, [9.0, 0.0, 0.0]));
        assert_eq!(o.samples.len(), 1);
    }
}
