//! Sequence localization (`filter: sequence`, `evaluate --filter sequence`): a discrete Bayes
//! filter (a hidden Markov model) over the map's places, fed by every camera's frames in time
//! order. docs/sequence-filter.md has the model with its numbers.
//!
//! Why a grid of places and not particles: what a retrieval map can tell apart is a map place
//! (two images closer than the map's spacing look the same to it), retrieval already gives a
//! likelihood for the places it ranks, and a grid makes the update exact and deterministic
//! (the same frames give the same priors) with no particle depletion after a kidnapping: a
//! uniform share of the belief keeps every place alive.
//!
//! - State: the vehicle's place. Places are map rows grouped by camera centre, in map order:
//!   a row within [`PLACE_RADIUS`] of a place's first row joins it (the cameras of one stop are
//!   one place).
//! - Motion over `dt` seconds, in any direction (so driving backwards, stopping and a second
//!   lap of a loop need nothing special): p'(j) = (1 - e) sum_i p(i) K(d_ij) / sum_j K(d_ij)
//!   plus e / N, with K(d) = exp(-(d - u)^2 / (2 s^2)), d_ij the distance between place centres,
//!   e = [`UNIFORM_SHARE`]. Without odometry u = 0 and s = [`MOTION_FLOOR`] + [`MAX_SPEED`] dt,
//!   mixed with the same kernel at [`FAST_SPEED`] and with a directed one, each weighed by how
//!   well it predicted the frames (their evidence; [`SPEED_SWITCH`] lets the vehicle change
//!   regime). The directed kernel moves each place's belief to the places about its centre plus
//!   v dt (a Gaussian of width [`MOTION_FLOOR`]), v the published place's velocity, a running
//!   mean over [`VELOCITY_TIME`] of its motion between captures (forgotten at a relocalization):
//!   the undirected kernels cannot tell the place ahead from the place behind. With odometry
//!   ([`Travel`]) u is the straight-line distance between the odometry's positions at the two
//!   frames and s = [`MOTION_FLOOR`] + [`ODOMETRY_DRIFT`] times the path
//!   length driven in between, mixed by evidence with the directed kernel moved that distance
//!   along v (the odometry's heading is in its own frame, not the map's: the velocity gives
//!   the direction, once it is at least [`HEADING_MIN_SPEED`]).
//!   When 3 s exceeds [`RESET_REACH`] (a long gap: another traversal) the belief starts again
//!   from uniform.
//! - Observation (one frame of one camera): its [`HITS`] best map rows of that camera with
//!   descriptor distances d; L(place) = exp(-(d - d_1) / scale) for the best row of the place
//!   among them, scale = d_K - d_1 with K = [`SCALE_RANK`] (the K-th best is e times less
//!   likely than the best: the scale follows the frame, not a constant fitted to one world);
//!   places with no row among the hits get the likelihood of the last hit.
//! - Cameras: each camera has a trust, the probability that its frames show the vehicle's
//!   place rather than nothing of it (a covered or blinded camera), switched with
//!   [`CAMERA_SWITCH`] per frame and weighed by each frame's evidence against the off-the-map
//!   likelihood; a frame's say is its camera's trust over the most trusted other camera's
//!   (1 with one camera), and its likelihood is mixed with the off-the-map one by that say
//!   ([`SequenceFilter::camera_weight`]).
//! - Output: the place with the most posterior mass within [`REGION_RADIUS`] (a belief spread
//!   over neighbouring places outweighs one aliased place far away); in that region the place
//!   of highest posterior ([`OWN_SHARE`] 1: the frame's own best match when it is that place),
//!   or the frame's own best match wherever it lies when the frame is sure of it (its camera's
//!   say times its single-frame confidence at least [`SURE`]); the frame's best-matching row
//!   there (any row of that camera at that place when none was among the hits).
//! - Position covariance: the floor of a single match (wider for a frame unsure of itself:
//!   crate::localize::prior::filter_floor) plus R^2 / 7.81 (I - u u^T) + H^2 / 7.81
//!   u u^T, u the map's up (7.81 the 95% point of chi-square with 3 degrees of freedom): R the
//!   ground distance (perpendicular to u) from the published place within which
//!   [`SPREAD_MASS`] of the belief lies (the places that hold belief of their own, cumulated
//!   outwards, linearly between places, from 0 at 0), H the largest height difference (along u)
//!   of a place within that distance (before the floor below). So the 95% ellipsoid is a disc out to about where that share of the
//!   belief is (the road's direction is not used): a belief split between two stretches of road
//!   widens it when the other stretch holds more than 1 - SPREAD_MASS of it, and a settled
//!   belief is not widened by the little left far away. R is at least [`BETWEEN_SPACING`]
//!   times the map's spacing: a query lies between map images, up to half their spacing from
//!   the nearest, however sure the belief is of that image. SPREAD_MASS was fitted so that the 95%
//!   ellipsoid holds the truth for 95% of the priors of the fitting worlds together
//!   (tools/python/fit_sequence_spread.py; docs/pose-prior.md).
//! - Off the map: beside the places, the filter keeps the probability q that the vehicle is off
//!   the map (`belief` is the belief given that it is on it). Over dt seconds q relaxes towards
//!   0.25, the stationary share of a vehicle that leaves the map at rate 1 / [`ON_MAP_TIME`]
//!   and comes back at rate 1 / [`OFF_MAP_TIME`] ([`off_map_after`]); a frame weighs it as
//!   q L_off / (q L_off + (1 - q) E), E = sum_j p(j) L(j) the motion's predicted belief times
//!   the frame's likelihoods (how well the
//!   places the motion predicts explain it; right after a start or a reset, when the belief is
//!   uniform, U below: how well an average place does) and L_off = [`OFF_MAP_LIKELIHOOD`] exp(-c / [`OFF_MAP_CONFIDENCE`])
//!   (U / [`OFF_MAP_USUAL`])^[`OFF_MAP_USUAL_POWER`] with c the frame's single-frame
//!   confidence and U its likelihood averaged over the map's places (both fall as the map
//!   grows; [`off_map_likelihood`]). So a vehicle stays on the map while its frames follow a
//!   path on it and stand out from the map's other places; q at least [`OFF_MAP_WITHHOLD`]
//!   (the node's `off_map_threshold`) withholds the prior. Starts (and resets) at
//!   [`OFF_MAP_START`].
//! - Past a map's end: at a place that ends a road on the map ([`Places::road_end`]) the
//!   frames cannot tell a vehicle parked there from one driving on past it (the road on looks
//!   like the map's last stretch, and the belief waits at the end). So from when the published
//!   place reaches an end from another place, at a speed, the ground radius R above grows by
//!   how far the vehicle may have driven on since: its odometry's path, else the published
//!   place's speed when it got there (a running mean over [`SPEED_TIME`] of its motion between
//!   captures at least [`SPEED_GAP`] apart, each sample at most [`FAST_SPEED`]) times the time
//!   past the newest stamp, plus the published place's distance back from the end
//!   (`beyond_end`). A vehicle that turns back loses it after [`LEAVE_CAPTURES`] captures in a
//!   row with its published place more than 2 [`REGION_RADIUS`] from the end; one that stops
//!   at the end keeps a growing ellipsoid (it looks the same); one that starts at an end and
//!   drives into the map is not widened.
//! - Reset report: a published place further from the previous one than the slow bound allows
//!   (3 s + [`REGION_RADIUS`], the published place may move within its region) is counted as
//!   a relocalization, never passed off as motion.

use nalgebra::{Matrix3, Vector3};

use crate::map::file::MapFile;
use crate::retrieval::Hit;

/// Rows whose camera centres lie within this of a place's first row are one place (metres).
pub const PLACE_RADIUS: f64 = 1.0;
/// Standard deviation of the motion kernel at no elapsed time and no odometry (metres).
pub const MOTION_FLOOR: f64 = 2.0;
/// Speed bound without odometry: the motion kernel widens by this much per second (m/s).
pub const MAX_SPEED: f64 = 15.0;
/// The second speed bound (m/s): a vehicle on a highway, or frames stamped faster than the
/// vehicle drove (a data set replayed at a higher rate). Without odometry the motion is a
/// mixture of the two bounds and the published place's velocity, weighed by how well each
/// predicted the frames.
pub const FAST_SPEED: f64 = 50.0;
/// The chance per frame that the vehicle changes between the motion models (the two speed
/// bounds and the published place's velocity).
pub const SPEED_SWITCH: f64 = 0.05;
/// The published place's velocity (a vector: the vehicle's direction of travel) is a running
/// mean of its motion between captures over this time constant (seconds); without odometry it
/// centres a third motion kernel on where each place would take the vehicle at that velocity.
pub const VELOCITY_TIME: f64 = 1.4;
/// The directed kernel's width: [`MOTION_FLOOR`], or this share of the map's spacing (the
/// median distance from a place to its nearest other place) on a sparser map, so that where
/// the velocity points there is a place.
pub const VELOCITY_SPACING: f64 = 1.0 / 3.0;
/// In the region it publishes, the filter keeps the frame's own best match while the
/// posterior there is at least this share of the region's highest; else it publishes the
/// place of highest posterior. 1: the place of highest posterior, the frame's own match only
/// when it is that place (or when the frame is sure of itself, [`SURE`]). 0.5 until session
/// 68, chosen on the three fitting worlds of then; on the seven of
/// tools/fit-sequence-constants.sh (the drive and hard-drive validation worlds among them) 1
/// gives 1,472 right (5 m, 10 deg) of 1,580 queries against 1,452 at 0.5, 1,465 at 0.8 and
/// 1,447 at 0.3 (docs/sequence-filter.md, "The place of highest posterior").
pub const OWN_SHARE: f64 = 1.0;
/// With odometry, the published place's velocity gives the direction of travel only at this
/// speed or more (m/s): slower, its direction is the noise of the places' centres.
pub const HEADING_MIN_SPEED: f64 = 0.5;
/// Frames closer in time than this (seconds) are one instant: the cameras of one capture.
pub const SIMULTANEOUS: f64 = 1e-3;
/// With odometry: the kernel's width per metre travelled (odometry's drift and the map's
/// spacing).
pub const ODOMETRY_DRIFT: f64 = 0.2;
/// The odometry's motion between two frames (metres, odometry's frame): how far the robot is
/// from where it was (`displacement`, the kernel's centre u) and the path it drove (`path`,
/// which sets the kernel's width: odometry drifts with the distance driven).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    pub displacement: f64,
    pub path: f64,
}

