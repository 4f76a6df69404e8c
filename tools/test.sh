#!/usr/bin/env bash
# Every test of the project, from a fresh clone: set-up, then
#   1. cargo test (unit, PyTorch parity, ROS 2 smoke and node tests, CLI end-to-end),
#   2. the library and dasgil-tools build without ROS 2 (cargo feature `ros` off),
#   3. colcon build installs the package the way `ros2 launch dasgil ...` expects,
#   4. the product through the real ROS 2 tooling: tools/demo.sh on a small slice, `ros2 launch`,
#      `ros2 param`, `ros2 topic echo` (tests/ros_launch.sh).
# Extra arguments go to cargo test (e.g. `tools/test.sh model_reference`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh"
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
cd "$ROOT"
# DDS traffic of the tests stays on this machine, in a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 90 + 10))}"

passed=0
# Each step says when it starts, in minutes since this script started (set-up included; CI
# keeps a cold run under 30).
step() {
  echo
  echo "=== $1 (at $((SECONDS / 60)) min)"
}

step "cargo test --release"
cargo test --release "$@"
passed=$((passed + 1))

step "build without ROS 2 (--no-default-features, no ROS environment)"
env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH -u IDL_PACKAGE_FILTER -u ROS_DISTRO -u DASGIL_LIBPYTHON \
  cargo check --release --quiet --no-default-features --lib --bins
passed=$((passed + 1))

step "colcon build: install tree"
bash "$ROOT/tests/colcon_install.sh"
passed=$((passed + 1))

step "ros2 launch: the demo pipeline on cmu_mini, ros2 param/topic, shutdown"
bash "$ROOT/tests/ros_launch.sh"
passed=$((passed + 1))

echo
echo "steps: $passed passed, 0 failed ($((SECONDS / 60)) min in all)"
