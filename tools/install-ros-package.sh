#!/usr/bin/env bash
# Builds the ROS 2 package into a colcon workspace, the way `ros2 launch dasgil ...` finds it:
#   tools/install-ros-package.sh [WS]      (default WS: build/ros-ws)
# then `source WS/install/setup.bash`. The workspace's src/dasgil links to this repository and its
# build folder to target/, so nothing is compiled twice. Needs tools/setup.sh run and
# tools/env.sh sourced (or a ROS 2 Jazzy environment with colcon-ros-cargo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS="${1:-$ROOT/build/ros-ws}"
mkdir -p "$WS/src" "$WS/build" "$ROOT/target"
[ -L "$WS/src/dasgil" ] || ln -s "$ROOT" "$WS/src/dasgil"
[ -L "$WS/build/dasgil" ] || ln -s "$ROOT/target" "$WS/build/dasgil"
cd "$WS"
if ! colcon build --base-paths src --event-handlers console_direct- --cargo-args --release \
  >"$WS/colcon.log" 2>&1; then
  tail -40 "$WS/colcon.log" >&2
  echo "install-ros-package: colcon build failed (log: $WS/colcon.log)" >&2
  exit 1
fi
echo "install-ros-package: $WS/install (source $WS/install/setup.bash)"
