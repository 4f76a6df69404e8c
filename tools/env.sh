# Source this file (`source tools/env.sh`) after tools/setup.sh to build and run by hand in a plain
# shell: it points r2r at the ROS 2 Jazzy prefix that the PyPI wheels laid out in .venv, tch at the
# venv's PyTorch, and the dynamic loader at both. See ../shared/notes/toolchain.md for why each
# variable is needed. Safe to source more than once.

_dasgil_here="${BASH_SOURCE[0]:-$0}"
DASGIL_ROOT="$(cd "$(dirname "$_dasgil_here")/.." && pwd)"
_dasgil_venv="$DASGIL_ROOT/.venv"

if [ ! -x "$_dasgil_venv/bin/python" ]; then
  echo "tools/env.sh: $_dasgil_venv is missing; run tools/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi

_dasgil_site="$("$_dasgil_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Prepend a directory to a colon-separated variable once, so re-sourcing does not grow it.
_dasgil_prepend() {
  local var="$1" dir="$2" cur
  eval "cur=\"\${$var:-}\""
  case ":$cur:" in
    *":$dir:"*) ;;
    *) eval "export $var=\"$dir\${cur:+:\$cur}\"" ;;
  esac
}

export DASGIL_ROOT
export DASGIL_VENV="$_dasgil_venv"
# ROS 2: the wheels form an ament prefix at the venv root.
export ROS_DISTRO=jazzy
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
_dasgil_prepend AMENT_PREFIX_PATH "$_dasgil_venv"
_dasgil_prepend CMAKE_PREFIX_PATH "$_dasgil_venv"
# Only the message packages the project uses get Rust bindings (keeps r2r's build short).
export IDL_PACKAGE_FILTER="std_msgs;sensor_msgs;geometry_msgs;builtin_interfaces;rcl_interfaces;action_msgs;unique_identifier_msgs;rosgraph_msgs;diagnostic_msgs;visualization_msgs;std_srvs;nav_msgs;service_msgs;type_description_interfaces;tf2_msgs"
# tch: build against the venv's torch==2.11.0.
export LIBTORCH_USE_PYTORCH=1
_dasgil_prepend PATH "$_dasgil_venv/bin"
# The binaries `cargo build --release` makes (dasgil-tools, dasgil_node), by name.
_dasgil_prepend PATH "$DASGIL_ROOT/target/release"
# Quirk 3: librcl from the wheels needs libpython symbols; build.rs links this file into the
# ROS binaries when the variable is set (a real ROS install does not need it).
DASGIL_LIBPYTHON="$("$_dasgil_venv/bin/python" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")))')"
export DASGIL_LIBPYTHON
# Quirk 2: run-time library folders: the prefix, the auditwheel folders, torch and libpython.
_dasgil_prepend LD_LIBRARY_PATH "$(dirname "$DASGIL_LIBPYTHON")"
_dasgil_prepend LD_LIBRARY_PATH "$_dasgil_site/torch/lib"
for _dasgil_libs in "$_dasgil_site"/ros_*.libs; do
  [ -d "$_dasgil_libs" ] && _dasgil_prepend LD_LIBRARY_PATH "$_dasgil_libs"
done
_dasgil_prepend LD_LIBRARY_PATH "$_dasgil_venv/lib"

unset _dasgil_here _dasgil_venv _dasgil_site _dasgil_libs
unset -f _dasgil_prepend
