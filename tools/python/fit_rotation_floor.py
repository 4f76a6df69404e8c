"""Fits and checks the pose prior's rotation floor, SIGMA_ROTATION in src/localize/prior.rs
(docs/pose-prior.md, "The orientation's coverage"), from `dasgil-tools evaluate` outputs: each
evaluate folder's candidates-none.jsonl (or -adabn, `--adaptation`) holds, per scored query, `rotation_residual` (the
rotation from the prior's orientation to the true one, a rotation vector in radians in the
map's world frame) and `rotation_block` (the published covariance's 3x3 rotation block,
row-major, rad^2) with whether the node would publish it.

    python tools/python/fit_rotation_floor.py --fit OUT1 OUT2 ... [--check OUT9 ...] [--verify]

The floor enters the rotation block as SIGMA_ROTATION^2 I, added to the candidates' spread
and the bend's term (single frames) or to the bend's term alone (`--filter sequence`), so the
block with another floor s is the block plus (s^2 - f^2) I exactly, f the floor it was
published with (each line's `rotation_floor`, radians). Folders of the same world (its
`source.sequence` in report.json, else its root's name and slice: single-frame and filter runs)
are pooled as that world. First it recomputes evaluate's squared Mahalanobis distances (report.json's
`rotation_mahalanobis2`) from the two fields and stops if a query differs. Then, for every floor
of a grid (0.5 to 8 degrees by 0.25), it computes per world the share of published priors whose
true orientation lies inside the rotation block's 95% bound (squared Mahalanobis distance
<= 7.81, 3 degrees of freedom).

The target is chosen first, on the --fit worlds alone, by leave-one-out as
tools/python/fit_prior.py chooses its own: the lowest of 95%, 95.5%, ... 99.5% at which the
smallest floor covering that share of the other worlds' published priors together (pooled,
not each world) still covers the world left out at 95% or more, for each world in turn. Then
the floor is the smallest covering the target on the --fit worlds' published priors together.
Worlds whose queries face exactly as their map images are covered at any floor: the worlds
with heading noise (the drive protocol's) decide it. It prints the tables (shipped and fitted) for the --fit and --check worlds and the
leave-one-out checks.

With --unsure it fits ROTATION_UNSURE_CALIBRATION instead (SIGMA_ROTATION kept): the
floor's square grows by that factor times max(0, 1 - c / CONFIDENT) for a frame whose own
single-frame confidence c (`frame_confidence`) is low, as the position floor under the filter
does (docs/pose-prior.md): the smallest value of a grid (0 to 8 by 0.5) at which every --fit
world holds 95% of its published orientations inside their bound, leaving out of the choice a
world that no value brings to 95%; then the same tables and leave-one-out checks.

numpy only. Camera poses (no base_link).
"""

import argparse
import json
import math
import os

import numpy as np

from fit_prior import (CHI2_3_95, check_folders, fail, json_lines, smallest_holding,
                       unsure_share)

# SIGMA_ROTATION in src/localize/prior.rs, in degrees.
SHIPPED_DEG = 2.5
GRID_DEG = [0.5 + 0.25 * i for i in range(31)]
# ROTATION_UNSURE_CALIBRATION there: the floor's square grows by this factor times
# max(0, 1 - c / CONFIDENT) (fit_prior.unsure_share) for a frame of single-frame confidence c.
SHIPPED_UNSURE = 3.5
UNSURE_GRID = [0.5 * i for i in range(17)]
TARGETS = [95.0 + 0.5 * i for i in range(10)]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        fail(f"{path}: cannot read ({e.strerror})")
    except ValueError as e:
        fail(f"{path}: not JSON ({e})")


def field(q, key, where, shape):
    """The numeric field `key` of a candidates line as an array of `shape`; fails naming it."""
    if key not in q:
        fail(
            f"{where}: no `{key}` (written by dasgil-tools evaluate since 2026-12-05: "
            "evaluate again with this version)"
        )
    try:
        a = np.asarray(q[key], dtype=float)
    except (TypeError, ValueError):
        fail(f"{where}: `{key}`: expected numbers, found {q[key]!r}")
    if a.size != int(np.prod(shape)) or not np.all(np.isfinite(a)):
        fail(f"{where}: `{key}`: expected {int(np.prod(shape))} finite numbers, found {q[key]!r}")
    return a.reshape(shape)


