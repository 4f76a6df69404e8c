#!/usr/bin/env bash
# Refits the sequence filter's fitted constants with the model the maps are built with (the
# shipped one unless DASGIL_MODEL or CHECKPOINT says otherwise) and prints the tables quoted in
# docs/sequence-filter.md and docs/pose-prior.md:
# - SPREAD_MASS (tools/python/fit_sequence_spread.py): the three fitting worlds on their own
#   maps, cmu_slice as the check;
# - FILTER_UNSURE_CALIBRATION (the same script, --unsure; since 2026-12-06): the fitting worlds,
#   the drive-protocol validation worlds and, with views, the hard-drive ones, cmu_slice as the
#   check;
# - OFF_MAP_LIKELIHOOD, OFF_MAP_CONFIDENCE and OFF_MAP_USUAL_POWER (tools/python/fit_off_map.py):
#   the same, the drive-protocol validation worlds (whose frames must keep their priors too;
#   since 2026-12-04) and, with views, the hard-drive ones (since 2026-12-06), plus each
#   fitting world driven past the end of a map of the first part of its route
#   (config/partial-maps.yaml), and (since session 56, "Map size") cmu_calibration's queries
#   on maps of its route 4 and 8 times as long (120 and 240 places), the 240-place route's
#   queries past the end of the 120-place map, cmu_val_pastel's on a map of its route 4 times
#   as long (120) and the 120-place route's past a 60-place map; checks: cmu_slice on a map of
#   its first 20 places, of cmu_mini (its first 10), of cmu_calibration (another world) and of
#   its route 4 times as long (160 places), the 160-place route's queries past an 80-place
#   map, and cmu_val_ink's likewise (120 places; past 60).
# Every run is `dasgil-tools evaluate --filter sequence`, and (since session 72) the fitting
# worlds, the validation worlds and cmu_slice also one frame at a time (folders `*-single`) for
# the single-frame prior and the rotation floor; the scripts first check that they reproduce
# evaluate's numbers. About 12 minutes on 2 cores (nothing else running), 20 the first time (the
# partial and longer worlds are rendered, and their maps built, on first use).
#
#   tools/fit-sequence-constants.sh [OUT]      # default OUT: build/sequence-fit
#   CHECKPOINT=FILE tools/fit-sequence-constants.sh   # another generator checkpoint
#   VIEWS=none tools/fit-sequence-constants.sh   # maps without yaw views and without the
#                                                # hard-drive worlds, as the fits before
#                                                # 2026-12-06 were made
#   CENTRING=none tools/fit-sequence-constants.sh   # every evaluate with --centring none, as the
#                                                   # fits before session 72 were made (default
#                                                   # OUT: build/sequence-fit-none)
# VIEWS: the maps' yaw views (build-map/evaluate --yaw-views; default 3,6, their default since
# 2026-12-06); the kept maps are keyed by it too. CENTRING: evaluate's --centring (auto, running
# or none; default auto, evaluate's default since session 72: running with the shipped model's
# cosine metric); the maps do not depend on it (centring happens when a map is loaded).
# Since session 72 it also refits the single-frame prior (tools/python/fit_prior.py on the three
# fitting worlds) and the rotation floor (tools/python/fit_rotation_floor.py, and --unsure on the
# validation worlds), cmu_slice the check (docs/pose-prior.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
TOOLS="$ROOT/target/release/dasgil-tools"
CENTRING="${CENTRING:-auto}"
case "$CENTRING" in
  auto | running) OUT="${1:-$ROOT/build/sequence-fit}" ;;
  none) OUT="${1:-$ROOT/build/sequence-fit-none}" ;;
  *)
    echo "fit-sequence-constants: CENTRING: expected auto, running or none, found \`$CENTRING\`" >&2
    exit 2
    ;;
