#!/usr/bin/env bash
# The product doing its job, with no data to download:
#   1. set-up and build (skipped when done), the ROS 2 package installed with colcon;
#   2. the embedded Extended CMU-Seasons slice `cmu_slice` (rendered on first use);
#   3. its descriptor map, built with the shipped model;
#   4. the node started as users start it: `ros2 launch dasgil localize.launch.py` from the
#      colcon install tree, two cameras (c0, c1);
#   5. the slice's query frames replayed to it through ROS 2 publishers at camera rate, the pose
#      priors collected and scored: a summary and a PNG of the route.
# Usage: tools/demo.sh [--sequence NAME] [--rate HZ] [--transport raw|compressed]
#                     [--filter none|sequence] [--stamps data|send] [--out DIR]
# Outputs in build/demo (or --out): the map, node.log, priors.csv, summary.json, route.png.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEQ=cmu_slice
RATE=10
TRANSPORT=raw
FILTER=
STAMPS=
OUT="$ROOT/build/demo"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    --sequence|--rate|--transport|--filter|--stamps|--out)
      if [ $# -lt 2 ]; then echo "demo: $1 needs a value (see --help)" >&2; exit 2; fi ;;
    *) echo "demo: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
  esac
  case "$1" in
    --sequence) SEQ="$2" ;;
    --rate) RATE="$2" ;;
    --transport) TRANSPORT="$2" ;;
    --filter) FILTER="$2" ;;
    --stamps) STAMPS="$2" ;;
    --out) OUT="$2" ;;
  esac
  shift 2
done
# Checked here, before minutes of set-up, build and map (the node and replay check them again).
case "$TRANSPORT" in raw|compressed) ;; *)
  echo "demo: --transport: expected raw or compressed, found \`$TRANSPORT\`" >&2; exit 2 ;; esac
case "$FILTER" in ""|none|sequence) ;; *)
  echo "demo: --filter: expected none or sequence, found \`$FILTER\`" >&2; exit 2 ;; esac
case "$STAMPS" in ""|data|send) ;; *)
  echo "demo: --stamps: expected data or send, found \`$STAMPS\`" >&2; exit 2 ;; esac
if ! [[ "$RATE" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v r="$RATE" 'BEGIN { exit !(r > 0) }'; then
  echo "demo: --rate: expected a rate in Hz above 0, found \`$RATE\`" >&2; exit 2
fi
START=$(date +%s)
stage() { echo; echo "=== demo [$(( $(date +%s) - START )) s] $*"; }

stage "set-up (tools/setup.sh)"
"$ROOT/tools/setup.sh"
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
stage "build (cargo build --release; minutes the first time)"
(cd "$ROOT" && cargo build --release)
stage "ROS 2 package: colcon install tree"
mkdir -p "$OUT"
"$ROOT/tools/install-ros-package.sh" "$ROOT/build/ros-ws"
set +u
# shellcheck disable=SC1091
source "$ROOT/build/ros-ws/install/setup.bash"
set -u
TOOLS="$ROOT/build/ros-ws/install/dasgil/lib/dasgil/dasgil-tools"

# ROS 2 traffic stays on this machine, in a domain of its own unless one is set.
# Raw 512x384 rgb8 frames exceed Fast DDS's 512 KiB shared-memory segments (see the file).
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$ROOT/build/ros-ws/install/dasgil/share/dasgil/config/fastdds-large-images.xml}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 90 + 10))}"

MAP="$OUT/$SEQ.map.safetensors"
stage "data and map: dasgil-tools build-map --sequence $SEQ (renders the slice on first use)"
"$TOOLS" build-map --sequence "$SEQ" --out "$MAP"

stage "node: ros2 launch dasgil localize.launch.py (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, log: $OUT/node.log)"
# Job control on: a background job of a script would otherwise ignore SIGINT, which is how
# ros2 launch is told to stop (it then stops the node with SIGINT, as Ctrl-C does).
set -m
# SIGINT back to its default for ros2 launch: started from a background job (nohup, CI), this
# script would hand it SIGINT ignored, and the stop below would not reach it.
env --default-signal=INT ros2 launch dasgil localize.launch.py map:="$MAP" image_topics:=/cam0/image_raw,/cam1/image_raw \
  camera_ids:=c0,c1 transport:="$TRANSPORT" ${FILTER:+filter:="$FILTER"} >"$OUT/node.log" 2>&1 &
LAUNCH=$!
set +m
stop_node() {
  if kill -0 "$LAUNCH" 2>/dev/null; then
    kill -INT "$LAUNCH" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$LAUNCH" 2>/dev/null || break; sleep 0.1; done
    # Its own process group (set -m): the node goes with it, never orphaned.
    kill -KILL -- "-$LAUNCH" 2>/dev/null || true
  fi
}
trap stop_node EXIT
# The node is ready when it says so (model and map loaded); a node that stops says why.
for _ in $(seq 900); do
  grep -q "dasgil node ready" "$OUT/node.log" 2>/dev/null && break
  if grep -q "process has died" "$OUT/node.log" 2>/dev/null || ! kill -0 "$LAUNCH" 2>/dev/null; then
    echo "demo: the node stopped; its log ($OUT/node.log):" >&2
    cat "$OUT/node.log" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q "dasgil node ready" "$OUT/node.log" || { echo "demo: the node did not get ready in 90 s; log: $OUT/node.log" >&2; exit 1; }

stage "replay: the query frames of c0 and c1 at $RATE Hz each ($TRANSPORT), priors scored"
if ! "$TOOLS" replay --sequence "$SEQ" --map "$MAP" --topics /cam0/image_raw,/cam1/image_raw \
  --camera-ids c0,c1 --rate "$RATE" --transport "$TRANSPORT" ${STAMPS:+--stamps "$STAMPS"} --wait 90 --out "$OUT"; then
  echo "demo: the replay failed; the node's log ($OUT/node.log) ends with:" >&2
  tail -20 "$OUT/node.log" >&2
  exit 1
fi
stop_node
trap - EXIT
stage "done in $(( $(date +%s) - START )) s: $OUT/route.png"
