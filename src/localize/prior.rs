//! The pose prior published for a query: the pose of the best map image (its orientation
//! turned at a bend), with a 6x6 covariance (x y z roll pitch yaw, world frame, metres and
//! radians) and a confidence, from the
//! retrieved map images (docs/pose-prior.md says the same, with the measurements behind it).
//!
//! With the ranked hits (pose t_k, R_k; descriptor distance d_k; best first):
//! - confidence (the match-quality signal): c = 1 - d_1 / d_alt, where d_alt is the best
//!   distance of a hit more than ALT_RADIUS from the best one among the QUALITY_HITS retrieved,
//!   clamped to [0, 1]; 1 when no hit is that far (the searched images are all at the best
//!   one's place: nothing else to confuse it with); 0 for a non-finite distance. It is the ratio
//!   test of the best match against the best match *elsewhere*: near 0 when another place
//!   matches about as well, larger when one place stands out. It needs no ground truth, and a
//!   ratio carries across worlds where raw distances do not;
//! - the match's own spread, over the first top_k hits: weights w_k = exp(-(d_k / d_1 - 1) / TAU)
//!   (TAU = 0.05), A_t = sum_k w_k (t_k - t_1)(t_k - t_1)^T / sum_k w_k + s_t^2 I with
//!   s_t = SIGMA_POSITION (the spacing of map images is the floor of what retrieval can say);
//!   A_r the same over the rotation vectors log(R_1^T R_k) mapped to the world frame, + s_r^2 I;
//! - the room for a wrong match, over the first SPREAD_HITS hits at distinct places (a hit
//!   within PLACE_SPACING of one already taken is skipped, so a dense map's next frames do not
//!   count as alternatives), unweighted: B_t = sum_k (t_k - t_1)(t_k - t_1)^T / n, B_r the same
//!   over the rotation vectors: where the truth lies when the best match is not it;
//! - the weight of that room: a = WRONG_SCALE * max(0, 1 - c / CONFIDENT): a match at
//!   confidence CONFIDENT or above is trusted as a match; below it, the prior widens linearly
//!   towards the candidates' spread;
//! - between map images: N_r = v v^T / CHI2_3_95, v the largest turn from the prior's
//!   orientation to halfway towards a neighbouring image of its map image
//!   ([`between_rotation`], [`neighbour_rows`]; added by the Localizer, which has the map): a
//!   query between images at a bend is turned from both. At a bend the Localizer also turns the
//!   prior's orientation towards the neighbouring image the frame matches best, by
//!   [`bend_share`] of the turn;
//! - position block POSITION_CALIBRATION * A_t + a B_t, rotation block A_r + a B_r + N_r,
//!   position and rotation uncorrelated (for the camera; base_link's prior, [`to_base`],
//!   correlates them through the lever arm).
//!
//! With the sequence filter ([`FilterPick`]: the posterior mass as the confidence, and the
//! frame's own single-frame confidence c), the prior is the chosen row's with the floors only
//! (position [`filter_floor`] (c) I, A_r = s_r^2 I, a = 0; N_r): the caller adds the belief's
//! reach (sequence::SPREAD_MASS), which holds the alternatives.
//!
//! The constants were fitted (tools/python/fit_prior.py) on three worlds (cmu_calibration in
//! our renderer's look, cmu_val_pastel and cmu_val_ink in the two reserved looks), per camera,
//! the shipped model's cosine metric, top_k 5, no filter, camera poses, at the lowest coverage
//! target (97.5%) at which a fit on two of them still puts the true position inside the 95%
//! position ellipsoid for 95% of the published priors of the third, each in turn (95.5-99.6%;
//! the ninth model, 2026-12-05). Under the filter the position floor is [`filter_floor`]
//! (FILTER_POSITION_CALIBRATION, growing by FILTER_UNSURE_CALIBRATION for a frame unsure of
//! itself). The test worlds are not used (docs/pose-prior.md, the table).

use nalgebra::{Matrix3, Vector3};

use crate::geom::Pose;
use crate::map::file::MapFile;
use crate::retrieval::Hit;

pub const TAU: f64 = 0.05;
pub const SIGMA_POSITION: f64 = 1.0;
/// The rotation floor (radians; 2.5 degrees): the orientation retrieval cannot resolve, a
/// query's heading differing from its map image's as a vehicle's does from lane to lane.
/// Fitted (tools/python/fit_rotation_floor.py) on cmu_calibration and the four validation
/// worlds, single frames and the filter pooled, at the lowest target (99%) at which a fit on
/// four still holds the true orientation inside the 95% bound for 95% of the fifth's published
/// priors: 2.25 degrees with the eighth model, 2.5 with the ninth (2026-12-05; left out
/// 96.2-100%; the drive worlds' queries turned by a 3 degree heading noise were 92.4-95.7%
/// inside at the 2 degrees before). docs/pose-prior.md, "The rotation floor".
pub const SIGMA_ROTATION: f64 = 0.043_63;
/// How much the rotation floor's square grows for a frame unsure of itself: the floor is
/// SIGMA_ROTATION^2 (1 + ROTATION_UNSURE_CALIBRATION max(0, 1 - c / CONFIDENT)) per axis, c the
/// frame's own single-frame confidence ([`rotation_unsure_floor`]; single frames and the
/// sequence filter alike). A query turned from its map image (a vehicle's heading in another
/// lane, a driver's weave) resembles it less. Fitted (tools/python/fit_rotation_floor.py
/// --unsure, SIGMA_ROTATION kept) on the six validation worlds, single frames and the filter
/// pooled, with the default yaw views and the view's orientation: the smallest value at which
/// each holds the true orientation inside the 95% bound for 95% of its published priors where
/// some value can (cmu_val_ink_hard cannot: 91.1% at 3.5; 2026-12-06, session 67;
/// docs/pose-prior.md, "The rotation floor").
pub const ROTATION_UNSURE_CALIBRATION: f64 = 3.5;
/// Metres from the best match beyond which a map image is another place (the confidence's
/// alternative): one and a half times the 5 m spacing of the synthetic slices' places, and
/// beyond the 5 m of the coarsest Extended CMU-Seasons threshold.
pub const ALT_RADIUS: f64 = 7.5;
/// Hits the confidence and the room for a wrong match look at: the Localizer retrieves at least
/// this many whatever `top_k` (an exact search costs about the same for 5 or 200), so that the
/// node (top_k 5) and `evaluate` (recall@20) compute the same prior, and a dense map (a frame
/// every metre) still has hits beyond ALT_RADIUS among them.
pub const QUALITY_HITS: usize = 200;
/// Distinct places whose spread is the room for a wrong match.
pub const SPREAD_HITS: usize = 10;
/// Hits closer than this (metres) to one already taken are one place for the room for a wrong
/// match (half the synthetic slices' 5 m spacing, so none of theirs is merged).
pub const PLACE_SPACING: f64 = 2.5;
/// Confidence from which a match is trusted as one (no room for a wrong match is added).
pub const CONFIDENT: f64 = 0.2;
/// The weight of the candidates' spread at confidence 0.
pub const WRONG_SCALE: f64 = 6.0;
/// The factor on the match's own position spread, floor included (fitted: 1.5).
pub const POSITION_CALIBRATION: f64 = 1.5;
/// The map spacing (metres; the median distance between its places) up to which the
/// single-frame floor SIGMA_POSITION holds as fitted: the fitting worlds' maps are 2.5 m (drive)
/// and 5 m apart, and a RobotCar world 6 m apart held the truth for 94-100% (README, "With real
/// data"). Beyond it the floor grows in proportion ([`sparse_map_floor`]).
pub const SPARSE_SPACING: f64 = 6.0;

