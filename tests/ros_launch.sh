#!/usr/bin/env bash
# The product as users run it, through the real ROS 2 tooling (vendored jazzy launch/ros2cli):
#   0. tools/demo.sh refuses mistyped arguments before any set-up;
#   1. tools/demo.sh on the small slice cmu_mini: colcon install tree, build-map with the shipped
#      model, `ros2 launch dasgil localize.launch.py` with two cameras, the queries replayed at
#      camera rate over ROS 2, the priors scored; its summary and PNG are checked;
#   2. `ros2 launch` again (compressed transport, centring:=running): `ros2 param list/describe/get/set` see the
#      declared parameters, `ros2 topic echo` shows a prior in the map frame, `log_level:=warn`
#      silences the info lines, a prior on prior_topic shows its gate on prior_gate, a launch
#      argument that is no number is refused, and SIGINT stops everything cleanly within 2 s.
# Needs tools/env.sh sourced; ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE come from the caller.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d)"
LAUNCH=""
cleanup() {
  # ros2 launch runs in its own process group (set -m): stop the node with it, never orphan it.
  if [ -n "$LAUNCH" ] && kill -0 "$LAUNCH" 2>/dev/null; then
    kill -INT -- "-$LAUNCH" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$LAUNCH" 2>/dev/null || true
  fi
  # `ros2 param|topic` started a ros2 daemon for this domain: stop it, never leave it behind.
  if command -v ros2 >/dev/null; then timeout 20 ros2 daemon stop >/dev/null 2>&1 || true; fi
  rm -rf "$OUT"
}
trap cleanup EXIT
fail() {
  echo "ros launch test: FAILED: $*" >&2
  for f in "$OUT"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}

# 0. A mistyped demo argument is refused at once (exit 2, a `demo:` message naming the flag),
# before minutes of set-up, build and map.
for bad in "--stamps date" "--rate 0" "--rate abc" "--filter sequnce" "--transport jpeg" "--out"; do
  rc=0
  # shellcheck disable=SC2086
  timeout 10 "$ROOT/tools/demo.sh" $bad >"$OUT/bad-arg.log" 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "tools/demo.sh $bad: exit $rc, expected 2"
  grep -q "^demo: ${bad%% *}" "$OUT/bad-arg.log" || fail "tools/demo.sh $bad: no \`demo: ${bad%% *}\` message"
done
rm -f "$OUT/bad-arg.log"

# 1. The demo on the small slice. At 2 Hz per camera a frame has 500 ms before the next of its
# camera replaces it: every frame gets its prior even on a loaded 2-core machine (at 10 Hz a
# busy machine drops frames, newest-wins, as documented; keeping up is node_latency's bench).
timeout 900 "$ROOT/tools/demo.sh" --sequence cmu_mini --rate 2 --out "$OUT/demo" >"$OUT/demo.log" 2>&1 ||
  fail "tools/demo.sh --sequence cmu_mini failed (or ran past 900 s)"
summary="$(cat "$OUT/demo.log")"
# A frame without a prior is one withheld as ambiguous (with the default filter sequence none of
# the 40 here when this was written; with filter none 3); at 2 Hz none is dropped.
grep -qE "frames sent 40, priors received (3[4-9]|40) \([0-6] frames without a prior, 0 unknown stamps\)" <<<"$summary" ||
  fail "demo summary: $(grep 'frames sent' <<<"$summary")"
grep -qE "^all +40 +(3[4-9]|40) +(9[0-9]|100)\.[0-9]%" <<<"$summary" || fail "demo accuracy below 90%: $(grep '^all' <<<"$summary")"
grep -qE "image-to-prior latency: p50 [0-9.]+ ms, p99 [0-9.]+ ms" <<<"$summary" || fail "no latency line"
# The node's default filter (sequence); the slice's two traversals (snow, low-sun) are months
# apart in the data, and replay stamps frames with the data's clock: one reset between them.
grep -qE "node filter: sequence \([0-9]+ relocalization\(s\), 1 reset\(s\) during the replay" <<<"$summary" ||
  fail "demo: node filter line: $(grep 'node filter' <<<"$summary")"
grep -qE "^correct priors per frame sent: [0-9]+ of 40 \([0-9.]+%; within \(5 m, 10 deg\)" <<<"$summary" ||
  fail "demo: no 'correct priors per frame sent' line"
