"""Fits and checks the sequence filter's off-the-map test (OFF_MAP_LIKELIHOOD,
OFF_MAP_CONFIDENCE and OFF_MAP_USUAL_POWER in src/localize/sequence.rs; docs/sequence-filter.md,
"Off the map" and "Map size") from
`dasgil-tools evaluate --filter sequence` outputs, some of them made with a map that shows only
part of the route (`--map` of a shorter sequence of the same world), so that some queries lie
where the map does not reach. Each folder's candidates-none.jsonl holds, per query: its stamp
(`timestamp_us`), the distance from its true position to the nearest map place (`map_distance`,
metres), the motion's `evidence` (null right after a reset), the say of the frame's camera
(`camera_weight`, docs/sequence-filter.md "Cameras"), the frame's single-frame
confidence (`frame_confidence`), the filter's probability of being off the map (`off_map`),
the prior's `confidence` (the posterior mass about the published place), whether it was
`published` and its squared Mahalanobis distance (`mahalanobis2`).

    python tools/python/fit_off_map.py --fit OUT1 OUT2 ... --check OUT3 ...

A query is shown by the map when its true position lies within --shown metres (default 10, two
place spacings of the synthetic worlds) of a map place, else it is beyond the map. The filter's
probability q of being off the map does not change the belief over the places, so this script
replays q exactly for other constants: per frame in time order, q -> q + (0.25 - q)
(1 - exp(-dt (1/60 + 1/20))) over the time dt since the last capture (a vehicle that leaves the
map at rate 1/60 s and comes back at rate 1/20 s), then
q -> q L / (q L + (1 - q) (w E + (1 - w) L)) with E the frame's evidence, w its camera's say
and L = OFF_MAP_LIKELIHOOD exp(-c / OFF_MAP_CONFIDENCE) (U / OFF_MAP_USUAL)^OFF_MAP_USUAL_POWER,
c the frame's confidence and U its `mean_likelihood` (how well an average place explains it);
back to 0.2 after a reset, where the first frame's E is U (a uniform belief predicts nothing
better). The say is replayed as evaluate recorded it: exact for the shipped
constants, an approximation for others (a camera's trust, from which its say comes, weighs
the same L), which only frames of a camera the filter trusted less than another have (w < 1;
one camera: always 1). A prior is
published when q is below --off-map-threshold (0.5, the node's) and its confidence is at least
--min-confidence.
First it replays the shipped constants and stops if a frame's q or published flag differs from
evaluate's. Then, over a grid, it keeps the constants under which the map's own queries keep
their priors (at least --keep of the shown queries published on every --fit folder) with the
largest share of the queries beyond the map withheld or covered (not published, or the truth
inside the 95% ellipsoid) over the --fit folders together, and of those equally safe the ones
that publish the most right priors (within 5 m and 10 degrees, from report.json's
`position_error` and `rotation_error`) on the shown queries, and prints the tables (shipped
and fitted) for the --fit and --check folders, with the right priors published and withheld.

numpy only.
"""

import json
import math
import os

import numpy as np

from fit_prior import CHI2_3_95, arguments, fail, json_lines, parse

# OFF_MAP_LIKELIHOOD, OFF_MAP_CONFIDENCE, OFF_MAP_USUAL_POWER in src/localize/sequence.rs.
SHIPPED = (3.0, 0.1, 1.0)
# OFF_MAP_USUAL there: the mean likelihood U at which the usual-match factor is 1.
USUAL = 0.25
# ON_MAP_TIME, OFF_MAP_TIME, OFF_MAP_START, SIMULTANEOUS there (not fitted).
ON_MAP_TIME, OFF_MAP_TIME, OFF_MAP_START, SIMULTANEOUS = 60.0, 20.0, 0.2, 1e-3
GRID = [(a, b, g) for g in (0.0, 0.5, 1.0, 1.5, 2.0)
        for a in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
        for b in (0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3,
                  0.4)]


