#!/usr/bin/env bash
# `colcon build` (colcon-ros-cargo + cargo-ament-build) installs dasgil the way `ros2 launch dasgil
# localize.launch.py` finds it: binaries in lib/dasgil/, launch/ and config/ in share/dasgil/,
# and the package in the ament index. Runs in a temporary workspace whose build folder is the
# repository's target/ (so nothing is compiled twice). Needs tools/env.sh sourced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS="$(mktemp -d)"
trap 'rm -rf "$WS"' EXIT

fail() {
  echo "colcon install test: FAILED: $*" >&2
  exit 1
}

"$ROOT/tools/install-ros-package.sh" "$WS" >/dev/null || fail "colcon build exited non-zero"

PREFIX="$WS/install/dasgil"
for exe in lib/dasgil/dasgil-tools lib/dasgil/dasgil_node; do
  [ -x "$PREFIX/$exe" ] || fail "$exe is not an executable in the install tree"
done
for f in share/dasgil/package.xml share/dasgil/launch/localize.launch.py share/dasgil/config/localize.yaml \
  share/ament_index/resource_index/packages/dasgil; do
  [ -f "$PREFIX/$f" ] || fail "$f is missing from the install tree"
done

# The workspace's setup script works and the installed binaries run from it.
# shellcheck disable=SC1091
set +u
source "$WS/install/setup.bash"
set -u
case ":$AMENT_PREFIX_PATH:" in *":$PREFIX:"*) ;; *) fail "install/setup.bash does not put $PREFIX on AMENT_PREFIX_PATH" ;; esac
info="$("$PREFIX/lib/dasgil/dasgil-tools" info)"
grep -q "ROS distro:     jazzy" <<<"$info" || fail "installed dasgil-tools info says: $info"
# The node starts and refuses clearly to run without a map.
if out="$("$PREFIX/lib/dasgil/dasgil_node" 2>&1)"; then
  fail "installed dasgil_node ran without a map"
fi
grep -q "parameter \`map\` is empty" <<<"$out" || fail "installed dasgil_node said: $out"
# The shipped model is installed where the tools look for it.
[ -d "$PREFIX/share/dasgil/maps" ] || fail "share/dasgil/maps is missing from the install tree"

# The launch file names the installed executable and the installed config, and is valid Python.
# (`ros2 launch` itself runs in tests/ros_launch.sh.)
python - "$PREFIX/share/dasgil/launch/localize.launch.py" <<'PY' || fail "launch file check"
import ast, sys
src = open(sys.argv[1]).read()
ast.parse(src)
assert 'executable="dasgil_node"' in src and '"config", "localize.yaml"' in src, "launch file does not name dasgil_node/localize.yaml"
PY
python - "$PREFIX/share/dasgil/config/localize.yaml" <<'PY' || fail "config check"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
params = cfg["dasgil_localizer"]["ros__parameters"]
assert set(params) == {"map", "checkpoint", "image_topics", "camera_ids", "transport", "metric", "top_k", "frame_id",
                       "prior_topic", "gate_radius", "gate_sigmas", "base_from_camera", "max_rate", "min_confidence", "device",
                       "diagnostics_period", "frame_timeout", "prior_timeout", "filter", "odometry_topic",
                       "off_map_threshold", "centring"}, params
PY
echo "colcon install test: ok ($PREFIX)"