class World:
    """The published priors of one world: residuals (n, 3), rotation blocks (n, 3, 3) and the
    floor (radians) each block was published with."""

    def __init__(self, name):
        self.name = name
        self.residuals = []
        self.blocks = []
        self.floors = []
        self.unsure = []
        self.folders = []

    def finish(self):
        self.r = np.array(self.residuals).reshape(-1, 3)
        self.b = np.array(self.blocks).reshape(-1, 3, 3)
        self.f = np.array(self.floors).reshape(-1)
        # Per prior: (the factor it was published with, max(0, 1 - c / CONFIDENT)).
        self.u = np.array(self.unsure).reshape(-1, 2)

    def shifted(self, floor_deg, unsure=SHIPPED_UNSURE):
        """The blocks with another floor: each block minus its own floor's s^2 (1 + k u) I plus
        the new one's (positive definite: the rest of a block is positive semi-definite); u =
        max(0, 1 - c / CONFIDENT) of the prior's frame, k the unsure factor."""
        k, u = self.u[:, 0], self.u[:, 1]
        extra = (math.radians(floor_deg) ** 2 * (1.0 + unsure * u)
                 - self.f ** 2 * (1.0 + k * u))
        return self.b + extra[:, None, None] * np.eye(3)

    def m2(self, floor_deg, unsure=SHIPPED_UNSURE):
        x = np.linalg.solve(self.shifted(floor_deg, unsure), self.r[..., None])[..., 0]
        return np.einsum("ni,ni->n", self.r, x)

    def inside(self, floor_deg, unsure=SHIPPED_UNSURE):
        """Share (%) of the published priors inside their 95% rotation bound (main refuses a
        world without one)."""
        return 100.0 * float(np.mean(self.m2(floor_deg, unsure) <= CHI2_3_95))

    def bound_deg(self, floor_deg, unsure=SHIPPED_UNSURE):
        """Median 95% bound (degrees): the largest semi-axis of the bound."""
        largest = np.linalg.eigvalsh(self.shifted(floor_deg, unsure))[:, -1]
        return math.degrees(float(np.median(np.sqrt(CHI2_3_95 * largest))))

    def median_error_deg(self):
        return math.degrees(float(np.median(np.linalg.norm(self.r, axis=1))))


def world_name(report, folder):
    """The world an evaluate report scored: its source's sequence, else its root folder's name
    with the slice (Extended CMU-Seasons slices of one root are different worlds), else the
    output folder's name (older reports without a source)."""
    source = report.get("source") if isinstance(report.get("source"), dict) else {}
    if source.get("sequence"):
        return str(source["sequence"])
    root = (source.get("root") or "").rstrip("/")
    if root:
        name = os.path.basename(root)
        return f"{name} slice {source['slice']}" if source.get("slice") is not None else name
    return os.path.basename(os.path.normpath(os.path.abspath(folder)))


