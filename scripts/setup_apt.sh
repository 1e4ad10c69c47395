#!/usr/bin/env bash
# Install the Debian packages dtvla needs, only those that are missing (idempotent, no apt-get update otherwise).
#   EGL offscreen rendering for MuJoCo (MUJOCO_GL=egl): libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0
#   opencv-python (imported by robosuite):            libgl1 libglib2.0-0
#   DeepSpeed's JIT-built CPU ops:                      g++
# Usage: scripts/setup_apt.sh [HOST_PYTHON]   (HOST_PYTHON: the interpreter that will create the venv)
set -euo pipefail

host_python="${1:-python3}"
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libgl1 libglib2.0-0 g++)

# Debian's own python3 needs python3-venv for `python3 -m venv` (pyenv/other builds ship ensurepip).
if ! "$host_python" -c 'import ensurepip' >/dev/null 2>&1; then
    pkgs+=("python3-venv")
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "apt: all packages present"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
echo "apt: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