python - "$OUT/demo/route.png" "$OUT/demo/summary.json" <<'PY' || fail "route.png / summary.json"
import json, struct, sys
png = open(sys.argv[1], "rb").read(32)
assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", png[16:24])
assert w >= 1000 and h >= 600, (w, h)
s = json.load(open(sys.argv[2]))
assert s["unknown_stamps"] == 0 and s["wrong_frame_id"] == 0, s
assert set(s["by_condition"]) == {"snow", "low-sun"}, s["by_condition"].keys()
assert 0.85 <= s["all"]["inside_95_ellipsoid"] <= 1.0, s["all"]
# Correct priors per frame sent: the priors within (5 m, 10 deg) over every frame sent.
a = s["all"]
assert a["frames"] == s["frames_sent"], a
assert abs(a["correct_per_frame"] - a["within_5m_10deg"] * a["priors"] / a["frames"]) < 1e-9, a
# replay's default --stamps data: the data's clock (0.5 s between captures; the months between
# the traversals shortened to an hour), the second camera of a capture 1 ns after the first.
assert s["stamps"] == "data", s.get("stamps")
# The node's own account of the frames it did not answer (/diagnostics): withheld, skipped as
# stale or rejected; the rest of the frames without a prior were lost in transport.
o = s["node_outcomes"]
assert set(o) == {"withheld", "off_the_map", "skipped", "rejected", "no_candidates", "received"}, o
assert o["off_the_map"] <= o["withheld"] and o["rejected"] == 0 and o["no_candidates"] == 0, o
assert s["all"]["priors"] <= o["received"] <= s["frames_sent"], (o, s["frames_sent"])
assert o["withheld"] + o["skipped"] <= s["frames_without_prior"], (o, s["frames_without_prior"])
st = {(f["camera"], f["name"].split("_")[1]): f["stamp_ns"] for f in s["frames"]}
c0 = sorted(v for (c, _), v in st.items() if c == "c0")
assert c0[1] - c0[0] == 500_000_000, c0[:2]
assert max(b - a for a, b in zip(c0, c0[1:])) == 3_600 * 10**9, "no hour between the traversals"
assert all(st[("c1", i)] - st[("c0", i)] == 1 for (c, i) in st if c == "c0" and ("c1", i) in st), st
PY
grep -q "process has finished cleanly" "$OUT/demo/node.log" || fail "the demo's node did not stop cleanly"
# The node says how the map's images were encoded (queries follow the map).
grep -qE "dasgil node ready: map .* entries; adaptation none, photometric none, yaw views ±3,±6 deg\), metric cosine, centring running," "$OUT/demo/node.log" ||
  fail "the node's ready line does not name the map's adaptation, photometric mode and yaw views, and the default centring (auto: running on the shipped model's cosine map)"

# 2. ros2 launch, param, topic, log level, SIGINT.
set +u
# shellcheck disable=SC1091
source "$ROOT/build/ros-ws/install/setup.bash"
set -u
MAP="$OUT/demo/cmu_mini.map.safetensors"
set -m
# env --default-signal=INT: a script started in the background (nohup, a CI runner's job) hands
# its children SIGINT ignored, and ros2 launch then never hears the SIGINT below (seen: "still
# running 30 s after SIGINT", no shutdown line in its log).
env --default-signal=INT ros2 launch dasgil localize.launch.py map:="$MAP" image_topics:=/ros_launch_test/cam0/compressed \
  camera_ids:=c0 transport:=compressed filter:=sequence odometry_topic:=/ros_launch_test/odom \
  off_map_threshold:=0.6 prior_topic:=/ros_launch_test/gnss gate_radius:=12 gate_sigmas:=3 centring:=running \
  log_level:=warn >"$OUT/launch.log" 2>&1 &
LAUNCH=$!
set +m
for _ in $(seq 300); do
  ros2 node list 2>/dev/null | grep -q "^/dasgil_localizer$" && break
  kill -0 "$LAUNCH" 2>/dev/null || fail "ros2 launch exited"
  sleep 0.2