esac
mkdir -p "$OUT"
CK=()
if [ -n "${CHECKPOINT:-}" ]; then CK=(--checkpoint "$CHECKPOINT"); fi
# The maps are kept between runs under the model file's checksum: a model with other weights,
# layers or metric (its metadata) gets maps of its own, never an older model's.
MODEL_FILE="${CHECKPOINT:-${DASGIL_MODEL:-$ROOT/maps/models/dasgil-synth-cd-256x512.safetensors}}"
if [ ! -f "$MODEL_FILE" ]; then
  echo "fit-sequence-constants: no model file (CHECKPOINT, DASGIL_MODEL or the shipped maps/models/dasgil-synth-cd-256x512.safetensors): found \`$MODEL_FILE\`" >&2
  exit 1
fi
VIEWS="${VIEWS:-3,6}"
if [ "$VIEWS" != none ] && ! [[ "$VIEWS" =~ ^[0-9.]+(,[0-9.]+)*$ ]]; then
  echo "fit-sequence-constants: VIEWS: expected angles such as 3,6 or none, found \`$VIEWS\`" >&2
  exit 2
fi
# Kept beside the default OUT whatever OUT and CENTRING are (the maps do not depend on them).
MAPS="$ROOT/build/sequence-fit/maps-$(sha256sum "$MODEL_FILE" | cut -c1-8)"
# Maps without views keep the folder they always had.
if [ "$VIEWS" != none ]; then MAPS="$MAPS-views${VIEWS//,/-}"; fi
mkdir -p "$MAPS"
map() { # NAME [--sequences FILE]: a map of the named sequence
  [ -f "$MAPS/$1.map.safetensors" ] ||
    "$TOOLS" build-map "${@:2}" --sequence "$1" --device cpu --yaw-views "$VIEWS" "${CK[@]}" --out "$MAPS/$1.map.safetensors" >"$MAPS/$1.log" 2>&1 ||
    { echo "fit-sequence-constants: build-map $1 failed: $MAPS/$1.log" >&2; exit 1; }
}
for m in cmu_calibration_first10 cmu_val_pastel_first15 cmu_val_ink_first15 cmu_slice_first20 \
  cmu_calibration_x120 cmu_calibration_x240 cmu_slice_x80 cmu_slice_x160 cmu_val_ink_x60 \
  cmu_val_ink_x120 cmu_val_pastel_x60 cmu_val_pastel_x120; do
  map "$m" --sequences "$ROOT/config/partial-maps.yaml"
done
map cmu_mini
map cmu_calibration
# FILTER=none run ...: single frames (default: the sequence filter).
run() { # FOLDER QUERIES [MAP] (QUERIES of config/partial-maps.yaml when it names one there)
  local extra=()
  # With --map the map's own views; otherwise evaluate builds its maps with VIEWS.
  if [ -n "${3:-}" ]; then extra=(--map "$MAPS/$3.map.safetensors"); else extra=(--yaw-views "$VIEWS"); fi
  grep -q "^$2:" "$ROOT/config/partial-maps.yaml" && extra+=(--sequences "$ROOT/config/partial-maps.yaml")
  "$TOOLS" evaluate --sequence "$2" "${extra[@]}" --filter "${FILTER:-sequence}" --centring "$CENTRING" --device cpu "${CK[@]}" --out "$OUT/$1" >"$OUT/$1.log" 2>&1 ||
    { echo "fit-sequence-constants: evaluate $1 failed: $OUT/$1.log" >&2; exit 1; }
  # What centring did (auto: running, or none where the map cannot be centred).
  local centring
  centring="$(grep -o '"centring": *"[a-z]*"' "$OUT/$1/report.json" | head -1 | sed 's/.*"\([a-z]*\)"$/\1/')"
  echo "$1 (centring ${centring:-none}): $(grep -m1 'published by the node' "$OUT/$1.log" | sed 's/^ *//')"
}
run cmu_calibration cmu_calibration
run cmu_val_pastel cmu_val_pastel
run cmu_val_ink cmu_val_ink
run cmu_val_pastel_drive cmu_val_pastel_drive
run cmu_val_ink_drive cmu_val_ink_drive
# The hard-drive validation worlds fit the off-the-map triple with the views (2026-12-06); the
# fits without views (VIEWS=none) were made without them.
HARD=()
if [ "$VIEWS" != none ]; then HARD=(cmu_val_pastel_hard cmu_val_ink_hard); fi
for h in "${HARD[@]}"; do run "$h" "$h"; done
run cmu_slice cmu_slice
run cmu_calibration-past-first10 cmu_calibration cmu_calibration_first10
run cmu_val_pastel-past-first15 cmu_val_pastel cmu_val_pastel_first15
run cmu_val_ink-past-first15 cmu_val_ink cmu_val_ink_first15
run cmu_slice-past-first20 cmu_slice cmu_slice_first20
run cmu_slice-past-cmu_mini cmu_slice cmu_mini
run cmu_slice-on-cmu_calibration-map cmu_slice cmu_calibration
# Larger maps (docs/sequence-filter.md, "Map size"): cmu_calibration's and cmu_val_pastel's
# routes fitted on, cmu_slice's (a test world's) and cmu_val_ink's checks.
run cmu_calibration-on-x120 cmu_calibration cmu_calibration_x120
run cmu_calibration-on-x240 cmu_calibration cmu_calibration_x240
run cmu_calibration_x240-past-x120 cmu_calibration_x240 cmu_calibration_x120
run cmu_slice-on-x160 cmu_slice cmu_slice_x160
run cmu_slice_x160-past-x80 cmu_slice_x160 cmu_slice_x80
run cmu_val_pastel-on-x120 cmu_val_pastel cmu_val_pastel_x120
run cmu_val_pastel_x120-past-x60 cmu_val_pastel_x120 cmu_val_pastel_x60
run cmu_val_ink-on-x120 cmu_val_ink cmu_val_ink_x120
run cmu_val_ink_x120-past-x60 cmu_val_ink_x120 cmu_val_ink_x60
# Single frames (no filter) for the single-frame prior and the rotation floor.
for w in cmu_calibration cmu_val_pastel cmu_val_ink cmu_val_pastel_drive cmu_val_ink_drive "${HARD[@]}" cmu_slice; do
  FILTER=none run "$w-single" "$w"