/// A motion reach (3 s) beyond this says nothing: the belief starts again (metres).
pub const RESET_REACH: f64 = 1000.0;
/// Share of the belief spread over every place at each step (recovery from a kidnapping).
pub const UNIFORM_SHARE: f64 = 0.01;
/// The share of the belief within the published 95% ellipsoid's reach (the module comment).
/// The posterior is less sure than it should be (its likelihood is tempered so that an aliased
/// place is not ruled out): on the fitting worlds 73% of its belief reaches as far as the truth
/// lies in 96% of the published frames (the three fitting worlds together, at the target at which
/// each held out of a fit on the other two is covered at 95%; the shipped model
/// with its descriptor layer e6, 2026-12-03). Kept when the floor of [`BETWEEN_SPACING`] came:
/// a refit with the floor gives 0.6 (95.2-96.2% on the fitting worlds), which narrows the
/// ellipsoid of a spread belief to pay for the floor's cover of a settled one, and held the
/// truth for 78.3% of cmu_test_sepia's priors (88.3% before the floor): the floor only widens
/// (docs/sequence-filter.md, "Between map images"). The ninth model's fit: 0.72 (kept).
pub const SPREAD_MASS: f64 = 0.73;
/// The ground reach R is at least this share of the map's spacing ([`Places::spacing`]): a
/// query lies between the map's images, up to half their spacing from the nearest one, and a
/// belief sure of that image does not make the truth lie on it (docs/sequence-filter.md,
/// "Between map images"). Geometry, not fitted.
pub const BETWEEN_SPACING: f64 = 0.5;
/// A frame whose single-frame confidence is at least this is sure of its own match, which the
/// belief does not override. 0.5: chosen for the shipped model's cosine metric (2026-12-04),
/// the best of 0.15, 0.25, 0.35, 0.5 and never (2) by the sum of `evaluate --filter sequence`
/// (5 m, 10 deg) on cmu_calibration and the four validation worlds (469.6-470.8 points: one to
/// three queries apart; docs/sequence-filter.md). Before, with L1: 0.15, the value of the
/// single-frame prior's CONFIDENT when this rule was chosen (the fourth model).
pub const SURE: f64 = 0.5;
/// The published place is the one with the most belief within this distance (metres).
pub const REGION_RADIUS: f64 = 10.0;
/// Places this many times less likely than the best are not moved one by one (their belief
/// joins the uniform share).
pub const PRUNE: f64 = 1e-3;
/// How many of the likeliest places the published region is chosen among.
pub const REGION_CANDIDATES: usize = 64;
/// Retrieval hits per observation.
pub const HITS: usize = 50;
/// The likelihood scale is the distance from the best hit to this one (1-based rank).
pub const SCALE_RANK: usize = 5;
/// The likelihood of a frame under "off the map" at single-frame confidence 0 and mean
/// likelihood [`OFF_MAP_USUAL`], relative to its best place's (1); it falls as
/// exp(-c / [`OFF_MAP_CONFIDENCE`]) with the frame's confidence c and grows as
/// (U / [`OFF_MAP_USUAL`])^[`OFF_MAP_USUAL_POWER`] with its mean likelihood U over the map's
/// places. Fitted with [`OFF_MAP_CONFIDENCE`] and [`OFF_MAP_USUAL_POWER`] by
/// tools/python/fit_off_map.py (docs/sequence-filter.md, "Off the map", "Map size" and "With
/// yaw views").
pub const OFF_MAP_LIKELIHOOD: f64 = 3.0;
/// The single-frame confidence over which the off-the-map likelihood falls by e (fitted with
/// [`OFF_MAP_LIKELIHOOD`] and [`OFF_MAP_USUAL_POWER`]: 3, 0.1 and 1 for the ninth model with
/// the default yaw views, 2026-12-06, the hard-drive validation worlds among the fitting
/// folders; 1.5, 0.15 and 0 for it without views, 2026-12-05; 1 and 0.2 for the
/// eighth with the cosine metric, the drive validation worlds among the fitting folders since
/// then; 1 and 0.1 with L1).
pub const OFF_MAP_CONFIDENCE: f64 = 0.1;
/// The power of the frame's mean likelihood U (its likelihood averaged over the map's places)
/// in the off-the-map likelihood: 1 since 2026-12-06 (maps with yaw views, the hard-drive
/// validation worlds among the fitting folders; every check folder past a map's end stays
/// withheld or covered). Before, 0. Both U and the confidence c fall as a map grows (more
/// places, more near-alike ones, more at the likelihood's floor), and on a 240-place map of
/// cmu_calibration's route c alone made 96 of its 240 frames look off the map against 31 on
/// its own 30-place map, all of them on it (session 56, power 0). Weighing by U keeps more of
/// them, but the powers the fit chose with maps of 120 and 240 places among its folders (1.5
/// with 4 and 0.1) published wrong priors past the end of a large map of a route it had not
/// seen (88% withheld or covered, against 100% with 0): not adopted then (docs/sequence-filter.md,
/// "Map size").
pub const OFF_MAP_USUAL_POWER: f64 = 1.0;
/// The mean likelihood at which the factor of [`OFF_MAP_USUAL_POWER`] is 1 (about a frame's U
/// on the 30-place fitting maps).
pub const OFF_MAP_USUAL: f64 = 0.25;
/// Mean time (seconds) a vehicle stays on its map before it leaves it.
pub const ON_MAP_TIME: f64 = 60.0;
/// Mean time (seconds) a vehicle off its map stays off it.
pub const OFF_MAP_TIME: f64 = 20.0;
/// The probability of being off the map at the start and after a reset.
pub const OFF_MAP_START: f64 = 0.2;
/// A place is the end of a road on the map ([`Places::road_end`]) when the mean of the unit
/// vectors to its neighbours within [`END_SPACINGS`] spacings is at least this long (1: all on
/// one side; a straight stretch gives about 0, a right-angled corner 0.71).
pub const END_ALIGNMENT: f64 = 0.8;
/// The neighbourhood of the end test, in spacings (the distance from the place to its
/// second-nearest other place).
pub const END_SPACINGS: f64 = 3.0;
/// Time constant (seconds) of the published place's speed, the running mean that says how far
/// a vehicle at a map's end may have driven on.
pub const SPEED_TIME: f64 = 3.0;
/// Captures closer in time than this (seconds) give no speed sample (unsynchronized cameras
/// of one capture).
pub const SPEED_GAP: f64 = 0.05;
/// Captures in a row with the published place more than 2 [`REGION_RADIUS`] from the end that
/// end the widening past it (one stray frame does not).
pub const LEAVE_CAPTURES: u32 = 3;
/// A prior is withheld while the probability of being off the map is at least this.
pub const OFF_MAP_WITHHOLD: f64 = 0.5;
/// The chance per frame of a camera that it changes between showing the vehicle's place and
/// showing nothing of it (a lens cap, a blinding sun, a wall, a scene the map does not hold):
/// the two states of [`SequenceFilter`]'s camera trust, switched as the motion models are
/// ([`SPEED_SWITCH`]).
pub const CAMERA_SWITCH: f64 = 0.05;
/// A camera not heard for this long (seconds, frame stamps) is left out when the others'
/// trust is compared with the best (a camera whose driver stopped does not keep a broken
/// one distrusted).
pub const CAMERA_SILENCE: f64 = 10.0;

/// The map's places: rows grouped by camera centre.
pub struct Places {
    /// Place of each map row.
    pub of_row: Vec<usize>,
    /// Camera centre of each place's first row.
    pub centre: Vec<[f64; 3]>,
    /// Rows of each place, in map order.
    pub rows: Vec<Vec<usize>>,
    /// The map's up direction (unit; [`crate::localize::prior::map_up`]): the ground plane the
    /// spread lies in is perpendicular to it.
    pub up: Vector3<f64>,
    /// Whether each place is the end of a road on the map (its neighbours all lie on one side,
    /// [`END_ALIGNMENT`]): a vehicle there may drive on, off the map.
    pub road_end: Vec<bool>,
    /// The median distance from a place to its nearest other place (metres; 0 for one place).
    pub spacing: f64,
    tree: kiddo::KdTree<f64, 3>,
}

impl Places {
    pub fn new(map: &MapFile) -> Self {
        let mut places = Self::from_centres((0..map.len()).map(|i| {
            let t = map.pose(i).translation.vector;
            [t.x, t.y, t.z]
        }));
        if let Some(up) = crate::localize::prior::map_up((0..map.len()).map(|i| map.pose(i))) {
            places.up = up;
        }
        places
    }

    /// Groups rows (their camera centres, in map order) into places; up is +z until
    /// [`Places::new`] finds the map's.
    pub fn from_centres(centres: impl Iterator<Item = [f64; 3]>) -> Self {
        let mut tree: kiddo::KdTree<f64, 3> = kiddo::KdTree::new();
        let (mut of_row, mut centre, mut rows) = (Vec::new(), Vec::new(), Vec::<Vec<usize>>::new());
        for (i, c) in centres.enumerate() {
            let near = tree.nearest_one::<kiddo::SquaredEuclidean>(&c);
            let place = if !centre.is_empty() && near.distance <= PLACE_RADIUS * PLACE_RADIUS {
                near.item as usize
            } else {
                // kiddo's leaves hold at most 32 equal points: places are PLACE_RADIUS apart.
                tree.add(&c, centre.len() as u64);
                centre.push(c);
                rows.push(Vec::new());
                centre.len() - 1
            };
            rows[place].push(i);
            of_row.push(place);
        }
        let road_end = road_ends(&centre, &tree);
        let spacing = median_spacing(&centre, &tree);
        Self {
            of_row,
            centre,
            rows,
            up: Vector3::z(),
            road_end,
            spacing,
            tree,
        }
    }

    pub fn len(&self) -> usize {
        self.centre.len()
    }

    /// The distance (metres) from `p` to the nearest place's centre; infinite without places.
    pub fn nearest_distance(&self, p: [f64; 3]) -> f64 {
        if self.centre.is_empty() {
            return f64::INFINITY;
        }
        self.tree
            .nearest_one::<kiddo::SquaredEuclidean>(&p)
            .distance
            .sqrt()
    }

    pub fn is_empty(&self) -> bool {
        self.centre.is_empty()
    }

    fn distance(&self, a: usize, b: usize) -> f64 {
        let (p, q) = (self.centre[a], self.centre[b]);
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt()
    }
}

/// Which places end a road on the map: those whose neighbours within [`END_SPACINGS`] times
/// the distance to their second-nearest other place lie on one side (the mean of the unit
/// vectors to them at least [`END_ALIGNMENT`] long). The second-nearest, not the nearest: a
/// place's nearest may be a camera beside it (two lanes, two rigs), and a stretch mapped
/// sparsely is still a road. A map of one place is its own end.
fn road_ends(centre: &[[f64; 3]], tree: &kiddo::KdTree<f64, 3>) -> Vec<bool> {
    centre
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let near = tree.nearest_n::<kiddo::SquaredEuclidean>(c, 3);
            let Some(far) = near.last().filter(|_| near.len() > 1) else {
                return true;
            };
            let radius = END_SPACINGS * far.distance.sqrt();
            let mut sum = Vector3::zeros();
            let mut count = 0usize;
            for n in tree.within_unsorted::<kiddo::SquaredEuclidean>(c, radius * radius) {
                let j = n.item as usize;
                let v = Vector3::from(centre[j]) - Vector3::from(*c);
                if j != i && v.norm() > 0.0 {
                    sum += v.normalize();
                    count += 1;
                }
            }
            count == 0 || (sum / count as f64).norm() >= END_ALIGNMENT
        })
        .collect()
}