def read_folder(folder, worlds, adaptation):
    """Adds the published priors of an evaluate folder to its world's (the report's
    source.sequence, else its root's folder name, else this folder's); returns how many
    queries' Mahalanobis distances were reproduced."""
    report = load_json(os.path.join(folder, "report.json"))
    try:
        rep = next(r for r in report["reports"]
                   if isinstance(r, dict) and r.get("adaptation") == adaptation)
        expected = {(q["camera"], q["name"]): q.get("rotation_mahalanobis2") for q in rep["queries"]}
    except StopIteration:
        fail(f"{folder}/report.json: no report with adaptation {adaptation} (--adaptation)")
    except (KeyError, TypeError):
        fail(f"{folder}/report.json: not an evaluate report (reports[].queries)")
    name = world_name(report, folder)
    world = worlds.setdefault(name, World(name))
    world.folders.append(f"{os.path.basename(os.path.normpath(folder))} ({rep.get('filter', '?')})")
    checked = 0
    path = os.path.join(folder, f"candidates-{adaptation}.jsonl")
    if not os.path.isfile(path):
        fail(f"{path}: no such file (give `dasgil-tools evaluate --out` folders)")
    for where, q in json_lines(path, "rotation_residual and rotation_block"):
        r = field(q, "rotation_residual", where, (3,))
        b = field(q, "rotation_block", where, (3, 3))
        floor = float(field(q, "rotation_floor", where, (1,))[0])
        if not 0.0 < floor < 1.0:
            fail(f"{where}: `rotation_floor`: expected radians between 0 and 1, found {floor!r}")
        want = expected.get((q.get("camera"), q.get("name")))
        try:
            got = float(r @ np.linalg.solve(b, r))
        except np.linalg.LinAlgError:
            fail(f"{where}: `rotation_block` is singular: {q['rotation_block']!r}")
        if want is not None and abs(got - want) > 1e-6 * max(1.0, abs(want)):
            fail(
                f"{where}: rotation_mahalanobis2 recomputed {got:.9g}, report.json says "
                f"{want:.9g}: the fields and the report disagree"
            )
        checked += want is not None
        # The unsure factor it was published with (0 before it existed, 2026-12-06) and the
        # frame's own confidence (a line without one counts as sure: its floor is s^2 alone).
        unsure = float(field(q, "rotation_unsure", where, (1,))[0]) if "rotation_unsure" in q else 0.0
        if not 0.0 <= unsure <= 100.0:
            fail(f"{where}: `rotation_unsure`: expected a factor from 0 to 100, found {unsure!r}")
        c = float(field(q, "frame_confidence", where, (1,))[0]) if "frame_confidence" in q else 1.0
        u = unsure_share(c)
        # The block holds its floor: what remains without it is positive semi-definite.
        rest = np.linalg.eigvalsh(b - floor ** 2 * (1.0 + unsure * u) * np.eye(3))[0]
        if rest < -1e-9 * max(1.0, floor ** 2):
            fail(f"{where}: `rotation_block` holds less than its floor {floor!r} rad with "
                 f"`rotation_unsure` {unsure!r} at `frame_confidence` {c!r} (smallest eigenvalue "
                 f"of the rest {rest:.3g}): the fields disagree, or this script and "
                 "src/localize/prior.rs do")
        if q.get("published", True):
            world.residuals.append(r)
            world.blocks.append(b)
            world.floors.append(floor)
            world.unsure.append((unsure, u))
    if checked == 0:
        fail(f"{path}: no query matches one of {folder}/report.json's (camera, name): not the "
             "same evaluate run")
    return checked


def fit_unsure(worlds):
    """The smallest ROTATION_UNSURE_CALIBRATION of the grid at which every world that some value
    of the grid brings to 95% holds the truth inside the 95% bound for 95% of its published
    priors (SIGMA_ROTATION as shipped); a world no value brings there does not choose. None when
    no world chooses (fit_prior.smallest_holding)."""
    return smallest_holding(UNSURE_GRID, worlds, lambda w, k: w.inside(SHIPPED_DEG, k) >= 95.0)


def smallest_floor(worlds, target):
    """The smallest grid floor covering `target` % of the worlds' published priors together."""
    for floor in GRID_DEG:
        m2 = np.concatenate([w.m2(floor) for w in worlds])
        if 100.0 * np.mean(m2 <= CHI2_3_95) >= target:
            return floor
    return None


