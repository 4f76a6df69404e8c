#!/usr/bin/env bash
# Evaluates the shipped model against both baselines on the test worlds, which nothing chooses
# or fits with, and records the figures per world in maps/models/WORLD-evaluation.json, with the
# reports and recall curves (and the shipped model's query / map pairs, matches.png) under
# maps/models/evaluation/ (cmu_slice) and maps/models/evaluation/WORLD/ (the others):
#   cmu_slice       a synthetic Extended CMU-Seasons slice in our renderer's own look, of a world
#                   no training data came from (its figures are checked by tests/shipped_model.rs);
#   cmu_test_sepia  a world in the look kept for test figures (synth cmu --style sepia-hatch),
#                   which no training, selection or fitted constant used;
#   cmu_test_drive, cmu_test_sepia_drive  the drive protocol (queries driven 1 m further left
#                   and turned by a few degrees per frame, map images 2.5 m apart), in our look
#                   and in the test look;
#   cmu_test_drive_lens  cmu_test_drive drawn through the real Extended CMU-Seasons cameras' barrel
#                   distortion (synth cmu --lens cmu; tools/evaluate-lens.sh crosses it with
#                   cmu_test_drive's map and queries);
#   cmu_test_sepia_hard  the hard drive protocol (queries about 2 m to the left, turned by
#                   sigma 6 degrees, a low sun among the conditions) in the test look, where the
#                   model's lead over raw pixels shrinks (MODEL_CARD.md, "The hard drive
#                   protocol").
# Each world: the shipped model one frame at a time (both adaptations) and through the sequence
# filter (`--filter sequence`), raw pixels, the untrained network; the baselines at evaluate's
# default for them (the reference's l1) and with the shipped model's metric, cosine
# (raw-pixels-cosine, untrained-cosine), so the model is compared with their best.
#
#   tools/evaluate-shipped-model.sh
#   WORLDS=cmu_test_sepia tools/evaluate-shipped-model.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
TOOLS="$ROOT/target/release/dasgil-tools"
OUT="$ROOT/maps/models/evaluation"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
WORLDS="${WORLDS:-cmu_slice cmu_test_sepia cmu_test_drive cmu_test_sepia_drive cmu_test_drive_lens cmu_test_sepia_hard}"
for world in $WORLDS; do
  for run in shipped:"" shipped-sequence:"--filter sequence" raw-pixels:"--baseline raw-pixels" \
    untrained:"--baseline untrained" raw-pixels-cosine:"--baseline raw-pixels --metric cosine" \
    untrained-cosine:"--baseline untrained --metric cosine"; do
    name="${run%%:*}"
    # shellcheck disable=SC2086
    "$TOOLS" evaluate --sequence "$world" --device cpu --out "$WORK/$world/$name" ${run#*:}
  done
  out="$OUT"
  [ "$world" = cmu_slice ] || out="$OUT/$world"
  mkdir -p "$out"
  python3 - "$WORK/$world" "$out" "$ROOT/maps/models/$world-evaluation.json" <<'PY'
import json, os, shutil, sys
work, out, summary = sys.argv[1:4]
result = {}
for name in ["shipped", "shipped-sequence", "raw-pixels", "untrained", "raw-pixels-cosine",
             "untrained-cosine"]:
    reports = json.load(open(os.path.join(work, name, "report.json")))["reports"]
    for r in reports:
        key = f"{name} ({r['adaptation']})"
        p = r["published"]
        result[key] = {
            "queries": r["all"]["queries"],
            "accuracy_5m_10deg": r["all"]["accuracy"]["5m,10deg"],
            "accuracy_0.5m_5deg": r["all"]["accuracy"]["0.5m,5deg"],
            "recall_at_1_25m": r["all"]["recall_at_n"]["1"],
            "median_position_error_m": r["all"]["median_position_error"],
            "by_condition_5m_10deg": {c: s["accuracy"]["5m,10deg"] for c, s in r["by_condition"].items()},
            # What the node would publish (default min_confidence; with the filter, also
            # off_map_threshold): the share published, and of those the share within
            # (5 m, 10 deg), the truth inside the 95% position ellipsoid, the median 95% radius.
            "published": p["outcomes"]["localized"] / r["all"]["queries"],
            "published_accuracy_5m_10deg": p["scores"]["accuracy"]["5m,10deg"],
            "published_inside_95_ellipsoid": p["scores"]["inside_95_ellipsoid"],
            "published_median_radius_95_m": p["scores"]["median_radius_95"],
        }
    # The pictures of query / map pairs (3 MB each) for the shipped model's single frames only.
    files = ["report.md", "recall_curves.png"] + (["matches.png"] if name == "shipped" else [])
    for f in files:
        shutil.copy(os.path.join(work, name, f), os.path.join(out, f"{name}-{f}"))
tmp = summary + ".tmp"
with open(tmp, "w") as fh:
    json.dump(result, fh, indent=2, sort_keys=True)
    fh.write("\n")
os.replace(tmp, summary)
print(os.path.basename(summary))
for k, v in result.items():
    print(f"  {k:28s} (5 m, 10 deg) {100*v['accuracy_5m_10deg']:5.1f}%  recall@1 {100*v['recall_at_1_25m']:5.1f}%  "
          f"median {v['median_position_error_m']:.1f} m; published {100*v['published']:5.1f}%, of those "
          f"{100*v['published_accuracy_5m_10deg']:5.1f}% within, {100*v['published_inside_95_ellipsoid']:5.1f}% inside "
          f"the 95% ellipsoid, median radius {v['published_median_radius_95_m']:.1f} m")
PY
done