/// The median distance from a place to its nearest other place (0 without two places; not
/// finite distances left out).
fn median_spacing(centre: &[[f64; 3]], tree: &kiddo::KdTree<f64, 3>) -> f64 {
    let mut d: Vec<f64> = centre
        .iter()
        .filter_map(|c| {
            let near = tree.nearest_n::<kiddo::SquaredEuclidean>(c, 2);
            near.get(1).map(|n| n.distance.sqrt())
        })
        .filter(|d| d.is_finite())
        .collect();
    if d.is_empty() {
        return 0.0;
    }
    let mid = d.len() / 2;
    *d.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// What one filtered frame gave.
#[derive(Debug, Clone)]
pub struct Step {
    /// The place of highest posterior.
    pub place: usize,
    /// The map row the prior is made from (of the frame's camera when the place has one).
    pub row: usize,
    /// Its descriptor distance to the frame (the last hit's when it was not among the hits).
    pub distance: f32,
    /// The posterior's position covariance about the chosen place (metres squared): R^2 / 7.81
    /// in the ground plane (the module comment).
    pub spread: Matrix3<f64>,
    /// The belief about the chosen place, one entry per place that holds belief of its own,
    /// nearest (on the ground) first; R and H are read from it.
    pub profile: Vec<BeliefAt>,
    /// The posterior mass within REGION_RADIUS of the chosen place.
    pub mass: f64,
    /// The chosen place is further from the previous one than the slow bound allows.
    pub relocalized: bool,
    /// The probability that the vehicle is off the map after this frame.
    pub off_map: f64,
    /// How well the motion's prediction explained this frame: sum over places of the predicted
    /// belief times the frame's own likelihood (1 at the best match; before its camera's say
    /// mixes it); None when the belief had nothing to predict from (the first frame, or after
    /// a reset).
    pub evidence: Option<f64>,
    /// How well an arbitrary place explains this frame: its likelihood averaged over all
    /// places (1 at the best match; the places without a row among the hits at the last
    /// hit's).
    pub mean_likelihood: f64,
    /// How far (metres) the truth may lie from the published place beyond the end of a road on
    /// the map: the distance driven since the published place reached the end plus the
    /// published place's distance back from it (0 away from an end, and at an end before the
    /// vehicle moved on); the spread's ground radius includes it (the module comment).
    pub beyond_end: f64,
    /// The say this frame's camera had (0-1; [`SequenceFilter::camera_weight`]): 1 for the
    /// most trusted camera, less for one whose frames the belief has stopped explaining.
    pub camera_weight: f64,
}

/// One camera's trust ([`SequenceFilter::camera_weight`]).
#[derive(Debug, Clone)]
struct CameraTrust {
    id: String,
    /// The probability that its frames show the vehicle's place.
    trust: f64,
    /// When it was last heard (seconds; the filter's clock).
    heard: f64,
}

/// The vehicle at the end of a road on the map: the end place, the published place's speed
/// when it got there (m/s), how far the vehicle may have driven on since (metres), the newest
/// stamp counted (seconds), and how many captures in a row its published place has been far
/// from the end.
#[derive(Debug, Clone, Copy)]
struct AtEnd {
    place: usize,
    arrival_speed: f64,
    driven: f64,
    newest: f64,
    away: u32,
}

/// One vehicle's belief over the map's places.
#[derive(Debug, Clone)]
pub struct SequenceFilter {
    belief: Vec<f64>,
    /// The belief is uniform (start, or after a reset): prediction leaves it so.
    uniform: bool,
    last_time: Option<f64>,
    last_place: Option<usize>,
    /// Motion reach of the step now being made (for the relocalization test).
    reach: f64,
    /// The probability of each motion model without odometry: within MAX_SPEED, within
    /// FAST_SPEED, at the published place's velocity (0 until it is known).
    weights: [f64; 3],
    /// With odometry, the probability of its two motion models: the odometry's distance in
    /// any direction, and along the published place's velocity (0 until it is known).
    odometry_weights: [f64; 2],
    /// The last prediction under each motion model, until the frame weighs them (empty for a
    /// model not used): without odometry the three of `weights`, with it the two of
    /// `odometry_weights` (`by_odometry`).
    components: Option<[Vec<f64>; 3]>,
    by_odometry: bool,
    /// The published place's velocity (m/s, map frame), a running mean over
    /// [`VELOCITY_TIME`] (None before two captures).
    velocity: Option<Vector3<f64>>,
    /// The probability that the vehicle is off the map (`belief` is the belief given that it
    /// is on it).
    off: f64,
    /// The published place's speed (m/s), a running mean over [`SPEED_TIME`] (None before two
    /// captures).
    speed: Option<f64>,
    /// The last published place and its time (for the speed).
    last_published: Option<(usize, f64)>,
    /// Set from when the published place reaches the end of a road on the map, coming from
    /// another place, until it leaves it ([`LEAVE_CAPTURES`]).
    at_end: Option<AtEnd>,
    /// Relocalizations so far.
    pub relocalizations: u64,
    /// Belief resets after a long gap so far.
    pub resets: u64,
    /// Each camera's trust: the probability that its frames show the vehicle's place
    /// (`observe_from`), and when it was last heard (seconds).
    cameras: Vec<CameraTrust>,
    /// Predictions (captures after the first, the cameras of one capture counted once) that
    /// moved the belief by the odometry's travel.
    pub odometry_moves: u64,
}

impl SequenceFilter {
    pub fn new(places: &Places) -> Self {
        let n = places.len().max(1);
        Self {
            belief: vec![1.0 / n as f64; n],
            uniform: true,
            last_time: None,
            last_place: None,
            reach: f64::INFINITY,
            weights: [0.5, 0.5, 0.0],
            odometry_weights: [1.0, 0.0],
            components: None,
            by_odometry: false,
            velocity: None,
            off: OFF_MAP_START,
            speed: None,
            last_published: None,
            at_end: None,
            relocalizations: 0,
            resets: 0,
            odometry_moves: 0,
            cameras: Vec::new(),
        }
    }

    /// The probability that the vehicle is off the map.
    pub fn off_map(&self) -> f64 {
        self.off
    }

    /// The time (seconds) of the last [`Self::predict`].
    pub fn last_time(&self) -> Option<f64> {
        self.last_time
    }

    /// Moves the belief to time `t` (seconds), with the odometry's `travel` since the last
    /// prediction if known.
    pub fn predict(&mut self, places: &Places, t: f64, travel: Option<Travel>) {
        // Signed: a stamp before the last one (frames localized out of order) moves the
        // directed kernel back along the velocity.
        let elapsed = self.last_time.map_or(f64::INFINITY, |l| t - l);
        let dt = elapsed.abs();
        self.last_time = Some(t);
        self.components = None;
        // Leaving the map and coming back, over dt (nothing between the cameras of a capture).
        if dt.is_finite() && dt >= SIMULTANEOUS {
            self.off = off_map_after(self.off, dt);
        }
        let (u, s, odometry) = match travel {
            Some(m) if dt.is_finite() && m.displacement.is_finite() && m.path.is_finite() => (
                m.displacement.abs(),
                MOTION_FLOOR + ODOMETRY_DRIFT * m.path.abs().max(m.displacement.abs()),
                true,
            ),
            _ => (0.0, MOTION_FLOOR + MAX_SPEED * dt, false),
        };
        // At a map's end: how far the vehicle may have driven on (odometry's path when known,
        // else the speed it reached the end with).
        // Only time beyond the newest stamp counts: stamps that go back and forth (frames
        // localized out of order) do not drive the vehicle on.
        if let Some(e) = self.at_end.as_mut().filter(|_| t.is_finite()) {
            let ahead = (t - e.newest).max(0.0);
            if ahead > 0.0 {
                let step = match travel {
                    Some(m) if odometry => m.path.abs().max(m.displacement.abs()),
                    _ => e.arrival_speed * ahead,
                };
                e.driven = (e.driven + step).min(RESET_REACH);
                e.newest = t;
            }
        }
        self.reach = u + 3.0 * s;
        if !self.reach.is_finite() || self.reach > RESET_REACH {
            if !self.uniform && self.last_place.is_some() {
                self.resets += 1;
            }
            self.reset();
            return;
        }
        if self.uniform {
            return;
        }
        // Frames less than SIMULTANEOUS apart (the cameras of one capture) leave nothing for
        // two motion models to tell apart: one.
        if dt < SIMULTANEOUS {
            self.belief = self.moved(places, u, s);
            return;
        }
        let directed_width = MOTION_FLOOR.max(VELOCITY_SPACING * places.spacing);
        if odometry {
            self.odometry_moves += 1;
            // Odometry says how far, not which way in the map's frame (its heading is in its
            // own frame, and drifts): the belief moved that far in any direction, and that far
            // along the published place's velocity, weighed by how well each predicted the
            // frames. A vehicle that turns or reverses hands the weight to the first.
            let ring = self.moved(places, u, s);
            let heading = self
                .velocity
                .and_then(|v| v.try_normalize(HEADING_MIN_SPEED));
            let along = match heading {
                Some(h) => self.shifted(places, h * u * elapsed.signum(), directed_width),
                None => Vec::new(),
            };
            if along.is_empty() {
                self.belief = ring;
                return;
            }
            let w = self.odometry_weights[1];
            let m1 = switched(w, 2, SPEED_SWITCH);
            self.belief = ring
                .iter()
                .zip(&along)
                .map(|(a, b)| (1.0 - m1) * a + m1 * b)
                .collect();
            self.odometry_weights = [1.0 - m1, m1];
            self.by_odometry = true;
            self.components = Some([ring, Vec::new(), along]);
            return;
        }
        // Without odometry, two speed bounds and the published place's velocity, weighed by
        // how well each predicted the frames.
        let slow = self.moved(places, u, s);
        // Its reach capped at what resets the belief (a gap of minutes is one anyway).
        let fast_s = (MOTION_FLOOR + FAST_SPEED * dt).min(RESET_REACH / 3.0);
        let fast = self.moved(places, 0.0, fast_s);
        let moving = match self.velocity {
            Some(v) => self.shifted(places, v * elapsed, directed_width),
            None => Vec::new(),
        };
        let used = if moving.is_empty() { 2 } else { 3 };
        let mut m = [0.0; 3];
        for (k, mk) in m.iter_mut().enumerate().take(used) {
            let w = self.weights[k];
            *mk = switched(w, used, SPEED_SWITCH);
        }
        self.belief = (0..slow.len())
            .map(|j| m[0] * slow[j] + m[1] * fast[j] + moving.get(j).map_or(0.0, |b| m[2] * b))
            .collect();
        self.weights = m;
        self.by_odometry = false;
        self.components = Some([slow, fast, moving]);
    }

    /// The belief moved by `shift` (metres, map frame): each place's belief to the places
    /// about its centre plus `shift`, by a Gaussian of width `s` (metres); a place with none
    /// within 3 s keeps its belief. The uniform share is added.
    fn shifted(&self, places: &Places, shift: Vector3<f64>, s: f64) -> Vec<f64> {
        let to = |c: [f64; 3]| (Vector3::from(c) + shift).into();
        self.transported(places, to, 3.0 * s, |d| (-d * d / (2.0 * s * s)).exp())
    }

    /// The belief moved by the kernel centred on `u` with width `s` (metres), the uniform
    /// share added.
    fn moved(&self, places: &Places, u: f64, s: f64) -> Vec<f64> {
        self.transported(
            places,
            |c| c,
            u + 3.0 * s,
            |d| (-(d - u).powi(2) / (2.0 * s * s)).exp(),
        )
    }

    /// The belief moved place by place: place i's belief goes to the places within `reach` of
    /// `to(centre of i)`, in proportion to `kernel` of their distance from it (a place with none
    /// there keeps its belief); the uniform share is added.
    fn transported(
        &self,
        places: &Places,
        to: impl Fn([f64; 3]) -> [f64; 3],
        reach: f64,
        kernel: impl Fn(f64) -> f64,
    ) -> Vec<f64> {
        let n = places.len();
        let top = self.belief.iter().cloned().fold(0.0, f64::max);
        let mut next = vec![UNIFORM_SHARE / n as f64; n];
        let mut near = Vec::new();
        let mut unmoved = 0.0;
        for i in 0..n {
            let p = self.belief[i];
            // Places PRUNE times less likely than the best are not moved one by one: their
            // belief joins the uniform share (a few thousand kernel sums after a reset would
            // cost milliseconds; the belief they hold is spread, not lost).
            if p < top * PRUNE {
                unmoved += p;
                continue;
            }
            near.clear();
            near.extend(
                places
                    .tree
                    .within_unsorted::<kiddo::SquaredEuclidean>(
                        &to(places.centre[i]),
                        reach * reach,
                    )
                    .into_iter()
                    .map(|nb| (nb.item as usize, kernel(nb.distance.sqrt()))),
            );
            let sum: f64 = near.iter().map(|(_, w)| w).sum();
            if sum <= 0.0 {
                next[i] += (1.0 - UNIFORM_SHARE) * p;
                continue;
            }
            for &(j, w) in &near {
                next[j] += (1.0 - UNIFORM_SHARE) * p * w / sum;
            }
        }
        if unmoved > 0.0 {
            let share = (1.0 - UNIFORM_SHARE) * unmoved / n as f64;
            next.iter_mut().for_each(|b| *b += share);
        }
        normalize(&mut next);
        next
    }

    /// Back to a uniform belief (a new traversal, or the caller's reset).
    pub fn reset(&mut self) {
        let n = self.belief.len();
        self.belief.iter_mut().for_each(|b| *b = 1.0 / n as f64);
        self.uniform = true;
        self.last_place = None;
        self.components = None;
        self.off = OFF_MAP_START;
        self.speed = None;
        self.forget_velocity();
        self.last_published = None;
        self.at_end = None;
    }

    /// The published place's velocity is unknown again; its motion model waits for a new one
    /// (the speed bounds keep their weights between them).
    fn forget_velocity(&mut self) {
        self.velocity = None;
        self.odometry_weights = [1.0, 0.0];
        let (a, b) = (self.weights[0], self.weights[1]);
        self.weights = if a + b > 0.0 && (a + b).is_finite() {
            [a / (a + b), b / (a + b), 0.0]
        } else {
            [0.5, 0.5, 0.0]
        };
    }

    /// [`Self::observe_from`] for a frame of the one camera there is.
    pub fn observe(
        &mut self,
        places: &Places,
        hits: &[Hit],
        confidence: f64,
        may_match: impl Fn(usize) -> bool,
    ) -> Option<Step> {
        self.observe_from(places, hits, confidence, "", may_match)
    }

    /// Weighs the belief by one frame's hits (rows of the frame's camera, best first) and
    /// returns the place and row to publish. `may_match` says which rows the frame may match
    /// (its camera's), used when the chosen place has no row among the hits. `camera` names
    /// the frame's camera: a camera whose frames the belief stops explaining while another's
    /// do loses its say ([`Self::camera_weight`]).
    pub fn observe_from(
        &mut self,
        places: &Places,
        hits: &[Hit],
        confidence: f64,
        camera: &str,
        may_match: impl Fn(usize) -> bool,
    ) -> Option<Step> {
        let d1 = hits.first()?.distance as f64;
        let last = hits.last()?.distance as f64;
        // A frame whose distances are not finite says nothing: the belief is left as it was.
        if !(d1.is_finite() && last.is_finite()) {
            return None;
        }
        let kth = hits[(SCALE_RANK - 1).min(hits.len() - 1)].distance as f64;
        let scale = (kth - d1).max(1e-9 * d1.abs().max(1e-12));
        let floor = (-(last - d1) / scale).exp();
        let mut lik = vec![floor; places.len()];
        let mut best_row: Vec<Option<(usize, f32)>> = vec![None; places.len()];
        for h in hits {
            let p = places.of_row[h.index];
            lik[p] = lik[p].max((-(h.distance as f64 - d1) / scale).exp());
            if best_row[p].is_none() {
                best_row[p] = Some((h.index, h.distance));
            }
        }
        let mean_likelihood = lik.iter().sum::<f64>() / lik.len().max(1) as f64;
        // How likely the frame is if it shows no place of the map: the vehicle off the map,
        // or its camera showing nothing (the same for every place).
        let shows_none = off_map_likelihood(confidence, mean_likelihood);
        // A frame of a camera the filter trusts less than another says that much less: its
        // likelihood is mixed with that of a frame that shows nothing, for the belief, the
        // motion models and the off-the-map test alike.
        let (weight, evidence) = self.camera_weight(camera, &lik, shows_none);
        if weight < 1.0 {
            lik.iter_mut()
                .for_each(|l| *l = weight * *l + (1.0 - weight) * shows_none);
        }
        let sure = weight * confidence >= SURE;
        if let Some(predicted) = self.components.take() {
            let [a, b, c] = &predicted;
            if self.by_odometry {
                reweigh(&mut self.odometry_weights, [a, c], &lik);
            } else {
                reweigh(&mut self.weights, [a, b, c], &lik);
            }
        }
        for (b, l) in self.belief.iter_mut().zip(&lik) {
            *b *= l;
        }
        // The normalizer is the evidence of the likelihoods as the camera's say mixed them:
        // the predicted (normalized) belief times them, summed (w E + (1 - w) N; E, that of
        // the frame's own likelihoods, is `evidence`).
        let total = normalize(&mut self.belief);
        // On the map or off it: how well the motion's prediction explains the frame against
        // how well "off the map" does. Right after a start or a reset the prediction is the
        // uniform belief, and `total` how well an average place explains the frame (U, mixed
        // by the camera's say as the likelihoods are): the frame stays on the map only as far
        // as it stands out from the map's places (a first frame that does not is withheld,
        // not published with the floors wherever it matched).
        if total.is_finite() {
            let off = self.off * shows_none;
            let on = (1.0 - self.off) * total;
            if off + on > 0.0 {
                self.off = off / (off + on);
            }
        }
        self.uniform = false;
        // The place with the most belief within REGION_RADIUS among those this frame can show
        // (a place without a row of this camera cannot be published from this frame): a
        // belief spread over a few neighbouring places outweighs one aliased place far away.
        let top = self.belief.iter().cloned().fold(0.0, f64::max);
        let region = |j: usize| -> f64 {
            places
                .tree
                .within_unsorted::<kiddo::SquaredEuclidean>(
                    &places.centre[j],
                    REGION_RADIUS * REGION_RADIUS,
                )
                .into_iter()
                .map(|nb| self.belief[nb.item as usize])
                .sum()
        };
        let can_show =
            |j: usize| best_row[j].is_some() || places.rows[j].iter().any(|&r| may_match(r));
        // Regions are weighed around the REGION_CANDIDATES likeliest places (a uniform belief
        // after a reset would otherwise ask for every place's region).
        let mut likely: Vec<usize> = (0..places.len())
            .filter(|&j| self.belief[j] >= top * 1e-3 && can_show(j))
            .collect();
        if likely.len() > REGION_CANDIDATES {
            likely.select_nth_unstable_by(REGION_CANDIDATES, |&a, &b| {
                self.belief[b].total_cmp(&self.belief[a])
            });
            likely.truncate(REGION_CANDIDATES);
        }
        let (centre, region_mass) = likely
            .into_iter()
            .map(|j| (j, region(j)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))?;
        // Within that region: the place of highest posterior, or the frame's own best match
        // when it lies there with at least OWN_SHARE of that posterior (1: only when it is that
        // place, ties going to the frame's match; between neighbours the belief, which follows
        // the motion, tells the place better than a frame beside the mapped road does).
        let own = places.of_row[hits[0].index];
        let highest = places
            .tree
            .within_unsorted::<kiddo::SquaredEuclidean>(
                &places.centre[centre],
                REGION_RADIUS * REGION_RADIUS,
            )
            .into_iter()
            .map(|nb| nb.item as usize)
            .filter(|&j| can_show(j))
            .max_by(|&a, &b| self.belief[a].total_cmp(&self.belief[b]).then(b.cmp(&a)))
            .unwrap_or(centre);
        let in_region = places.distance(own, centre) <= REGION_RADIUS
            && self.belief[own] >= OWN_SHARE * self.belief[highest];
        // A frame sure of itself (`sure`: its camera's say times its single-frame confidence
        // at least SURE) is
        // not overridden: a belief that lags behind a vehicle faster than the motion allows
        // follows it.
        let place = if (in_region || sure) && can_show(own) {
            own
        } else {
            highest
        };
        // The mass about the published place (a sure frame's place outside the region holds
        // only its own).
        let mass = if places.distance(place, centre) <= REGION_RADIUS {
            region_mass
        } else {
            region(place)
        };
        let (row, distance) = best_row[place].unwrap_or_else(|| {
            let r = *places.rows[place]
                .iter()
                .find(|&&r| may_match(r))
                .expect("filtered");
            (r, last as f32)
        });
        // The belief of the places that hold some of their own (not the uniform share every
        // place keeps, which would make the reach grow with the size of the map), by distance.
        let (c, up) = (Vector3::from(places.centre[place]), places.up);
        let mut profile: Vec<BeliefAt> = self
            .belief
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b >= top * PRUNE)
            .map(|(j, &b)| {
                let v = Vector3::from(places.centre[j]) - c;
                let height = v.dot(&up);
                BeliefAt {
                    ground: (v - up * height).norm(),
                    height,
                    share: b,
                }
            })
            .collect();
        profile.sort_by(|a, b| a.ground.total_cmp(&b.ground));
        let kept: f64 = profile.iter().map(|p| p.share).sum();
        profile.iter_mut().for_each(|p| p.share /= kept);
        let reach = reach_of(&profile, SPREAD_MASS);
        let height = profile
            .iter()
            .take_while(|p| p.ground <= reach)
            .fold(0.0f64, |h, p| h.max(p.height.abs()));
        // A map position that is not finite would make the covariance NaN: say "anywhere".
        let (reach, height) = if reach.is_finite() && height.is_finite() {
            (reach, height)
        } else {
            (RESET_REACH, RESET_REACH)
        };
        let relocalized = self
            .last_place
            .is_some_and(|l| places.distance(l, place) > self.reach + REGION_RADIUS);
        if relocalized {
            self.relocalizations += 1;
        }
        self.last_place = Some(place);
        let beyond_end = self.follow_published(places, place, relocalized);
        // The disc reaches at least half the map's spacing (the truth lies between its images),
        // and on by how far the vehicle may have driven past a map's end.
        let ground = reach.max(BETWEEN_SPACING * places.spacing) + beyond_end;
        let vertical = up * up.transpose();
        let spread = ((Matrix3::identity() - vertical) * (ground * ground)
            + vertical * (height * height))
            / crate::localize::prior::CHI2_3_95;
        Some(Step {
            place,
            row,
            distance,
            spread,
            profile,
            mass,
            relocalized,
            off_map: self.off,
            evidence,
            mean_likelihood,
            beyond_end,
            camera_weight: weight,
        })
    }

    /// The say of a frame of `camera` (0-1), whose likelihood over the places is `lik`, and
    /// the belief's evidence for it (None while the belief is uniform); the camera's trust is
    /// updated by the frame. Each camera has two states, showing the
    /// vehicle's place or showing nothing of it, switched with [`CAMERA_SWITCH`] per frame;
    /// its trust is the probability of the first. A frame weighs them by how well the belief
    /// predicted it (the predicted belief times `lik`, summed: the evidence) against how well
    /// a frame that shows nothing is explained (`shows_none`, the off-the-map likelihood at
    /// its confidence, the same for every place): a
    /// camera whose frames keep falling where the belief is not loses trust, one whose
    /// frames the belief explains regains it. The say is the camera's trust over the highest
    /// of the cameras heard within [`CAMERA_SILENCE`]: with one camera (or when all disagree
    /// with the belief alike, as after a kidnapping) every frame has its full say, as before
    /// cameras were told apart; a blind camera beside a seeing one loses it (down to about
    /// 0.05, the switching's floor). A uniform belief predicts nothing and leaves the trust as
    /// the switching makes it. A camera heard for the first time starts with the most trusted
    /// other camera's trust.
    fn camera_weight(&mut self, camera: &str, lik: &[f64], shows_none: f64) -> (f64, Option<f64>) {
        let now = self.last_time.unwrap_or(f64::NAN);
        // The other cameras heard lately, their trust as it stands for this frame (switched,
        // as this camera's is: two cameras that see alike have the same say).
        let heard = |c: &CameraTrust| (now - c.heard).abs() <= CAMERA_SILENCE;
        let others = |cams: &[CameraTrust], at: Option<usize>| {
            cams.iter()
                .enumerate()
                .filter(|&(i, c)| Some(i) != at && heard(c))
                .fold(0.0f64, |m, (_, c)| {
                    m.max(switched(c.trust, 2, CAMERA_SWITCH))
                })
        };
        let at = match self.cameras.iter().position(|c| c.id == camera) {
            Some(i) => i,
            None => {
                // A camera heard for the first time is trusted as the most trusted other one
                // (as a working camera when none is): its first frames have the full say.
                let best = self
                    .cameras
                    .iter()
                    .filter(|c| heard(c))
                    .map(|c| c.trust)
                    .reduce(f64::max);
                self.cameras.push(CameraTrust {
                    id: camera.to_string(),
                    trust: best.unwrap_or(1.0 - CAMERA_SWITCH),
                    heard: now,
                });
                self.cameras.len() - 1
            }
        };
        let prior = switched(self.cameras[at].trust, 2, CAMERA_SWITCH);
        let best_other = others(&self.cameras, Some(at));
        let weight = if prior >= best_other {
            1.0
        } else {
            prior / best_other
        };
        let mut trust = prior;
        // How well the belief predicted the frame (a uniform belief predicts nothing).
        let evidence = (!self.uniform)
            .then(|| evidence_of(&self.belief, lik))
            .filter(|e| e.is_finite());
        if let Some(e) = evidence {
            // Whether the vehicle is on the map or not: a vehicle off it makes every camera's
            // frames fall where the belief is not, and every camera loses trust alike.
            let (shows, blind) = (prior * e, (1.0 - prior) * shows_none);
            if shows + blind > 0.0 && (shows + blind).is_finite() {
                trust = shows / (shows + blind);
            }
        }
        let c = &mut self.cameras[at];
        c.trust = trust;
        c.heard = now;
        (weight, evidence)
    }

    /// Follows the published `place`: its running speed and velocity (forgotten at a
    /// relocalization, by any camera of a capture), and at the end of a road on the map
    /// how far the vehicle may have driven on since the published place got there. Returns
    /// that distance plus the published place's distance back from the end (the truth may lie
    /// that far from the published place; metres, 0 elsewhere). The widening starts when the
    /// published place reaches an end from another place, at a speed (a vehicle that starts
    /// at an end, or drives into the map from it, is not widened), and stops after
    /// [`LEAVE_CAPTURES`] captures in a row with the published place more than twice
    /// [`REGION_RADIUS`] from the end (it turned back; the published place may fall back within
    /// its region while the vehicle drives on, and one stray frame does not end it).
    fn follow_published(&mut self, places: &Places, place: usize, relocalized: bool) -> f64 {
        let Some(now) = self.last_time.filter(|t| t.is_finite()) else {
            return 0.0;
        };
        let mut arrived = false;
        let mut new_capture = true;
        match self.last_published {
            Some((from, then)) => {
                let dt = (now - then).abs();
                // Another camera of the same capture (or one a few milliseconds apart): the
                // speed is measured between captures.
                if dt < SPEED_GAP {
                    new_capture = false;
                    // A jump by another camera of the capture: the direction is unknown, and
                    // the next capture's motion counts from where it jumped to.
                    if relocalized {
                        self.forget_velocity();
                        self.last_published = Some((place, now));
                    }
                } else {
                    if relocalized {
                        // A jump says nothing of the direction of travel.
                        self.forget_velocity();
                    } else {
                        let moved = Vector3::from(places.centre[place])
                            - Vector3::from(places.centre[from]);
                        let v = (moved.norm() / dt).min(FAST_SPEED);
                        self.speed = Some(match self.speed {
                            Some(s) => s + (1.0 - (-dt / SPEED_TIME).exp()) * (v - s),
                            None => v,
                        });
                        // The same motion as a velocity, capped likewise. Stamps that go back
                        // (frames localized out of order) and a map position that is not
                        // finite give no direction.
                        let mut u = moved / dt;
                        if u.norm() > FAST_SPEED {
                            u *= FAST_SPEED / u.norm();
                        }
                        if now > then && u.iter().all(|x| x.is_finite()) {
                            let keep = (-dt / VELOCITY_TIME).exp();
                            self.velocity = Some(match self.velocity {
                                Some(v) => v * keep + u * (1.0 - keep),
                                None => u,
                            });
                        }
                    }
                    arrived = from != place;
                    self.last_published = Some((place, now));
                }
            }
            None => self.last_published = Some((place, now)),
        }
        if let Some(e) = self.at_end.as_mut() {
            if new_capture {
                let far = places.distance(e.place, place) > 2.0 * REGION_RADIUS;
                e.away = if far { e.away + 1 } else { 0 };
            }
            if e.away >= LEAVE_CAPTURES {
                self.at_end = None;
            }
        }
        let speed = self.speed.unwrap_or(0.0);
        if self.at_end.is_none() && places.road_end[place] && arrived && speed > 0.0 {
            self.at_end = Some(AtEnd {
                place,
                arrival_speed: speed,
                driven: 0.0,
                newest: now,
                away: 0,
            });
        }
        self.at_end.map_or(0.0, |e| {
            if e.driven > 0.0 {
                // The distance driven is known to within odometry's drift (or the arrival
                // speed's error, taken as the same share).
                (1.0 + ODOMETRY_DRIFT) * e.driven + places.distance(e.place, place)
            } else {
                0.0
            }
        })
    }
}

