"""Fits and checks the sequence filter's position block from `dasgil-tools evaluate --filter
sequence` outputs: SPREAD_MASS, the share of its belief that the published 95% position
ellipsoid reaches (src/localize/sequence.rs), and (`--unsure`) FILTER_UNSURE_CALIBRATION, how
much the floor under it grows for a frame unsure of itself (src/localize/prior.rs;
docs/pose-prior.md, docs/sequence-filter.md). Each folder's candidates-none.jsonl holds, per
scored query, its true camera position, the published position (the first candidate), the
belief about it (`belief_profile`: {"ground", "height", "share"} per place holding belief of its
own, nearest on the ground first; metres along and perpendicular to the map's up, shares
summing to 1), the map's up direction (`up`, a unit vector in the map's world frame), how far the
vehicle may have driven past a map's end (`beyond_end`, metres, 0 elsewhere), the frame's own
single-frame confidence (`frame_confidence`), evaluate's own confidence, 95% radius and
Mahalanobis distance, and the map's spacing (`map_spacing`, metres: the median distance from a
place to its nearest other place).

    python tools/python/fit_sequence_spread.py --fit OUT1 OUT2 OUT3 --check OUT4
    python tools/python/fit_sequence_spread.py --unsure --fit OUT1 ... OUT7 --check OUT8

The prior's position block with the filter is F I + (R + B)^2 / 7.81 (I - u u^T) + H^2 / 7.81
u u^T: u the map's up, R the ground distance within which SPREAD_MASS of the belief lies
(cumulated outwards, linearly between places, from 0 at 0), at least BETWEEN_SPACING times the
map's spacing, B `beyond_end`, H the largest height difference of a place within the distance
SPREAD_MASS gives, and F the floor, (FILTER_POSITION_CALIBRATION + FILTER_UNSURE_CALIBRATION
max(0, 1 - c / CONFIDENT)) SIGMA_POSITION^2 with c the frame's own confidence: the belief holds
which place, the floor how far from that place's image the camera may be (beside the mapped
road, between two images), which a frame that resembles its best image less (a lower c) leaves
wider.
First this script recomputes evaluate's 95% radius and Mahalanobis distance with the shipped
constants and stops if a query differs (the formula here must stay the one in the Rust).
SPREAD_MASS (the default): it chooses a coverage target as tools/python/fit_prior.py does (the
lowest of 95%, 95.5%, ... 99.5% at which a fit on all --fit worlds but one covers the one left
out at 95%, each in turn), keeps the smallest SPREAD_MASS of a grid (0.50 to 0.99) whose 95%
ellipsoids hold the truth for at least that share of the published priors of the --fit worlds
pooled (not on each: a world may get less), prints the tables (shipped and fitted) for the
--fit and --check worlds, then the leave-one-world-out checks at that target.
FILTER_UNSURE_CALIBRATION (`--unsure`, SPREAD_MASS kept): the smallest value of a grid (0 to 5,
steps of 0.25) at which every --fit world holds the truth inside the 95% ellipsoid for 95% of
its published priors, or would with one prior more inside (one prior is the resolution of a
world's share; for a world of at least 20 published priors: without that tolerance, a world at 94.6% for every value up to 4 and 95.3%
from 4.25, one prior of 149, chose a floor nearly three times as wide; 2026-12-07), leaving
out of the choice a world that no value of the grid brings there (its misses lie further off
than any floor reaches: runs on a wrong stretch of road, which the belief's reach, not the
floor, must hold); the same tables and leave-one-world-out checks.

numpy only. Camera poses (no base_link); the priors scored are those evaluate published (its
`published`: the off-the-map test withholds some) and, of those, the ones at --min-confidence or
above (their share is printed): --min-confidence can withhold more than evaluate did, not less.
"""

import os

import numpy as np

from fit_prior import (CHI2_3_95, arguments, fail, json_lines, median, parse, smallest_holding,
                       unsure_share)

