"""ROS overhead of the deployed stack, measured over real Fast DDS in one run.

  policy node: camera stamp -> chunk received, minus the engine's own time for that chunk (`total_ms` in the
               node's diagnostics), for two 224 px rgb8 frames (tiny checkpoint, masked mode so the engine part is
               small and the overhead dominates the noise); p50 / p99 over --requests chunks.
               The same policy process is measured in rotating blocks: without a recorder, with `dtvla-record`
               (every contract topic but the reasoning image), and with `dtvla-record --reasoning-image`, so the
               recorder's cost is a difference within one run; the recorder's own CPU time per chunk is read from
               /proc; `chunks_over_500ms` counts stalls.
  sim bridge:  env steps/s of the bridge in lockstep mode, answered at once by a trivial responder (zero chunks),
               vs the bare LiberoSim loop in this process, same suite, task and camera size.
  bag size:    `dtvla-sim --record` for --bag-steps steps at 256 px (tiny checkpoint, full mode, a 16-token CoT cap):
               bytes per minute of sim time, per topic.

Usage: python benchmarks/ros_latency.py --json [--requests 100] [--blocks 2] [--steps 60] [--bag-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
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
from dtvla_policy.ros.recorder_node import RecorderSettings
from dtvla_policy.ros.sim_launcher import wait_for_recorder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_report import machine  # noqa: E402 - beside this script (python benchmarks/ros_latency.py)

from tests.fixtures.ros import probe_node, start_node, stop_node  # noqa: E402 - the repository's test helpers

SUITE, TASK, CAMERA = "libero_spatial", 0, 256


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


RECORDERS = {"off": None, "on": [], "on_image": ["--reasoning-image"]}  # block kind -> dtvla-record options


def policy_overhead(requests: int, blocks: int) -> dict:
    """Overhead p50/p99/mean without a recorder, with one, and with one recording the reasoning image too, in
    `blocks` rotations of the three."""
    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    overheads: dict[str, list[float]] = {kind: [] for kind in RECORDERS}
    cpu_s = {kind: 0.0 for kind in RECORDERS}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        process = start_node("dtvla_policy.ros.policy_node", "-p", f"checkpoint:={checkpoint}", "-p", "mode:=masked",
                             "-p", "staleness.max_observation_age_s:=10.0")
        try:
            with probe_node("latency_probe") as probe:
                rig = PolicyRig(probe)
                rig.measure(3)  # warm-up chunks
                per_block = max(1, requests // blocks)
                for block in range(blocks):
                    for kind, options in RECORDERS.items():
                        bag = Path(tmp) / f"{kind}{block}"
                        recorder = None if options is None else start_recorder(bag, probe, options)
                        try:
                            cpu_before = cpu_seconds(recorder)
                            overheads[kind] += rig.measure(per_block)
                            cpu_s[kind] += cpu_seconds(recorder) - cpu_before
                        finally:
                            if recorder is not None:
                                stop_node(recorder)
                resent = rig.resent
        finally:
            code, _ = stop_node(process)
    result = {}
    for kind, values in overheads.items():
        prefix = "" if kind == "off" else f"recording_{'' if kind == 'on' else 'with_image_'}"
        result |= {f"{prefix}overhead_ms_p50": percentile(values, 50),
                   f"{prefix}overhead_ms_p99": percentile(values, 99),
                   f"{prefix}overhead_ms_mean": round(statistics.mean(values), 3),
                   f"{prefix}chunks_over_500ms": sum(v > 500 for v in values)}
        if kind != "off":
            result[f"{prefix}recorder_cpu_ms_per_chunk"] = round(1e3 * cpu_s[kind] / len(values), 2)
            result[f"{prefix}vs_not_p50"] = round(percentile(values, 50) / percentile(overheads["off"], 50), 3)
    return {**result, "requests": sum(len(v) for v in overheads.values()), "blocks": blocks, "frames_resent": resent,
            "policy_exit_code": code}


def cpu_seconds(process: subprocess.Popen | None) -> float:
    """User + system CPU time of a running child process so far (0 for None), from /proc."""
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_recorder(bag: Path, probe, options: list[str]) -> subprocess.Popen:
    """`dtvla-record BAG OPTIONS` as a process, returned once it subscribes to every topic it records."""
    recorder = subprocess.Popen([sys.executable, "-m", "dtvla_policy.ros.recorder_node", str(bag), *options],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    settings = RecorderSettings(reasoning_image="--reasoning-image" in options)
    error = wait_for_recorder(probe.node, "", recorder, settings)
    if error:
        stop_node(recorder)
        raise RuntimeError(error)
    return recorder


class PolicyRig:
    """The probe's side of the policy node: task, cameras and requests out; chunks and diagnostics in."""

    def __init__(self, probe) -> None:
        self.probe = probe
        node = probe.node
        self.chunks = probe.watch(JointTrajectory, contract.POLICY_ACTION_CHUNK, contract.COMMAND_QOS)
        self.diagnostics = probe.watch(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
        self.arrivals: dict[int, float] = {}
        node.create_subscription(JointTrajectory, contract.POLICY_ACTION_CHUNK,
                                 lambda m: self.arrivals.setdefault(Time.from_msg(m.header.stamp).nanoseconds,
                                                                    time.time_ns()), contract.COMMAND_QOS)
        task = node.create_publisher(String, contract.TASK_TOPIC, contract.LATCHED_QOS)
        self.cams = [node.create_publisher(Image, t, contract.SENSOR_QOS)
                     for t in (contract.AGENTVIEW_TOPIC, contract.WRIST_TOPIC)]
        self.request = node.create_publisher(Header, contract.CHUNK_REQUEST_TOPIC, contract.COMMAND_QOS)
        for publisher in (task, *self.cams, self.request):
            probe.wait_for(lambda p=publisher: p.get_subscription_count() > 0, 120, "policy node")
        probe.wait_for(lambda: node.count_publishers(contract.POLICY_ACTION_CHUNK) > 0, 30, "chunk topic")
        task.publish(String(data="pick up the black bowl and place it on the plate"))
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 256, (224, 224, 3), np.uint8) for _ in range(2)]
        self.resent = 0

    def measure(self, requests: int) -> list[float]:
        """Overhead in ms of `requests` chunks: stamp -> chunk arrival, minus the engine's total_ms."""
        probe, overheads = self.probe, []
        for _ in range(requests):
            stamp_ns = time.time_ns()
            stamp = Time(nanoseconds=stamp_ns).to_msg()
            for _attempt in range(5):
                for publisher, frame in zip(self.cams, self.frames, strict=True):
                    publisher.publish(numpy_to_image(frame, "rgb8", stamp=stamp))
                self.request.publish(Header(stamp=stamp))
                try:
                    probe.wait_for(lambda s=stamp_ns: s in self.arrivals, 5.0, "chunk")
                    break
                except AssertionError:
                    self.resent += 1
            n = len(self.chunks)
            probe.wait_for(lambda count=n: self.engine_ms(count) is not None, 10, "diagnostics of the chunk")
            overheads.append((self.arrivals[stamp_ns] - stamp_ns) / 1e6 - self.engine_ms(n))
        return overheads

    def engine_ms(self, count: int) -> float | None:
        for array in reversed(self.diagnostics):
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name == "dtvla_policy: inference" and \
                        int(values.get("chunks_published", 0)) >= count and "total_ms" in values:
                    return float(values["total_ms"])
        return None


