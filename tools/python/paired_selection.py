"""Paired comparison of candidates with the shipped model on the validation worlds.

Used by tools/select-shipped-model.sh (maps/models/MODEL_CARD.md, "The rule: the six validation
worlds, paired"). For each world and each scored folder of SELECTION (`WORLD-NAME`, an
`evaluate` output), a query is right when its report.json entry (the report without
adaptation) has a position error of at most 5 m and a rotation error of at most 10 degrees --
the share evaluate reports as (5 m, 10 deg). A candidate is then set beside the shipped model
query by query: per world its wins (right where the shipped model is wrong) and losses (the
other way). The test counts captures, not queries: the cameras of one capture (a query's name
without its camera id, e.g. c0 and c1 at one time) see one place in one condition and are
right or wrong together more often than not, so each capture is one win (the candidate right
on more of its images than the shipped model), one loss, or neither. An exact two-sided sign
test over the won and lost captures of all the worlds, times the number of candidates in the
table (Bonferroni: a run offers several), is the p of the rule:

  a candidate passes when its mean over the six validation worlds is higher than the shipped
  model's, it wins more captures than it loses, and p < 0.05.

    python3 tools/python/paired_selection.py SELECTION SHIPPED_NAME WORLD... -- CANDIDATE_NAME...

Writes a Markdown table to stdout; with other worlds than the six, the rule's column says it
does not apply. A folder without report.json, without a report of no adaptation, or whose
queries differ from the shipped model's stops it (exit 1) with a message naming the folder;
a wrong command line exits 2.
"""

import json
import math
import os
import sys

P_MAX = 0.05
# The worlds the rule is over (config/sequences.yaml's validation worlds).
RULE_WORLDS = [
    "cmu_val_pastel",
    "cmu_val_ink",
    "cmu_val_pastel_drive",
    "cmu_val_ink_drive",
    "cmu_val_pastel_hard",
    "cmu_val_ink_hard",
]


def fail(msg):
    sys.exit(f"paired_selection: {msg}")


def right(folder):
    """Per query name: (within (5 m, 10 deg) of its truth, its capture), in the report without
    adaptation."""
    path = os.path.join(folder, "report.json")
    if not os.path.isfile(path):
        fail(f"{folder}: no report.json (not an evaluate output?)")
    try:
        reports = json.load(open(path))["reports"]
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{path}: not evaluate's report.json ({e})")
    none = [r for r in reports if r.get("adaptation") == "none"]
    if not none:
        fail(f"{path}: no report with adaptation none")
    out = {}
    try:
        for q in none[0].get("queries", []):
            ok = q["position_error"] <= 5.0 and q["rotation_error"] <= 10.0
            # The capture: the name without its camera id (c0 and c1 of one time).
            capture = q["name"].replace(q["camera"], "", 1) if q.get("camera") else q["name"]
            out[q["name"]] = (ok, capture)
    except (KeyError, TypeError) as e:
        fail(f"{path}: a query without {e} (not evaluate's report.json?)")
    if not out:
        fail(f"{path}: no scored query")
    return out


def sign_test(wins, losses):
    """Exact two-sided sign test: the chance of a split at least this uneven if either is as
    likely to win a discordant query."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def main(argv):
    if "--" not in argv:
        usage()
    cut = argv.index("--")
    selection, shipped, worlds, candidates = argv[0:1], argv[1:2], argv[2:cut], argv[cut + 1 :]
    if not selection or not shipped or not worlds or not candidates:
        usage()
    selection, shipped = selection[0], shipped[0]
    ruled = sorted(worlds) == sorted(RULE_WORLDS)
    base = {w: right(os.path.join(selection, f"{w}-{shipped}")) for w in worlds}
    m = len(candidates)
    lines = [
        f"Paired against the shipped model ({shipped}), no adaptation, (5 m, 10 deg): per world "
        "wins / losses (queries the candidate gets right and the shipped model wrong / the "
        "other way); captures won / lost over all the worlds (a capture: the cameras of one "
        f"time); p: exact two-sided sign test over them, times {m} (the candidates here). The "
        f"rule: a higher mean of the six validation worlds, more captures won than lost, p < "
        f"{P_MAX}"
        + ("." if ruled else f" (not these worlds: {' '.join(worlds)}; it does not apply)."),
        "",
        "| candidate | " + " | ".join(worlds)
        + " | mean (shipped) | captures won / lost | p | the rule |",
        "|---|" + "---|" * (len(worlds) + 4),
    ]
    for c in candidates:
        cells, means = [], []
        captures = {}
        for w in worlds:
            folder = os.path.join(selection, f"{w}-{c}")
            x = right(folder)
            if set(x) != set(base[w]):
                fail(f"{folder}: its queries are not the shipped model's on {w}")
            win = loss = 0
            for q, (got, capture) in x.items():
                was = base[w][q][0]
                win += got and not was
                loss += was and not got
                captures[(w, capture)] = captures.get((w, capture), 0) + int(got) - int(was)
            means.append(
                (
                    sum(v[0] for v in x.values()) / len(x),
                    sum(v[0] for v in base[w].values()) / len(x),
                )
            )
            cells.append(f"{win} / {loss}")
        mean = 100 * sum(v[0] for v in means) / len(means)
        mean_base = 100 * sum(v[1] for v in means) / len(means)
        won = sum(1 for d in captures.values() if d > 0)
        lost = sum(1 for d in captures.values() if d < 0)
        p = min(1.0, m * sign_test(won, lost))
        if not ruled:
            verdict = "n/a"
        elif mean > mean_base and won > lost and p < P_MAX:
            verdict = "passes"
        else:
            verdict = "does not pass"
        lines.append(
            f"| {c} | " + " | ".join(cells)
            + f" | {mean:.1f}% ({mean_base:.1f}%) | {won} / {lost} | {p:.3f} | {verdict} |"
        )
    print("\n".join(lines))


def usage():
    print(
        "usage: paired_selection.py SELECTION SHIPPED_NAME WORLD... -- CANDIDATE_NAME...",
        file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