done
# Prints the output of the first of $1 tries of a command that succeeds, a second apart (what
# the ROS 2 graph shows can take a moment to be discovered); fails if none does.
first_success() {
  local tries="$1" out
  shift
  for _ in $(seq "$tries"); do
    out="$("$@" 2>&1)" && { printf '%s\n' "$out"; return 0; }
    sleep 1
  done
  # What the last try said (exit 124: its timeout), for the failure message.
  printf 'last try: %s\n' "${out:-nothing}"
  return 1
}
# The node is in `ros2 node list`; its parameter services can take a moment more to be
# discovered ("Node not found"): a few tries.
params="$(first_success 10 timeout 60 ros2 param list /dasgil_localizer)" || fail "ros2 param list"
for p in map checkpoint image_topics camera_ids transport metric top_k frame_id prior_topic gate_radius gate_sigmas \
  base_from_camera max_rate min_confidence device diagnostics_period frame_timeout prior_timeout filter odometry_topic centring \
  off_map_threshold; do
  grep -qE "^ +$p$" <<<"$params" || fail "ros2 param list has no $p: $params"
done
desc="$(timeout 60 ros2 param describe /dasgil_localizer min_confidence)"
grep -q "Description: Matches below this confidence" <<<"$desc" || fail "describe: $desc"
got="$(timeout 60 ros2 param get /dasgil_localizer transport)"
grep -q "compressed" <<<"$got" || fail "param get transport: $got"
got="$(timeout 60 ros2 param get /dasgil_localizer odometry_topic)"
grep -q "/ros_launch_test/odom" <<<"$got" || fail "param get odometry_topic (launch arg): $got"
got="$(timeout 60 ros2 param get /dasgil_localizer off_map_threshold)"
grep -q "0.6" <<<"$got" || fail "param get off_map_threshold (launch arg): $got"
got="$(timeout 60 ros2 param get /dasgil_localizer centring)"
grep -q "running" <<<"$got" || fail "param get centring (launch arg): $got"
for pv in "prior_topic /ros_launch_test/gnss" "gate_radius 12" "gate_sigmas 3"; do
  got="$(timeout 60 ros2 param get /dasgil_localizer "${pv%% *}")"
  grep -q "${pv#* }" <<<"$got" || fail "param get ${pv%% *} (launch arg): $got"
done
set_out="$(timeout 60 ros2 param set /dasgil_localizer top_k 3 2>&1 || true)"
grep -q "read-only while the node runs" <<<"$set_out" || fail "param set was not refused: $set_out"
timeout 60 ros2 topic echo --once /pose_prior >"$OUT/echo.log" 2>&1 &
ECHO=$!
sleep 2
timeout 300 "$ROOT/build/ros-ws/install/dasgil/lib/dasgil/dasgil-tools" replay --sequence cmu_mini --map "$MAP" \
  --topics /ros_launch_test/cam0/compressed --camera-ids c0 --transport compressed --limit 5 --rate 2 \
  --out "$OUT/replay" >"$OUT/replay.log" 2>&1 || fail "replay (compressed)"
wait "$ECHO" || fail "ros2 topic echo --once /pose_prior got nothing"
grep -q "frame_id: map" "$OUT/echo.log" || fail "echo: $(cat "$OUT/echo.log")"
grep -q "covariance:" "$OUT/echo.log" || fail "echo has no covariance"
grep -q "frames sent 5, priors received 5" "$OUT/replay.log" || fail "compressed replay: $(cat "$OUT/replay.log")"
grep -qE "node filter: sequence \([0-9]+ relocalization\(s\), 0 reset\(s\) during the replay" "$OUT/replay.log" ||
  fail "replay against filter:=sequence: $(grep 'node filter' "$OUT/replay.log")"
# The same queries as a rosbag2 recording (tools/python/world_to_bag.py, MCAP, TF), played by
# `replay --bag` at the recording's rate (2 Hz here) and scored against its recorded truth.
MINI="${DASGIL_DATA:-$HOME/.cache/dasgil}/cmu_mini"
"$ROOT/.venv/bin/python" "$ROOT/tools/python/world_to_bag.py" --root "$MINI" --slice 2 --part query \
  --cameras c0 --out "$OUT/mini_queries" >"$OUT/bag.log" 2>&1 || fail "world_to_bag.py on $MINI"