# SPREAD_MASS in src/localize/sequence.rs.
SHIPPED = 0.73
# FILTER_POSITION_CALIBRATION * SIGMA_POSITION^2 in src/localize/prior.rs (SIGMA_POSITION 1 m).
FLOOR = 0.6 * 1.0 ** 2
# FILTER_UNSURE_CALIBRATION * SIGMA_POSITION^2 there (CONFIDENT: fit_prior.unsure_share).
UNSURE = 2.0
UNSURE_GRID = [0.25 * i for i in range(21)]
# BETWEEN_SPACING in src/localize/sequence.rs.
BETWEEN_SPACING = 0.5
GRID = [round(0.50 + 0.01 * i, 2) for i in range(50)]
TARGET = 0.95


def reach_of(profile, share):
    """src/localize/sequence.rs reach_of."""
    prev_d, prev_acc = 0.0, 0.0
    for d, _, m in profile:
        acc = prev_acc + m
        if acc >= share:
            if acc > prev_acc:
                return prev_d + (d - prev_d) * min(max((share - prev_acc) / (acc - prev_acc), 0.0), 1.0)
            return d
        prev_d, prev_acc = d, acc
    return prev_d


def load(folder):
    if not os.path.isdir(folder):
        fail(f"{folder}: no such folder (give `dasgil-tools evaluate --filter sequence --out` folders)")
    path = os.path.join(folder, "candidates-none.jsonl")
    if not os.path.isfile(path):
        fail(f"{path}: missing; run `dasgil-tools evaluate --filter sequence ... --out {folder}`")
    queries = []
    for where, q in json_lines(path, "`truth`, `candidates` and `belief_profile`"):
        if q.get("gate_empty"):
            fail(f"{where}: field `gate_empty` is true: evaluate --gate-radius found no map image "
                 "in this query's gate, so its row is a single-frame search of the whole map, not "
                 "a step of the filter; fit on a run without --gate-radius")
        if q.get("filter") != "sequence":
            fail(f"{where}: field `filter`: expected \"sequence\", found {q.get('filter')!r} "
                 "(run evaluate with --filter sequence)")
        try:
            truth = np.array(q["truth"], dtype=float)
            best = np.array(q["candidates"][0][1:4], dtype=float)
            up = np.array(q["up"], dtype=float)
            profile = [(float(p["ground"]), float(p["height"]), float(p["share"]))
                       for p in q["belief_profile"]]
            conf = float(q["confidence"])
            published = bool(q.get("published", True))
            beyond = float(q.get("beyond_end") or 0.0)
            spacing = float(q["map_spacing"])
            frame = float(q["frame_confidence"])
        except (KeyError, IndexError, ValueError, TypeError) as e:
            fail(f"{where}: expected `truth` [x, y, z], `candidates` [[distance, x, y, z], ...], "
                 f"`up` [x, y, z], `belief_profile` [{{\"ground\", \"height\", \"share\"}}, ...], "
                 f"`confidence`, `frame_confidence` and `map_spacing` (runs of evaluate before "
                 f"2026-12-03 lack `map_spacing`: run it again): {e!r}")
        if truth.shape != (3,) or best.shape != (3,) or up.shape != (3,):
            fail(f"{where}: `truth`, the first candidate and `up` must be [x, y, z]")
        if not profile:
            fail(f"{where}: field `belief_profile`: expected one or more places, found []")
        # Published: evaluate's flag (the off-the-map test withholds too), at --min-confidence.
        queries.append((truth - best, up, profile, (beyond, spacing), conf if published else -1.0,
                        q.get("radius_95"), q.get("mahalanobis2"), frame))
    if not queries:
        fail(f"{path}: no queries (an evaluate run without ground truth?)")
    check_reproduction(path, queries)
    return queries


def floor_of(frame_confidence, unsure=None):
    """The floor F (m^2 per axis) for a frame of this single-frame confidence, as
    src/localize/prior.rs filter_floor (a confidence that is not finite counts as 0)."""
    unsure = UNSURE if unsure is None else unsure
    return FLOOR + unsure * unsure_share(frame_confidence)