/// A state's weight mixed for the next step: mostly its own, a share `switch` spread from the
/// `models - 1` others (the vehicle may change regime: [`SPEED_SWITCH`]; a camera may stop or
/// start showing the place: [`CAMERA_SWITCH`]).
fn switched(w: f64, models: usize, switch: f64) -> f64 {
    (1.0 - switch) * w + switch * (1.0 - w) / (models - 1) as f64
}

/// Each motion model's weight times its prediction's evidence (the frame's likelihood `lik`
/// summed over the predicted belief; an empty prediction, a model not used, has none),
/// normalized; left as it was when nothing explains the frame.
fn reweigh<const N: usize>(weights: &mut [f64; N], predictions: [&Vec<f64>; N], lik: &[f64]) {
    let mut e = [0.0; N];
    for k in 0..N {
        e[k] = weights[k] * evidence_of(predictions[k], lik);
    }
    let total: f64 = e.iter().sum();
    if total > 0.0 && total.is_finite() {
        *weights = e.map(|x| x / total);
    }
}

/// How well a predicted belief explains a frame: the belief times the frame's likelihoods,
/// summed (an empty prediction explains nothing).
fn evidence_of(predicted: &[f64], lik: &[f64]) -> f64 {
    predicted.iter().zip(lik).map(|(p, l)| p * l).sum()
}

/// One place's belief seen from the published place: evaluate writes these as
/// `belief_profile` (tools/python/fit_sequence_spread.py reads them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BeliefAt {
    /// Distance on the ground (perpendicular to the map's up) between the place centres (each
    /// place's first map image), metres.
    pub ground: f64,
    /// Height of the place above the published one, along the map's up, metres.
    pub height: f64,
    /// Its share of the belief the places hold of their own (those at least a thousandth of
    /// the best, [`PRUNE`]; the uniform share left out), summing to 1 over the profile.
    pub share: f64,
}