DASGIL_DATA="$OUT/data" timeout 300 "$ROOT/build/ros-ws/install/dasgil/lib/dasgil/dasgil-tools" replay \
  --bag "$OUT/mini_queries" --image-topic /c0/image_raw --map "$MAP" \
  --topics /ros_launch_test/cam0/compressed --camera-ids /c0/image_raw --transport compressed --limit 5 \
  --out "$OUT/replay-bag" >"$OUT/replay-bag.log" 2>&1 || fail "replay --bag"
grep -q "frames sent 5, priors received 5" "$OUT/replay-bag.log" || fail "replay --bag: $(cat "$OUT/replay-bag.log")"
if grep -q "dasgil node ready" "$OUT/launch.log"; then fail "log_level:=warn still printed info lines"; fi
# The search gate as RViz sees it (after the replays: this prior, far from the map, gates them
# out): a prior without a covariance, `ros2 topic pub` to prior_topic, gives on prior_gate a
# Marker SPHERE of gate_radius:=12 (24 m across) at its position, in the map frame. Echoed
# while published: transient local, as RViz's late Marker display gets it.
# Published at 2 Hz while echoed: the node's prior_timeout (5 s) would otherwise expire the gate
# (a DELETE) before a CLI slowed by load subscribes. The echo asks for transient local and
# reliable itself: its "best available" QoS falls back to volatile when it has not yet
# discovered the publisher's, and then never hears the latest marker.
timeout 120 ros2 topic pub -r 2 /ros_launch_test/gnss geometry_msgs/msg/PoseWithCovarianceStamped \
  "{header: {frame_id: map}, pose: {pose: {position: {x: 5000.0, y: -300.0, z: 1.5}, orientation: {w: 1.0}}}}" \
  >"$OUT/gnss.log" 2>&1 &
GNSS=$!
# 60 s a try: under load the CLI alone can take tens of seconds to start and discover.
gate="$(first_success 3 timeout 60 ros2 topic echo --once --qos-durability transient_local \
  --qos-reliability reliable /prior_gate visualization_msgs/msg/Marker)" ||
  fail "ros2 topic echo --once /prior_gate: $gate (pub: $(cat "$OUT/gnss.log"))"
kill "$GNSS" 2>/dev/null || true
wait "$GNSS" 2>/dev/null || true
python - "$gate" <<'PY' || fail "prior_gate: $gate"
import sys, yaml
m = yaml.safe_load(sys.argv[1].split("\n---")[0])
assert m["header"]["frame_id"] == "map" and m["type"] == 2 and m["action"] == 0, m
assert m["pose"]["position"] == {"x": 5000.0, "y": -300.0, "z": 1.5}, m["pose"]
assert m["scale"] == {"x": 24.0, "y": 24.0, "z": 24.0}, m["scale"]
PY
# A launch argument that is no number stops the launch, naming it (before the node starts).
rc=0
timeout 60 ros2 launch dasgil localize.launch.py map:="$MAP" gate_radius:=12m >"$OUT/bad-launch.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "gate_radius:=12m: ros2 launch exited 0"
grep -q "launch argument gate_radius: expected metres > 0, found '12m'" "$OUT/bad-launch.log" ||
  fail "gate_radius:=12m: $(tail -5 "$OUT/bad-launch.log")"
t0=$(date +%s%N)
kill -INT "$LAUNCH"
# Bounded: a launch that ignores SIGINT fails the test after 30 s instead of hanging it.
for _ in $(seq 300); do kill -0 "$LAUNCH" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$LAUNCH" 2>/dev/null; then
  # What was still running, and in which state (seen once: no shutdown line from launch at all).
  ps -o pid,ppid,stat,wchan:24,etime,cmd --pid "$LAUNCH" --ppid "$LAUNCH" >"$OUT/ps.log" 2>&1 || true
  fail "ros2 launch still running 30 s after SIGINT; processes:
$(cat "$OUT/ps.log")"
fi
wait "$LAUNCH" || fail "ros2 launch exited non-zero after SIGINT"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
LAUNCH=""
grep -q "process has finished cleanly" "$OUT/launch.log" || fail "node did not finish cleanly"
[ "$ms" -lt 2000 ] || fail "shutdown took $ms ms"
echo "ros launch test: ok (demo on cmu_mini; ros2 launch/param/topic; SIGINT shutdown ${ms} ms)"