def table(title, worlds, fit_names, floor, unsure=SHIPPED_UNSURE):
    print(f"\n{title}\n")
    print("| world | runs | published | orientation inside 95% bound | median 95% bound | median error |")
    print("|---|---|---|---|---|---|")
    for w in worlds:
        role = " (fit)" if w.name in fit_names else ""
        print(
            f"| {w.name}{role} | {', '.join(w.folders)} | {len(w.r)} | "
            f"{w.inside(floor, unsure):.1f}% | {w.bound_deg(floor, unsure):.1f} deg | "
            f"{w.median_error_deg():.1f} deg |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", nargs="+", required=True, help="evaluate --out folders to fit on")
    ap.add_argument("--check", nargs="*", default=[], help="evaluate --out folders to check on")
    ap.add_argument("--adaptation", default="none", choices=["none", "adabn"],
                    help="the map's way: candidates-none.jsonl or candidates-adabn.jsonl")
    ap.add_argument("--unsure", action="store_true",
                    help="fit ROTATION_UNSURE_CALIBRATION (SIGMA_ROTATION kept) instead of "
                         "SIGMA_ROTATION")
    ap.add_argument("--verify", action="store_true",
                    help="only check that this script reproduces evaluate's numbers and print "
                         "the shipped floor's table (no fit)")
    args = ap.parse_args()
    check_folders(ap, args)
    fit, check = {}, {}
    checked = sum(read_folder(folder, fit, args.adaptation) for folder in args.fit)
    checked += sum(read_folder(folder, check, args.adaptation) for folder in args.check)
    for name in set(fit) & set(check):
        fail(f"world {name} is given to both --fit and --check")
    for w in list(fit.values()) + list(check.values()):
        w.finish()
        if len(w.r) == 0:
            fail(f"world {w.name}: no published prior in {', '.join(w.folders)}")
    fits = list(fit.values())
    every = fits + list(check.values())
    if args.verify:
        for w in every:
            published = {float(k) for k in w.u[:, 0]}
            if published and published != {SHIPPED_UNSURE}:
                fail(f"world {w.name}: published with ROTATION_UNSURE_CALIBRATION "
                     f"{sorted(published)}, this script's SHIPPED_UNSURE is {SHIPPED_UNSURE}: "
                     "set it to src/localize/prior.rs's")
        table(f"The shipped floor SIGMA_ROTATION {SHIPPED_DEG} deg:", every, fit, SHIPPED_DEG)
        n = sum(len(w.r) for w in every)
        print(f"\nverified: evaluate's rotation Mahalanobis distances of {checked} queries "
              f"reproduced ({n} published priors)")
        return
    if len(fits) < 2:
        fail("--fit needs folders of at least two worlds (one is left out in turn)")
    table(f"The shipped floor SIGMA_ROTATION {SHIPPED_DEG} deg, ROTATION_UNSURE_CALIBRATION "
          f"{SHIPPED_UNSURE}:", every, fit, SHIPPED_DEG)
    if args.unsure:
        k = fit_unsure(fits)
        if k is None:
            fail(f"no --fit world holds 95% of its orientations at any ROTATION_UNSURE_CALIBRATION "
                 f"up to {UNSURE_GRID[-1]}: nothing to fit on")
        beyond = [w.name for w in fits if w.inside(SHIPPED_DEG, UNSURE_GRID[-1]) < 95.0]
        table(f"Fitted: ROTATION_UNSURE_CALIBRATION {k} (the smallest of 0 to {UNSURE_GRID[-1]} at "
              "which every --fit world that some value brings to 95% holds 95%; not choosing: "
              f"{', '.join(beyond) or 'none'}):", every, fit, SHIPPED_DEG, k)
        print("\nLeave one world out: fitted on the others, scored on it")
        for w in fits:
            kk = fit_unsure([o for o in fits if o is not w])
            if kk is None:
                print(f"- {w.name}: no fit on the others")
                continue
            print(f"- {w.name}: ROTATION_UNSURE_CALIBRATION {kk}: inside "
                  f"{w.inside(SHIPPED_DEG, kk):.1f}%, median 95% bound "
                  f"{w.bound_deg(SHIPPED_DEG, kk):.1f} deg")
        print("\nTo use the fitted value: set ROTATION_UNSURE_CALIBRATION in src/localize/prior.rs "
              "(and SHIPPED_UNSURE here), rebuild, and check with `dasgil-tools evaluate` on "
              "worlds not used for fitting.")
        return
    chosen = None
    for target in TARGETS:
        held = []
        for w in fits:
            floor = smallest_floor([o for o in fits if o is not w], target)
            held.append((w, floor, None if floor is None else w.inside(floor)))
        if all(f is not None and inside >= 95.0 for _, f, inside in held):
            chosen = (target, held)
            break
    if chosen is None:
        fail(f"no coverage target up to 99.5% keeps every world left out of the fit at 95% with a "
             f"floor of at most {GRID_DEG[-1]} degrees (the grid's end): the --fit worlds "
             "disagree too much to calibrate on, or need a wider floor than the grid has")
    target, held = chosen
    floor = smallest_floor(fits, target)
    print(
        f"\nCoverage target {target}% (the lowest at which a fit on the other --fit worlds holds "
        "each one left out at 95%)"
    )
    table(
        f"Fitted: SIGMA_ROTATION {floor} deg ({math.radians(floor):.4f} rad; the smallest grid "
        f"floor holding the truth for {target}% of the --fit worlds' published priors together):",
        every,
        fit,
        floor,
    )
    print(f"\nLeave one world out: fitted on the others at {target}%, scored on it")
    for w, f, inside in held:
        print(f"- {w.name}: SIGMA_ROTATION {f} deg: inside {inside:.1f}%, median 95% bound {w.bound_deg(f):.1f} deg")
    print(
        "\nTo use the fitted value: set SIGMA_ROTATION in src/localize/prior.rs (radians; and "
        "SHIPPED_DEG here), rebuild, and check with `dasgil-tools evaluate` on worlds not used "
        "for fitting."
    )


if __name__ == "__main__":
    main()
