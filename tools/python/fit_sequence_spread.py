"""Fits and checks SPREAD_MASS, the share of the sequence filter's belief that its published 95%
position ellipsoid reaches (src/localize/sequence.rs, docs/pose-prior.md), from
`dasgil-tools evaluate --filter sequence` outputs: each folder's candidates-none.jsonl holds, per
scored query, its true camera position, the published position (the first candidate), the
belief about it (`belief_profile`: {"ground", "height", "share"} per place holding belief of its
own, nearest on the ground first; metres along and perpendicular to the map's up, shares
summing to 1), the map's up direction (`up`, a unit vector in the map's world frame), how far the
vehicle may have driven past a map's end (`beyond_end`, metres, 0 elsewhere), and evaluate's own
confidence, 95% radius and Mahalanobis distance, and the map's spacing (`map_spacing`, metres:
the median distance from a place to its nearest other place).

    python tools/python/fit_sequence_spread.py --fit OUT1 OUT2 OUT3 --check OUT4

The prior's position block with the filter is F I + (R + B)^2 / 7.81 (I - u u^T) + H^2 / 7.81
u u^T: F the floor of a single match (FILTER_POSITION_CALIBRATION * SIGMA_POSITION^2), u the map's up, R
the ground distance within which SPREAD_MASS of the belief lies (cumulated outwards, linearly
between places, from 0 at 0), at least BETWEEN_SPACING times the map's spacing, B `beyond_end`,
H the largest height difference of a place within the distance SPREAD_MASS gives.
First this script recomputes evaluate's 95% radius and Mahalanobis distance with the shipped
SPREAD_MASS and stops if a query differs (the formula here must stay the one in the Rust). Then
it chooses a coverage target as tools/python/fit_prior.py does (the lowest of 95%, 95.5%, ...
99.5% at which a fit on all --fit worlds but one covers the one left out at 95%, each in turn),
keeps the smallest SPREAD_MASS of a grid (0.50 to 0.99) whose 95% ellipsoids hold the truth
for at least that share of the published priors of the --fit worlds pooled (not on each: a
world may get less), prints the tables (shipped and fitted) for the --fit and --check worlds,
then the leave-one-world-out checks at that target.

numpy only. Camera poses (no base_link); the priors scored are those evaluate published (its
`published`: the off-the-map test withholds some) and, of those, the ones at --min-confidence or
above (their share is printed): --min-confidence can withhold more than evaluate did, not less.
"""

import os

import numpy as np

from fit_prior import CHI2_3_95, arguments, fail, json_lines, median, parse

# SPREAD_MASS in src/localize/sequence.rs.
SHIPPED = 0.73
# FILTER_POSITION_CALIBRATION * SIGMA_POSITION^2 in src/localize/prior.rs.
FLOOR = 0.6 * 1.0 ** 2
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
        except (KeyError, IndexError, ValueError, TypeError) as e:
            fail(f"{where}: expected `truth` [x, y, z], `candidates` [[distance, x, y, z], ...], "
                 f"`up` [x, y, z], `belief_profile` [{{\"ground\", \"height\", \"share\"}}, ...] and "
                 f"`confidence` and `map_spacing` (runs of evaluate before 2026-12-03 lack "
                 f"`map_spacing`: run it again): {e!r}")
        if truth.shape != (3,) or best.shape != (3,) or up.shape != (3,):
            fail(f"{where}: `truth`, the first candidate and `up` must be [x, y, z]")
        if not profile:
            fail(f"{where}: field `belief_profile`: expected one or more places, found []")
        # Published: evaluate's flag (the off-the-map test withholds too), at --min-confidence.
        queries.append((truth - best, up, profile, (beyond, spacing), conf if published else -1.0,
                        q.get("radius_95"), q.get("mahalanobis2")))
    if not queries:
        fail(f"{path}: no queries (an evaluate run without ground truth?)")
    check_reproduction(path, queries)
    return queries


def covariance(up, profile, beyond_spacing, share):
    beyond, spacing = beyond_spacing
    r = reach_of(profile, share)
    h = max([abs(height) for ground, height, _ in profile if ground <= r], default=0.0)
    # At least half the map's spacing; on past a map's end (`beyond_end`).
    g = max(r, BETWEEN_SPACING * spacing) + beyond
    vertical = np.outer(up, up)
    return FLOOR * np.eye(3) + (g * g * (np.eye(3) - vertical) + h * h * vertical) / CHI2_3_95


def scores(queries, share, min_confidence):
    inside, radius, error, published = [], [], [], 0
    for offset, up, profile, beyond_spacing, conf, _, _ in queries:
        if conf < min_confidence:
            continue
        published += 1
        cov = covariance(up, profile, beyond_spacing, share)
        inside.append(offset @ np.linalg.solve(cov, offset) <= CHI2_3_95)
        radius.append(np.sqrt(CHI2_3_95 * np.linalg.eigvalsh(cov)[-1]))
        error.append(np.linalg.norm(offset))
    return np.array(inside), np.array(radius), np.array(error), published / len(queries)


