#!/usr/bin/env bash
# Entry point of the dtvla image: source ROS 2 and the colcon workspace, then run the given command.
set -e
# shellcheck disable=SC1091
source /opt/ros/kilted/setup.bash
# shellcheck disable=SC1091
source /opt/dtvla/ws/ros2_ws/install/setup.bash
exec "$@"