/// The ground distance within which `share` of the belief lies: `profile` nearest first,
/// summing to 1; the cumulative share grows linearly between its distances, from 0 at 0.
pub fn reach_of(profile: &[BeliefAt], share: f64) -> f64 {
    let (mut prev_d, mut prev_acc) = (0.0, 0.0);
    for &BeliefAt {
        ground: d,
        share: m,
        ..
    } in profile
    {
        let acc = prev_acc + m;
        if acc >= share {
            return if acc > prev_acc {
                prev_d + (d - prev_d) * ((share - prev_acc) / (acc - prev_acc)).clamp(0.0, 1.0)
            } else {
                d
            };
        }
        (prev_d, prev_acc) = (d, acc);
    }
    prev_d
}

/// The probability of being off the map `dt` seconds after it was `q`: the two-state Markov
/// process that leaves the map at rate 1 / [`ON_MAP_TIME`] and comes back at rate 1 /
/// [`OFF_MAP_TIME`] relaxes towards its stationary share pi = (1 / ON) / (1 / ON + 1 / OFF)
/// (0.25): q + (pi - q) (1 - exp(-dt (1 / ON + 1 / OFF))).
pub fn off_map_after(q: f64, dt: f64) -> f64 {
    let (leave, back) = (1.0 / ON_MAP_TIME, 1.0 / OFF_MAP_TIME);
    let pi = leave / (leave + back);
    q + (pi - q) * (1.0 - (-dt * (leave + back)).exp())
}

/// A frame's likelihood off the map (relative to its best place's 1), from its single-frame
/// confidence (a frame that matches no place better than the places elsewhere, confidence
/// near 0, is what a camera off the map sees) and its mean likelihood over the map's places
/// (weighed by [`OFF_MAP_USUAL_POWER`]; see there).
pub fn off_map_likelihood(confidence: f64, mean_likelihood: f64) -> f64 {
    off_map_likelihood_with(confidence, mean_likelihood, OFF_MAP_USUAL_POWER)
}

/// [`off_map_likelihood`] with the mean likelihood's power given.
fn off_map_likelihood_with(confidence: f64, mean_likelihood: f64, power: f64) -> f64 {
    // Not finite: NaN says nothing (0, the likeliest off the map); +inf stands out (1).
    let c = if confidence.is_nan() {
        0.0
    } else {
        confidence.clamp(0.0, 1.0)
    };
    // A mean of likelihoods lies in (0, 1]: above 1 is clamped to 1; NaN, 0 or below counts as
    // the usual value (factor 1).
    let u = if mean_likelihood.is_finite() && mean_likelihood > 0.0 {
        mean_likelihood.min(1.0)
    } else {
        OFF_MAP_USUAL
    };
    OFF_MAP_LIKELIHOOD * (-c / OFF_MAP_CONFIDENCE).exp() * (u / OFF_MAP_USUAL).powf(power)
}