def reach(profile, beyond_spacing, share):
    """(G, H): the ground reach (at least BETWEEN_SPACING of the map's spacing, plus how far past
    a map's end) and the largest height difference within it."""
    beyond, spacing = beyond_spacing
    r = reach_of(profile, share)
    h = max([abs(height) for ground, height, _ in profile if ground <= r], default=0.0)
    # At least half the map's spacing; on past a map's end (`beyond_end`).
    return max(r, BETWEEN_SPACING * spacing) + beyond, h


def covariance(up, profile, beyond_spacing, share, floor):
    """The position block (3 x 3), as src/localize/sequence.rs and src/localize/mod.rs build it."""
    g, h = reach(profile, beyond_spacing, share)
    vertical = np.outer(up, up)
    return floor * np.eye(3) + (g * g * (np.eye(3) - vertical) + h * h * vertical) / CHI2_3_95


class World:
    """A world's published priors, ready to score for any SPREAD_MASS and
    FILTER_UNSURE_CALIBRATION of the grids.

    The block is F I + G^2 / 7.81 (I - u u^T) + H^2 / 7.81 u u^T, whose eigenvectors are the
    ground plane and up: the Mahalanobis distance of an offset o is |o_ground|^2 / (F + G^2 /
    7.81) + (o . u)^2 / (F + H^2 / 7.81) and the 95% radius sqrt(7.81 times the larger of the
    two), so the grids score without a solve per query."""

    def __init__(self, queries, min_confidence):
        kept = [q for q in queries if q[4] >= min_confidence]
        self.published = len(kept) / len(queries)
        off = np.array([q[0] for q in kept]).reshape(-1, 3)
        up = np.array([q[1] for q in kept]).reshape(-1, 3)
        along = np.einsum("ij,ij->i", off, up)
        self.vertical2 = along ** 2
        self.ground2 = np.maximum(np.einsum("ij,ij->i", off, off) - self.vertical2, 0.0)
        self.error = np.linalg.norm(off, axis=1)
        # The unsure share of the floor: max(0, 1 - c / CONFIDENT).
        self.unsure = np.array([floor_of(q[7], 1.0) - FLOOR for q in kept])
        gh = np.array([[reach(q[2], q[3], s) for q in kept] for s in GRID]).reshape(len(GRID), -1, 2)
        self.g2 = gh[:, :, 0] ** 2 / CHI2_3_95
        self.h2 = gh[:, :, 1] ** 2 / CHI2_3_95

    def scores(self, share, unsure):
        i = GRID.index(share)
        floor = FLOOR + unsure * self.unsure
        ground = floor + self.g2[i]
        up = floor + self.h2[i]
        inside = self.ground2 / ground + self.vertical2 / up <= CHI2_3_95
        radius = np.sqrt(CHI2_3_95 * np.maximum(ground, up))
        return inside, radius, self.error, self.published


def check_reproduction(path, queries):
    off = 0
    for offset, up, profile, beyond_spacing, _, r95, m2, frame in queries:
        cov = covariance(up, profile, beyond_spacing, SHIPPED, floor_of(frame))
        radius = np.sqrt(CHI2_3_95 * np.linalg.eigvalsh(cov)[-1])
        maha = offset @ np.linalg.solve(cov, offset)
        close = lambda x, y: y is not None and abs(x - y) <= 1e-6 * max(1.0, abs(y))
        if not (close(radius, r95) and close(maha, m2)):
            off += 1
    if off:
        fail(f"{path}: {off} of {len(queries)} queries differ from what evaluate computed (95% "
             "radius or Mahalanobis distance): this script and src/localize/sequence.rs disagree, "
             "or SHIPPED, FLOOR and UNSURE here and fit_prior.py's CONFIDENT are not the "
             "binary's SPREAD_MASS, FILTER_POSITION_CALIBRATION, FILTER_UNSURE_CALIBRATION "
             "and CONFIDENT")


