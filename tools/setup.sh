#!/usr/bin/env bash
# One-time set-up of everything the build needs, from the package registries only:
#   1. Debian: libclang-dev (r2r generates its message bindings with bindgen).
#   2. A project-local Python 3.11 venv (.venv, git-ignored) holding the ROS 2 Jazzy wheels,
#      torch==2.11.0 (the libtorch tch 0.24 links), numpy, safetensors and colcon.
#   3. The wheel quirks (../shared/notes/toolchain.md): a librmw_implementation.so linker script.
#      (The ros_*.libs folders and libpython are handled by tools/env.sh and build.rs.)
#   4. A check that cargo-ament-build (a dependency of colcon-ros-cargo) is in .venv/bin.
#   5. `ros2 launch|topic|param` and launch_ros from ../shared/vendor/ros2-jazzy (no /opt/ros).
#   6. With --bench only: the benchmarks' Python peers (tools/requirements-bench.txt: faiss-cpu,
#      pillow), which the product and its tests do not need.
# Idempotent: each step checks whether its result is already there, so a second run takes
# seconds. A failing step stops the script with the step's name, the reason and how to retry.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
BENCH=0
for arg in "$@"; do
  case "$arg" in
    --bench) BENCH=1 ;;
    *) echo "tools/setup.sh: unknown argument \`$arg\` (expected --bench or nothing)" >&2; exit 2 ;;
  esac
done
STEP="start"

fail() {
  local code=$?
  {
    echo
    echo "dasgil setup: step '$STEP' failed (exit code $code)."
    echo "  why:   ${WHY:-see the command output above}"
    echo "  retry: fix the cause, then run tools/setup.sh again; finished steps are skipped."
  } >&2
  exit "$code"
}
trap fail ERR

say() { echo "dasgil setup: $*"; }
# Runs a long command and prints a line every 20 s while it works (no silent minutes).
with_heartbeat() {
  local what="$1"; shift
  "$@" &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( (SECONDS - start) % 20 == 0 )) && kill -0 "$pid" 2>/dev/null; then
      say "$what: still working ($((SECONDS - start)) s)"
    fi
  done
  wait "$pid"
}

# --- 1. Debian packages ---------------------------------------------------------------------
STEP="debian packages (libclang-dev)"
WHY="apt-get could not install libclang-dev; it needs root (or sudo) and the Debian registry"
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  say "installing libclang-dev"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q libclang-dev >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q libclang-dev >/dev/null
  }
fi

# --- 2. Python venv with the ROS 2 wheels and torch -----------------------------------------
STEP="python venv (.venv)"
WHY="python3.11 with the venv module is needed (found: $(command -v python3.11 || echo none))"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3.11 -m venv "$VENV"
fi

STEP="python packages (tools/requirements.txt)"
PIP_WHY="pip could not install the pinned packages; check the PyPI registry is reachable and has room on disk (torch needs ~5 GiB)"
REQ_HASH="$(sha256sum "$ROOT/tools/requirements.txt" | cut -d' ' -f1)"
STAMP="$VENV/.dasgil-requirements.sha256"
# Free KiB on the file system holding $1 (df -P's fourth column from the end of its line, so a
# device name with spaces does not shift it).
free_kib() { df -Pk "$1" | awk 'NR == 2 { print $(NF - 2) }'; }
gib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1048576 }'; }
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$REQ_HASH" ]; then
  # torch and its CUDA libraries take ~5 GiB in the venv, and pip unpacks the downloaded wheels
  # in the temporary folder first; the first cargo build adds ~3 GiB under target/. Say so
  # before pip fills the disk half-way (CI once died here with "[Errno 28] No space left on
  # device"). A venv that has torch already only adds small wheels.
  STEP="free disk space for .venv"
  NEED_GIB=8 NEED_TMP_GIB=4
  if [ -d "$VENV/lib/python3.11/site-packages/torch" ]; then NEED_GIB=1 NEED_TMP_GIB=1; fi
  TMP_DIR="${TMPDIR:-/tmp}"
  WHY="df could not read the free space of $VENV or $TMP_DIR"
  FREE="$(free_kib "$VENV")"
  FREE_TMP="$(free_kib "$TMP_DIR")"
  WHY="the file system holding $VENV has $(gib "$FREE") GiB free, expected at least $NEED_GIB GiB (torch's wheels and the first build); free some space or put the clone on a larger disk"
  (( FREE >= NEED_GIB * 1048576 ))
  if [ "$(stat -c %d "$TMP_DIR")" != "$(stat -c %d "$VENV")" ]; then
    WHY="the temporary folder $TMP_DIR (TMPDIR) has $(gib "$FREE_TMP") GiB free, expected at least $NEED_TMP_GIB GiB while pip unpacks the wheels; free some space there or set TMPDIR to a folder on a larger disk"
    (( FREE_TMP >= NEED_TMP_GIB * 1048576 ))
  fi
  STEP="python packages (tools/requirements.txt)"
  WHY="$PIP_WHY"
  say "installing Python packages (ROS 2 Jazzy wheels, torch 2.11.0; a few minutes on first run)"
  with_heartbeat "pip install" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    --no-input -r "$ROOT/tools/requirements.txt"
  echo "$REQ_HASH" >"$STAMP"