def check_reproduction(path, queries):
    off = 0
    for offset, up, profile, beyond_spacing, _, r95, m2 in queries:
        cov = covariance(up, profile, beyond_spacing, SHIPPED)
        radius = np.sqrt(CHI2_3_95 * np.linalg.eigvalsh(cov)[-1])
        maha = offset @ np.linalg.solve(cov, offset)
        close = lambda x, y: y is not None and abs(x - y) <= 1e-6 * max(1.0, abs(y))
        if not (close(radius, r95) and close(maha, m2)):
            off += 1
    if off:
        fail(f"{path}: {off} of {len(queries)} queries differ from what evaluate computed (95% "
             "radius or Mahalanobis distance): this script and src/localize/sequence.rs disagree, "
             "or SHIPPED here is not the binary's SPREAD_MASS")


def fit(worlds, min_confidence, target=TARGET):
    for share in GRID:
        inside = np.concatenate([scores(w, share, min_confidence)[0] for w in worlds])
        if len(inside) and inside.mean() >= target:
            return share
    return None


# Coverage targets tried, lowest first (as tools/python/fit_prior.py's).
TARGETS = [TARGET + 0.005 * k for k in range(10)]


def choose_target(worlds, min_confidence):
    """The lowest target at which a fit on all worlds but one covers the one left out at TARGET
    (95%), each world in turn: a fit on a few looks is tighter than a look it has not seen
    needs; this measures by how much on the fitting worlds alone. TARGET with one world."""
    if len(worlds) < 2:
        return TARGET
    for target in TARGETS:
        held = True
        for i in range(len(worlds)):
            s = fit(worlds[:i] + worlds[i + 1:], min_confidence, target)
            inside = scores(worlds[i], s, min_confidence)[0] if s is not None else []
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


def table(names, worlds, share, min_confidence, marks):
    print("| world | published | inside 95% ellipsoid | median 95% radius | median error | ratio |")
    print("|---|---|---|---|---|---|")
    for name, w in zip(names, worlds):
        inside, radius, error, published = scores(w, share, min_confidence)
        print(f"| {name}{marks.get(name, '')} | {100 * published:.1f}% | {100 * inside.mean():.1f}% | "
              f"{median(radius):.1f} m | {median(error):.2f} m | "
              f"{median(radius) / median(error):.1f} |")


def main():
    a, names, marks = parse(arguments(__doc__, "evaluate --filter sequence folders",
                                      "shipped SPREAD_MASS's"))
    fit_worlds = [load(p) for p in a.fit]
    check_worlds = [load(p) for p in a.check]
    print(f"The shipped SPREAD_MASS {SHIPPED} at min_confidence {a.min_confidence}:\n")
    table(names, fit_worlds + check_worlds, SHIPPED, a.min_confidence, marks)
    if a.verify:
        n = sum(len(w) for w in fit_worlds + check_worlds)
        print(f"\nverified: evaluate's 95% radius and Mahalanobis distance of {n} queries reproduced")
        return
    target = choose_target(fit_worlds, a.min_confidence)
    print(f"\nCoverage target {100 * target:.1f}% (the lowest at which a fit on the other --fit "
          f"worlds holds each one left out at {100 * TARGET:.0f}%)")
    share = fit(fit_worlds, a.min_confidence, target)
    if share is None:
        fail(f"no SPREAD_MASS up to {GRID[-1]} holds the truth for {100 * target:.1f}% of the "
             "--fit worlds' priors")
    print(f"\nFitted: SPREAD_MASS {share} (the smallest holding the truth for "
          f"{100 * target:.1f}% of the --fit worlds' published priors together):\n")
    if share in (GRID[0], GRID[-1]):
        print(f"note: {share} is at the edge of the grid; the best value may lie beyond it\n")
    table(names, fit_worlds + check_worlds, share, a.min_confidence, marks)
    if len(a.fit) > 1:
        print(f"\nLeave one world out: fitted on the others at {100 * target:.1f}%, scored on it")
        for i in range(len(a.fit)):
            s = fit(fit_worlds[:i] + fit_worlds[i + 1:], a.min_confidence, target)
            if s is None:
                print(f"- {names[i]}: no fit on the others")
                continue
            inside, radius, error, _ = scores(fit_worlds[i], s, a.min_confidence)
            print(f"- {names[i]}: SPREAD_MASS {s}: inside {100 * inside.mean():.1f}%, median radius "
                  f"{median(radius):.1f} m, median error {median(error):.2f} m")
    else:
        print("\n(one --fit world: no leave-one-world-out check; give two or more)")
    print("\nTo use a fitted value: set SPREAD_MASS in src/localize/sequence.rs (and SHIPPED here), "
          "rebuild, and check with `dasgil-tools evaluate --filter sequence` on a world not used "
          "for fitting.")


if __name__ == "__main__":
    main()
