//! How far a robot moved between two frames, from its odometry (the node's `odometry_topic`,
//! nav_msgs/Odometry): the sequence filter's motion (docs/sequence-filter.md, "Odometry in the
//! node"). Distances only, not directions: odometry's frame (`odom`) is not the map's, and its
//! heading drifts, while the distances it reports stay good for the short stretches between
//! two frames.

use std::collections::VecDeque;

use super::sequence::Travel;

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
    /// Times the odometry's clock went back by more than [`MAX_GAP`] (a bag played in a loop, a
    /// simulator restarted): the samples before were let go.
    pub restarts: u64,
}

/// What [`OdometryTrack::push`] did with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Taken,
    /// Out of order (older than the newest by up to [`MAX_GAP`]) or not finite.
    Dropped,
    /// Older than the newest by more than [`MAX_GAP`]: the clock went back; kept, alone.
    Restarted,
}

impl OdometryTrack {
    /// Adds the position `p` (metres, odometry's frame) at stamp `t` (seconds). A sample with
    /// a non-finite value, or not newer than the newest by up to [`MAX_GAP`], is dropped and
    /// counted; one older by more than that starts the track again (the clock went back).
    pub fn push(&mut self, t: f64, p: [f64; 3]) -> Pushed {
        let newest = self.samples.back().map(|s| s.0);
        if !t.is_finite() || p.iter().any(|v| !v.is_finite()) {
            self.dropped += 1;
            return Pushed::Dropped;
        }
        let mut pushed = Pushed::Taken;
        if let Some(n) = newest {
            if t < n - MAX_GAP {
                self.samples.clear();
                self.restarts += 1;
                pushed = Pushed::Restarted;
            } else if t <= n {
                self.dropped += 1;
                return Pushed::Dropped;
            }
        }
        self.samples.push_back((t, p));
        self.taken += 1;
        while self.samples.front().is_some_and(|s| s.0 < t - KEEP) {
            self.samples.pop_front();
        }
        pushed
    }

    /// The newest sample's stamp.
    pub fn newest(&self) -> Option<f64> {
        self.samples.back().map(|s| s.0)
    }

    /// The odometry's motion between stamps `t0` and `t1` (either order): the straight-line
    /// distance between its positions there and the path length (the sum of the steps between
    /// the samples inside, plus the interpolated pieces at both ends), in metres. None unless
    /// the samples reach from `t0` to `t1` without a gap over [`MAX_GAP`]; an end up to
    /// [`MAX_GAP`] beyond the first or newest sample holds that sample's position (the frame
    /// arrived a little before or after the odometry).
    pub fn travelled(&self, t0: f64, t1: f64) -> Option<Travel> {
        let (t0, t1) = if t0 <= t1 { (t0, t1) } else { (t1, t0) };
        let (first, last) = (self.samples.front()?.0, self.samples.back()?.0);
        if !(t0.is_finite() && t1.is_finite()) || t0 < first - MAX_GAP || t1 > last + MAX_GAP {
            return None;
        }
        if t0 == t1 {
            // Two cameras with one stamp.
            return Some(Travel {
                displacement: 0.0,
                path: 0.0,
            });
        }
        // The samples from the last one at or before t0 to the first one at or after t1 (or the
        // ends) must follow each other within MAX_GAP.
        let n = self.samples.len();
        let lo = self
            .samples
            .partition_point(|s| s.0 <= t0)
            .saturating_sub(1);
        let hi = self
            .samples
            .partition_point(|s| s.0 < t1)
            .min(n - 1)
            .max(lo);
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
        let (start, end) = (self.at(t0), self.at(t1));
        let path = length + dist(&anchor, &end);
        Some(Travel {
            displacement: dist(&start, &end),
            path,
        })
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

/// A recording's odometry (`evaluate --bag REC --odometry-topic TOPIC`): its positions
/// (stamp in seconds, position in metres in the odometry's frame) in the recording's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedOdometry {
    pub topic: String,
    pub samples: Vec<(f64, [f64; 3])>,
    /// Messages left out: stamp 0 (the node drops them too) or not decodable.
    pub left_out: u64,
    /// Samples recorded after one with a later stamp (`samples` holds them in stamp order).
    pub out_of_order: u64,
}

/// A recording's odometry handed to an [`OdometryTrack`] the way the node's subscription hands
/// it on while frames come in stamp order: by a frame at `t`, every sample stamped up to `t`
/// has arrived (in stamp order: [`RecordedOdometry::samples`] is sorted).
pub struct OdometryReplay<'a> {
    samples: &'a [(f64, [f64; 3])],
    next: usize,
    pub track: OdometryTrack,
}

