#!/usr/bin/env bash
# What a robot's odometry gains the sequence filter (docs/sequence-filter.md, "Odometry"):
# each world's queries written as a rosbag2 drive with drifting wheel odometry
# (tools/python/world_to_bag.py --wheel-odometry /wheel/odom: distances 2% long, heading
# walking 0.5 deg per square-root metre), scored against a map of its database by
# `evaluate --bag ... --map ...` three ways: single frames (--filter none), the filter without
# odometry, and the filter with it (--odometry-topic /wheel/odom). Prints one table row per
# world: the share of queries within (5 m, 10 deg) and the published priors' coverage of
# their 95% ellipsoid. About 3 minutes a world on 2 cores (worlds rendered on first use).
#
#   tools/odometry-gain.sh [OUT] [WORLD ...]   # default OUT build/odometry-gain; default worlds:
#                                              # the three fitting worlds, cmu_slice, cmu_test_sepia
#   SCALE_ERROR=0.05 HEADING_DRIFT=2 tools/odometry-gain.sh OUT   # a worse odometry
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
TOOLS="$ROOT/target/release/dasgil-tools"
PY="$ROOT/.venv/bin/python"
OUT="${1:-$ROOT/build/odometry-gain}"
MODEL_FILE="${DASGIL_MODEL:-$ROOT/maps/models/dasgil-synth-cd-256x512.safetensors}"
if [ ! -f "$MODEL_FILE" ]; then
  echo "odometry-gain: no model file (DASGIL_MODEL or the shipped maps/models/dasgil-synth-cd-256x512.safetensors): found \`$MODEL_FILE\`" >&2
  exit 1
fi
MODEL_ID="$(sha256sum "$MODEL_FILE" | cut -c1-8)"
[ -x "$TOOLS" ] || { echo "odometry-gain: no $TOOLS: build it first (cargo build --release)" >&2; exit 1; }
# The binary's checksum too: a changed filter or prior reruns everything, never reuses a report
# an older build wrote.
TOOLS_ID="$(sha256sum "$TOOLS" | cut -c1-8)"
shift || true
WORLDS=("$@")
[ ${#WORLDS[@]} -gt 0 ] || WORLDS=(cmu_calibration cmu_val_pastel cmu_val_ink cmu_slice cmu_test_sepia)
SCALE_ERROR="${SCALE_ERROR:-0.02}"
HEADING_DRIFT="${HEADING_DRIFT:-0.5}"
DATA="${DASGIL_DATA:-$HOME/.cache/dasgil}"
mkdir -p "$OUT"
row() { # REPORT: "(5 m, 10 deg) | inside 95%" of its first report
  "$PY" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["reports"][0]
acc = 100 * r["all"]["accuracy"]["5m,10deg"]
s = (r.get("published") or {}).get("scores") or {}
inside = 100 * s["inside_95_ellipsoid"] if "inside_95_ellipsoid" in s else float("nan")
print(f"{acc:.1f}% | {inside:.1f}%", end="")
PY
}
echo "| world | single frames | inside 95% | filter | inside 95% | filter + odometry | inside 95% | filter steps moved by odometry |"
echo "|---|---|---|---|---|---|---|---|"
for w in "${WORLDS[@]}"; do
  # Named by the model file's and the binary's checksums: a model with other weights, layers
  # or metric, or another build, gets a map and runs of its own, never an older one's.
  d="$OUT/$w-$MODEL_ID-$TOOLS_ID"
  mkdir -p "$d"
  map="$d/map.safetensors"
  [ -f "$map" ] || "$TOOLS" build-map --sequence "$w" --device cpu --out "$map" >"$d/build-map.log" 2>&1 ||
    { echo "odometry-gain: build-map $w failed: $d/build-map.log" >&2; exit 1; }
  root="$DATA/$w"
  slice=$(sed -n 's/^ *slice: *\([0-9]*\).*/\1/p' <(awk -v w="$w:" '$1==w{f=1;next} /^[a-z_]+:$/{f=0} f' "$ROOT/config/sequences.yaml") | head -1)
  # The recording and its run are named by the odometry's errors: another SCALE_ERROR or
  # HEADING_DRIFT into the same OUT makes its own.
  tag="s$SCALE_ERROR-h$HEADING_DRIFT"
  bag="$d/queries-bag-$tag"
  [ -d "$bag" ] || "$PY" "$ROOT/tools/python/world_to_bag.py" --root "$root" --slice "$slice" --part query \
    --transport compressed --wheel-odometry /wheel/odom --odometry-scale-error "$SCALE_ERROR" \
    --odometry-heading-drift "$HEADING_DRIFT" --out "$bag" >"$d/bag.log"
  ev() { # NAME ARGS...
    [ -f "$d/$1/report.json" ] || "$TOOLS" evaluate --map "$map" --bag "$bag" \
      --image-topic /c0/image_raw/compressed --image-topic /c1/image_raw/compressed \
      --camera-id c0 --camera-id c1 --device cpu --out "$d/$1" "${@:2}" >"$d/$1.log" 2>&1 ||
      { echo "odometry-gain: evaluate $w $1 failed: $d/$1.log" >&2; exit 1; }
  }
  ev none --filter none
  ev sequence --filter sequence
  ev "odometry-$tag" --filter sequence --odometry-topic /wheel/odom
  moved=$("$PY" - "$d/odometry-$tag/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["reports"][0]
print(f'{r["sequence"]["odometry"]["steps_moved"]}')
PY
)
  echo "| $w | $(row "$d/none/report.json") | $(row "$d/sequence/report.json") | $(row "$d/odometry-$tag/report.json") | $moved |"
done
