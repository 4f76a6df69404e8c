"""Fits and checks the pose prior's covariance (src/localize/prior.rs, docs/pose-prior.md) from
`dasgil-tools evaluate` outputs: each evaluate folder's candidates-none.jsonl holds, per scored
query, its true camera position and its first 20 candidates (descriptor distance, position),
exactly what the Localizer's prior is computed from.

    python tools/python/fit_prior.py --fit OUT1 OUT2 OUT3 --check OUT4 [--adaptation none]

For every (POSITION_CALIBRATION, WRONG_SCALE, CONFIDENT, min_confidence) of a grid it computes,
per world, the share of queries published (confidence >= min_confidence), the share of those
whose true position lies inside the prior's 95% position ellipsoid (squared Mahalanobis distance
<= 7.81), their median 95% radius (longest semi-axis) and median error. It keeps the constants
that reach 95% coverage on every --fit world with the smallest worst ratio of median radius to
median error, at the given --min-confidence (the shipped default when not given), and prints the
table for the --fit and --check worlds, then the leave-one-world-out checks (fit on all but one
--fit world, report the left-out one).

numpy only. The formula here is the one in src/localize/prior.rs; a change there needs the same
change here.
"""

import argparse
import json
import os
import sys

import numpy as np

CHI2_3_95 = 7.814727903251178
TAU = 0.05
SIGMA_POSITION = 1.0
ALT_RADIUS = 7.5
QUALITY_HITS = 20
SPREAD_HITS = 10
TOP_K = 5


def load(folder, adaptation):
    path = os.path.join(folder, f"candidates-{adaptation}.jsonl")
    if not os.path.isfile(path):
        sys.exit(f"{path}: missing; run `dasgil-tools evaluate ... --out {folder}` first")
    conf, own, room, offset = [], [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                q = json.loads(line)
                h = np.array(q["candidates"], dtype=float)[:QUALITY_HITS]
                truth = np.array(q["truth"], dtype=float)
            except (ValueError, KeyError) as e:
                sys.exit(f"{path}:{n}: expected an object with `truth` and `candidates`: {e}")
            d, t = h[:, 0], h[:, 1:4]
            far = np.linalg.norm(t - t[0], axis=1) > ALT_RADIUS
            alt = d[far][0] if far.any() else d[-1]
            conf.append(float(np.clip(1 - d[0] / alt, 0, 1)) if alt > 0 else 0.0)
            k = h[:TOP_K]
            w = np.exp(-(k[:, 0] / max(d[0], 1e-12) - 1) / TAU)
            dt = k[:, 1:4] - t[0]
            own.append((w[:, None, None] * np.einsum("ki,kj->kij", dt, dt)).sum(0) / w.sum()
                       + SIGMA_POSITION ** 2 * np.eye(3))
            ds = t[:SPREAD_HITS] - t[0]
            room.append(np.einsum("ki,kj->ij", ds, ds) / len(ds))
            offset.append(truth - t[0])
    return np.array(conf), np.array(own), np.array(room), np.array(offset)


def score(world, calibration, wrong_scale, confident, min_confidence):
    conf, own, room, offset = world
    pub = conf >= min_confidence
    a = wrong_scale * np.maximum(0.0, 1.0 - conf[pub] / confident)
    cov = calibration * own[pub] + a[:, None, None] * room[pub]
    m2 = np.einsum("ni,ni->n", offset[pub], np.linalg.solve(cov, offset[pub][..., None])[..., 0])
    radius = np.sqrt(CHI2_3_95 * np.linalg.eigvalsh(cov)[:, -1])
    error = np.linalg.norm(offset[pub], axis=1)
    return {"published": pub.mean(), "inside_95": (m2 <= CHI2_3_95).mean(),
            "median_radius_95": float(np.median(radius)), "median_error": float(np.median(error))}


GRID = [(c, a, g) for c in (0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
        for a in (1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0)
        for g in (0.125, 0.15, 0.175, 0.2, 0.25)]


def fit(worlds, min_confidence):
    best = None
    for c, a, g in GRID:
        s = [score(w, c, a, g, min_confidence) for w in worlds]
        if min(x["inside_95"] for x in s) < 0.95:
            continue
        worst = max(x["median_radius_95"] / x["median_error"] for x in s)
        if best is None or worst < best[0]:
            best = (worst, (c, a, g))
    return best[1] if best else None


def table(names, worlds, constants, min_confidence, marks):
    print("| world | published | inside 95% ellipsoid | median 95% radius | median error |")
    print("|---|---|---|---|---|")
    for name, w in zip(names, worlds):
        s = score(w, *constants, min_confidence)
        print(f"| {name}{marks.get(name, '')} | {100 * s['published']:.1f}% | "
              f"{100 * s['inside_95']:.1f}% | {s['median_radius_95']:.1f} m | "
              f"{s['median_error']:.2f} m |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", nargs="+", required=True, help="evaluate output folders to fit on")
    ap.add_argument("--check", nargs="*", default=[], help="evaluate output folders to check on")
    ap.add_argument("--adaptation", default="none", help="none or adabn (the map's way)")
    ap.add_argument("--min-confidence", type=float, default=0.04)
    a = ap.parse_args()
    name = lambda p: os.path.basename(os.path.normpath(p))
    fit_worlds = [load(p, a.adaptation) for p in a.fit]
    check_worlds = [load(p, a.adaptation) for p in a.check]
    constants = fit(fit_worlds, a.min_confidence)
    if constants is None:
        sys.exit("no constants of the grid reach 95% coverage on every --fit world")
    print(f"POSITION_CALIBRATION {constants[0]}, WRONG_SCALE {constants[1]}, "
          f"CONFIDENT {constants[2]} at min_confidence {a.min_confidence}\n")
    table([name(p) for p in a.fit + a.check], fit_worlds + check_worlds, constants,
          a.min_confidence, {name(p): " (fit)" for p in a.fit})
    if len(a.fit) > 1:
        print("\nLeave one world out: fitted on the others, scored on it")
        for i, p in enumerate(a.fit):
            rest = fit_worlds[:i] + fit_worlds[i + 1:]
            c = fit(rest, a.min_confidence)
            if c is None:
                print(f"- {name(p)}: no fit on the others")
                continue
            s = score(fit_worlds[i], *c, a.min_confidence)
            print(f"- {name(p)}: constants {c}: published {100 * s['published']:.1f}%, inside "
                  f"{100 * s['inside_95']:.1f}%, median radius {s['median_radius_95']:.1f} m, "
                  f"median error {s['median_error']:.2f} m")


if __name__ == "__main__":
    main()