def bag_size_per_sim_minute(steps: int) -> dict:
    """`dtvla-sim --record` for one `steps`-step episode at 256 px: bag bytes per minute of sim time, per topic."""
    from rosbags.highlevel import AnyReader

    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        bag = Path(tmp) / "bag"
        run = subprocess.run([sys.executable, "-m", "dtvla_policy.ros.sim_launcher", "--checkpoint", str(checkpoint),
                              "--max-steps", str(steps), "--max-cot-tokens", "16", "--record", str(bag),
                              "--log-dir", str(Path(tmp) / "logs"), "--timeout", "1200"],
                             capture_output=True, text=True, timeout=1500)
        if run.returncode != 0:
            raise RuntimeError(f"dtvla-sim --record failed: {run.stderr[-2000:]}")
        summary = json.loads(run.stdout)
        per_topic: dict[str, int] = {}
        clock: list[int] = []
        with AnyReader([bag]) as reader:
            for connection, _, raw in reader.messages():
                per_topic[connection.topic] = per_topic.get(connection.topic, 0) + len(raw)
                if connection.topic == "/clock":
                    stamp = reader.deserialize(raw, connection.msgtype).clock
                    clock.append(stamp.sec * 10**9 + stamp.nanosec)
        file_bytes = sum(f.stat().st_size for f in bag.glob("*.mcap"))
    sim_minutes = (max(clock) - min(clock)) / 60e9
    return {"bag_steps": summary["steps"], "bag_sim_s": round(sim_minutes * 60, 3), "bag_wall_s": summary["wall_s"],
            "bag_file_bytes": file_bytes, "bag_mb_per_sim_minute": round(file_bytes / 1e6 / sim_minutes, 1),
            "bag_mb_per_wall_minute": round(file_bytes / 1e6 / (summary["wall_s"] / 60), 1),
            "bag_serialized_bytes_per_topic": dict(sorted(per_topic.items(), key=lambda kv: -kv[1]))}


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
    parser.add_argument("--requests", type=int, default=100, help="measured chunks per kind of block")
    parser.add_argument("--blocks", type=int, default=2, help="rotations of (no recorder, recorder, with image)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--bag-steps", type=int, default=60, help="episode steps of the bag-size run (0: skip)")
    parser.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    args = parser.parse_args(argv)
    # Read at rclpy.init / robosuite import time, i.e. later than here; child processes inherit them.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    load_before = os.getloadavg()
    policy = policy_overhead(args.requests, args.blocks)
    bag = bag_size_per_sim_minute(args.bag_steps) if args.bag_steps else {}
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
        **bag,
        "machine": machine(load_before),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