/// What a single-frame prior's position block gains per ground axis (m^2; the Localizer adds it
/// in the map's ground plane) on a map sparser than
/// [`SPARSE_SPACING`]: a query between two map images lies up to half their spacing from the
/// nearer, so the floor's sigma grows as spacing / SPARSE_SPACING, and the block's floor
/// (POSITION_CALIBRATION SIGMA_POSITION^2) by the square of that less one; 0 on denser maps.
/// (Under the sequence filter the belief's reach has its own floor of half the spacing.)
pub fn sparse_map_floor(spacing: f64) -> f64 {
    let f = spacing / SPARSE_SPACING;
    if !f.is_finite() || f <= 1.0 {
        return 0.0;
    }
    POSITION_CALIBRATION * SIGMA_POSITION.powi(2) * (f * f - 1.0)
}
/// The factor on the position floor under the sequence filter (a confidence given), whose
/// `SPREAD_MASS` was fitted with it: 0.6, POSITION_CALIBRATION's value with the L1 metric.
/// Apart since the cosine metric (2026-12-04): its distance ratios leave the single match's
/// own spread at the floor, which the single-frame fit makes up for with 1.5 (a floor 95%
/// radius of 3.4 m; 2.0 for the eighth model), while the filter holds the alternatives in the belief's reach.
pub const FILTER_POSITION_CALIBRATION: f64 = 0.6;
/// How much the floor under the sequence filter grows for a frame unsure of itself: the floor
/// is (FILTER_POSITION_CALIBRATION + FILTER_UNSURE_CALIBRATION max(0, 1 - c / CONFIDENT))
/// SIGMA_POSITION^2 per axis, c the frame's own single-frame confidence ([`filter_floor`]).
/// The belief holds which place; the floor, how far from that place's image the camera may be,
/// and a frame that resembles its best image less (a query beside the mapped road, in another
/// lane, between two images) leaves that wider. Fitted (tools/python/fit_sequence_spread.py
/// --unsure, `SPREAD_MASS` kept) on cmu_calibration and the six validation worlds, the two
/// hard-drive ones among them, with the default yaw views: the smallest value at which each
/// holds the truth inside the 95% ellipsoid for 95% of its published priors where a wider
/// floor can reach its misses at all (2026-12-06, session 67: 1.5; docs/sequence-filter.md,
/// "A floor for frames unsure of themselves"). Refitted with descriptor centring, the default
/// since session 72: 2.0 (with 1.5 cmu_val_pastel_hard held the truth for 94.3% of its 174
/// published priors; docs/pose-prior.md, "The default (session 72)").
pub const FILTER_UNSURE_CALIBRATION: f64 = 2.0;
/// The node's and the CLI's default `min_confidence`: a match less than 4% closer than the best
/// match more than ALT_RADIUS away is withheld (4-11% of the matches on the fitting worlds with
/// the ninth model, 5-12% with the eighth's cosine metric, 9-22% with L1 and e6, 15-24% with e5; docs/pose-prior.md).
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.04;

#[derive(Debug, Clone)]
pub struct PosePrior {
    /// world_from_cam of the best candidate.
    pub pose: Pose,
    /// Row-major 6x6, x y z roll pitch yaw.
    pub covariance: [f64; 36],
    /// 1 - d_1 / d_alt in [0, 1] (the module comment).
    pub confidence: f64,
}

/// What the sequence filter gives the prior of the row it chose (the first hit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterPick {
    /// The posterior mass about the published place: the prior's confidence.
    pub mass: f64,
    /// The frame's own single-frame confidence: the position floor ([`filter_floor`]).
    pub frame_confidence: f64,
}

/// The prior from `hits` (best first, at least one) of `map`; the match's own spread from the
/// first `top_k`. `filter`: the sequence filter chose the first hit; its prior is that row's
/// pose with the filter's floors and the posterior mass as its confidence (the caller adds the
/// belief's reach).
pub fn pose_prior(
    map: &MapFile,
    hits: &[Hit],
    top_k: usize,
    filter: Option<FilterPick>,
) -> Option<PosePrior> {
    let ranked: Vec<(Pose, f64)> = hits
        .iter()
        .take(QUALITY_HITS.max(top_k))
        .map(|h| (map.pose(h.index), h.distance as f64))
        .collect();
    prior_with_confidence(&ranked, top_k, filter)
}

/// The confidence of ranked candidates (poses and descriptor distances, best first).
pub fn confidence(ranked: &[(Pose, f64)]) -> f64 {
    let Some((p1, d1)) = ranked.first() else {
        return 0.0;
    };
    let considered = &ranked[..ranked.len().min(QUALITY_HITS)];
    if considered.iter().any(|(_, d)| !d.is_finite()) {
        return 0.0;
    }
    let t1 = p1.translation.vector;
    let Some((_, alt)) = considered
        .iter()
        .find(|(p, _)| (p.translation.vector - t1).norm() > ALT_RADIUS)
    else {
        return 1.0;
    };
    // Rounding can make a distance slightly negative (cosine of a near-exact match).
    let (d1, alt) = (d1.max(0.0), alt.max(0.0));
    if alt <= 0.0 {
        return 0.0;
    }
    (1.0 - d1 / alt).clamp(0.0, 1.0)
}

/// The first SPREAD_HITS of `ranked` at distinct places (each more than PLACE_SPACING from the
/// ones taken before it), the best first.
pub fn distinct_places(ranked: &[(Pose, f64)]) -> Vec<&(Pose, f64)> {
    let mut taken: Vec<&(Pose, f64)> = Vec::with_capacity(SPREAD_HITS);
    for r in &ranked[..ranked.len().min(QUALITY_HITS)] {
        if taken.len() == SPREAD_HITS {
            break;
        }
        let t = r.0.translation.vector;
        if taken
            .iter()
            .all(|k| (k.0.translation.vector - t).norm() > PLACE_SPACING)
        {
            taken.push(r);
        }
    }
    taken
}

/// How many of `ranked` the prior depends on: the first `top_k`, through the first hit beyond
/// ALT_RADIUS and through the last of the distinct places (what `evaluate` writes to
/// candidates-*.jsonl, so that tools/python/fit_prior.py computes the same prior).
pub fn hits_used(ranked: &[(Pose, f64)], top_k: usize) -> usize {
    let Some((p1, _)) = ranked.first() else {
        return 0;
    };
    let considered = &ranked[..ranked.len().min(QUALITY_HITS)];
    let t1 = p1.translation.vector;
    let far = considered
        .iter()
        .position(|(p, _)| (p.translation.vector - t1).norm() > ALT_RADIUS)
        .map_or(considered.len(), |i| i + 1);
    let last_place = distinct_places(considered)
        .last()
        .and_then(|last| considered.iter().position(|r| std::ptr::eq(r, *last)))
        .map_or(0, |i| i + 1);
    top_k.min(considered.len()).max(far).max(last_place)
}

/// The weight of the candidates' spread at `confidence` (in [0, 1], as [`confidence`] gives
/// it): WRONG_SCALE max(0, 1 - c / CONFIDENT).
pub fn wrong_weight(confidence: f64) -> f64 {
    WRONG_SCALE * unsure_share(confidence)
}

/// The position floor (metres squared per axis) of a prior under the sequence filter, for a
/// frame whose own single-frame confidence is `frame_confidence` (not finite: 0):
/// (FILTER_POSITION_CALIBRATION + FILTER_UNSURE_CALIBRATION max(0, 1 - c / CONFIDENT))
/// SIGMA_POSITION^2: the belief says which place, this how far from that place's image the
/// camera may be. The prior [`pose_prior`] gives for the filter's pick has it; the caller adds
/// the belief's reach.
pub fn filter_floor(frame_confidence: f64) -> f64 {
    (FILTER_POSITION_CALIBRATION + FILTER_UNSURE_CALIBRATION * unsure_share(frame_confidence))
        * SIGMA_POSITION.powi(2)
}