def fit(worlds, target=TARGET):
    """The smallest SPREAD_MASS of the grid whose ellipsoids hold the truth for `target` of the
    worlds' published priors pooled (FILTER_UNSURE_CALIBRATION as shipped); None if none does."""
    for share in GRID:
        inside = np.concatenate([w.scores(share, UNSURE)[0] for w in worlds])
        if len(inside) and inside.mean() >= target:
            return share
    return None


def holds(w, u):
    """Whether world `w` holds the truth for TARGET of its published priors at
    FILTER_UNSURE_CALIBRATION `u` (SPREAD_MASS as shipped), or would with one prior more inside
    (the resolution of its share), that tolerance only for a world of at least 1 / (1 - TARGET)
    published priors (20: with fewer, one prior is 5% or more). The tolerance was added after
    seeing that it keeps the shipped 1.5 where the strict rule gave 4.25 (the module
    docstring)."""
    inside = w.scores(SHIPPED, u)[0]
    n = len(inside)
    if n == 0:
        return True
    tolerance = 1 if n >= 1.0 / (1.0 - TARGET) - 1e-9 else 0
    return (inside.sum() + tolerance) / n >= TARGET


def fit_unsure(worlds):
    """The smallest FILTER_UNSURE_CALIBRATION of the grid at which every world that some value
    of the grid brings to TARGET holds (`holds`: one prior's tolerance) the truth for TARGET of
    its published priors (SPREAD_MASS as shipped). A world that no value brings there (its
    misses lie further off than any floor reaches: runs on a wrong stretch of road) does not
    choose; None when no world chooses (fit_prior.smallest_holding)."""
    return smallest_holding(UNSURE_GRID, worlds, holds)


# Coverage targets tried, lowest first (as tools/python/fit_prior.py's).
TARGETS = [TARGET + 0.005 * k for k in range(10)]


def choose_target(worlds):
    """The lowest target at which a fit on all worlds but one covers the one left out at TARGET
    (95%), each world in turn: a fit on a few looks is tighter than a look it has not seen
    needs; this measures by how much on the fitting worlds alone. TARGET with one world."""
    if len(worlds) < 2:
        return TARGET
    for target in TARGETS:
        held = True
        for i in range(len(worlds)):
            s = fit(worlds[:i] + worlds[i + 1:], target)
            inside = worlds[i].scores(s, UNSURE)[0] if s is not None else []
            # A held-out world that publishes nothing holds nothing (not NaN, which compares
            # false both ways).
            if not (len(inside) and inside.mean() >= TARGET):
                held = False
                break
        if held:
            return target
    fail(f"no coverage target up to {100 * TARGETS[-1]:.1f}% holds each --fit world left out of "
         f"a fit on the others at {100 * TARGET:.0f}%: the worlds disagree too much to fit one "
         "SPREAD_MASS on them")


def table(names, worlds, share, unsure, marks):
    print("| world | published | inside 95% ellipsoid | median 95% radius | median error | ratio |")
    print("|---|---|---|---|---|---|")
    for name, w in zip(names, worlds):
        inside, radius, error, published = w.scores(share, unsure)
        if not len(inside):
            print(f"| {name}{marks.get(name, '')} | 0% | - | - | - | - |")
            continue
        print(f"| {name}{marks.get(name, '')} | {100 * published:.1f}% | {100 * inside.mean():.1f}% | "
              f"{median(radius):.1f} m | {median(error):.2f} m | "
              f"{median(radius) / median(error):.1f} |")


def leave_one_out(names, fit_worlds, fitted, score, what):
    if len(fit_worlds) < 2:
        print("\n(one --fit world: no leave-one-world-out check; give two or more)")
        return
    print(f"\nLeave one world out: {what} fitted on the others, scored on it")
    for i in range(len(fit_worlds)):
        v = fitted(fit_worlds[:i] + fit_worlds[i + 1:])
        if v is None:
            print(f"- {names[i]}: no fit on the others")
            continue
        inside, radius, error, _ = score(fit_worlds[i], v)
        print(f"- {names[i]}: {what} {v}: inside {100 * inside.mean():.1f}%, median radius "
              f"{median(radius):.1f} m, median error {median(error):.2f} m")


