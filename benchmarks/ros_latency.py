"""ROS overhead of the deployed stack, measured over real Fast DDS in one run.

  policy node: camera stamp -> chunk received, minus the engine's own time for that chunk (`total_ms` in the
               node's diagnostics), for two 224 px rgb8 frames (tiny checkpoint, masked mode so the engine part is
               small and the overhead dominates the noise); p50 / p99 over --requests chunks.
  sim bridge:  env steps/s of the bridge in lockstep mode, answered at once by a trivial responder (zero chunks),
               vs the bare LiberoSim loop in this process, same suite, task and camera size.

Usage: python benchmarks/ros_latency.py --json [--requests 100] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dtvla_policy.ros import contract
from dtvla_policy.ros.image_conversion import numpy_to_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.ros import probe_node, start_node, stop_node  # noqa: E402 - the repository's test helpers

SUITE, TASK, CAMERA = "libero_spatial", 0, 256


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def policy_overhead(requests: int) -> dict:
    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        process = start_node("dtvla_policy.ros.policy_node", "-p", f"checkpoint:={checkpoint}", "-p", "mode:=masked",
                             "-p", "staleness.max_observation_age_s:=10.0")
        try:
            with probe_node("latency_probe") as probe:
                node = probe.node
                chunks = probe.watch(JointTrajectory, contract.POLICY_ACTION_CHUNK, contract.COMMAND_QOS)
                diagnostics = probe.watch(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
                arrivals: dict[int, float] = {}
                node.create_subscription(JointTrajectory, contract.POLICY_ACTION_CHUNK,
                                         lambda m: arrivals.setdefault(Time.from_msg(m.header.stamp).nanoseconds,
                                                                       time.time_ns()), contract.COMMAND_QOS)
                task = node.create_publisher(String, contract.TASK_TOPIC, contract.LATCHED_QOS)
                cams = [node.create_publisher(Image, t, contract.SENSOR_QOS)
                        for t in (contract.AGENTVIEW_TOPIC, contract.WRIST_TOPIC)]
                request = node.create_publisher(Header, contract.CHUNK_REQUEST_TOPIC, contract.COMMAND_QOS)
                for publisher in (task, *cams, request):
                    probe.wait_for(lambda p=publisher: p.get_subscription_count() > 0, 120, "policy node")
                probe.wait_for(lambda: node.count_publishers(contract.POLICY_ACTION_CHUNK) > 0, 30, "chunk topic")
                task.publish(String(data="pick up the black bowl and place it on the plate"))
                rng = np.random.default_rng(0)
                frames = [rng.integers(0, 256, (224, 224, 3), np.uint8) for _ in range(2)]
                overheads, resent = [], 0
                for i in range(requests + 3):  # 3 warm-up chunks
                    stamp_ns = time.time_ns()
                    stamp = Time(nanoseconds=stamp_ns).to_msg()
                    for _attempt in range(5):
                        for publisher, frame in zip(cams, frames, strict=True):
                            publisher.publish(numpy_to_image(frame, "rgb8", stamp=stamp))
                        request.publish(Header(stamp=stamp))
                        try:
                            probe.wait_for(lambda s=stamp_ns: s in arrivals, 5.0, "chunk")
                            break
                        except AssertionError:
                            resent += 1
                    n = len(chunks)

                    def engine_ms(count: int = n) -> float | None:
                        for array in reversed(diagnostics):
                            for status in array.status:
                                values = {kv.key: kv.value for kv in status.values}
                                if status.name == "dtvla_policy: inference" and \
                                        int(values.get("chunks_published", 0)) >= count and "total_ms" in values:
                                    return float(values["total_ms"])
                        return None

                    probe.wait_for(lambda: engine_ms() is not None, 10, "diagnostics of the chunk")
                    if i >= 3:
                        overheads.append((arrivals[stamp_ns] - stamp_ns) / 1e6 - engine_ms())
        finally:
            code, output = stop_node(process)
    return {"overhead_ms_p50": percentile(overheads, 50), "overhead_ms_p99": percentile(overheads, 99),
            "overhead_ms_mean": round(statistics.mean(overheads), 3), "requests": requests,
            "frames_resent": resent, "policy_exit_code": code}


def bare_steps_per_s(steps: int) -> float:
    from dtvla_sim_bridge.sim.libero_env import LiberoSim

    with LiberoSim(SUITE, TASK, camera_size=CAMERA) as sim:
        sim.reset(0)
        zero = np.zeros(7)
        sim.step(zero)  # first step warms the renderer
        start = time.perf_counter()
        for _ in range(steps):
            sim.step(zero)
        return steps / (time.perf_counter() - start)


def bridge_steps_per_s(steps: int) -> dict:
    process = start_node("dtvla_sim_bridge.ros.sim_bridge_node", "-p", f"suite:={SUITE}", "-p", f"task_id:={TASK}",
                         "-p", f"camera_size:={CAMERA}", "-p", "max_steps:=10000")
    try:
        with probe_node("bridge_probe") as probe:
            node = probe.node
            joint_times: list[float] = []
            node.create_subscription(JointState, contract.JOINT_STATES_TOPIC,
                                     lambda _m: joint_times.append(time.perf_counter()), contract.SENSOR_QOS)
            chunk_pub = node.create_publisher(JointTrajectory, contract.POLICY_ACTION_CHUNK, contract.COMMAND_QOS)

            def answer(request: Header) -> None:  # a zero-latency "policy": hold still, gripper open
                chunk = JointTrajectory(joint_names=list(contract.CHUNK_JOINT_NAMES))
                chunk.header.stamp = request.stamp
                chunk.points = [JointTrajectoryPoint(positions=[0.0] * 6 + [-1.0]) for _ in range(10)]
                chunk_pub.publish(chunk)

            node.create_subscription(Header, contract.CHUNK_REQUEST_TOPIC, answer, contract.COMMAND_QOS)
            probe.wait_for(lambda: len(joint_times) > 20, 180, "the bridge stepping")
            first = len(joint_times)
            probe.wait_for(lambda: len(joint_times) >= first + steps, 600, f"{steps} bridge steps")
            window = joint_times[first : first + steps + 1]
            rate = (len(window) - 1) / (window[-1] - window[0])
    finally:
        code, _ = stop_node(process)
    return {"steps_per_s": rate, "bridge_exit_code": code}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    args = parser.parse_args(argv)
    # Read at rclpy.init / robosuite import time, i.e. later than here; child processes inherit them.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    policy = policy_overhead(args.requests)
    bare = bare_steps_per_s(args.steps)
    bridge = bridge_steps_per_s(args.steps)
    result = {
        **policy,
        "bare_steps_per_s": round(bare, 3),
        "bridge_steps_per_s": round(bridge["steps_per_s"], 3),
        "bridge_vs_bare": round(bridge["steps_per_s"] / bare, 4),
        "bridge_exit_code": bridge["bridge_exit_code"],
        "camera_size": CAMERA,
        "suite": SUITE,
        "image_size_policy": 224,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
