"""A simulator that breaks during a step: the episode ends `failed`, the bridge stays up and runs the next one.

The fault is real: NaN joint velocities written into the bridge's own MuJoCo state, which MuJoCo detects on the
next step. The bridge node and a responder node run in one child process (MuJoCo allows one render context per
process, and the fault has to be injected into the bridge's simulator), which prints the statuses it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]

SCENARIO = textwrap.dedent('''
    import json, threading, time
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Header, String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from dtvla_policy.ros import contract
    from dtvla_sim_bridge.ros.sim_bridge_node import SimBridgeNode

    rclpy.init(args=["--ros-args", "-p", "camera_size:=64", "-p", "max_steps:=20", "-p", "num_episodes:=2",
                     "-p", "settle_steps:=1", "-p", "execute_steps:=2"])
    bridge = SimBridgeNode()
    responder = Node("responder")
    statuses, answered = [], [0]
    chunk_pub = responder.create_publisher(JointTrajectory, contract.POLICY_ACTION_CHUNK, contract.COMMAND_QOS)

    def answer(request):
        answered[0] += 1
        if answered[0] == 2:  # break the physics once, after the first chunk ran
            bridge._sim.env.sim.data.qvel[:] = np.nan
        chunk = JointTrajectory(joint_names=list(contract.CHUNK_JOINT_NAMES))
        chunk.header.stamp = request.stamp
        chunk.points = [JointTrajectoryPoint(positions=[0.0] * 6 + [-1.0]) for _ in range(10)]
        chunk_pub.publish(chunk)

    responder.create_subscription(Header, contract.CHUNK_REQUEST_TOPIC, answer, contract.COMMAND_QOS)
    responder.create_subscription(String, contract.EPISODE_STATUS_TOPIC, lambda m: statuses.append(json.loads(m.data)),
                                  10)
    executor = SingleThreadedExecutor()
    executor.add_node(bridge)
    executor.add_node(responder)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(s["state"] == "finished" for s in statuses):
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    bridge.destroy_node()
    responder.destroy_node()
    rclpy.try_shutdown()
    print(json.dumps(statuses))
''')


def test_sim_failure_fails_the_episode_and_the_bridge_goes_on():
    result = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = json.loads(result.stdout.strip().splitlines()[-1])
    ends = {s["episode"]: s for s in statuses if s["state"] in ("failed", "timeout", "success")}
    assert ends[0]["state"] == "failed"
    assert "NaN/Inf" in ends[0]["error"], ends[0]["error"]
    assert 1 in ends and ends[1]["state"] == "timeout" and ends[1]["steps"] == 20  # the next episode ran normally
    assert any(s["state"] == "finished" for s in statuses)