def load(folder, shown):
    if not os.path.isdir(folder):
        fail(f"{folder}: no such folder (give `dasgil-tools evaluate --filter sequence --out` folders)")
    path = os.path.join(folder, "candidates-none.jsonl")
    if not os.path.isfile(path):
        fail(f"{path}: missing; run `dasgil-tools evaluate --filter sequence ... --out {folder}`")
    report = os.path.join(folder, "report.json")
    try:
        with open(report) as f:
            unscored = json.load(f)["reports"][0].get("unscored", 0)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        fail(f"{report}: expected evaluate's report ({err!r})")
    if unscored:
        fail(f"{report}: {unscored} queries without ground truth went through the filter but "
             "have no line in candidates-none.jsonl: the replay needs every query (use data "
             "with ground truth for every query)")
    try:
        with open(report) as f:
            scored = json.load(f)["reports"][0]["queries"]
        right = {}
        for r in scored:
            e, a = r["position_error"], r["rotation_error"]
            right[r["name"]] = e is not None and a is not None and e <= 5.0 and a <= 10.0
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        fail(f"{report}: expected each query's `name`, `position_error` and `rotation_error` "
             f"under reports[0].queries ({err!r})")
    frames = []
    for n, (where, q) in enumerate(json_lines(path, "`timestamp_us`, `evidence`, `off_map`, ...")):
        if q.get("gate_empty"):
            fail(f"{where}: field `gate_empty` is true: evaluate --gate-radius found no map image "
                 "in this query's gate, so its row is a single-frame search of the whole map, not "
                 "a step of the filter; fit on a run without --gate-radius")
        if q.get("filter") == "sequence" and "off_map" not in q:
            fail(f"{where}: no field `off_map`: made by a dasgil-tools older than the off-the-map "
                 "test; run evaluate --filter sequence again")
        if q.get("filter") == "sequence" and q.get("off_map") is None:
            fail(f"{where}: field `off_map` is null: the filter took no step for this frame "
                 "(descriptor distances not finite); such a run cannot be replayed")
        if q.get("filter") != "sequence":
            fail(f"{where}: field `filter`: expected \"sequence\", found {q.get('filter')!r} "
                 "(run evaluate with --filter sequence)")
        try:
            t = int(q["timestamp_us"])
            e = q["evidence"]
            e = None if e is None else float(e)
            c = float(q["frame_confidence"])
            off = float(q["off_map"])
            conf = float(q["confidence"])
            published = bool(q["published"])
            d = q["map_distance"]
            d = math.inf if d is None else float(d)
            m2 = q["mahalanobis2"]
            name = q["name"]
            usual = float(q["mean_likelihood"])
            w = q.get("camera_weight")
            w = 1.0 if w is None else float(w)
        except (KeyError, ValueError, TypeError) as err:
            fail(f"{where}: expected `timestamp_us`, `evidence`, `frame_confidence`, `off_map`, "
                 f"`confidence`, `published`, `map_distance`, `mahalanobis2` and "
                 f"`mean_likelihood` (an evaluate of this version): {err!r}")
        inside = m2 is not None and float(m2) <= CHI2_3_95
        if name not in right:
            fail(f"{where}: query `{name}` is not among {report}'s queries (files of two runs?)")
        frames.append(dict(order=(t, n), t=t * 1e-6, evidence=e, confidence=c, off=off, mass=conf,
                           published=published, shown=d <= shown, inside=inside,
                           right=right[name], usual=usual, weight=w, where=where))
    if not frames:
        fail(f"{path}: no queries (an evaluate run without ground truth?)")
    frames.sort(key=lambda f: f["order"])
    return frames