impl<'a> OdometryReplay<'a> {
    pub fn new(odometry: &'a RecordedOdometry) -> Self {
        Self {
            samples: &odometry.samples,
            next: 0,
            track: OdometryTrack::default(),
        }
    }

    /// The odometry's motion from `t0` (the filter's last frame, if any) to the frame at `t`,
    /// from the samples that have arrived by `t`.
    pub fn travelled(&mut self, t0: Option<f64>, t: f64) -> Option<Travel> {
        while let Some(&(ts, p)) = self.samples.get(self.next).filter(|s| s.0 <= t) {
            self.track.push(ts, p);
            self.next += 1;
        }
        self.track.travelled(t0?, t)
    }

    /// Hands on the samples stamped after the last frame (so that `track.taken` counts every
    /// sample).
    pub fn finish(&mut self) {
        for &(ts, p) in &self.samples[self.next..] {
            self.track.push(ts, p);
        }
        self.next = self.samples.len();
    }
}

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Option<Travel>, want: f64, what: &str) {
        let got = got
            .unwrap_or_else(|| panic!("{what}: no distance, expected {want}"))
            .path;
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
        let corner = o.travelled(104.0, 106.0).unwrap().displacement;
        assert!(
            (corner - 8f64.sqrt()).abs() < 1e-9,
            "around the corner: {corner} m from where it was, expected sqrt(8)"
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
        assert!(d.path < 0.05, "a standing robot travelled {} m", d.path);
        assert!(
            d.displacement < 0.05,
            "a standing robot moved {} m",
            d.displacement
        );
    }

    #[test]
    fn a_hole_in_the_odometry_gives_no_distance_and_bad_samples_are_counted() {
        let mut o = OdometryTrack::default();
        for (t, x) in [(0.0, 0.0), (0.5, 1.0), (2.0, 4.0), (2.5, 5.0)] {
            assert_eq!(o.push(t, [x, 0.0, 0.0]), Pushed::Taken);
        }
        assert_eq!(o.travelled(0.0, 2.5), None, "a 1.5 s hole inside");
        close(o.travelled(2.0, 2.5), 1.0, "after the hole");
        close(o.travelled(0.0, 0.5), 1.0, "before the hole");
        assert_eq!(
            o.push(2.0, [0.0; 3]),
            Pushed::Dropped,
            "older than the newest"
        );
        assert_eq!(
            o.push(2.5, [0.0; 3]),
            Pushed::Dropped,
            "the newest's stamp again"
        );
        assert_eq!(
            o.push(3.0, [f64::NAN, 0.0, 0.0]),
            Pushed::Dropped,
            "not finite"
        );
        assert_eq!((o.taken, o.dropped), (4, 3));
        // Samples older than KEEP seconds are let go.
        assert_eq!(o.push(2.5 + KEEP + 1.0, [9.0, 0.0, 0.0]), Pushed::Taken);
        assert_eq!(o.samples.len(), 1);
        // The clock went back (a bag played again): the track starts again from that sample.
        assert_eq!(o.push(0.5, [1.0, 0.0, 0.0]), Pushed::Restarted);
        assert_eq!(o.push(1.0, [2.0, 0.0, 0.0]), Pushed::Taken);
        assert_eq!((o.samples.len(), o.restarts), (2, 1));
        close(o.travelled(0.5, 1.0), 1.0, "after the restart");
    }

    /// Two cameras with one stamp, at a stamp that is also a sample's, ask for no motion (this
    /// once indexed a range backwards and panicked).
    #[test]
    fn one_stamp_twice_is_no_motion() {
        let mut o = OdometryTrack::default();
        for (t, x) in [(1.0, 0.0), (2.0, 1.0), (2.0, 1.0), (3.0, 2.0)] {
            o.push(t, [x, 0.0, 0.0]);
        }
        let m = o.travelled(2.0, 2.0).unwrap();
        assert_eq!((m.displacement, m.path), (0.0, 0.0));
        let m = o.travelled(2.0, 2.5).unwrap();
        assert!((m.path - 0.5).abs() < 1e-9, "half a second later: {m:?}");
    }

    /// Out and back: 20 m east and 20 m west again; the robot is where it was.
    #[test]
    fn out_and_back_is_a_long_path_and_no_displacement() {
        let mut o = OdometryTrack::default();
        for i in 0..=40 {
            let x = if i <= 20 { i as f64 } else { 40.0 - i as f64 };
            o.push(i as f64 * 0.5, [x, 0.0, 0.0]);
        }
        let m = o.travelled(0.0, 20.0).unwrap();
        assert!((m.path - 40.0).abs() < 1e-9, "path {}", m.path);
        assert!(
            m.displacement.abs() < 1e-9,
            "displacement {}",
            m.displacement
        );
    }
}
