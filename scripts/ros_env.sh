# shellcheck shell=bash
# ROS 2 (PyPI `ros-*` wheels) environment for the dtvla venv. Source it, do not execute it:
#     . .venv/bin/activate && . scripts/ros_env.sh
# Without an active venv it uses the repository's .venv. Safe under `set -euo pipefail`, and idempotent.
#
# Sets LD_LIBRARY_PATH before the process starts (the wheels' extensions have no RPATH) plus the bootstrapper's
# guard, so `ros_wheels_bootstrapper.pth` does not re-exec every Python; AMENT_PREFIX_PATH for ament_index_python.

if [ -z "${VIRTUAL_ENV:-}" ]; then
    VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv"
    export VIRTUAL_ENV
    export PATH="$VIRTUAL_ENV/bin:$PATH"
fi

# _dtvla_prepend VAR DIR: put DIR in front of the colon list VAR unless it is already in it.
_dtvla_prepend() {
    case ":${!1:-}:" in
        *":$2:"*) ;;
        *) export "$1=$2${!1:+:${!1}}" ;;
    esac
}
for _dtvla_d in "$VIRTUAL_ENV"/lib/python3*/site-packages/ros_*.libs; do
    if [ -d "$_dtvla_d" ]; then _dtvla_prepend LD_LIBRARY_PATH "$_dtvla_d"; fi
done
_dtvla_prepend LD_LIBRARY_PATH "$VIRTUAL_ENV/lib"
_dtvla_prepend AMENT_PREFIX_PATH "$VIRTUAL_ENV"   # ament_index_python needs it
unset -f _dtvla_prepend
unset _dtvla_d

export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1   # stop the .pth from re-exec'ing
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