def replay(frames, constants, min_confidence, threshold):
    """(q, published) per frame, in time order."""
    a_off, b_off, g_off = constants
    q, last, out = OFF_MAP_START, None, []
    for f in frames:
        if last is not None and abs(f["t"] - last) >= SIMULTANEOUS:
            dt = abs(f["t"] - last)
            leave, back = 1.0 / ON_MAP_TIME, 1.0 / OFF_MAP_TIME
            q = q + (leave / (leave + back) - q) * (1.0 - math.exp(-dt * (leave + back)))
        last = f["t"]
        # Right after a reset (no evidence: nothing predicted) q starts again, and the frame
        # weighs it against its mean likelihood U (what a uniform belief predicts).
        evidence = f["evidence"]
        if evidence is None:
            q, evidence = OFF_MAP_START, f["usual"]
        # As src/localize/sequence.rs: U clamped to 1; not finite or not above 0: USUAL.
        u = f["usual"]
        u = min(u, 1.0) if math.isfinite(u) and u > 0.0 else USUAL
        usual = (u / USUAL) ** g_off if g_off else 1.0
        shows_none = a_off * math.exp(-max(f["confidence"], 0.0) / b_off) * usual
        off = q * shows_none
        w = f["weight"]
        on = (1.0 - q) * (w * evidence + (1.0 - w) * shows_none)
        if math.isfinite(on) and off + on > 0.0:
            q = off / (off + on)
        off_the_map = threshold < 1.0 and q >= threshold
        out.append((q, not off_the_map and f["mass"] >= min_confidence))
    return out


def check_reproduction(name, frames, min_confidence, threshold):
    bad = [f["where"] for f, (q, p) in zip(frames, replay(frames, SHIPPED, min_confidence, threshold))
           if abs(q - f["off"]) > 1e-9 * max(1.0, f["off"]) or p != f["published"]]
    if bad:
        fail(f"{name}: {len(bad)} of {len(frames)} frames differ from evaluate's off_map or "
             f"published (first: {bad[0]}): this script and src/localize/sequence.rs disagree, "
             "SHIPPED here is not the binary's, or --min-confidence or --off-map-threshold is not "
             "evaluate's")


def scores(frames, constants, min_confidence, threshold):
    replayed = list(zip(frames, (p for _, p in replay(frames, constants, min_confidence, threshold))))
    shown = [(f, p) for f, p in replayed if f["shown"]]
    beyond = [(f, p) for f, p in replayed if not f["shown"]]
    kept = [f for f, p in shown if p]
    return dict(
        shown=len(shown),
        kept=len(kept) / len(shown) if shown else None,
        right=sum(f["right"] for f in kept),
        right_withheld=sum(1 for f, p in shown if f["right"] and not p),
        inside=sum(f["inside"] for f in kept) / len(kept) if kept else None,
        beyond=len(beyond),
        withheld=sum(1 for _, p in beyond if not p),
        safe=sum(1 for f, p in beyond if not p or f["inside"]),
    )


def fit(worlds, min_confidence, threshold, keep):
    best = None
    for constants in GRID:
        s = [scores(w, constants, min_confidence, threshold) for w in worlds]
        if any(x["kept"] is not None and x["kept"] < keep for x in s):
            continue
        beyond = sum(x["beyond"] for x in s)
        safe = sum(x["safe"] for x in s) / beyond if beyond else 0.0
        right = sum(x["right"] for x in s)
        # The safest; of those equally safe, the one that publishes the most right priors.
        if best is None or (safe, right) > (best[0], best[1]):
            best = (safe, right, constants)
    return best


def table(names, worlds, constants, min_confidence, threshold, marks):
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    print("| folder | shown queries | published | inside 95% ellipsoid | right priors published "
          "(withheld) | beyond the map | withheld | withheld or covered |")
    print("|---|---|---|---|---|---|---|---|")
    for name, w in zip(names, worlds):
        s = scores(w, constants, min_confidence, threshold)
        safe = s["safe"] / s["beyond"] if s["beyond"] else None
        print(f"| {name}{marks.get(name, '')} | {s['shown']} | {pct(s['kept'])} | "
              f"{pct(s['inside'])} | {s['right']} ({s['right_withheld']}) | {s['beyond']} | "
              f"{s['withheld']} | {pct(safe)} |")