fi

# --- 3. Wheel quirk: librmw_implementation.so -----------------------------------------------
# The wheels choose the RMW statically and ship no librmw_implementation.so, which r2r links.
# A GNU ld script with that name redirects the link to Fast DDS's RMW.
STEP="rmw_implementation link script"
WHY="librmw_fastrtps_cpp.so was not found under $VENV/lib; the rmw-fastrtps-cpp wheel may be missing"
[ -e "$VENV/lib/librmw_fastrtps_cpp.so" ]
if [ ! -e "$VENV/lib/librmw_implementation.so" ]; then
  echo "INPUT(librmw_fastrtps_cpp.so)" >"$VENV/lib/librmw_implementation.so"
fi

# --- 4. cargo-ament-build (used by colcon-ros-cargo) ----------------------------------------
# The colcon-ros-cargo wheel depends on the cargo-ament-build wheel, which ships the binary.
STEP="cargo-ament-build"
WHY="$VENV/bin/cargo-ament-build is missing; reinstall with: rm $STAMP && tools/setup.sh"
"$VENV/bin/cargo-ament-build" --help >/dev/null

# --- 5. ROS 2 launch and command-line tooling ----------------------------------------------
# `ros2 launch`, `ros2 topic`, `ros2 param` and launch_ros are not on PyPI. With a ROS 2 Jazzy
# install (/opt/ros/jazzy) they come from there; otherwise from the vendored jazzy sources in
# ../shared/vendor/ros2-jazzy when that folder is present (its install.sh is idempotent).
STEP="ros2 launch tooling (../shared/vendor/ros2-jazzy)"
WHY="the vendored install.sh failed; its output above names the package"
VENDOR="$ROOT/../shared/vendor/ros2-jazzy"
if [ ! -d /opt/ros/jazzy ] && [ -x "$VENDOR/install.sh" ]; then
  if [ ! -e "$VENV/.ros2-jazzy-tooling" ]; then say "installing ros2 launch/topic/param (about a minute)"; fi
  with_heartbeat "ros2 tooling" "$VENDOR/install.sh" "$VENV"
fi

# --- 5b. tf2_msgs (TFMessage, the type of /tf and /tf_static) ------------------------------
# build-map --bag reads /tf with r2r, which needs tf2_msgs; the Jazzy wheels on PyPI do not carry
# it. Generated from tools/ros/tf2_msgs with rosidl and cmake (about 20 s) unless a ROS 2 install
# has it. Needs the rosidl generators step 5 installs.
STEP="tf2_msgs (tools/ros/tf2_msgs, rosidl and cmake)"
WHY="cmake could not generate tf2_msgs; the log above names the error"
TF2_HASH="$(cat "$ROOT"/tools/ros/tf2_msgs/{package.xml,CMakeLists.txt,msg/TFMessage.msg} | sha256sum | cut -d' ' -f1)"
TF2_STAMP="$VENV/.dasgil-tf2-msgs.sha256"
if [ ! -d /opt/ros/jazzy ] && [ "$(cat "$TF2_STAMP" 2>/dev/null || true)" != "$TF2_HASH" ]; then
  say "generating tf2_msgs into the venv (about 20 s)"
  TF2_TMP="$(mktemp -d)"
  if ! with_heartbeat "tf2_msgs" env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
    bash -c 'cmake -S "$1" -B "$2/build" -DCMAKE_INSTALL_PREFIX="$3" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$3/bin/python" -Wno-dev && cmake --build "$2/build" -j"$(nproc)" \
      && cmake --install "$2/build"' _ "$ROOT/tools/ros/tf2_msgs" "$TF2_TMP" "$VENV" >"$TF2_TMP.log" 2>&1; then
    tail -30 "$TF2_TMP.log" >&2
    rm -rf "$TF2_TMP" "$TF2_TMP.log"
    false
  fi
  rm -rf "$TF2_TMP" "$TF2_TMP.log"
  echo "$TF2_HASH" >"$TF2_STAMP"
fi

# --- 6. Benchmark peers (optional) ---------------------------------------------------------
if [ "$BENCH" = 1 ]; then
  STEP="benchmark peers (tools/requirements-bench.txt)"
  WHY="pip could not install faiss-cpu/pillow; check the PyPI registry is reachable"
  BENCH_HASH="$(sha256sum "$ROOT/tools/requirements-bench.txt" | cut -d' ' -f1)"
  BENCH_STAMP="$VENV/.dasgil-requirements-bench.sha256"
  if [ "$(cat "$BENCH_STAMP" 2>/dev/null || true)" != "$BENCH_HASH" ]; then
    say "installing the benchmarks' peers (faiss-cpu, pillow)"
    with_heartbeat "pip install (bench)" "$VENV/bin/python" -m pip install -q \
      --disable-pip-version-check --no-input -r "$ROOT/tools/requirements-bench.txt"
    echo "$BENCH_HASH" >"$BENCH_STAMP"
  fi
fi

STEP="done"
say "ready (source tools/env.sh to build by hand)"