/// What the rotation floor gains (radians squared per axis) for a frame whose own
/// single-frame confidence is `frame_confidence`: ROTATION_UNSURE_CALIBRATION SIGMA_ROTATION^2
/// max(0, 1 - c / CONFIDENT); the caller adds it to the rotation block.
pub fn rotation_unsure_floor(frame_confidence: f64) -> f64 {
    ROTATION_UNSURE_CALIBRATION * SIGMA_ROTATION.powi(2) * unsure_share(frame_confidence)
}

/// max(0, 1 - c / CONFIDENT), c clamped to [0, 1] (not finite: 0, unsure).
fn unsure_share(frame_confidence: f64) -> f64 {
    let c = if frame_confidence.is_finite() {
        frame_confidence.clamp(0.0, 1.0)
    } else {
        0.0
    };
    (1.0 - c / CONFIDENT).max(0.0)
}

/// Translation and world-frame rotation-vector offsets of `pk` from `p1`.
fn offsets(p1: &Pose, pk: &Pose) -> (Vector3<f64>, Vector3<f64>) {
    let dt = pk.translation.vector - p1.translation.vector;
    let rv = p1.rotation * (p1.rotation.inverse() * pk.rotation).scaled_axis();
    (dt, rv)
}

/// The prior from candidates' poses and descriptor distances, best first (the formula above).
pub fn prior_from_ranked(ranked: &[(Pose, f64)], top_k: usize) -> Option<PosePrior> {
    prior_with_confidence(ranked, top_k, None)
}

fn prior_with_confidence(
    ranked: &[(Pose, f64)],
    top_k: usize,
    filter: Option<FilterPick>,
) -> Option<PosePrior> {
    let (p1, d1) = ranked.first()?;
    let p1 = *p1;
    let d1 = d1.max(1e-12);
    let confidence = match filter {
        Some(f) if f.mass.is_finite() => f.mass.clamp(0.0, 1.0),
        Some(_) => 0.0,
        None => confidence(ranked),
    };
    // Chosen by the sequence filter: the chosen row alone, the floors.
    let own = if filter.is_some() { 1 } else { top_k.max(1) };
    let (mut at, mut ar, mut wsum) = (Matrix3::zeros(), Matrix3::zeros(), 0.0);
    for (pk, dk) in ranked.iter().take(own) {
        // Distances below the best's (rounding) count as the best's; a non-finite one not.
        let w = if dk.is_finite() {
            (-(dk.max(d1) / d1 - 1.0) / TAU).exp()
        } else {
            0.0
        };
        let (dt, rv) = offsets(&p1, pk);
        at += w * dt * dt.transpose();
        ar += w * rv * rv.transpose();
        wsum += w;
    }
    let wsum = wsum.max(1e-300);
    let spread = if filter.is_some() {
        Vec::new()
    } else {
        distinct_places(ranked)
    };
    let (mut bt, mut br) = (Matrix3::zeros(), Matrix3::zeros());
    for (pk, _) in spread.iter().copied() {
        let (dt, rv) = offsets(&p1, pk);
        bt += dt * dt.transpose();
        br += rv * rv.transpose();
    }
    let n = spread.len().max(1) as f64;
    let a = if filter.is_some() {
        0.0
    } else {
        wrong_weight(confidence)
    };
    let st = match filter {
        // The chosen row has no spread of its own (`at` is 0) and no room for a wrong match:
        // the belief's reach, which the caller adds, holds the alternatives.
        Some(f) => Matrix3::identity() * filter_floor(f.frame_confidence),
        None => {
            (at / wsum + Matrix3::identity() * SIGMA_POSITION.powi(2)) * POSITION_CALIBRATION
                + bt * (a / n)
        }
    };
    let sr = ar / wsum + Matrix3::identity() * SIGMA_ROTATION.powi(2) + br * (a / n);
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
        confidence,
    })
}

/// An off-diagonal entry smaller than this share of the geometric mean of its two variances
/// (|c_rc| <= TIDY_RELATIVE sqrt(c_rr c_cc): a correlation coefficient of 1e-12) is rounding, not
/// correlation: a rotation vector between two images that face the same way comes out of the
/// logarithm as 1e-17 rather than 0, and its outer product as 1e-34.
pub const TIDY_RELATIVE: f64 = 1e-12;

/// The covariance as published: symmetric (the mean of an entry and its mirror) and with the
/// off-diagonal entries whose correlation is below TIDY_RELATIVE set to 0, so that a reader (the
/// JSON, a ROS message, a downstream filter) sees exact zeros where the prior has no
/// correlation. The diagonal is never changed (a variance, however small against another, is
/// not rounding), and entries that are not finite are left as they are.
pub fn tidy_covariance(cov: &mut [f64; 36]) {
    for r in 0..6 {
        for c in r + 1..6 {
            let (a, b) = (cov[r * 6 + c], cov[c * 6 + r]);
            if !(a.is_finite() && b.is_finite()) {
                continue;
            }
            let mut m = 0.5 * (a + b);
            let scale = (cov[r * 7] * cov[c * 7]).abs().sqrt();
            if scale.is_finite() && m.abs() <= TIDY_RELATIVE * scale {
                m = 0.0;
            }
            cov[r * 6 + c] = m;
            cov[c * 6 + r] = m;
        }
    }
}

/// The 3x3 position block of a row-major 6x6 covariance.
pub fn position_block(cov: &[f64; 36]) -> Matrix3<f64> {
    Matrix3::from_fn(|r, c| cov[r * 6 + c])
}

/// The rotation block (roll, pitch, yaw rows and columns) of a row-major 6x6 covariance.
pub fn rotation_block(cov: &[f64; 36]) -> Matrix3<f64> {
    Matrix3::from_fn(|r, c| cov[(r + 3) * 6 + c + 3])
}

/// Adds `m` to the position block (x, y, z rows and columns) of a row-major 6x6 covariance.
pub fn add_to_position_block(cov: &mut [f64; 36], m: &Matrix3<f64>) {
    add_to_block(cov, 0, m);
}

/// Adds `m` to the rotation block (roll, pitch, yaw rows and columns) of a row-major 6x6
/// covariance.
pub fn add_to_rotation_block(cov: &mut [f64; 36], m: &Matrix3<f64>) {
    add_to_block(cov, 3, m);
}

fn add_to_block(cov: &mut [f64; 36], first: usize, m: &Matrix3<f64>) {
    for r in 0..3 {
        for c in 0..3 {
            cov[(r + first) * 6 + c + first] += m[(r, c)];
        }
    }
}

/// The share of the turn to a neighbouring map image of the same camera that a query's
/// orientation may have beyond the published image's: a query lies between the map's images, up
/// to halfway to the next (for its position, `sequence::BETWEEN_SPACING`; geometry, not fitted).
pub const BETWEEN_ROTATION: f64 = 0.5;
/// The neighbouring images of a published one are the images of the same camera just before and
/// after it in the map's order (the data set's: time for recordings, RobotCar and KITTI, the
/// image index for Extended CMU-Seasons), when their centres lie within this many times the
/// map's spacing (`sequence::Places::spacing`, the median distance between its places) of its
/// centre: the next images along its own road, not another road's that crosses it, nor the
/// first image of another traversal.
pub const NEIGHBOUR_SPACINGS: f64 = 1.5;
/// A neighbour turned further than this (radians, 90 degrees) from the published image looks
/// another way (a vehicle turning round): a query is not between them.
pub const NEIGHBOUR_MAX_TURN: f64 = std::f64::consts::FRAC_PI_2;

