"""Session-wide environment for tests that run real ROS 2 nodes and a real MuJoCo/LIBERO simulator.

Runs before any test module imports rclpy or robosuite. Values already in the environment win (setdefault),
so a developer can pin e.g. ROS_DOMAIN_ID=42 to watch a run with other tools. Child processes inherit it all.
The library path of the ROS wheels cannot be set here (too late for the loader): scripts/ros_env.sh does it.
"""

import atexit
import os
import random
import shutil
import tempfile

# A random domain per pytest session isolates concurrent runs on the same machine (0..101 are safe on Linux).
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")

if "ROS_LOG_DIR" not in os.environ:
    _ros_log_dir = tempfile.mkdtemp(prefix="dtvla-ros-log-")
    os.environ["ROS_LOG_DIR"] = _ros_log_dir
    atexit.register(shutil.rmtree, _ros_log_dir, ignore_errors=True)
pytest_plugins = ["tests.fixtures.checkpoints", "tests.fixtures.datasets", "tests.fixtures.recording"]
