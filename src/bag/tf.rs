//! Poses from a recording: the TF tree of `/tf` and `/tf_static` (tf2's conventions: a
//! transform stamped `parent -> child` is `parent_from_child`, frame ids without a leading `/`,
//! each child has one parent), looked up at a time by interpolating every moving link between
//! its two nearest messages (translation linearly, rotation by slerp); and a recorded trajectory
//! (`--pose-topic`) interpolated the same way. Nothing is extrapolated: a time outside a link's
//! messages, or between two messages further apart than the limit, is a miss that says why.

use std::collections::{BTreeSet, HashMap};

use nalgebra::Translation3;

use crate::geom::Pose;

/// Why a pose could not be had at a time.
#[derive(Debug, Clone, PartialEq)]
pub enum Miss {
    /// The two frames are not connected in the tree (or a frame is not in it).
    Unconnected,
    /// Before the first message of a link (`child` names it).
    Before { child: String },
    /// After the last message of a link.
    After { child: String },
    /// Between two messages of a link further apart than the limit.
    Gap { child: String, gap_ns: i64 },
}

/// Time-stamped poses of one moving thing, sorted by time.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<(i64, Pose)>);

impl Samples {
    pub fn push(&mut self, t_ns: i64, pose: Pose) {
        self.0.push((t_ns, pose));
    }

    /// Sorts by time; of two samples with one stamp the later one read is kept.
    pub fn finish(&mut self) {
        self.0.sort_by_key(|s| s.0);
        let mut out: Vec<(i64, Pose)> = Vec::with_capacity(self.0.len());
        for s in self.0.drain(..) {
            match out.last_mut() {
                Some(last) if last.0 == s.0 => *last = s,
                _ => out.push(s),
            }
        }
        self.0 = out;
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first and last stamp.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.0.first()?.0, self.0.last()?.0))
    }

    /// The pose at `t`, interpolated between the two samples around it when they are at most
    /// `max_gap_ns` apart. `child` names the link in a miss.
    pub fn at(&self, t: i64, max_gap_ns: i64, child: &str) -> Result<Pose, Miss> {
        let s = &self.0;
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            return Err(Miss::Unconnected);
        };
        if t < first.0 {
            return Err(Miss::Before {
                child: child.into(),
            });
        }
        if t > last.0 {
            return Err(Miss::After {
                child: child.into(),
            });
        }
        let i = s.partition_point(|x| x.0 < t);
        if s[i].0 == t {
            return Ok(s[i].1);
        }
        let (a, b) = (&s[i - 1], &s[i]);
        let gap = b.0 - a.0;
        if gap > max_gap_ns {
            return Err(Miss::Gap {
                child: child.into(),
                gap_ns: gap,
            });
        }
        let w = (t - a.0) as f64 / gap as f64;
        Ok(interpolate(&a.1, &b.1, w))
    }
}

/// `a` at w = 0, `b` at w = 1: translation linearly, rotation by slerp along the shorter arc
/// (nalgebra's `UnitQuaternion::try_slerp` flips `b` when the two have opposite signs, as tf2's
/// `slerp` does; `slerp_takes_the_short_way_when_quaternions_have_opposite_signs` guards it).
pub fn interpolate(a: &Pose, b: &Pose, w: f64) -> Pose {
    let t = a.translation.vector.lerp(&b.translation.vector, w);
    let (qa, qb) = (a.rotation, b.rotation);
    let q = qa.try_slerp(&qb, w, 1e-12).unwrap_or(qa);
    Pose::from_parts(Translation3::from(t), q)
}

/// A link of the tree: its parent and either one fixed pose (`/tf_static`) or samples.
#[derive(Debug, Clone)]
struct Link {
    parent: String,
    fixed: Option<Pose>,
    samples: Samples,
}

/// The TF tree of a recording.
#[derive(Debug, Clone, Default)]
pub struct TfTree {
    links: HashMap<String, Link>,
    /// Transforms that named a second parent for a child (ignored, as tf2 rejects them).
    pub conflicts: u64,
}

/// A frame id as tf2 compares them (no leading `/`).
pub fn frame_id(s: &str) -> &str {
    s.trim_start_matches('/')
}