def main():
    ap = arguments(__doc__, "evaluate --filter sequence folders", "shipped constants'")
    ap.add_argument("--unsure", action="store_true",
                    help="fit FILTER_UNSURE_CALIBRATION (SPREAD_MASS kept) instead of SPREAD_MASS")
    a, names, marks = parse(ap)
    fit_worlds = [World(load(p), a.min_confidence) for p in a.fit]
    check_worlds = [World(load(p), a.min_confidence) for p in a.check]
    print(f"The shipped SPREAD_MASS {SHIPPED} and FILTER_UNSURE_CALIBRATION {UNSURE} "
          f"(FILTER_POSITION_CALIBRATION {FLOOR}) at min_confidence {a.min_confidence}:\n")
    table(names, fit_worlds + check_worlds, SHIPPED, UNSURE, marks)
    if a.verify:
        n = sum(len(w.error) for w in fit_worlds + check_worlds)
        print(f"\nverified: evaluate's 95% radius and Mahalanobis distance of every query "
              f"reproduced ({n} published priors scored)")
        return
    if a.unsure:
        u = fit_unsure(fit_worlds)
        if u is None:
            fail(f"no --fit world holds the truth for {100 * TARGET:.0f}% of its published priors "
                 f"at any FILTER_UNSURE_CALIBRATION up to {UNSURE_GRID[-1]}: nothing to fit on")
        beyond = [n for n, w in zip(names, fit_worlds) if not holds(w, UNSURE_GRID[-1])]
        print(f"\nFitted: FILTER_UNSURE_CALIBRATION {u} (the smallest of 0 to {UNSURE_GRID[-1]} "
              f"at which every --fit world that some value brings to {100 * TARGET:.0f}% holds "
              f"the truth for {100 * TARGET:.0f}% of its published priors, or would with one "
              f"more inside; not choosing, as no value brings them there: "
              f"{', '.join(beyond) or 'none'}):\n")
        if u == UNSURE_GRID[-1]:
            print(f"note: {u} is at the edge of the grid; the best value may lie beyond it\n")
        table(names, fit_worlds + check_worlds, SHIPPED, u, marks)
        leave_one_out(names, fit_worlds, fit_unsure, lambda w, v: w.scores(SHIPPED, v),
                      "FILTER_UNSURE_CALIBRATION")
        print("\nTo use a fitted value: set FILTER_UNSURE_CALIBRATION in src/localize/prior.rs "
              "(and UNSURE here), rebuild, and check with `dasgil-tools evaluate --filter "
              "sequence` on a world not used for fitting.")
        return
    target = choose_target(fit_worlds)
    print(f"\nCoverage target {100 * target:.1f}% (the lowest at which a fit on the other --fit "
          f"worlds holds each one left out at {100 * TARGET:.0f}%)")
    share = fit(fit_worlds, target)
    if share is None:
        fail(f"no SPREAD_MASS up to {GRID[-1]} holds the truth for {100 * target:.1f}% of the "
             "--fit worlds' priors")
    print(f"\nFitted: SPREAD_MASS {share} (the smallest holding the truth for "
          f"{100 * target:.1f}% of the --fit worlds' published priors together):\n")
    if share in (GRID[0], GRID[-1]):
        print(f"note: {share} is at the edge of the grid; the best value may lie beyond it\n")
    table(names, fit_worlds + check_worlds, share, UNSURE, marks)
    leave_one_out(names, fit_worlds, lambda ws: fit(ws, target),
                  lambda w, v: w.scores(v, UNSURE), f"at {100 * target:.1f}%, SPREAD_MASS")
    print("\nTo use a fitted value: set SPREAD_MASS in src/localize/sequence.rs (and SHIPPED here), "
          "rebuild, and check with `dasgil-tools evaluate --filter sequence` on a world not used "
          "for fitting.")


if __name__ == "__main__":
    main()