/// The rotation floor between map images, about a prior whose orientation is the image's turned
/// by the world-frame rotation vector `turned` ([`turned_by`]; zero when not turned):
/// v v^T / CHI2_3_95 with v the largest of BETWEEN_ROTATION r_n - `turned` over the neighbours n
/// (r_n = [`world_turn`] from the image to n) and of -`turned` (the image's own orientation), so
/// that a query turned from the image halfway to any neighbour lies on or inside the 95% bound
/// of this term alone (exact when the turns share an axis, as at a bend, about the map's up). On
/// a straight road (the neighbours facing as the image does) it adds nothing; at a bend, where
/// consecutive images face tens of degrees apart, it widens the yaw.
pub fn between_rotation(
    image: &Pose,
    neighbours: impl Iterator<Item = Pose>,
    turned: &Vector3<f64>,
) -> Matrix3<f64> {
    let mut v = -turned;
    for n in neighbours {
        let w = world_turn(image, &n) * BETWEEN_ROTATION - turned;
        if w.norm() > v.norm() {
            v = w;
        }
    }
    v * v.transpose() / CHI2_3_95
}

/// The neighbouring images of map row `row` ([`NEIGHBOUR_SPACINGS`]): the rows of `camera` (None
/// or unknown: a map without camera ids, all of its `len` rows) just before and after it in the
/// map's order, within NEIGHBOUR_SPACINGS times `spacing` metres of it and turned at most
/// NEIGHBOUR_MAX_TURN from it. A binary search: the cost does not grow with the map.
pub fn neighbour_rows(
    index: &crate::retrieval::MapIndex,
    pose_of: impl Fn(usize) -> Pose,
    camera: Option<&str>,
    row: usize,
    len: usize,
    spacing: f64,
) -> Vec<usize> {
    let (before, after) = match camera.and_then(|c| index.by_camera.get(c)) {
        Some(rows) => match rows.binary_search(&row) {
            Ok(i) => (i.checked_sub(1).map(|j| rows[j]), rows.get(i + 1).copied()),
            Err(_) => (None, None),
        },
        None => (row.checked_sub(1), Some(row + 1).filter(|&r| r < len)),
    };
    let pose = pose_of(row);
    let radius = NEIGHBOUR_SPACINGS * spacing;
    [before, after]
        .into_iter()
        .flatten()
        .filter(|&r| {
            let n = pose_of(r);
            (n.translation.vector - pose.translation.vector).norm() <= radius
                && world_turn(&pose, &n).norm() <= NEIGHBOUR_MAX_TURN
        })
        .collect()
}

/// The exponent of the share of the turn towards the neighbouring image the frame matches
/// best ([`bend_share`]). Chosen on the validation worlds (2026-12-05) among 0 (always
/// halfway), 1, 2 and 4 by the mean (5 m, 10 deg) of cmu_calibration and the four validation
/// worlds, single frame and filter (docs/pose-prior.md, "Between map images").
pub const BEND_EXPONENT: f64 = 2.0;

/// The share of the turn from the chosen map image (descriptor distance `d1`) towards a
/// neighbouring one (`dn`) that the prior's orientation takes: BETWEEN_ROTATION (d1 / dn)^
/// BEND_EXPONENT, at most BETWEEN_ROTATION (halfway: beyond, the neighbour would be the nearer
/// image). 0 when the frame is the chosen image (d1 = 0) or a distance is not finite or
/// positive: the orientation stays the image's.
pub fn bend_share(d1: f64, dn: f64) -> f64 {
    if !(d1.is_finite() && dn.is_finite() && d1 > 0.0 && dn > 0.0) {
        return 0.0;
    }
    (BETWEEN_ROTATION * (d1 / dn).powf(BEND_EXPONENT)).min(BETWEEN_ROTATION)
}

/// The world-frame rotation vector that turns `from`'s orientation into `to`'s:
/// `R_to = exp([r]x) R_from`.
pub fn world_turn(from: &Pose, to: &Pose) -> Vector3<f64> {
    offsets(from, to).1
}

/// The pose of a map image's yaw view (`build-map --yaw-views`): the image's camera turned left
/// by `yaw_deg` degrees about its own y axis (right for a negative angle;
/// crate::map::views::view_from_cam), at the image's position.
pub fn viewed_from(image: &Pose, yaw_deg: f64) -> Pose {
    // world_from_view = world_from_cam cam_from_view, cam_from_view the transpose of
    // views::view_from_cam (whose rows are the view's axes in the camera's frame).
    let cam_from_view = nalgebra::Rotation3::from_matrix_unchecked(
        crate::map::views::view_from_cam(yaw_deg).transpose(),
    );
    Pose::from_parts(
        image.translation,
        image.rotation * nalgebra::UnitQuaternion::from_rotation_matrix(&cam_from_view),
    )
}

/// Whether a yaw view's orientation is used for a prior whose bend turn is `turned` (radians,
/// world frame; [`bend_share`]) on a map with views of `yaw_views_deg`: only where the bend's
/// turn is smaller than half the map's smallest view angle (a straight road: the bend's turn is
/// rounding there). At a bend the bend's turn governs, as without views.
pub fn view_applies(turned: &Vector3<f64>, yaw_views_deg: &[f64]) -> bool {
    let smallest = yaw_views_deg
        .iter()
        .map(|y| y.abs())
        .fold(f64::INFINITY, f64::min);
    smallest.is_finite() && turned.norm().to_degrees() < 0.5 * smallest
}

/// `image`'s pose with its orientation turned by the world-frame rotation vector `turn`
/// (`exp([turn]x) R_image`); the position is the image's.
pub fn turned_by(image: &Pose, turn: &Vector3<f64>) -> Pose {
    Pose::from_parts(
        image.translation,
        nalgebra::UnitQuaternion::from_scaled_axis(*turn) * image.rotation,
    )
}

/// chi-square 95% quantile, 3 degrees of freedom: the 95% position ellipsoid is
/// (t - mean)^T Sigma^-1 (t - mean) <= CHI2_3_95.
pub const CHI2_3_95: f64 = 7.814727903251178;

/// The longest semi-axis (metres) of the 95% position ellipsoid of `cov` (the "95% radius").
pub fn radius_95(cov: &[f64; 36]) -> f64 {
    let m = position_block(cov);
    let largest = m
        .symmetric_eigenvalues()
        .iter()
        .fold(0.0f64, |a, &b| a.max(b));
    (CHI2_3_95 * largest).sqrt()
}

/// The squared Mahalanobis distance of `truth` from `mean` under the position block of `cov`;
/// None when the block is singular.
pub fn mahalanobis2(cov: &[f64; 36], mean: &Vector3<f64>, truth: &Vector3<f64>) -> Option<f64> {
    let d = truth - mean;
    position_block(cov)
        .try_inverse()
        .map(|inv| (d.transpose() * inv * d)[(0, 0)])
}

/// The rotation from the prior's orientation to the true one as a rotation vector (radians) in
/// the world frame: log(R_prior^T R_truth) mapped by R_prior, the frame of the rotation block.
pub fn rotation_residual(prior: &Pose, truth: &Pose) -> Vector3<f64> {
    prior.rotation * (prior.rotation.inverse() * truth.rotation).scaled_axis()
}

/// The squared Mahalanobis distance of the true orientation from the prior's under the
/// rotation block of `cov`: the rotation vector log(R_prior^T R_truth) mapped to the world
/// frame, as the block's candidates' are; None when the block is singular.
pub fn rotation_mahalanobis2(cov: &[f64; 36], prior: &Pose, truth: &Pose) -> Option<f64> {
    let w = rotation_residual(prior, truth);
    rotation_block(cov)
        .try_inverse()
        .map(|inv| (w.transpose() * inv * w)[(0, 0)])
}

