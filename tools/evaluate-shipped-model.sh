#!/usr/bin/env bash
# Evaluates the shipped model against both baselines on the embedded cmu_slice (a synthetic
# Extended CMU-Seasons slice of a world no training data came from) and records the figures in
# maps/models/cmu_slice-evaluation.json (checked by tests/shipped_model.rs), with the reports and
# recall curves under maps/models/evaluation/.
#
#   tools/evaluate-shipped-model.sh
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
for run in shipped:"" raw-pixels:"--baseline raw-pixels" untrained:"--baseline untrained"; do
  name="${run%%:*}"
  # shellcheck disable=SC2086
  "$TOOLS" evaluate --sequence cmu_slice --device cpu --out "$WORK/$name" ${run#*:}
done
mkdir -p "$OUT"
python3 - "$WORK" "$OUT" "$ROOT/maps/models/cmu_slice-evaluation.json" <<'PY'
import json, os, shutil, sys
work, out, summary = sys.argv[1:4]
result = {}
for name in ["shipped", "raw-pixels", "untrained"]:
    reports = json.load(open(os.path.join(work, name, "report.json")))["reports"]
    for r in reports:
        key = f"{name} ({r['adaptation']})"
        result[key] = {
            "queries": r["all"]["queries"],
            "accuracy_5m_10deg": r["all"]["accuracy"]["5m,10deg"],
            "accuracy_0.5m_5deg": r["all"]["accuracy"]["0.5m,5deg"],
            "recall_at_1_25m": r["all"]["recall_at_n"]["1"],
            "median_position_error_m": r["all"]["median_position_error"],
            "by_condition_5m_10deg": {c: s["accuracy"]["5m,10deg"] for c, s in r["by_condition"].items()},
        }
    for f in ["report.md", "recall_curves.png", "matches.png"]:
        shutil.copy(os.path.join(work, name, f), os.path.join(out, f"{name}-{f}"))
tmp = summary + ".tmp"
with open(tmp, "w") as fh:
    json.dump(result, fh, indent=2, sort_keys=True)
    fh.write("\n")
os.replace(tmp, summary)
for k, v in result.items():
    print(f"{k:28s} (5 m, 10 deg) {100*v['accuracy_5m_10deg']:5.1f}%  recall@1 {100*v['recall_at_1_25m']:5.1f}%  median {v['median_position_error_m']:.1f} m")
PY