impl TfTree {
    /// Adds `parent_from_child` at `t_ns` (a static transform holds at every time).
    pub fn add(&mut self, parent: &str, child: &str, t_ns: i64, pose: Pose, is_static: bool) {
        let (parent, child) = (frame_id(parent), frame_id(child));
        let link = self.links.entry(child.to_string()).or_insert_with(|| Link {
            parent: parent.to_string(),
            fixed: None,
            samples: Samples::default(),
        });
        if link.parent != parent {
            self.conflicts += 1;
            return;
        }
        if is_static {
            link.fixed = Some(pose);
        } else {
            link.samples.push(t_ns, pose);
        }
    }

    /// Sorts every link's samples (call once after the last `add`).
    pub fn finish(&mut self) {
        for l in self.links.values_mut() {
            l.samples.finish();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Every frame named in the tree.
    pub fn frames(&self) -> BTreeSet<String> {
        let mut f = BTreeSet::new();
        for (child, l) in &self.links {
            f.insert(child.clone());
            f.insert(l.parent.clone());
        }
        f
    }

    /// The frames from `frame` up to its root, `frame` first.
    fn up(&self, frame: &str) -> Vec<String> {
        let mut path = vec![frame.to_string()];
        let mut f = frame;
        while let Some(l) = self.links.get(f) {
            if path.contains(&l.parent) || path.len() > 10_000 {
                break; // a loop: tf2 refuses these; stop at the repeat
            }
            path.push(l.parent.clone());
            f = &l.parent;
        }
        path
    }

    /// Whether `a` and `b` are in one tree.
    pub fn connected(&self, a: &str, b: &str) -> bool {
        self.links_to_common(a, b).is_some()
    }

    /// The links (named by their child frames) from `a` and from `b` up to their nearest
    /// common ancestor, each in order from the frame up; None when they are in different trees.
    fn links_to_common(&self, a: &str, b: &str) -> Option<(Vec<String>, Vec<String>)> {
        let (mut up_a, mut up_b) = (self.up(frame_id(a)), self.up(frame_id(b)));
        let common = up_a.iter().position(|f| up_b.contains(f))?;
        let k = up_b
            .iter()
            .position(|f| f == &up_a[common])
            .expect("common");
        up_a.truncate(common);
        up_b.truncate(k);
        Some((up_a, up_b))
    }

    /// Whether `a` and `b` are one frame or linked only through static transforms
    /// (`/tf_static`): then the one never moves in the other. False when they are not connected.
    pub fn fixed_between(&self, a: &str, b: &str) -> bool {
        let Some((from_a, from_b)) = self.links_to_common(a, b) else {
            return false;
        };
        from_a.iter().chain(&from_b).all(|child| {
            let l = &self.links[child];
            // A link on both topics is contradictory TF, not a fixed mounting: not judged.
            l.fixed.is_some() && l.samples.is_empty()
        })
    }

    /// `ancestor_from_frame` at `t`, composing the links from `frame` up to `ancestor`.
    fn chain(&self, path: &[String], t: i64, max_gap_ns: i64) -> Result<Pose, Miss> {
        let mut pose = Pose::identity();
        for child in path {
            let l = &self.links[child];
            let step = match l.fixed {
                Some(p) => p,
                None => l.samples.at(t, max_gap_ns, child)?,
            };
            pose = step * pose;
        }
        Ok(pose)
    }

    /// `target_from_source` at `t` (tf2's lookupTransform(target, source, t)).
    pub fn lookup(
        &self,
        target: &str,
        source: &str,
        t: i64,
        max_gap_ns: i64,
    ) -> Result<Pose, Miss> {
        let (from_source, from_target) = self
            .links_to_common(source, target)
            .ok_or(Miss::Unconnected)?;
        let ancestor_from_source = self.chain(&from_source, t, max_gap_ns)?;
        let ancestor_from_target = self.chain(&from_target, t, max_gap_ns)?;
        Ok(ancestor_from_target.inverse() * ancestor_from_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{UnitQuaternion, Vector3};

    fn pose(x: f64, y: f64, yaw: f64) -> Pose {
        Pose::from_parts(
            Translation3::new(x, y, 0.0),
            UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw),
        )
    }

    #[test]
    fn a_chain_is_composed_and_interpolated_between_messages() {
        let mut tf = TfTree::default();
        // map -> odom fixed 10 m east; odom -> base_link moves 0..2 m north over 2 s, turning.
        tf.add("map", "odom", 0, pose(10.0, 0.0, 0.0), true);
        tf.add("odom", "base_link", 0, pose(0.0, 0.0, 0.0), false);
        tf.add(
            "odom",
            "base_link",
            2_000_000_000,
            pose(0.0, 2.0, 1.0),
            false,
        );
        tf.add("/base_link", "cam", 0, pose(0.5, 0.0, 0.0), true);
        tf.finish();
        let p = tf
            .lookup("map", "cam", 1_000_000_000, 1_000_000_000_000)
            .unwrap();
        let base = pose(10.0, 1.0, 0.5);
        let want = base * pose(0.5, 0.0, 0.0);
        assert!((p.translation.vector - want.translation.vector).norm() < 1e-9);
        assert!(p.rotation.angle_to(&want.rotation) < 1e-9);
        // The camera moves in map and odom, not in base_link (static all the way), nor in
        // itself; an unknown frame is not fixed to anything.
        assert!(!tf.fixed_between("map", "cam"));
        assert!(!tf.fixed_between("odom", "/cam"));
        assert!(tf.fixed_between("base_link", "cam"));
        assert!(tf.fixed_between("cam", "/base_link"));
        assert!(tf.fixed_between("cam", "cam"));
        assert!(!tf.fixed_between("cam", "elsewhere"));
        // odom -> base_link also on /tf_static (a misconfigured publisher): not called fixed.
        let mut both = tf.clone();
        both.add("odom", "base_link", 0, pose(0.0, 0.0, 0.0), true);
        assert!(!both.fixed_between("odom", "cam"));
        // The inverse lookup is the inverse pose.
        let q = tf
            .lookup("cam", "map", 1_000_000_000, 1_000_000_000_000)
            .unwrap();
        assert!((q * p).translation.vector.norm() < 1e-9);
    }

    #[test]
    fn nothing_is_extrapolated_and_gaps_are_refused() {
        let mut tf = TfTree::default();
        tf.add("map", "base", 100, pose(0.0, 0.0, 0.0), false);
        tf.add("map", "base", 200, pose(1.0, 0.0, 0.0), false);
        tf.add("map", "base", 1_000, pose(2.0, 0.0, 0.0), false);
        tf.finish();
        assert_eq!(
            tf.lookup("map", "base", 99, 500),
            Err(Miss::Before {
                child: "base".into()
            })
        );
        assert_eq!(
            tf.lookup("map", "base", 1_001, 500),
            Err(Miss::After {
                child: "base".into()
            })
        );
        assert_eq!(
            tf.lookup("map", "base", 600, 500),
            Err(Miss::Gap {
                child: "base".into(),
                gap_ns: 800
            })
        );
        assert!(tf.lookup("map", "base", 150, 500).is_ok());
        assert_eq!(
            tf.lookup("map", "elsewhere", 150, 500),
            Err(Miss::Unconnected)
        );
    }

    #[test]
    fn slerp_takes_the_short_way_when_quaternions_have_opposite_signs() {
        let a = pose(0.0, 0.0, 0.1);
        let mut b = pose(0.0, 0.0, 0.3);
        b.rotation = UnitQuaternion::new_unchecked(-b.rotation.into_inner());
        let m = interpolate(&a, &b, 0.5);
        assert!(
            (m.rotation.angle() - 0.2).abs() < 1e-9,
            "yaw halfway between 0.1 and 0.3 rad (b's quaternion negated): {} rad",
            m.rotation.angle()
        );
    }

    #[test]
    fn interpolation_weights_each_end_by_its_distance_in_time() {
        // A quarter of the way from (0 m, yaw 0.1) to (4 m, -2 m, yaw 0.9): 1 m, -0.5 m, yaw 0.3,
        // with b's quaternion as given and negated (the same rotation).
        let a = pose(0.0, 0.0, 0.1);
        for sign in [1.0, -1.0] {
            let mut b = pose(4.0, -2.0, 0.9);
            b.rotation = UnitQuaternion::new_unchecked(b.rotation.into_inner() * sign);
            let m = interpolate(&a, &b, 0.25);
            let t = m.translation.vector;
            assert!(
                (t - Vector3::new(1.0, -0.5, 0.0)).norm() < 1e-9,
                "translation at w = 0.25 (b's quaternion sign {sign}): {t:?}, want [1, -0.5, 0]"
            );
            let yaw = m.rotation.euler_angles().2;
            assert!(
                (yaw - 0.3).abs() < 1e-9,
                "yaw at w = 0.25 (b's quaternion sign {sign}): {yaw} rad, want 0.3"
            );
        }
    }
}