fn skew(v: &Vector3<f64>) -> Matrix3<f64> {
    Matrix3::new(0.0, -v.z, v.y, v.z, 0.0, -v.x, -v.y, v.x, 0.0)
}

/// The prior of base_link from the camera's: world_from_base = world_from_cam * cam_from_base.
/// To first order, a turn r of the camera (about the world's axes, as the rotation block is)
/// turns base_link by the same r and moves it by r x v = -`[v]x` r, v = the world-frame offset
/// from the camera to base_link: the covariance becomes J Sigma J^T with J = [[I, -[v]x], [0,
/// I]]. The rotation block is unchanged (one rigid body); the position block gains the lever
/// arm's share of the rotation uncertainty ([v]x Sigma_r [v]x^T), and position and rotation
/// become correlated (-[v]x Sigma_r): a yaw to the left moves a base_link behind the camera to
/// the right.
pub fn to_base(prior: &PosePrior, base_from_cam: &Pose) -> PosePrior {
    let world_from_base = prior.pose * base_from_cam.inverse();
    let v = world_from_base.translation.vector - prior.pose.translation.vector;
    let mut j = nalgebra::Matrix6::<f64>::identity();
    j.fixed_view_mut::<3, 3>(0, 3).copy_from(&-skew(&v));
    let sigma = nalgebra::Matrix6::from_row_slice(&prior.covariance);
    let moved = j * sigma * j.transpose();
    let mut cov = [0.0; 36];
    for r in 0..6 {
        for c in 0..6 {
            // Symmetric to the last bit (the product is, up to rounding).
            cov[r * 6 + c] = 0.5 * (moved[(r, c)] + moved[(c, r)]);
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

    #[test]
    fn tidy_covariance_zeroes_rounding_and_keeps_correlation() {
        let mut cov = [0.0; 36];
        for i in 0..6 {
            cov[i * 7] = if i < 3 { 4.0 } else { 0.0019 };
        }
        cov[1] = 0.5; // x-y correlation, real
        cov[6] = 0.5;
        cov[4 * 6 + 3] = 9.8e-35; // roll-pitch rounding
        cov[3 * 6 + 4] = 9.8e-35;
        // Below 1e-12 of sqrt(0.0019 * 0.0019) = 0.0019: rounding.
        cov[5 * 6 + 3] = 1e-15;
        cov[3 * 6 + 5] = 2e-15;
        // Above (1e-12 of sqrt(4 * 0.0019) = 8.7e-14): kept, made symmetric.
        cov[5] = 3e-13;
        cov[30] = 5e-13;
        cov[2] = 1e-3;
        cov[12] = 3e-3;
        tidy_covariance(&mut cov);
        assert_eq!(cov[1], 0.5);
        assert_eq!(cov[6], 0.5);
        assert_eq!(cov[4 * 6 + 3], 0.0);
        assert_eq!(cov[3 * 6 + 4], 0.0);
        assert_eq!(cov[5 * 6 + 3], 0.0);
        assert_eq!(cov[3 * 6 + 5], 0.0);
        assert_eq!(cov[5], 4e-13);
        assert_eq!(cov[30], 4e-13);
        assert_eq!(cov[2], 2e-3);
        assert_eq!(cov[12], 2e-3);
        for i in 0..6 {
            assert_eq!(cov[i * 7], if i < 3 { 4.0 } else { 0.0019 });
        }
        // A position spread of thousands of kilometres leaves the rotation variances alone.
        cov[0] = 1e13;
        tidy_covariance(&mut cov);
        assert_eq!(cov[3 * 7], 0.0019);
        assert_eq!(cov[5 * 7], 0.0019);
        // A non-finite entry is left as it is.
        cov[7] = f64::NAN;
        tidy_covariance(&mut cov);
        assert!(cov[7].is_nan());
        assert_eq!(cov[0], 1e13);
    }

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
        let prior = prior_from_ranked(&[(p, 1.0), (p, 2.0)], 5).unwrap();
        // No hit beyond 7.5 m: nothing else to confuse the place with, confidence 1.
        close(prior.confidence, 1.0, "confidence");
        assert_eq!(prior.pose, p);
        // No spread and a confident match: the floors alone (the 1 m^2 position floor times
        // POSITION_CALIBRATION).
        for i in 0..3 {
            close(
                prior.covariance[i * 7],
                POSITION_CALIBRATION,
                "position variance",
            );
            close(
                prior.covariance[(i + 3) * 7],
                SIGMA_ROTATION.powi(2),
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

    /// The fitted floor on maps up to 6 m apart; beyond, its sigma in proportion.
    #[test]
    fn a_sparse_map_widens_the_single_frame_floor_in_proportion() {
        for s in [0.0, 1.0, 2.5, 5.0, 6.0, f64::NAN] {
            assert_eq!(sparse_map_floor(s), 0.0, "{s}");
        }
        // 12 m: sigma doubled, the floor's square (1.5 m^2) four times: 4.5 m^2 more.
        assert!((sparse_map_floor(12.0) - 4.5).abs() < 1e-12);
        assert!(sparse_map_floor(6.6) > 0.0 && sparse_map_floor(6.6) < sparse_map_floor(9.0));
    }

    #[test]
    fn the_confidence_compares_the_best_match_with_the_best_elsewhere() {
        // Hits 5 m away are the same place (within 7.5 m): the alternative is the one 10 m away
        // at distance 1.25, not the second hit at 1.05.
        let ranked = [
            (at(0.0, 0.0, 0.0), 1.0),
            (at(5.0, 0.0, 0.0), 1.05),
            (at(-5.0, 0.0, 0.0), 1.1),
            (at(10.0, 0.0, 0.0), 1.25),
            (at(100.0, 0.0, 0.0), 1.3),
        ];
        close(confidence(&ranked), 1.0 - 1.0 / 1.25, "confidence");
        // Exactly 7.5 m is still the same place.
        let edge = [
            (at(0.0, 0.0, 0.0), 1.0),
            (at(7.5, 0.0, 0.0), 1.1),
            (at(8.0, 0.0, 0.0), 2.0),
        ];
        close(confidence(&edge), 0.5, "edge");
        // A dense map: 199 hits at the best's place, the alternative at rank 200 still counts;
        // one at rank 201 does not (confidence 1: no other place among the 200).
        let mut dense: Vec<(Pose, f64)> = (0..199).map(|_| (at(0.0, 0.0, 0.0), 1.0)).collect();
        dense.push((at(50.0, 0.0, 0.0), 2.5));
        close(confidence(&dense), 0.6, "rank 200");
        dense.insert(1, (at(1.0, 0.0, 0.0), 1.0));
        close(confidence(&dense), 1.0, "rank 201");
        assert_eq!(confidence(&[]), 0.0);
        assert_eq!(
            confidence(&[(at(0.0, 0.0, 0.0), 0.0), (at(9.0, 0.0, 0.0), 0.0)]),
            0.0
        );
    }

    #[test]
    fn negative_and_non_finite_distances_give_finite_priors() {
        // Cosine rounding: the best match at -1e-7, an alternative 10 m away at 0.5.
        let prior = prior_from_ranked(
            &[
                (at(0.0, 0.0, 0.0), -1e-7),
                (at(1.0, 0.0, 0.0), 0.2),
                (at(10.0, 0.0, 0.0), 0.5),
            ],
            5,
        )
        .unwrap();
        close(prior.confidence, 1.0, "confidence");
        assert!(prior.covariance.iter().all(|v| v.is_finite()), "{prior:?}");
        close(
            prior.covariance[0],
            POSITION_CALIBRATION,
            "xx: the 1 m floor, times POSITION_CALIBRATION",
        );
        // A NaN distance: confidence 0 (withheld at any min_confidence > 0, widest room).
        let nan = prior_from_ranked(
            &[(at(0.0, 0.0, 0.0), 0.1), (at(10.0, 0.0, 0.0), f64::NAN)],
            5,
        )
        .unwrap();
        assert_eq!(nan.confidence, 0.0);
        assert!(nan.covariance.iter().all(|v| v.is_finite()), "{nan:?}");
    }

    #[test]
    fn a_near_candidate_4_m_away_widens_x_by_its_weight() {
        // d2 / d1 = 1.05: weight exp(-(1.05 - 1) / 0.05) = exp(-1). The third hit, 20 m away
        // at distance 4, makes the confidence 1 - 2/4 = 0.5: no room for a wrong match; it is
        // beyond top_k 2, so it does not widen the match's own spread.
        let w = (-1.0f64).exp();
        let prior = prior_from_ranked(
            &[
                (at(0.0, 0.0, 0.0), 2.0),
                (at(4.0, 0.0, 0.0), 2.1),
                (at(20.0, 0.0, 0.0), 4.0),
            ],
            2,
        )
        .unwrap();
        close(prior.confidence, 0.5, "confidence");
        // The position block is POSITION_CALIBRATION times spread plus floor.
        let spread = w * 16.0 / (1.0 + w);
        let c = POSITION_CALIBRATION;
        close(prior.covariance[0], c * (spread + 1.0), "xx");
        close(prior.covariance[7], c, "yy");
        close(prior.covariance[14], c, "zz");
    }

    #[test]
    fn an_unsure_match_widens_towards_its_candidates() {
        // Two hits 10 m apart on x at distances 1 and 1.05: confidence 1 - 1/1.05 (below
        // CONFIDENT), weight a = WRONG_SCALE (1 - c / CONFIDENT) on the candidates' spread:
        // (0 + 100) / 2 on xx, added to the floor times POSITION_CALIBRATION.
        let c = 1.0 - 1.0 / 1.05;
        assert!(c < CONFIDENT);
        let a = WRONG_SCALE * (1.0 - c / CONFIDENT);
        close(wrong_weight(c), a, "weight");
        let prior =
            prior_from_ranked(&[(at(0.0, 0.0, 0.0), 1.0), (at(10.0, 0.0, 0.0), 1.05)], 1).unwrap();
        close(prior.confidence, c, "confidence");
        close(prior.covariance[0], POSITION_CALIBRATION + a * 50.0, "xx");
        close(prior.covariance[7], POSITION_CALIBRATION, "yy");
        // At confidence 0 the weight is the whole WRONG_SCALE; at CONFIDENT and above, none.
        close(wrong_weight(0.0), WRONG_SCALE, "at 0");
        close(wrong_weight(CONFIDENT / 2.0), WRONG_SCALE / 2.0, "half way");
        assert_eq!(wrong_weight(CONFIDENT), 0.0);
        assert_eq!(wrong_weight(CONFIDENT * 1.6), 0.0);
        assert_eq!(wrong_weight(0.9), 0.0);
    }

    #[test]
    fn the_room_for_a_wrong_match_counts_ten_distinct_places() {
        // 12 places 5 m apart on x, all at distance 1 (confidence 0, weight WRONG_SCALE), each seen
        // twice (a dense map: a second frame 1 m further on): the room is the first 10 places,
        // x = 0, 5, ..., 45, the second frames and the places at 50 and 55 left out.
        let mut ranked = Vec::new();
        for i in 0..12 {
            ranked.push((at(5.0 * i as f64, 0.0, 0.0), 1.0));
            ranked.push((at(5.0 * i as f64 + 1.0, 0.0, 0.0), 1.0));
        }
        let places = distinct_places(&ranked);
        assert_eq!(places.len(), 10);
        assert!(places
            .iter()
            .enumerate()
            .all(|(i, p)| p.0.translation.x == 5.0 * i as f64));
        let prior = prior_from_ranked(&ranked, 1).unwrap();
        close(prior.confidence, 0.0, "confidence");
        let mean_square: f64 = (0..10).map(|i| (5.0 * i as f64).powi(2)).sum::<f64>() / 10.0;
        close(
            prior.covariance[0],
            POSITION_CALIBRATION + WRONG_SCALE * mean_square,
            "xx",
        );
    }

    #[test]
    fn a_view_turns_the_image_about_its_own_y_axis_at_its_position() {
        // A camera at (1, 2, 3) looking along the world's x (its z), y down the world's -z.
        let r = nalgebra::Rotation3::from_matrix_unchecked(Matrix3::new(
            0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0,
        ));
        let image = Pose::from_parts(
            nalgebra::Translation3::new(1.0, 2.0, 3.0),
            nalgebra::UnitQuaternion::from_rotation_matrix(&r),
        );
        for yaw in [6.0f64, -3.0] {
            let v = viewed_from(&image, yaw);
            assert_eq!(v.translation, image.translation);
            // Turned left (towards the camera's -x, the world's +y here) for a positive angle.
            let forward = v.rotation * Vector3::z();
            let (s, c) = yaw.to_radians().sin_cos();
            assert!(
                (forward - Vector3::new(c, s, 0.0)).norm() < 1e-12,
                "{yaw}: {forward}"
            );
            // The camera's y (down) is unchanged by a yaw.
            assert!((v.rotation * Vector3::y() - image.rotation * Vector3::y()).norm() < 1e-12);
            let turn = world_turn(&image, &v);
            assert!((turn.norm() - yaw.abs().to_radians()).abs() < 1e-12);
        }
    }

    #[test]
    fn a_view_is_used_on_a_straight_road_not_at_a_bend() {
        let views = [3.0, -3.0, 6.0, -6.0];
        let yaw = |deg: f64| Vector3::new(0.0, 0.0, deg.to_radians());
        assert!(view_applies(&Vector3::zeros(), &views));
        assert!(view_applies(&yaw(1e-15), &views));
        assert!(view_applies(&yaw(1.4), &views));
        assert!(!view_applies(&yaw(1.5), &views));
        assert!(!view_applies(&yaw(-20.0), &views));
        assert!(!view_applies(&Vector3::zeros(), &[]));
    }

    #[test]
    fn the_filter_floor_grows_as_the_frame_is_less_sure_of_itself() {
        let base = FILTER_POSITION_CALIBRATION * SIGMA_POSITION.powi(2);
        // A frame sure of itself (at CONFIDENT or above) keeps the floor the prior has.
        for c in [CONFIDENT, 0.5, 1.0, 7.0] {
            close(filter_floor(c), base, "sure");
        }
        // Linear below CONFIDENT, the whole FILTER_UNSURE_CALIBRATION at 0 (and below 0, and
        // for a confidence that is not finite).
        close(
            filter_floor(0.5 * CONFIDENT),
            base + 0.5 * FILTER_UNSURE_CALIBRATION * SIGMA_POSITION.powi(2),
            "half",
        );
        for c in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            close(
                filter_floor(c),
                base + FILTER_UNSURE_CALIBRATION * SIGMA_POSITION.powi(2),
                "unsure",
            );
        }
        assert!(filter_floor(0.05) > filter_floor(0.1));
        // The rotation floor's growth, alike.
        close(rotation_unsure_floor(0.3), 0.0, "rotation, sure");
        close(
            rotation_unsure_floor(f64::NAN),
            ROTATION_UNSURE_CALIBRATION * SIGMA_ROTATION.powi(2),
            "rotation, unsure",
        );
        close(
            rotation_unsure_floor(0.25 * CONFIDENT),
            0.75 * ROTATION_UNSURE_CALIBRATION * SIGMA_ROTATION.powi(2),
            "rotation, a quarter sure",
        );
    }

    #[test]
    fn with_the_filter_the_chosen_row_gets_the_floors_and_its_mass() {
        // The filter chose a row whose own distance is worse than the frame's next hits: no
        // weights from the others, no room for a wrong match (the caller adds the posterior's
        // spread); the confidence is the mass given, NaN counting as 0.
        let ranked = [
            (at(0.0, 0.0, 0.0), 2.0),
            (at(30.0, 0.0, 0.0), 1.0),
            (at(60.0, 0.0, 0.0), 1.1),
        ];
        let pick = |mass, frame_confidence| {
            prior_with_confidence(
                &ranked,
                5,
                Some(FilterPick {
                    mass,
                    frame_confidence,
                }),
            )
            .unwrap()
        };
        // A frame sure of itself: the filter's floor; one unsure of itself: the floor grown by
        // FILTER_UNSURE_CALIBRATION (filter_floor).
        let p = pick(0.01, CONFIDENT);
        close(p.confidence, 0.01, "mass");
        close(p.covariance[0], FILTER_POSITION_CALIBRATION, "xx");
        close(p.covariance[35], SIGMA_ROTATION.powi(2), "yaw");
        let unsure = pick(0.01, 0.0);
        close(
            unsure.covariance[14],
            FILTER_POSITION_CALIBRATION + FILTER_UNSURE_CALIBRATION,
            "zz, unsure",
        );
        close(unsure.covariance[35], SIGMA_ROTATION.powi(2), "yaw, unsure");
        assert_eq!(pick(f64::NAN, 1.0).confidence, 0.0);
        assert_eq!(pick(7.0, 1.0).confidence, 1.0);
    }

    #[test]
    fn a_single_hit_is_confident_with_the_floors() {
        let prior = prior_from_ranked(&[(at(1.0, 2.0, 0.0), 0.7)], 5).unwrap();
        // Nothing else was searched (a geo-gate with one image): confidence 1, the floors.
        assert_eq!(prior.confidence, 1.0);
        close(prior.covariance[0], POSITION_CALIBRATION, "xx");
        close(prior.covariance[35], SIGMA_ROTATION.powi(2), "yaw");
        assert!(prior_from_ranked(&[], 5).is_none());
    }

    /// On a straight road the neighbouring images face as the image does: nothing added. At a
    /// bend the most turned neighbour's half turn lies on the 95% bound; one turned round (the
    /// road's other direction) does not count, nor does another camera's image.
    #[test]
    fn a_bend_widens_the_yaw_by_half_the_turn_to_the_neighbours() {
        let none = Vector3::zeros();
        let straight = between_rotation(
            &at(5.0, 0.0, 0.0),
            [at(0.0, 0.0, 0.0), at(10.0, 0.0, 0.0)].into_iter(),
            &none,
        );
        assert_eq!(straight, Matrix3::zeros());
        let turn = std::f64::consts::FRAC_PI_4;
        let sides = [at(10.0, 0.0, 0.0), at(16.0, 6.0, 2.0 * turn)];
        let bend = between_rotation(&at(14.0, 2.0, turn), sides.into_iter(), &none);
        close(bend[(2, 2)], (0.5 * turn).powi(2) / CHI2_3_95, "yaw");
        close(bend[(0, 0)], 0.0, "roll");
        close(bend[(1, 1)], 0.0, "pitch");
        // A query turned halfway to the neighbour: squared Mahalanobis distance 7.81 (the 95%
        // bound) under this term alone.
        let bound = |m: &Matrix3<f64>| {
            let mut cov = [0.0; 36];
            add_to_rotation_block(&mut cov, &(m + Matrix3::identity() * 1e-12));
            cov
        };
        let m = rotation_mahalanobis2(
            &bound(&bend),
            &at(14.0, 2.0, turn),
            &at(14.0, 2.0, 1.5 * turn),
        );
        assert!((m.unwrap() - CHI2_3_95).abs() < 1e-6, "{m:?}");
        // The prior turned a quarter of the way to the second: the halfway point to the first
        // is then 0.5 + 0.25 of the turn away, and lies on the bound.
        let turned = Vector3::z() * (0.25 * turn);
        let wider = between_rotation(&at(14.0, 2.0, turn), sides.into_iter(), &turned);
        close(
            wider[(2, 2)],
            (0.75 * turn).powi(2) / CHI2_3_95,
            "turned yaw",
        );
        let m = rotation_mahalanobis2(
            &bound(&wider),
            &at(14.0, 2.0, 1.25 * turn),
            &at(14.0, 2.0, 0.5 * turn),
        );
        assert!((m.unwrap() - CHI2_3_95).abs() < 1e-6, "{m:?}");
        // Through the map's rows: the images of c0 just before and after in the map's order,
        // within 1.5 spacings, turned at most 90 degrees. Not c1's image beside the bend, nor
        // c0's image of a road crossing there later in the map (row 8), nor a far one (row 6),
        // nor one turned round (row 7 after row 6).
        let rows = [
            ("c0", at(0.0, 0.0, 0.0)),
            ("c0", at(5.0, 0.0, 0.0)),
            ("c0", at(10.0, 0.0, 0.0)),
            ("c0", at(14.0, 2.0, turn)),
            ("c1", at(14.0, 2.5, -turn)),
            ("c0", at(16.0, 6.0, 2.0 * turn)),
            ("c0", at(16.0, 30.0, 2.0 * turn)),
            ("c0", at(16.0, 33.0, -2.0 * turn)),
            ("c0", at(14.5, 2.5, 0.5 * turn)),
        ];
        let cameras: Vec<String> = rows.iter().map(|(c, _)| c.to_string()).collect();
        let index = crate::retrieval::MapIndex::from_parts(
            &cameras,
            rows.iter().map(|(_, p)| {
                let t = p.translation.vector;
                [t.x, t.y, t.z]
            }),
        );
        let pose_of = |r: usize| rows[r].1;
        let near = |r: usize| neighbour_rows(&index, pose_of, Some("c0"), r, rows.len(), 4.5);
        let of = |r: usize| between_rotation(&pose_of(r), near(r).into_iter().map(pose_of), &none);
        assert_eq!(near(3), vec![2, 5], "c0's images beside the bend's");
        assert_eq!(near(5), vec![3], "the next is far");
        assert!(near(6).is_empty(), "far, then turned round");
        assert!(
            near(8).is_empty(),
            "the crossing road's image is last in the map"
        );
        // A map without camera ids: its rows' order.
        assert_eq!(
            neighbour_rows(&index, pose_of, None, 1, rows.len(), 4.5),
            vec![0, 2]
        );
        close(
            of(3)[(2, 2)],
            (0.5 * turn).powi(2) / CHI2_3_95,
            "the bend's yaw",
        );
        close(
            of(2)[(2, 2)],
            (0.5 * turn).powi(2) / CHI2_3_95,
            "before the bend",
        );
        assert_eq!(of(1), Matrix3::zeros(), "on the straight");
    }

    /// The prior turns towards the neighbour the frame matches best: halfway when it matches
    /// as well as the chosen image, less as it matches worse, not at all for the image itself.
    #[test]
    fn the_prior_turns_towards_the_better_matching_neighbour_at_a_bend() {
        close(bend_share(0.2, 0.2), BETWEEN_ROTATION, "as close");
        close(
            bend_share(0.2, 0.4),
            BETWEEN_ROTATION * 0.5f64.powf(BEND_EXPONENT),
            "twice as far",
        );
        close(
            bend_share(0.4, 0.2),
            BETWEEN_ROTATION,
            "closer (under the filter): halfway",
        );
        for (d1, dn) in [
            (0.0, 0.3),
            (0.2, 0.0),
            (f64::NAN, 0.3),
            (0.2, f64::INFINITY),
        ] {
            assert_eq!(bend_share(d1, dn), 0.0, "{d1} {dn}");
        }
        let image = at(14.0, 2.0, 0.8);
        let turned = turned_by(&image, &(world_turn(&image, &at(16.0, 6.0, 1.6)) * 0.25));
        assert_eq!(
            turned.translation, image.translation,
            "the position is the image's"
        );
        let (roll, pitch, yaw) = turned.rotation.euler_angles();
        close(yaw, 1.0, "a quarter of the turn");
        assert!(roll.abs() < 1e-12 && pitch.abs() < 1e-12);
        // Cameras that do not share an axis (optical frames, pitched): the whole turn reaches
        // the other's orientation exactly, so the frame and the order are right.
        let cam = |yaw: f64, pitch: f64| {
            Pose::from_parts(
                Translation3::new(1.0, 2.0, 3.0),
                UnitQuaternion::from_euler_angles(0.0, 0.0, yaw)
                    * UnitQuaternion::from_euler_angles(-1.4, pitch, 0.2),
            )
        };
        let (a, b) = (cam(0.3, 0.1), cam(1.1, -0.2));
        let whole = turned_by(&a, &world_turn(&a, &b));
        assert!(whole.rotation.angle_to(&b.rotation) < 1e-12);
        assert!(
            turned_by(&a, &Vector3::zeros())
                .rotation
                .angle_to(&a.rotation)
                < 1e-12
        );
    }

    #[test]
    fn an_equally_close_rotated_candidate_widens_yaw() {
        // Both at distance 1 at one place (weights 1), the second turned 0.1 rad about z: the
        // mean outer product of the rotation vectors is 0.01 / 2 on yaw; confidence 1 (no other
        // place), so no room for a wrong match.
        let prior =
            prior_from_ranked(&[(at(0.0, 0.0, 0.0), 1.0), (at(0.0, 0.0, 0.1), 1.0)], 5).unwrap();
        close(prior.confidence, 1.0, "confidence");
        close(prior.covariance[35], 0.005 + SIGMA_ROTATION.powi(2), "yaw");
        close(prior.covariance[21], SIGMA_ROTATION.powi(2), "roll");
        close(prior.covariance[0], POSITION_CALIBRATION, "xx");
    }

    #[test]
    fn a_zero_best_distance_does_not_divide_by_zero() {
        let p = at(0.0, 0.0, 0.0);
        let prior = prior_from_ranked(&[(p, 0.0), (at(10.0, 0.0, 0.0), 0.5)], 5).unwrap();
        close(prior.confidence, 1.0, "confidence");
        assert!(prior.covariance.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_95_radius_and_the_mahalanobis_distance() {
        let mut cov = [0.0; 36];
        cov[0] = 4.0;
        cov[7] = 1.0;
        cov[14] = 9.0;
        // Longest semi-axis: sqrt(7.8147 * 9).
        close(radius_95(&cov), (CHI2_3_95 * 9.0).sqrt(), "radius");
        let m = mahalanobis2(&cov, &Vector3::zeros(), &Vector3::new(2.0, 1.0, 3.0)).unwrap();
        close(m, 3.0, "1 + 1 + 1");
        assert!(mahalanobis2(&[0.0; 36], &Vector3::zeros(), &Vector3::x()).is_none());
        // The rotation block: (2 deg)^2 on each axis; a truth turned 4 degrees about the
        // world's z from a prior facing anywhere is 2 sigma off: 4 whatever the prior's own
        // orientation (the block is in the world frame).
        let mut cov = [0.0; 36];
        for i in 3..6 {
            cov[i * 6 + i] = 2f64.to_radians().powi(2);
        }
        for facing in [0.0f64, 1.0, 2.5] {
            let prior = Pose::from_parts(
                nalgebra::Translation3::new(1.0, 2.0, 3.0),
                nalgebra::UnitQuaternion::from_euler_angles(0.3, -0.2, facing),
            );
            let truth = Pose::from_parts(
                prior.translation,
                nalgebra::UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 4f64.to_radians())
                    * prior.rotation,
            );
            let m = rotation_mahalanobis2(&cov, &prior, &truth).unwrap();
            assert!((m - 4.0).abs() < 1e-9, "{facing}: {m}");
        }
        assert!(rotation_mahalanobis2(&[0.0; 36], &Pose::identity(), &Pose::identity()).is_none());
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

    /// base_link's pose as a function of a small change of the camera's: a shift e (world
    /// frame) and a turn r (about the world's axes, the rotation block's convention); returned
    /// as base_link's shift and turn against its unperturbed pose.
    fn base_change(cam: &Pose, bc: &Pose, e: &Vector3<f64>, r: &Vector3<f64>) -> [f64; 6] {
        let base0 = cam * bc.inverse();
        let turned = Pose::from_parts(
            Translation3::from(cam.translation.vector + e),
            UnitQuaternion::from_scaled_axis(*r) * cam.rotation,
        );
        let base = turned * bc.inverse();
        let dt = base.translation.vector - base0.translation.vector;
        let dr = (base.rotation * base0.rotation.inverse()).scaled_axis();
        [dt.x, dt.y, dt.z, dr.x, dr.y, dr.z]
    }

    #[test]
    fn base_prior_is_the_camera_prior_carried_through_the_extrinsic_to_first_order() {
        // A full covariance (correlated position and rotation), a camera turned and tilted, an
        // extrinsic with a lever arm on every axis and a rotation (optical frame to base_link).
        let l = nalgebra::Matrix6::<f64>::from_fn(|r, c| {
            if r == c {
                [1.2, 0.8, 0.3, 0.05, 0.02, 0.08][r]
            } else if r > c {
                0.01 * (r as f64 - c as f64)
            } else {
                0.0
            }
        });
        let sigma = l * l.transpose();
        let mut cov = [0.0; 36];
        for r in 0..6 {
            for c in 0..6 {
                cov[r * 6 + c] = sigma[(r, c)];
            }
        }
        let cam = Pose::from_parts(
            Translation3::new(10.0, -4.0, 1.5),
            UnitQuaternion::from_euler_angles(0.1, -0.2, 0.7),
        );
        let bc = Pose::from_parts(
            Translation3::new(0.3, -1.4, 1.9),
            UnitQuaternion::from_euler_angles(-1.5, 0.05, -1.6),
        );
        let prior = PosePrior {
            pose: cam,
            covariance: cov,
            confidence: 0.5,
        };
        let b = to_base(&prior, &bc);
        // The Jacobian of base_link's change by the camera's, by central differences.
        let h = 1e-6;
        let mut j = nalgebra::Matrix6::<f64>::zeros();
        for k in 0..6 {
            let mut d = [0.0; 6];
            d[k] = h;
            let plus = base_change(
                &cam,
                &bc,
                &Vector3::new(d[0], d[1], d[2]),
                &Vector3::new(d[3], d[4], d[5]),
            );
            let minus = base_change(
                &cam,
                &bc,
                &Vector3::new(-d[0], -d[1], -d[2]),
                &Vector3::new(-d[3], -d[4], -d[5]),
            );
            for i in 0..6 {
                j[(i, k)] = (plus[i] - minus[i]) / (2.0 * h);
            }
        }
        let want = j * sigma * j.transpose();
        for r in 0..6 {
            for c in 0..6 {
                let got = b.covariance[r * 6 + c];
                assert!(
                    (got - want[(r, c)]).abs() < 1e-6,
                    "({r}, {c}): {got} against {}",
                    want[(r, c)]
                );
                assert_eq!(got, b.covariance[c * 6 + r], "symmetric ({r}, {c})");
            }
        }
        // Position and rotation are correlated through the lever arm.
        assert!(b.covariance[5].abs() > 1e-3, "{}", b.covariance[5]);
    }
}