/// Scales `v` to sum to 1 (uniform when its sum is not positive and finite); returns the sum
/// it had.
fn normalize(v: &mut [f64]) -> f64 {
    let s: f64 = v.iter().sum();
    if s > 0.0 && s.is_finite() {
        v.iter_mut().for_each(|x| *x /= s);
    } else {
        let n = v.len() as f64;
        v.iter_mut().for_each(|x| *x = 1.0 / n);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded draws (a test stream, not the product's).
    type Draws = rand_chacha::ChaCha8Rng;
    use rand::{Rng, SeedableRng};

    /// A route of `n` places 5 m apart on a line, two cameras each (rows 2p and 2p + 1), or on
    /// a circle of that circumference when `circle`.
    fn route(n: usize, circle: bool) -> Places {
        let r = 5.0 * n as f64 / std::f64::consts::TAU;
        Places::from_centres((0..2 * n).map(|row| {
            let p = (row / 2) as f64;
            if circle {
                let a = p * 5.0 / r;
                [r * a.cos(), r * a.sin(), 0.0]
            } else {
                [5.0 * p, 0.0, 0.0]
            }
        }))
    }

    /// Camera 0 drives from place `from` one place per half second for `frames` frames (time 0,
    /// 0.5, ...), each frame's own hits without aliases: the last frame's step.
    fn drive(
        f: &mut SequenceFilter,
        places: &Places,
        rng: &mut Draws,
        from: usize,
        frames: usize,
    ) -> Option<Step> {
        let mut last = None;
        for i in 0..frames {
            f.predict(places, 0.5 * i as f64, None);
            last = f.observe(places, &hits(places, from + i, 0, 0.0, rng), 0.0, |r| {
                r % 2 == 0
            });
        }
        last
    }

    /// The hits of a frame of camera `cam` at place `truth`: the true place's row at distance
    /// 1.0, the others further by 0.01 per place of offset (up to 20) plus noise; with
    /// probability `alias` one random place looks better than the truth (a single-frame error).
    fn hits(places: &Places, truth: usize, cam: usize, alias: f64, rng: &mut Draws) -> Vec<Hit> {
        let n = places.len();
        let fake =
            (rng.random::<f64>() < alias).then(|| (rng.random::<f64>() * n as f64) as usize % n);
        let mut v: Vec<Hit> = (0..n)
            .map(|p| {
                let off = (p as i64 - truth as i64).unsigned_abs().min(20) as f64;
                let mut d = 1.0 + 0.01 * off + 0.02 * rng.random::<f64>();
                if p == truth {
                    d = 1.0;
                }
                if Some(p) == fake && p != truth {
                    d = 0.97;
                }
                Hit {
                    index: 2 * p + cam,
                    distance: d as f32,
                }
            })
            .collect();
        v.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        v.truncate(HITS);
        v
    }

    /// Camera 0 drives from place 20 forward to 99, turns and drives back to 40, one place per
    /// half second, each frame's hits from [`hits_aliased`] (the same draws on every call).
    /// `odometry`: each step moved by its true distance, 2% long; `heading: false` forgets the
    /// velocity before each step (with odometry: the distance alone). Returns the share of the
    /// frames after the fifth that the filter put on their place, the same for single frames,
    /// the published places, the true ones and the filter.
    fn out_and_back(
        places: &Places,
        odometry: bool,
        heading: bool,
    ) -> (f64, f64, Vec<usize>, Vec<usize>, SequenceFilter) {
        let mut rng = Draws::seed_from_u64(23);
        let mut f = SequenceFilter::new(places);
        let truths: Vec<usize> = (20..100).chain((40..99).rev()).collect();
        let (mut exact, mut single, mut steps) = (0, 0, Vec::new());
        for (i, &truth) in truths.iter().enumerate() {
            let h = hits_aliased(places, truth, &mut rng);
            let travel = (odometry && i > 0).then(|| {
                let d = 1.02 * places.distance(truths[i - 1], truth);
                Travel {
                    displacement: d,
                    path: d,
                }
            });
            if !heading {
                f.forget_velocity();
            }
            f.predict(places, 0.5 * i as f64, travel);
            let s = f.observe(places, &h, 0.0, |r| r % 2 == 0).unwrap();
            if i >= 5 {
                exact += (s.place == truth) as usize;
                single += (places.of_row[h[0].index] == truth) as usize;
            }
            steps.push(s.place);
        }
        let n = (truths.len() - 5) as f64;
        (exact as f64 / n, single as f64 / n, steps, truths, f)
    }

    /// [`hits`] of camera 0 where, with probability 0.4, a place two ahead or two behind
    /// matches better than the truth (10 m: within any speed bound's reach).
    fn hits_aliased(places: &Places, truth: usize, rng: &mut Draws) -> Vec<Hit> {
        let mut h = hits(places, truth, 0, 0.0, rng);
        if rng.random::<f64>() < 0.4 {
            let alias = if rng.random::<bool>() {
                truth + 2
            } else {
                truth - 2
            };
            h.iter_mut()
                .filter(|x| x.index == 2 * alias)
                .for_each(|x| x.distance = 0.99);
            h.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        }
        h
    }

    /// Runs frames (time, true place, camera) through a filter; returns the share of frames
    /// the filter put within one place of the truth, the share single-frame retrieval did, and
    /// the steps.
    fn run(
        places: &Places,
        frames: &[(f64, usize, usize)],
        alias: f64,
        seed: u64,
    ) -> (f64, f64, Vec<Step>, SequenceFilter) {
        let mut rng = Draws::seed_from_u64(seed);
        let mut f = SequenceFilter::new(places);
        let (mut good, mut single, mut steps) = (0, 0, Vec::new());
        let mut prev: Option<(f64, usize)> = None;
        for &(t, truth, cam) in frames {
            let h = hits(places, truth, cam, alias, &mut rng);
            f.predict(places, t, None);
            let s = f
                .observe_from(places, &h, 0.0, ["c0", "c1"][cam], |r| r % 2 == cam)
                .unwrap();
            assert_eq!(s.row % 2, cam, "a row of another camera was published");
            // Never a jump beyond what the speed bound allows (3 sigma of the motion, the
            // places' size) without a relocalization or a reset reported.
            if let Some((t0, p)) = prev {
                let jump = places.distance(p, s.place);
                let allowed = 3.0 * (MOTION_FLOOR + MAX_SPEED * (t - t0)) + REGION_RADIUS;
                let reset = 3.0 * (MOTION_FLOOR + MAX_SPEED * (t - t0)) > RESET_REACH;
                assert!(
                    jump <= allowed || s.relocalized || reset,
                    "jumped {jump:.1} m (allowed {allowed:.1}) at t {t} without a relocalization"
                );
            }
            prev = Some((t, s.place));
            good += ((s.place as i64 - truth as i64).abs() <= 1) as usize;
            single += ((places.of_row[h[0].index] as i64 - truth as i64).abs() <= 1) as usize;
            steps.push(s);
        }
        let n = frames.len() as f64;
        (good as f64 / n, single as f64 / n, steps, f)
    }

    /// Frames of camera 0 from `t0`, one per half second, at the given true places with the
    /// given single-frame confidence: the probability of being off the map after each.
    fn off_map_along(
        f: &mut SequenceFilter,
        places: &Places,
        rng: &mut Draws,
        t0: f64,
        at: &[usize],
        confidence: f64,
    ) -> Vec<f64> {
        at.iter()
            .enumerate()
            .map(|(i, &p)| {
                f.predict(places, t0 + 0.5 * i as f64, None);
                // Confidence 0: no place stands out, and the hits say so (every place about as
                // near as the best: what a camera off the map sees).
                let h = if confidence > 0.0 {
                    hits(places, p, 0, 0.0, rng)
                } else {
                    flat_hits(places, rng)
                };
                let s = f.observe(places, &h, confidence, |r| r % 2 == 0);
                s.unwrap().off_map
            })
            .collect()
    }

    /// Hits of a frame no place explains better than the others (camera 0).
    fn flat_hits(places: &Places, rng: &mut Draws) -> Vec<Hit> {
        let mut v: Vec<Hit> = (0..places.len())
            .map(|p| Hit {
                index: 2 * p,
                distance: (1.0 + 0.02 * rng.random::<f64>()) as f32,
            })
            .collect();
        v.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        v.truncate(HITS);
        v
    }

    #[test]
    fn frames_that_follow_no_path_on_the_map_take_the_vehicle_off_it_and_back() {
        let places = route(200, false);
        let mut rng = Draws::seed_from_u64(21);
        let path = |from: usize| (from..from + 20).collect::<Vec<_>>();
        // Places no motion connects: 45 places (225 m) apart in half a second.
        let jumps: Vec<usize> = (0..20).map(|i| (i * 45) % 200).collect();
        let mut f = SequenceFilter::new(&places);
        assert_eq!(f.off_map(), OFF_MAP_START);
        // Single-frame confidences in units of OFF_MAP_CONFIDENCE (refitted with the metric):
        // frames that stand out (twice it) and frames that stand out a little (0.6 of it).
        let (stand_out, little) = (2.0 * OFF_MAP_CONFIDENCE, 0.6 * OFF_MAP_CONFIDENCE);
        // On the map, the frames follow the route and stand out: the vehicle stays on it, and
        // within a few frames it is sure of that (each such frame is OFF_MAP_LIKELIHOOD e^-2,
        // 0.41 with 3, times (U / OFF_MAP_USUAL)^OFF_MAP_USUAL_POWER, as likely off the map as
        // at its best place).
        let on = off_map_along(&mut f, &places, &mut rng, 0.0, &path(10), stand_out);
        assert!(
            on.iter().all(|&q| q < OFF_MAP_WITHHOLD),
            "on the route: {on:?}"
        );
        assert!(on[4..].iter().all(|&q| q < 0.05), "on the route: {on:?}");
        // Frames that stand out a little (off the map 3 e^-0.6 = 1.6 times as likely as at
        // their best place, times the U factor) but match places no motion connects: off the
        // map within a few frames, and it stays so.
        let off = off_map_along(&mut f, &places, &mut rng, 10.0, &jumps, little);
        let first = off.iter().position(|&q| q >= OFF_MAP_WITHHOLD);
        assert!(first.is_some_and(|i| i <= 5), "jumping: {off:?}");
        assert!(off[5..].iter().all(|&q| q >= OFF_MAP_WITHHOLD), "{off:?}");
        // Back on the route: on the map again within a few frames. A frame that stands out
        // (twice OFF_MAP_CONFIDENCE) is OFF_MAP_LIKELIHOOD e^-2 times the U factor as likely
        // off the map (with (3, 0.1, 1), at confidence 0.2 here; (1.5, 0.15, 0) at 0.3 before,
        // back by the seventh frame).
        let back = off_map_along(&mut f, &places, &mut rng, 20.0, &path(120), stand_out);
        let first = back.iter().position(|&q| q < OFF_MAP_WITHHOLD);
        assert!(first.is_some_and(|i| i <= 6), "back: {back:?}");
        assert!(back[9..].iter().all(|&q| q < 0.05), "{back:?}");
        // Frames that stand out from no place (confidence 0, every place about as near: what a
        // camera off the map sees) count towards off the map too.
        let mut f = SequenceFilter::new(&places);
        let flat = off_map_along(&mut f, &places, &mut rng, 0.0, &path(10), 0.0);
        assert!(flat[5..].iter().all(|&q| q >= OFF_MAP_WITHHOLD), "{flat:?}");
        // By hand: the likelihood off the map at confidence 0 and at OFF_MAP_CONFIDENCE, at the
        // usual mean likelihood (where the U factor is 1 whatever the power).
        let u = OFF_MAP_USUAL;
        assert_eq!(off_map_likelihood(0.0, u), OFF_MAP_LIKELIHOOD);
        let at = off_map_likelihood(OFF_MAP_CONFIDENCE, u);
        assert!((at * 1f64.exp() - OFF_MAP_LIKELIHOOD).abs() < 1e-12, "{at}");
        assert_eq!(off_map_likelihood(f64::NAN, u), OFF_MAP_LIKELIHOOD);
        // The shipped power: a frame an average place explains half as well as usual is half
        // as likely off the map (power 1).
        assert!(
            (off_map_likelihood(0.0, u / 2.0)
                - OFF_MAP_LIKELIHOOD * 0.5f64.powf(OFF_MAP_USUAL_POWER))
            .abs()
                < 1e-12
        );
        // With a power (1.5, as a refit chose): a frame an average place explains twice as
        // well is 2^1.5 times as likely off the map; a mean likelihood above 1 counts as 1, and
        // one that is not a mean of likelihoods (NaN, 0, negative) as the usual one.
        let with = |u: f64| off_map_likelihood_with(0.0, u, 1.5);
        assert!((with(2.0 * u) - OFF_MAP_LIKELIHOOD * 2f64.powf(1.5)).abs() < 1e-12);
        assert_eq!(with(7.0), with(1.0));
        for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            assert_eq!(with(bad), OFF_MAP_LIKELIHOOD, "{bad}");
        }
        // The transition, by hand: 0.25 is where it settles; over 0.5 s from 0.001 it moves by
        // (0.25 - 0.001) (1 - e^(-0.5 / 15)); a stop of 5 minutes (with odometry, no reset)
        // ends at 0.25, never past it.
        let r = 1.0 - (-0.5f64 / 15.0).exp();
        assert!((off_map_after(0.001, 0.5) - (0.001 + 0.249 * r)).abs() < 1e-12);
        assert!((off_map_after(0.001, 300.0) - 0.25).abs() < 1e-6);
        assert!((off_map_after(0.9, 300.0) - 0.25).abs() < 1e-6);
        assert_eq!(off_map_after(0.25, 7.0), 0.25);
        // Through the filter: a stop of 5 minutes on the map with odometry keeps the belief
        // (no reset) and leaves q at the stationary 0.25, under the threshold.
        let mut f = SequenceFilter::new(&places);
        off_map_along(&mut f, &places, &mut rng, 0.0, &path(10), stand_out);
        assert!(f.off_map() < 0.05);
        let still = Travel {
            displacement: 0.0,
            path: 0.0,
        };
        f.predict(&places, 9.5 + 300.0, Some(still));
        assert!((f.off_map() - 0.25).abs() < 1e-3, "{}", f.off_map());
        // A long gap without odometry resets the belief: q starts again at OFF_MAP_START, and
        // the first frame after it weighs q against how well an average place explains it
        // (the uniform belief predicts nothing better): L_off / U = 3 e^(-c / 0.1) / 0.25, 12
        // at c = 0, so a frame that stands out from no place takes the vehicle off the map
        // at once (0.2 * 12 / (0.2 * 12 + 0.8) = 0.75)...
        f.predict(&places, 2000.0, None);
        assert_eq!(f.off_map(), OFF_MAP_START);
        let mut first = |f: &mut SequenceFilter, confidence: f64| {
            let s = f
                .observe(
                    &places,
                    &hits(&places, 50, 0, 0.0, &mut rng),
                    confidence,
                    |r| r % 2 == 0,
                )
                .unwrap();
            assert_eq!(s.evidence, None, "nothing predicted after a reset");
            let ratio = off_map_likelihood(confidence, s.mean_likelihood) / s.mean_likelihood;
            let q = OFF_MAP_START * ratio / (OFF_MAP_START * ratio + 1.0 - OFF_MAP_START);
            assert!((s.off_map - q).abs() < 1e-12, "{} against {q}", s.off_map);
            s.off_map
        };
        let none = first(&mut f, 0.0);
        assert!(none > OFF_MAP_WITHHOLD, "{none}");
        // ... and one that stands out (twice OFF_MAP_CONFIDENCE: 12 e^-2 = 1.6 times as likely
        // off the map as on it, q 0.29) or stands out clearly (0.5: q 0.02) stays on it.
        f.reset();
        let some = first(&mut f, stand_out);
        assert!(some < OFF_MAP_WITHHOLD && some > OFF_MAP_START, "{some}");
        f.reset();
        let clear = first(&mut f, 0.5);
        assert!(clear < 0.05, "{clear}");
    }

    #[test]
    fn every_place_keeps_the_uniform_share_after_a_prediction() {
        // However settled the belief, each place holds at least UNIFORM_SHARE / N after a
        // prediction, so that a kidnapped robot is found within a few frames anywhere.
        let places = route(100, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(9);
        drive(&mut f, &places, &mut rng, 10, 30);
        f.predict(&places, 15.0, None);
        let least = f.belief.iter().cloned().fold(f64::INFINITY, f64::min);
        let want = UNIFORM_SHARE / places.len() as f64;
        assert!(
            least >= want * 0.999,
            "least belief {least:e}, expected at least {want:e}"
        );
        assert!((f.belief.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_settled_belief_on_a_long_map_reports_a_narrow_spread() {
        // 10 km of places: the uniform share every place keeps must not widen the spread.
        let places = route(2000, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(13);
        let s = drive(&mut f, &places, &mut rng, 10, 20).unwrap();
        assert!(
            s.spread.trace() < 2.0 * 15.0 * 15.0 / 7.81,
            "{}",
            s.spread.trace()
        );
    }

    #[test]
    fn the_reach_cumulates_the_belief_outwards_linearly_between_places() {
        let at = |ground: f64, share: f64| BeliefAt {
            ground,
            height: 0.0,
            share,
        };
        // Worked by hand: 0.5 at the place itself, 0.3 at 5 m, 0.2 at 20 m.
        let profile = [at(0.0, 0.5), at(5.0, 0.3), at(20.0, 0.2)];
        assert_eq!(reach_of(&profile, 0.4), 0.0);
        assert_eq!(reach_of(&profile, 0.5), 0.0);
        // 0.82: 0.8 is reached at 5 m, the last 0.02 of the 0.2 between 5 and 20 m.
        assert!((reach_of(&profile, 0.82) - 6.5).abs() < 1e-12);
        assert!((reach_of(&profile, 0.65) - 2.5).abs() < 1e-12);
        // A published place without belief of its own: from 0 at 0 to the first place's share.
        assert!((reach_of(&[at(10.0, 1.0)], 0.82) - 8.2).abs() < 1e-12);
        assert_eq!(reach_of(&[], 0.82), 0.0);
    }

    #[test]
    fn the_spread_is_a_disc_on_the_ground_out_to_the_belief_and_up_to_its_heights() {
        // A road along y climbing a 10% grade, in a world frame whose up is +x (not z): place
        // p at y = 5p, x = 0.5p. The belief is split between places 0 and 1 and a place 100 m
        // on; the published place is 0, 80% of the belief lies beyond place 1, so the disc
        // reaches between place 1 and the far place, and the heights are place 1's (0.5 m).
        let mut places = Places::from_centres((0..60).map(|row| {
            let p = (row / 2) as f64;
            [0.5 * p, 5.0 * p, 0.0]
        }));
        places.up = Vector3::x();
        let mut f = SequenceFilter::new(&places);
        let far = 20;
        let hit = |place: usize, row: usize, distance: f32| Hit {
            index: places.rows[place][row],
            distance,
        };
        let last = places.len() - 1;
        // Equally good at places 0 and 1, e^-0.01 at the far place, e^-1 at the last place
        // (the fifth hit sets the scale to 1), nothing elsewhere (the last hit's likelihood,
        // e^-19, is pruned).
        let hits = [
            hit(0, 0, 1.0),
            hit(0, 1, 1.0),
            hit(1, 0, 1.0),
            hit(far, 0, 1.01),
            hit(last, 0, 2.0),
            hit(last - 1, 0, 20.0),
        ];
        let s = f.observe(&places, &hits, 0.0, |_| true).unwrap();
        assert_eq!(s.place, 0);
        let (e, e_far) = ((-1.0f64).exp(), (-0.01f64).exp());
        let total = 2.0 + e_far + e;
        // The mean likelihood over the 30 places: 1, 1, e^-0.01, e^-1 and the last hit's e^-19
        // for the other 26 (place last - 1's own hit is that last hit).
        let mean = (total + 26.0 * (-19.0f64).exp()) / 30.0;
        // (1e-8: the distances are f32, 1.01 among them.)
        assert!(
            (s.mean_likelihood - mean).abs() < 1e-8,
            "{} {mean}",
            s.mean_likelihood
        );
        // Ground distances along y only (x is up): 0, 5, 100, 145 m; heights 0, 0.5, 10, 14.5.
        let want = [
            (0.0, 0.0, 1.0),
            (5.0, 0.5, 1.0),
            (100.0, 10.0, e_far),
            (145.0, 14.5, e),
        ];
        assert_eq!(s.profile.len(), 4, "{:?}", s.profile);
        for (got, (g, h, b)) in s.profile.iter().zip(want) {
            assert!(
                (got.ground - g).abs() < 1e-9
                    && (got.height - h).abs() < 1e-9
                    && (got.share - b / total).abs() < 1e-6,
                "{got:?} {:?}",
                (g, h, b / total)
            );
        }
        let r = reach_of(&s.profile, SPREAD_MASS);
        let hand = 5.0 + 95.0 * (SPREAD_MASS - 2.0 / total) / (e_far / total);
        assert!((r - hand).abs() < 1e-4 * hand, "reach {r}, by hand {hand}");
        assert!(r > 5.0 && r < 100.0);
        // R^2 / 7.81 on y and z (the ground), 0.5^2 / 7.81 on x (up), nothing between.
        let chi = crate::localize::prior::CHI2_3_95;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1e-9);
        assert!(close(s.spread[(1, 1)], r * r / chi), "{}", s.spread);
        assert!(close(s.spread[(2, 2)], r * r / chi), "{}", s.spread);
        assert!(close(s.spread[(0, 0)], 0.25 / chi), "{}", s.spread);
        assert_eq!(s.spread[(0, 1)], 0.0);
    }

    /// A belief sure of one place (the same frame seen again and again, nothing moving it)
    /// still reaches half the map's spacing on the ground: the truth lies between the map's
    /// images, not on the one the belief is sure of.
    #[test]
    fn a_settled_belief_reaches_half_the_maps_spacing() {
        let places = route(10, false);
        assert!((places.spacing - 5.0).abs() < 1e-9, "{}", places.spacing);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(9);
        let frame = hits(&places, 4, 0, 0.0, &mut rng);
        let mut step = None;
        for _ in 0..8 {
            step = f.observe(&places, &frame, 0.0, |r| r % 2 == 0);
        }
        let s = step.unwrap();
        assert_eq!(s.place, 4);
        assert_eq!(reach_of(&s.profile, SPREAD_MASS), 0.0, "{:?}", s.profile);
        let chi = crate::localize::prior::CHI2_3_95;
        let floor = BETWEEN_SPACING * places.spacing;
        // Up is z here (`Places::from_centres`): a disc of the floor's radius on x and y.
        for (axis, want) in [(0, floor * floor / chi), (1, floor * floor / chi), (2, 0.0)] {
            assert!(
                (s.spread[(axis, axis)] - want).abs() < 1e-9,
                "spread {}, floor {floor} m",
                s.spread
            );
        }
    }

    #[test]
    fn places_group_the_cameras_of_one_stop() {
        let p = route(10, false);
        assert_eq!(p.len(), 10);
        assert_eq!(p.rows[3], vec![6, 7]);
        assert_eq!(p.of_row[7], 3);
    }

    #[test]
    fn a_drive_beats_single_frame_and_survives_a_kidnapping() {
        let places = route(200, false);
        // 10 m/s, a frame every 0.5 s: one place per frame; kidnapped at frame 60 to place 150.
        let mut frames: Vec<(f64, usize, usize)> =
            (0..60).map(|i| (0.5 * i as f64, i + 10, 0)).collect();
        frames.extend((0..40).map(|i| (30.0 + 0.5 * i as f64, 150 + i / 4, 0)));
        let (good, single, steps, f) = run(&places, &frames, 0.3, 7);
        assert!(
            single < 0.8,
            "the test's single-frame retrieval is too good: {single}"
        );
        assert!(
            good > 0.95,
            "filtered {good:.2} vs single-frame {single:.2}"
        );
        // Found again within 3 frames of the kidnapping, reported as a relocalization.
        let back = (60..100)
            .find(|&i| (steps[i].place as i64 - 150).abs() <= 1)
            .unwrap();
        assert!(back <= 63, "found again at frame {back}");
        assert!(steps[60..=back].iter().any(|s| s.relocalized));
        assert!(f.relocalizations >= 1);
    }

    #[test]
    fn a_vehicle_faster_than_the_speed_bound_is_followed() {
        // 50 m/s (a place every 0.1 s), frames stamped as they come: the 15 m/s bound alone
        // lags behind; the faster bound of the mixture takes over.
        let places = route(200, false);
        let frames: Vec<(f64, usize, usize)> =
            (0..150).map(|i| (0.1 * i as f64, i + 20, 0)).collect();
        let (good, single, _, f) = run(&places, &frames, 0.3, 17);
        // (With the 15 m/s bound alone: 0.07 of the frames within a place; single frames 0.73.)
        assert!(
            good > 0.75 && good > single + 0.05,
            "filtered {good:.2} vs single-frame {single:.2}"
        );
        // The slow bound no longer holds the weight: the fast bound and the velocity do.
        assert!(
            f.weights[0] < 0.5,
            "the slow bound's weight: {:?}",
            f.weights
        );
        // At 10 m/s the slow bound explains the frames better.
        let frames: Vec<(f64, usize, usize)> =
            (0..150).map(|i| (0.5 * i as f64, i + 20, 0)).collect();
        let (good, single, _, f) = run(&places, &frames, 0.3, 17);
        assert!(
            good > 0.95,
            "filtered {good:.2} vs single-frame {single:.2}"
        );
        assert!(
            f.weights[0] > f.weights[1],
            "the slow bound over the fast one: {:?}",
            f.weights
        );
    }

    #[test]
    fn the_velocity_tells_apart_places_a_frame_confuses_and_follows_a_turn() {
        // Each frame, with probability 0.4, matches a place two ahead or two behind better
        // than its own (10 m: within any speed bound's reach, so the bounds alone cannot rule
        // it out). The published place's velocity predicts the next place. The vehicle drives
        // forward 80 places, turns and drives back 60.
        let places = route(200, false);
        let (exact, single, steps, truths, f) = out_and_back(&places, false, true);
        assert!(
            exact > 0.85 && exact > single + 0.2,
            "the filter put {exact:.2} of the frames on their place, single frames {single:.2}"
        );
        // After the turn (frame 80 is the first back): on its place again within 5 frames,
        // and from then on (a velocity that kept pointing forward would lose it again). The
        // place of highest posterior (OWN_SHARE 1, since session 68) is back one frame later
        // than the frame's own match was (0.5: within 4): the belief needs a frame more to
        // turn than the frames do.
        assert!(
            (85..=95).all(|i| steps[i] == truths[i]),
            "after the turn: published {:?}, truth {:?}",
            &steps[80..=95],
            &truths[80..=95]
        );
        assert!(
            f.weights[2] > 0.5,
            "the velocity's weight at the end: {:?}",
            f.weights
        );
    }

    #[test]
    fn odometry_moves_the_belief_along_the_velocity_and_follows_a_turn() {
        // The frames of the previous test, moved by odometry (each step's true distance, 2%
        // long). The distance alone puts the place behind the last one (5 m back) level with
        // the one ahead, so an alias two behind the truth wins whenever it looks better; along
        // the published place's velocity it loses. At the turn the weight goes back to the
        // distance alone until the velocity points the new way.
        let places = route(200, false);
        let (exact, single, steps, truths, f) = out_and_back(&places, true, true);
        let (distance_only, ..) = out_and_back(&places, true, false);
        assert!(
            exact > 0.9 && exact > distance_only + 0.08 && exact > single + 0.2,
            "on their place: {exact:.2} of the frames, {distance_only:.2} by the distance \
             alone, {single:.2} single frames"
        );
        // After the turn (frame 80 is the first back): on its place again within 5 frames, and
        // from then on but once (while the velocity turns, an alias behind the truth can win,
        // as it does by the distance alone).
        let wrong = (85..=110).filter(|&i| steps[i] != truths[i]).count();
        assert!(
            wrong <= 1,
            "after the turn: published {:?}, truth {:?}",
            &steps[80..=110],
            &truths[80..=110]
        );
        assert!(
            f.odometry_weights[1] > 0.5,
            "the heading's weight at the end: {:?}",
            f.odometry_weights
        );
        // The speed bounds' weights were not touched by the odometry's steps.
        assert_eq!(f.weights, [0.5, 0.5, 0.0]);
    }

    /// Camera 0 drives forward one place per half second from place 10 to 29, so the filter
    /// knows the vehicle's velocity; the filter and the time of the last frame.
    fn moving_forward(places: &Places, rng: &mut Draws) -> (SequenceFilter, f64) {
        let mut f = SequenceFilter::new(places);
        drive(&mut f, places, rng, 10, 20);
        let v = f.velocity.expect("a velocity after 20 frames");
        assert!((v.x - 10.0).abs() < 1.0 && v.y.abs() < 1e-9, "{v:?}");
        (f, 0.5 * 19.0)
    }

    #[test]
    fn a_jump_forgets_the_velocity_even_by_the_second_camera_of_a_capture() {
        let places = route(200, false);
        let mut rng = Draws::seed_from_u64(29);
        let (mut f, t) = moving_forward(&places, &mut rng);
        // The next capture: camera 0 on its next place, then camera 1 (same stamp) sure of a
        // place 100 places away.
        f.predict(&places, t + 0.5, None);
        f.observe(&places, &hits(&places, 30, 0, 0.0, &mut rng), 0.0, |r| {
            r % 2 == 0
        });
        f.predict(&places, t + 0.5, None);
        // (Camera 0's frames are the one camera of `observe`; camera 1 is heard for the first
        // time, with camera 0's trust.)
        let s = f
            .observe_from(
                &places,
                &hits(&places, 130, 1, 0.0, &mut rng),
                0.9,
                "c1",
                |r| r % 2 == 1,
            )
            .unwrap();
        assert_eq!(s.camera_weight, 1.0);
        assert_eq!(s.place, 130);
        assert!(s.relocalized);
        assert!(f.velocity.is_none(), "{:?}", f.velocity);
        assert_eq!(f.weights[2], 0.0);
        assert!((f.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // The next capture measures the motion from the place it jumped to, not across the
        // jump.
        f.predict(&places, t + 1.0, None);
        f.observe(&places, &hits(&places, 131, 0, 0.0, &mut rng), 0.9, |r| {
            r % 2 == 0
        });
        let v = f.velocity.expect("a velocity after the next capture");
        assert!(v.norm() < 15.0, "{v:?}");
    }

    #[test]
    fn odometry_leaves_the_motion_models_weights_and_a_stamp_back_moves_back() {
        let places = route(200, false);
        let mut rng = Draws::seed_from_u64(31);
        let (mut f, t) = moving_forward(&places, &mut rng);
        assert!(f.weights[2] > 0.5, "{:?}", f.weights);
        let before = f.weights;
        let travel = Some(Travel {
            displacement: 5.0,
            path: 5.0,
        });
        f.predict(&places, t + 0.5, travel);
        f.observe(&places, &hits(&places, 30, 0, 0.0, &mut rng), 0.0, |r| {
            r % 2 == 0
        });
        assert_eq!(f.weights, before, "odometry replaces the three models");
        // A frame stamped a second before the last (localized out of order): the directed
        // kernel moves the belief back along the velocity, to about place 28.
        f.predict(&places, t - 0.5, None);
        let [_, _, moving] = f.components.clone().unwrap();
        let top = (0..moving.len())
            .max_by(|&a, &b| moving[a].total_cmp(&moving[b]))
            .unwrap();
        assert!(
            (27..=29).contains(&top),
            "the directed kernel's most likely place: {top}"
        );
        // After a reset the weights still sum to 1 and the velocity is unknown.
        f.reset();
        assert!(f.velocity.is_none());
        assert!((f.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(f.weights[2], 0.0);
    }

    #[test]
    fn a_frame_sure_of_its_match_is_published_outside_the_believed_region() {
        let places = route(100, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(21);
        drive(&mut f, &places, &mut rng, 20, 10);
        let far = hits(&places, 90, 0, 0.0, &mut rng);
        // The threshold is SURE, not the single-frame prior's CONFIDENT (refitted with each
        // model): a frame just under SURE is not sure of itself, one at SURE is.
        const { assert!(crate::localize::prior::CONFIDENT < SURE - 0.01) };
        for (c, sure) in [(SURE - 0.01, false), (SURE, true)] {
            let mut g = f.clone();
            g.predict(&places, 5.0, None);
            let step = g.observe(&places, &far, c, |r| r % 2 == 0).unwrap();
            assert_eq!(
                step.place == 90,
                sure,
                "confidence {c}: published {}",
                step.place
            );
        }
        let mut unsure = f.clone();
        unsure.predict(&places, 5.0, None);
        let u = unsure.observe(&places, &far, 0.0, |r| r % 2 == 0).unwrap();
        f.predict(&places, 5.0, None);
        let s = f.observe(&places, &far, 1.0, |r| r % 2 == 0).unwrap();
        assert_eq!(s.place, 90, "unsure: {}", u.place);
        assert!(s.relocalized);
        // Its confidence is the posterior mass about place 90, not the believed region's
        // (which the unsure frame, published there, reports).
        assert!(
            (u.place as i64 - 30).abs() <= 2,
            "unsure published {}",
            u.place
        );
        assert!(s.mass + 0.05 < u.mass, "mass {} against {}", s.mass, u.mass);
    }

    #[test]
    fn backwards_a_stop_and_a_skipped_stretch() {
        let places = route(200, false);
        let mut frames: Vec<(f64, usize, usize)> = Vec::new();
        // Backwards from 150 to 100, stopped at 100 for 10 frames, then 30 s without frames
        // while driving on to 40, and forward again.
        frames.extend((0..50).map(|i| (0.5 * i as f64, 150 - i, 0)));
        frames.extend((0..10).map(|i| (25.0 + 0.5 * i as f64, 100, 0)));
        frames.extend((0..40).map(|i| (60.0 + 0.5 * i as f64, 40 + i, 0)));
        let (good, single, steps, _) = run(&places, &frames, 0.3, 11);
        assert!(
            good > 0.93,
            "filtered {good:.2} vs single-frame {single:.2}"
        );
        // After the gap: right again within 3 frames.
        let again = (60..100)
            .find(|&i| (steps[i].place as i64 - frames[i].1 as i64).abs() <= 1)
            .unwrap();
        assert!(again <= 63, "right again at frame {again}");
    }

    #[test]
    fn two_cameras_at_once_and_a_second_lap_of_a_loop() {
        let places = route(80, true);
        // Two laps of the loop (80 places), both cameras at each stamp.
        let frames: Vec<(f64, usize, usize)> = (0..160)
            .flat_map(|i| [(0.5 * i as f64, i % 80, 0), (0.5 * i as f64, i % 80, 1)])
            .collect();
        let (good, single, steps, f) = run(&places, &frames, 0.3, 3);
        assert!(
            good > 0.95,
            "filtered {good:.2} vs single-frame {single:.2}"
        );
        // Once settled (the first frames may correct a first guess), the laps cross the loop's
        // closure (place 79 -> 0) as motion, never as a relocalization.
        let late: Vec<usize> = (20..steps.len())
            .filter(|&i| steps[i].relocalized)
            .collect();
        assert!(late.is_empty(), "relocalized at frames {late:?}");
        assert!(f.relocalizations <= 2, "{}", f.relocalizations);
    }

    #[test]
    fn a_long_gap_starts_again_and_the_spread_follows_the_belief() {
        let places = route(100, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(5);
        drive(&mut f, &places, &mut rng, 20, 10);
        f.predict(&places, 5.0, None);
        let settled = f
            .observe(&places, &hits(&places, 30, 0, 0.0, &mut rng), 0.0, |r| {
                r % 2 == 0
            })
            .unwrap();
        assert!((settled.place as i64 - 30).abs() <= 1, "{}", settled.place);
        // The belief holds the place and its neighbours (5 m away): the 95% ellipsoid reaches
        // about two places (R^2 / 7.81 on each ground axis, R under 15 m).
        assert!(
            settled.spread.trace() < 2.0 * 15.0 * 15.0 / 7.81,
            "{}",
            settled.spread
        );
        assert!(settled.mass > 0.2, "{}", settled.mass);
        // A frame that looks like a place 300 m away: some of the belief moves there, the rest
        // widens about place 30, and the spread says so.
        f.predict(&places, 5.5, None);
        let split = f
            .observe(&places, &hits(&places, 90, 0, 0.0, &mut rng), 0.0, |r| {
                r % 2 == 0
            })
            .unwrap();
        // The ellipsoid reaches R = 15 m here (the belief about place 30 has widened too),
        // against 5 m before (measured at SPREAD_MASS 0.73; at 0.75: 25 and 10 m; at 0.8: 42.7
        // and 11.6 m; at 0.6 with the floor of half the spacing: 8.4 and 2.5 m).
        let reach = |s: &Step| (s.spread.trace() * crate::localize::prior::CHI2_3_95 / 2.0).sqrt();
        assert!(reach(&split) > 14.0, "{}", reach(&split));
        assert!(
            reach(&split) > 2.0 * reach(&settled),
            "{} {}",
            reach(&split),
            reach(&settled)
        );
        // Wherever it publishes, a move that far is reported as a relocalization.
        assert_eq!(
            split.relocalized,
            (split.place as i64 - 30).abs() > 3,
            "published {}",
            split.place
        );
        // A day later: the old belief says nothing (reset counted), the frame alone decides.
        f.predict(&places, 86_400.0, None);
        assert_eq!(f.resets, 1);
        assert!(f.belief.iter().all(|&b| (b - 0.01).abs() < 1e-12));
    }

    /// With odometry the motion is centred on the displacement and widened by the path: a
    /// robot that drove 20 m out and 20 m back during a 60 s stop is still at its place, one
    /// that drove 40 m on is 8 places (40 m) away, either way; without odometry 60 s resets.
    #[test]
    fn odometry_centres_the_motion_on_the_displacement_and_widens_it_with_the_path() {
        let places = route(100, false);
        let argmax = |f: &SequenceFilter| {
            f.belief
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as i64
        };
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(9);
        drive(&mut f, &places, &mut rng, 10, 20);
        let here = argmax(&f);
        assert!((here - 29).abs() <= 1, "settled at place {here}");
        let mut back = f.clone();
        let out_and_back = Travel {
            displacement: 0.0,
            path: 40.0,
        };
        back.predict(&places, 69.5, Some(out_and_back));
        assert_eq!(back.resets, 0);
        let stayed = (argmax(&back) - here).abs();
        assert!(
            stayed <= 1,
            "out and back: {stayed} places away, expected where it was"
        );
        let mut on = f.clone();
        let forward = Travel {
            displacement: 40.0,
            path: 40.0,
        };
        on.predict(&places, 69.5, Some(forward));
        let moved = (argmax(&on) - here).abs();
        assert!(
            (moved - 8).abs() <= 1,
            "40 m on: {moved} places away, expected 8"
        );
        f.predict(&places, 69.5, None);
        assert_eq!(f.resets, 1, "60 s without odometry reaches past 1 km");
    }

    #[test]
    fn the_ends_of_a_road_are_its_first_and_last_places_and_not_a_corner_or_a_loop() {
        let line = route(20, false);
        let ends: Vec<usize> = (0..line.len()).filter(|&p| line.road_end[p]).collect();
        assert_eq!(ends, vec![0, 19]);
        let circle = route(40, true);
        assert!(circle.road_end.iter().all(|&e| !e), "a loop has no end");
        // An L: 10 places east, then 10 north from the corner (place 9).
        let l = Places::from_centres((0..20).map(|p| {
            if p < 10 {
                [5.0 * p as f64, 0.0, 0.0]
            } else {
                [45.0, 5.0 * (p - 9) as f64, 0.0]
            }
        }));
        let ends: Vec<usize> = (0..l.len()).filter(|&p| l.road_end[p]).collect();
        assert_eq!(ends, vec![0, 19], "the corner is not an end");
        assert!(Places::from_centres([[0.0, 0.0, 0.0]].into_iter()).road_end[0]);
        // Mapped densely (3 m) in a slow street, then sparsely (12 m) on a fast stretch.
        let mut x = 0.0;
        let mixed = Places::from_centres((0..30).map(|p| {
            x += if p < 15 { 3.0 } else { 12.0 };
            [x, 0.0, 0.0]
        }));
        let ends: Vec<usize> = (0..mixed.len()).filter(|&p| mixed.road_end[p]).collect();
        assert_eq!(ends, vec![0, 29], "a sparse stretch is still a road");
        // Two rigs side by side, 1.2 m apart, places 5 m apart along the road.
        let lanes = Places::from_centres(
            (0..40).map(|r| [5.0 * (r / 2) as f64, 1.2 * (r % 2) as f64, 0.0]),
        );
        let ends: Vec<usize> = (0..lanes.len())
            .filter(|&p| lanes.road_end[p])
            .map(|p| p / 2)
            .collect();
        assert_eq!(ends, vec![0, 0, 19, 19], "only the two ends of both lanes");
    }

    /// The 95% radius on the ground of a step's spread (metres).
    fn radius_95(step: &Step) -> f64 {
        (crate::localize::prior::CHI2_3_95 * step.spread[(0, 0)]).sqrt()
    }

    /// One frame of camera `cam` at time `t` whose hits are those of place `truth`, with
    /// single-frame confidence `c`: the filter's step.
    fn frame(
        f: &mut SequenceFilter,
        places: &Places,
        rng: &mut Draws,
        (t, truth, cam, c): (f64, usize, usize, f64),
    ) -> Step {
        f.predict(places, t, None);
        f.observe_from(
            places,
            &hits(places, truth, cam, 0.0, rng),
            c,
            ["c0", "c1"][cam],
            |r| r % 2 == cam,
        )
        .unwrap()
    }

    #[test]
    fn driving_on_past_the_end_of_the_map_widens_the_spread_until_it_turns_back() {
        let places = route(20, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(5);
        // Along the map at 10 m/s (a place per half second) to its end (place 19)...
        let mut t = 0.0;
        for p in 0..20 {
            let s = frame(&mut f, &places, &mut rng, (t, p, 0, 0.0));
            assert_eq!(s.beyond_end, 0.0, "on the way, at place {p}");
            t += 0.5;
        }
        // ...and on, 5 m per frame, the frames looking most like the map's last place: the
        // 95% ellipsoid about the published place reaches the truth.
        let mut radius = Vec::new();
        for k in 1..=10 {
            let s = frame(&mut f, &places, &mut rng, (t, 19, 0, 0.0));
            let truth = 5.0 * (19 + k) as f64;
            let error = (truth - places.centre[s.place][0]).abs();
            assert!(
                radius_95(&s) >= error,
                "{k} places past the end: 95% radius {:.1} m, truth {error:.1} m away",
                radius_95(&s)
            );
            radius.push(radius_95(&s));
            t += 0.5;
        }
        assert!(radius.windows(2).all(|w| w[1] > w[0]), "{radius:?}");
        // Turning back: once the vehicle is well back on the map the widening is gone.
        for p in (10..20).rev() {
            let s = frame(&mut f, &places, &mut rng, (t, p, 0, 0.0));
            if p == 10 {
                assert_eq!(s.beyond_end, 0.0, "45 m back on the map");
            }
            t += 0.5;
        }
    }

    #[test]
    fn a_stray_frame_past_the_end_does_not_end_the_widening_nor_do_a_second_camera_or_old_stamps() {
        let places = route(20, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(9);
        for p in 0..20 {
            frame(&mut f, &places, &mut rng, (0.5 * p as f64, p, 0, 0.0));
        }
        let t = 10.0;
        let mut past = |f: &mut SequenceFilter, t: f64, truth: usize, cam: usize, c: f64| {
            frame(f, &places, &mut rng, (t, truth, cam, c))
        };
        let first = past(&mut f, t, 19, 0, 0.0).beyond_end;
        // A frame sure of a place 45 m back (aliasing), then on past the end.
        let stray = past(&mut f, t + 0.5, 10, 0, 1.0);
        assert_eq!(stray.place, 10, "the sure frame is published");
        let on = past(&mut f, t + 1.0, 19, 0, 0.0).beyond_end;
        // The second camera of that capture, and a frame stamped half a second earlier.
        let second = past(&mut f, t + 1.0, 19, 1, 0.0).beyond_end;
        let old = past(&mut f, t + 0.5, 19, 0, 0.0).beyond_end;
        assert!(first > 0.0 && on > first, "{first} then {on}");
        assert_eq!(
            second, on,
            "a second camera at the same instant drives no further"
        );
        assert_eq!(old, on, "an older stamp drives no further");
    }

    #[test]
    fn a_vehicle_that_drives_into_the_map_from_its_end_is_not_widened() {
        let places = route(20, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(10);
        let travel = Some(Travel {
            displacement: 5.0,
            path: 5.0,
        });
        for p in 0..20 {
            f.predict(&places, 0.5 * p as f64, travel);
            let s = f.observe(&places, &hits(&places, p, 0, 0.0, &mut rng), 0.0, |r| {
                r % 2 == 0
            });
            assert_eq!(s.unwrap().beyond_end, 0.0, "at place {p}");
        }
    }

    #[test]
    fn a_vehicle_parked_at_the_end_of_the_map_from_the_start_is_not_widened() {
        let places = route(20, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(6);
        // No speed to drive on with, and it never arrived from another place.
        for i in 0..20 {
            let s = frame(&mut f, &places, &mut rng, (0.5 * i as f64, 19, 0, 0.0));
            assert_eq!(s.beyond_end, 0.0, "frame {i}");
        }
    }

    #[test]
    fn odometry_says_how_far_the_vehicle_drove_past_the_end() {
        let places = route(20, false);
        let mut f = SequenceFilter::new(&places);
        let mut rng = Draws::seed_from_u64(8);
        // Driving to the end a place (5 m) per frame, odometry saying as much.
        let approach = Some(Travel {
            displacement: 5.0,
            path: 5.0,
        });
        let travel = Some(Travel {
            displacement: 2.0,
            path: 2.0,
        });
        let mut t = 0.0;
        for p in 15..20 {
            f.predict(&places, t, approach);
            f.observe(&places, &hits(&places, p, 0, 0.0, &mut rng), 0.0, |r| {
                r % 2 == 0
            });
            t += 0.5;
        }
        // Three more frames, 2 m each by odometry, looking like the last place.
        let mut step = None;
        for _ in 0..3 {
            f.predict(&places, t, travel);
            step = f.observe(&places, &hits(&places, 19, 0, 0.0, &mut rng), 0.0, |r| {
                r % 2 == 0
            });
            t += 0.5;
        }
        let s = step.unwrap();
        assert_eq!(s.place, 19);
        // 6 m driven, with odometry's drift (ODOMETRY_DRIFT) on top.
        assert!((s.beyond_end - 7.2).abs() < 1e-9, "{}", s.beyond_end);
    }

    /// A second camera that shows nothing of the map while camera 0 drives on (a lens cap: the
    /// same frame again and again; noise: each frame's best rows at a random place), at
    /// confidence 0: the filter keeps following camera 0 as it does with camera 0 alone, keeps
    /// the vehicle on the map, and the blind camera loses its say. Both cameras' frames get
    /// the vehicle's place. (Before cameras were told apart, each blind frame took the
    /// vehicle off the map: `evaluate --filter sequence` withheld most priors of both.)
    #[test]
    fn a_blind_camera_beside_a_seeing_one_loses_its_say() {
        let places = route(60, false);
        for noise in [false, true] {
            let mut rng = Draws::seed_from_u64(31);
            let cap = hits(&places, 45, 1, 0.0, &mut rng);
            let (mut f, mut alone) = (SequenceFilter::new(&places), SequenceFilter::new(&places));
            for i in 0..30 {
                let (t, truth) = (0.5 * i as f64, 5 + i);
                let seen = hits(&places, truth, 0, 0.0, &mut rng);
                let blind = if noise {
                    let at = rng.random_range(0..places.len());
                    hits(&places, at, 1, 0.0, &mut rng)
                } else {
                    cap.clone()
                };
                alone.predict(&places, t, None);
                let a = alone.observe(&places, &seen, 0.3, |r| r % 2 == 0).unwrap();
                f.predict(&places, t, None);
                let front = f
                    .observe_from(&places, &seen, 0.3, "front", |r| r % 2 == 0)
                    .unwrap();
                f.predict(&places, t, None);
                let rear = f
                    .observe_from(&places, &blind, 0.0, "rear", |r| r % 2 == 1)
                    .unwrap();
                let what = format!(
                    "noise {noise}, frame {i}, truth {truth}: places {} {}, off the map {:.3} \
                     {:.3}, say {:.3} {:.3}",
                    front.place,
                    rear.place,
                    front.off_map,
                    rear.off_map,
                    front.camera_weight,
                    rear.camera_weight
                );
                assert_eq!(front.camera_weight, 1.0, "{what}");
                if i < 6 {
                    continue;
                }
                assert_eq!(a.place, truth, "camera 0 alone, {what}");
                assert_eq!(front.place, truth, "{what}");
                assert!((rear.place as i64 - truth as i64).abs() <= 1, "{what}");
                for s in [&front, &rear] {
                    assert!(s.off_map < OFF_MAP_WITHHOLD, "{what}");
                }
                if i >= 8 {
                    assert!(rear.camera_weight < 0.1, "{what}");
                }
            }
        }
    }

    /// Two cameras that see alike keep their say, and kidnapped together they are found
    /// again as fast as frames of one camera are: the say is a camera's trust against the
    /// other's, and both lose it alike.
    #[test]
    fn two_seeing_cameras_keep_their_say_and_are_found_after_a_kidnapping() {
        let places = route(200, false);
        let mut frames: Vec<(f64, usize, usize)> = Vec::new();
        for i in 0..40 {
            let truth = if i < 20 { 10 + i } else { 150 + i };
            frames.push((0.5 * i as f64, truth, 0));
            frames.push((0.5 * i as f64, truth, 1));
        }
        let (good, _, steps, _) = run(&places, &frames, 0.1, 9);
        assert!(good > 0.9, "{good}");
        // A frame that matches an aliased place costs its camera a little trust, no more.
        let says: Vec<f64> = steps[..40].iter().map(|s| s.camera_weight).collect();
        let mean = says.iter().sum::<f64>() / says.len() as f64;
        assert!(says.iter().all(|&w| w > 0.75) && mean > 0.93, "{says:?}");
        let back = (40..80)
            .find(|&k| (steps[k].place as i64 - (150 + k as i64 / 2)).abs() <= 1)
            .unwrap();
        assert!(back <= 45, "found again at frame {back} (kidnapped at 40)");
    }
}
