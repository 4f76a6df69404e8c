#!/usr/bin/env bash
# What a lens does to retrieval: cmu_test_drive and cmu_test_drive_lens are one world, route and
# query set (config/sequences.yaml), drawn through an ideal pinhole and through the real
# Extended CMU-Seasons cameras' barrel distortion (synth cmu --lens cmu). Each map (the database
# of one) is searched with the queries of both, so a map from one camera and queries from a camera
# with another lens are measured beside the same-lens cases, for the model and raw pixels.
# Test worlds: nothing is chosen or fitted on them.
#
#   tools/evaluate-lens.sh OUT [--rectify] [--checkpoint FILE] [--layers L]
# --rectify: maps built with build-map --rectify (the queries of evaluate --map follow them).
# The other options choose the model (--checkpoint, --layers: what a map records); options of the
# search (--filter, --min-confidence) and --device are not taken, as the cross runs could not
# follow them. Runs on the CPU.
# Writes OUT/MAP-map/QUERIES-queries/{model,raw-pixels}/ (evaluate's report) and prints a table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUT [--rectify] [evaluate options]" >&2; exit 2; }
OUT="$1"; shift
COMMON=()
if [ "${1:-}" = --rectify ]; then COMMON+=(--rectify); shift; fi
for o in "$@"; do
  case "$o" in
    --filter*|--min-confidence*|--device*|--map*|--baseline*)
      echo "$0: $o is not taken (see the header: model options only)" >&2; exit 2 ;;
  esac
done
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
TOOLS="$ROOT/target/release/dasgil-tools"
for model in model raw-pixels; do
  extra=("$@")
  [ "$model" = raw-pixels ] && extra=(--baseline raw-pixels)
  for map in cmu_test_drive cmu_test_drive_lens; do
    # The map, from the world's own evaluation (same-lens queries).
    own="$OUT/$map-map/$map-queries/$model"
    mkdir -p "$(dirname "$own")"
    "$TOOLS" evaluate --sequence "$map" --device cpu --out "$own" ${COMMON[@]+"${COMMON[@]}"} \
      ${extra[@]+"${extra[@]}"} \
      >"$own.log" 2>&1
    for queries in cmu_test_drive cmu_test_drive_lens; do
      [ "$queries" = "$map" ] && continue
      other="$OUT/$map-map/$queries-queries/$model"
      mkdir -p "$(dirname "$other")"
      "$TOOLS" evaluate --sequence "$queries" --device cpu --map "$own/map-none.safetensors" \
        --out "$other" >"$other.log" 2>&1
    done
  done
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"{'map':22s} {'queries':22s} {'model':10s} (5 m, 10 deg)  recall@1  inside 95%")
for model in ["model", "raw-pixels"]:
    for m in ["cmu_test_drive", "cmu_test_drive_lens"]:
        for q in ["cmu_test_drive", "cmu_test_drive_lens"]:
            r = [r for r in json.load(open(os.path.join(out, f"{m}-map", f"{q}-queries", model, "report.json")))["reports"]
                 if r["adaptation"] == "none"][0]
            print(f"{m:22s} {q:22s} {model:10s} {100*r['all']['accuracy']['5m,10deg']:12.1f}%  "
                  f"{100*r['all']['recall_at_n']['1']:7.1f}%  {100*r['published']['scores']['inside_95_ellipsoid']:8.1f}%"
                  + ("  rectified" if r.get("rectified") else ""))
PY