def main():
    ap = arguments(__doc__, "evaluate --filter sequence folders", "shipped constants'")
    ap.add_argument("--shown", type=float, default=10.0,
                    help="metres from a map place within which a query is shown by the map")
    ap.add_argument("--off-map-threshold", type=float, default=0.5,
                    help="withhold at this probability of being off the map, as evaluate's flag "
                         "(default the node's 0.5; 1: never)")
    ap.add_argument("--keep", type=float, default=0.5,
                    help="the least share of the shown queries published on every --fit folder "
                         "(default 0.5, issue 17's floor: 0.85 until session 56, which no safe "
                         "constants reach on a 240-place map of cmu_calibration's route)")
    a, names, marks = parse(ap)
    if not a.shown > 0.0:
        ap.error(f"--shown: expected a distance above 0, found {a.shown}")
    if not 0.0 <= a.keep <= 1.0:
        ap.error(f"--keep: expected 0 to 1, found {a.keep}")
    if not 0.0 <= a.off_map_threshold <= 1.0:
        ap.error(f"--off-map-threshold: expected 0 to 1, found {a.off_map_threshold}")
    w = a.off_map_threshold
    worlds = [load(p, a.shown) for p in a.fit + a.check]
    for name, frames in zip(names, worlds):
        check_reproduction(name, frames, a.min_confidence, w)
    fit_worlds = worlds[:len(a.fit)]
    print(f"The shipped constants (OFF_MAP_LIKELIHOOD, OFF_MAP_CONFIDENCE, OFF_MAP_USUAL_POWER) {SHIPPED} at "
          f"min_confidence {a.min_confidence}:\n")
    table(names, worlds, SHIPPED, a.min_confidence, w, marks)
    if a.verify:
        print(f"\nverified: evaluate's off_map and published of {sum(map(len, worlds))} queries "
              "reproduced")
        return
    best = fit(fit_worlds, a.min_confidence, w, a.keep)
    if best is None:
        fail(f"no constants of the grid keep {100 * a.keep:.0f}% of the shown queries' priors on "
             "every --fit folder")
    safe, right, constants = best
    if len(a.fit) < 3:
        print(f"note: fitted on {len(a.fit)} folder(s); the shipped constants were fitted on six "
              "(three worlds, each on its own map and on a map of part of its route): a fit on "
              "few queries is a poor reason to change src/localize/sequence.rs\n")
    print(f"\nFitted: (OFF_MAP_LIKELIHOOD, OFF_MAP_CONFIDENCE, OFF_MAP_USUAL_POWER) {constants}: {100 * safe:.1f}% of "
          f"the --fit folders' queries beyond the map withheld or covered, keeping "
          f"{100 * a.keep:.0f}% of the shown queries' priors on each; {right} right priors "
          f"published on their shown queries:\n")
    edges = [sorted({c[i] for c in GRID}) for i in range(3)]
    if any(constants[i] in (e[0], e[-1]) and i != 2 for i, e in enumerate(edges)) or \
            constants[2] == edges[2][-1]:
        print("note: the fit is at the edge of the grid; the best value may lie beyond it\n")
    table(names, worlds, constants, a.min_confidence, w, marks)
    # A fit that is less safe past a map's end on a check folder than the shipped constants
    # is one to look at, not to adopt (session 56's, docs/sequence-filter.md "Map size").
    for name, frames in zip(names[len(a.fit):], worlds[len(a.fit):]):
        old_s = scores(frames, SHIPPED, a.min_confidence, w)
        new_s = scores(frames, constants, a.min_confidence, w)
        if new_s["beyond"] and new_s["safe"] < old_s["safe"]:
            print(f"\nnote: check folder {name}: the fitted constants withhold or cover "
                  f"{new_s['safe']} of its {new_s['beyond']} queries beyond the map, the "
                  f"shipped ones {old_s['safe']}: a check the fit fails")
    print("\nTo use fitted values: set OFF_MAP_LIKELIHOOD, OFF_MAP_CONFIDENCE and OFF_MAP_USUAL_POWER in "
          "src/localize/sequence.rs (and SHIPPED here), rebuild, and check with `dasgil-tools "
          "evaluate --filter sequence` on worlds not used for fitting.")


if __name__ == "__main__":
    main()