done
cd "$OUT"
echo
python "$ROOT/tools/python/fit_sequence_spread.py" --fit cmu_calibration cmu_val_pastel cmu_val_ink --check cmu_slice
echo
python "$ROOT/tools/python/fit_sequence_spread.py" --unsure --fit cmu_calibration cmu_val_pastel cmu_val_ink \
  cmu_val_pastel_drive cmu_val_ink_drive "${HARD[@]}" --check cmu_slice
echo
python "$ROOT/tools/python/fit_off_map.py" --fit cmu_calibration cmu_val_pastel cmu_val_ink \
  cmu_val_pastel_drive cmu_val_ink_drive "${HARD[@]}" \
  cmu_calibration-past-first10 cmu_val_pastel-past-first15 cmu_val_ink-past-first15 \
  cmu_calibration-on-x120 cmu_calibration-on-x240 cmu_calibration_x240-past-x120 \
  cmu_val_pastel-on-x120 cmu_val_pastel_x120-past-x60 \
  --check cmu_slice cmu_slice-past-first20 cmu_slice-past-cmu_mini cmu_slice-on-cmu_calibration-map \
  cmu_slice-on-x160 cmu_slice_x160-past-x80 cmu_val_ink-on-x120 cmu_val_ink_x120-past-x60
echo
python "$ROOT/tools/python/fit_prior.py" --fit cmu_calibration-single cmu_val_pastel-single \
  cmu_val_ink-single --check cmu_slice-single
echo
# Single frames and the filter pooled per world.
python "$ROOT/tools/python/fit_rotation_floor.py" --fit cmu_calibration{,-single} cmu_val_pastel{,-single} \
  cmu_val_ink{,-single} cmu_val_pastel_drive{,-single} cmu_val_ink_drive{,-single} --check cmu_slice{,-single}
echo
UNSURE=()
for w in cmu_val_pastel cmu_val_ink cmu_val_pastel_drive cmu_val_ink_drive "${HARD[@]}"; do UNSURE+=("$w" "$w-single"); done
python "$ROOT/tools/python/fit_rotation_floor.py" --unsure --fit "${UNSURE[@]}" --check cmu_slice{,-single}
