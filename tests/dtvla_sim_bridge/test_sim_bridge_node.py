"""The sim-bridge node as deployed: a real subprocess with a real LIBERO env, probed over Fast DDS.

One lockstep bridge serves the module (env creation costs seconds); its tests run in file order and each reads
the bridge's current state instead of assuming a fresh one. The probe is a plain node with its own Context,
spun on a thread; every wait is a condition with a timeout. Each bridge and its probe get a domain of their own,
so a bridge left running by a deselected test never talks to another test's probe.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dtvla_policy.ros.contract import (
    AGENTVIEW_TOPIC,
    CHUNK_JOINT_NAMES,
    CHUNK_REQUEST_TOPIC,
    CLOCK_TOPIC,
    COMMAND_QOS,
    DIAGNOSTICS_TOPIC,
    EPISODE_STATUS_TOPIC,
    JOINT_STATES_TOPIC,
    LATCHED_QOS,
    POLICY_ACTION_CHUNK,
    RESET_SERVICE,
    ROBOT_JOINT_NAMES,
    SENSOR_QOS,
    TASK_TOPIC,
    WRIST_TOPIC,
    status_name,
)
from dtvla_sim_bridge.ros.sim_bridge_node import CLOCK_QOS, STATE_QOS

pytestmark = [pytest.mark.ros, pytest.mark.sim]

SPATIAL_TASK_0 = "pick up the black bowl between the plate and the ramekin and place it on the plate"
STARTUP_S = 90.0  # import + env creation + first reset on a loaded 2-core machine
WAIT_S = 30.0
NS_PER_STEP = 50_000_000  # 20 Hz
# Latched like the bridge's publisher, but deep enough to keep an episode's end and "finished" published together.
STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
LOCKSTEP_PARAMS = {
    "suite": "libero_spatial",
    "task_id": 0,
    "camera_size": 128,
    "settle_steps": 1,
    "execute_steps": 2,
    "max_steps": 100,
    "chunk_timeout_s": 3.0,
}


_domain_offsets = itertools.count(1)


def fresh_domain() -> int:
    """A ROS domain unused by the rest of this session (conftest picks the session's at random in 1..100)."""
    return (int(os.environ["ROS_DOMAIN_ID"]) + next(_domain_offsets)) % 100 + 1


def stamp_ns(stamp: Any) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class BridgeProbe:
    """Subscribes to everything the bridge publishes and can answer its requests."""

    def __init__(self) -> None:
        self.domain_id = fresh_domain()
        self.context = Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = Node("bridge_probe", context=self.context)
        self._cond = threading.Condition()
        self.latest: dict[str, Any] = {}
        self.requests: list[Header] = []
        self.statuses: list[dict[str, Any]] = []
        self.tasks: list[str] = []
        self.diagnostics: list[DiagnosticArray] = []
        subscriptions = [
            (Image, AGENTVIEW_TOPIC, SENSOR_QOS, "agentview"),
            (Image, WRIST_TOPIC, SENSOR_QOS, "wrist"),
            (JointState, JOINT_STATES_TOPIC, STATE_QOS, "joints"),
            (Clock, CLOCK_TOPIC, CLOCK_QOS, "clock"),
            (Header, CHUNK_REQUEST_TOPIC, COMMAND_QOS, "request"),
            (String, TASK_TOPIC, LATCHED_QOS, "task"),
            (String, EPISODE_STATUS_TOPIC, STATUS_QOS, "status"),
            (DiagnosticArray, DIAGNOSTICS_TOPIC, STATE_QOS, "diagnostics"),
        ]
        for msg_type, topic, qos, key in subscriptions:
            self.node.create_subscription(msg_type, topic, lambda msg, key=key: self._store(key, msg), qos)
        self.chunk_pub = self.node.create_publisher(JointTrajectory, POLICY_ACTION_CHUNK, COMMAND_QOS)
        self.reset_client = self.node.create_client(Trigger, RESET_SERVICE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _store(self, key: str, msg: Any) -> None:
        with self._cond:
            self.latest[key] = msg
            if key == "request":
                self.requests.append(msg)
            elif key == "status":
                self.statuses.append(json.loads(msg.data))
            elif key == "task":
                self.tasks.append(msg.data)
            elif key == "diagnostics":
                self.diagnostics.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Wait until `predicate()` (called under the lock) is truthy and return its value."""
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        assert result, f"timed out after {timeout} s waiting for {what}"
        return result

    def status(self) -> dict[str, Any]:
        """The latest episode status (waits for the first)."""
        return dict(self.wait_for(lambda: self.statuses and self.statuses[-1], "an episode status"))

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return self.wait_for(lambda: self.statuses and predicate(self.statuses[-1]) and self.statuses[-1], what)

    def wait_graph(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        """Graph state has no callback to wait on; poll it against a deadline."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            time.sleep(0.05)

    def send_chunk(self, stamp: Any, points: list[list[float]], names: tuple[str, ...] = CHUNK_JOINT_NAMES) -> None:
        self.wait_graph(lambda: self.chunk_pub.get_subscription_count() > 0, "the bridge's chunk subscription")
        msg = JointTrajectory(joint_names=list(names))
        msg.header.stamp = stamp
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in point]) for point in points]
        self.chunk_pub.publish(msg)

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Bridge:
    """`python -m dtvla_sim_bridge.ros.sim_bridge_node` with parameters; its output goes to a log file."""

    def __init__(self, params: dict[str, Any], log: Path, domain_id: int | None = None) -> None:
        args = [a for name, value in params.items() for a in ("-p", f"{name}:={value}")]
        self.log = log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dtvla_sim_bridge.ros.sim_bridge_node", "--ros-args", *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else fresh_domain())},
        )

    def stop(self, sig: signal.Signals) -> int:
        """Send `sig`, return the exit code (kills and fails after 60 s)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"bridge ignored {sig.name}; log:\n{self.output()}")
        finally:
            self._log_file.close()

    def output(self) -> str:
        return self.log.read_text()[-4000:]


@pytest.fixture(scope="module")
def probe() -> Iterator[BridgeProbe]:
    probe = BridgeProbe()
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def lockstep(probe: BridgeProbe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    bridge = Bridge(LOCKSTEP_PARAMS, tmp_path_factory.mktemp("bridge") / "lockstep.log", probe.domain_id)
    try:
        probe.wait_for(lambda: probe.requests, "the first chunk request", timeout=STARTUP_S)
    except AssertionError:
        bridge.stop(signal.SIGKILL)
        raise AssertionError(f"bridge did not come up; log:\n{bridge.output()}") from None
    yield bridge
    bridge.stop(signal.SIGKILL)


def test_bad_suite_refused_with_suggestion(tmp_path: Path) -> None:
    bridge = Bridge({"suite": "libero_spatail"}, tmp_path / "bad.log")
    assert bridge.process.wait(timeout=60) != 0
    assert "Did you mean 'libero_spatial'?" in bridge.output()


def test_publishes_observation_task_status_and_request(probe: BridgeProbe, lockstep: Bridge) -> None:
    request = probe.requests[-1]
    stamp = stamp_ns(request.stamp)
    assert stamp > 0
    for key, frame_id in (("agentview", "agentview"), ("wrist", "wrist")):
        image = probe.wait_for(lambda key=key: probe.latest.get(key), f"{key} image")
        assert (image.height, image.width, image.encoding, image.step) == (128, 128, "rgb8", 128 * 3)
        assert image.header.frame_id == frame_id and stamp_ns(image.header.stamp) == stamp
        assert len(image.data) == 128 * 128 * 3
    joints = probe.wait_for(lambda: probe.latest.get("joints"), "joint states")
    assert tuple(joints.name) == ROBOT_JOINT_NAMES
    assert len(joints.position) == len(joints.velocity) == 9 and all(math.isfinite(p) for p in joints.position)
    assert stamp_ns(joints.header.stamp) == stamp
    clock = probe.wait_for(lambda: probe.latest.get("clock"), "/clock")
    assert stamp_ns(clock.clock) == stamp  # lockstep: stamps are sim time, also on /clock
    assert probe.wait_for(lambda: probe.tasks, "the task")[-1] == SPATIAL_TASK_0
    status = probe.wait_status(lambda s: s["state"] == "running", "a running episode")
    assert (status["episode"], status["init_state"], status["suite"], status["task_id"]) == (0, 0, "libero_spatial", 0)
    diagnostics = probe.wait_for(lambda: probe.diagnostics, "diagnostics")[-1]
    assert diagnostics.status[0].name == status_name("/dtvla_sim_bridge", "episode") == "dtvla_sim_bridge: episode"
    assert {kv.key for kv in diagnostics.status[0].values} >= {"episode", "state", "steps", "misses"}


def test_answered_request_steps_the_sim(probe: BridgeProbe, lockstep: Bridge) -> None:
    request = probe.requests[-1]
    before = probe.status()["steps"]
    count = len(probe.requests)
    probe.send_chunk(request.stamp, [[0.0] * 6 + [-1.0]] * 3)  # 3 points; execute_steps = 2 of them run
    new = probe.wait_for(
        lambda: next((r for r in probe.requests[count:] if r.stamp != request.stamp), None), "the next request"
    )
    assert stamp_ns(new.stamp) - stamp_ns(request.stamp) == 2 * NS_PER_STEP
    status = probe.wait_status(lambda s: s["steps"] == before + 2, "2 more steps in the status")
    assert status["chunks_received"] >= 1 and status["state"] == "running"


def test_stale_chunk_is_ignored(probe: BridgeProbe, lockstep: Bridge) -> None:
    before = probe.status()
    old = Header().stamp  # stamp 0: never requested
    probe.send_chunk(old, [[0.0] * 7])
    status = probe.wait_status(lambda s: s["chunks_stale"] == before["chunks_stale"] + 1, "a stale chunk counted")
    assert status["steps"] == before["steps"]


@pytest.mark.parametrize(
    ("names", "points"),
    [
        (tuple(reversed(CHUNK_JOINT_NAMES)), [[0.0] * 7]),
        (CHUNK_JOINT_NAMES, []),
        (CHUNK_JOINT_NAMES, [[0.0] * 7] * 11),
        (CHUNK_JOINT_NAMES, [[0.0] * 6]),
        (CHUNK_JOINT_NAMES, [[0.0] * 6 + [math.nan]]),
        (CHUNK_JOINT_NAMES, [[0.0] * 7, [math.inf] + [0.0] * 6]),
    ],
    ids=["names", "no_points", "11_points", "6_positions", "nan", "inf"],
)
def test_malformed_chunk_is_rejected(
    probe: BridgeProbe, lockstep: Bridge, names: tuple[str, ...], points: list[list[float]]
) -> None:
    before = probe.status()
    probe.send_chunk(probe.requests[-1].stamp, points, names)  # answers the pending request, but malformed
    status = probe.wait_status(
        lambda s: s["chunks_rejected"] == before["chunks_rejected"] + 1, "the rejected chunk counted"
    )
    assert status["steps"] == before["steps"] and status["state"] == "running"


def test_unanswered_request_is_repeated_as_a_miss(probe: BridgeProbe, lockstep: Bridge) -> None:
    before = probe.status()
    pending = probe.requests[-1].stamp
    count = len(probe.requests)
    repeated = probe.wait_for(lambda: any(r.stamp == pending for r in probe.requests[count:]), "a repeated request")
    assert repeated
    probe.wait_status(lambda s: s["misses"] > before["misses"], "a miss counted")
    diagnostics = probe.wait_for(
        lambda: (
            probe.diagnostics
            and probe.diagnostics[-1].status[0].level == DiagnosticStatus.WARN
            and probe.diagnostics[-1]
        ),
        "WARN diagnostics",
    )
    assert "misses" in {kv.key for kv in diagnostics.status[0].values}


def test_reset_service_starts_next_episode(probe: BridgeProbe, lockstep: Bridge) -> None:
    assert probe.reset_client.wait_for_service(timeout_sec=WAIT_S)
    tasks = len(probe.tasks)
    future = probe.reset_client.call_async(Trigger.Request())
    response = probe.wait_for(lambda: future.done() and future.result(), "the reset response")
    assert response.success, response.message
    assert "episode 0 aborted" in response.message and "starting episode 1 (init state 1)" in response.message
    status = probe.wait_status(lambda s: s["episode"] == 1, "episode 1")
    assert (status["init_state"], status["state"], status["steps"]) == (1, "running", 0)
    assert any(s["episode"] == 0 and s["state"] == "aborted" for s in probe.statuses)
    assert probe.wait_for(lambda: probe.tasks[tasks:], "the task of episode 1") == [SPATIAL_TASK_0]


def test_sigint_exits_zero(lockstep: Bridge) -> None:
    assert lockstep.stop(signal.SIGINT) == 0, lockstep.output()


def test_realtime_counts_misses_finishes_and_exits(tmp_path: Path) -> None:
    params = {
        "suite": "libero_spatial",
        "task_id": 0,
        "camera_size": 128,
        "settle_steps": 1,
        "max_steps": 4,
        "clock_mode": "realtime",
        "control_rate_hz": 20.0,
        "num_episodes": 1,
    }
    probe = BridgeProbe()
    bridge = Bridge(params, tmp_path / "realtime.log", probe.domain_id)
    try:
        status = probe.wait_for(
            lambda: probe.statuses and probe.statuses[-1]["state"] == "finished" and probe.statuses[-1],
            "the run to finish",
            timeout=STARTUP_S,
        )
        assert (status["misses"], status["steps"], status["episodes_done"]) == (4, 4, 1)  # no policy: held 4 steps
        assert status["outcome"] == "timeout"
        assert any(s["state"] == "timeout" for s in probe.statuses)
        assert abs(stamp_ns(probe.requests[0].stamp) / 1e9 - time.time()) < 120  # realtime stamps are wall time
        assert "clock" not in probe.latest
        assert bridge.process.wait(timeout=WAIT_S) == 0, bridge.output()  # num_episodes done: exits by itself
    finally:
        bridge.stop(signal.SIGKILL)
        probe.close()


def test_lockstep_runs_num_episodes_then_finishes_and_exits(tmp_path: Path) -> None:
    """The bridge process ends after num_episodes (so `ros2 launch` can end with it), its final status delivered."""
    params = {**LOCKSTEP_PARAMS, "max_steps": 2, "init_state_index": 49, "num_episodes": 2}
    probe = BridgeProbe()
    bridge = Bridge(params, tmp_path / "episodes.log", probe.domain_id)
    answered: set[int] = set()

    def unanswered() -> Header | None:
        return next((r for r in probe.requests if stamp_ns(r.stamp) not in answered), None)

    try:
        for episode in range(2):  # max_steps = execute_steps = 2: one chunk per episode
            timeout = STARTUP_S if episode == 0 else WAIT_S
            request = probe.wait_for(unanswered, f"the request of episode {episode}", timeout=timeout)
            answered.add(stamp_ns(request.stamp))
            probe.send_chunk(request.stamp, [[0.0] * 6 + [-1.0]] * 2)
        status = probe.wait_status(lambda s: s["state"] == "finished", "the run to finish")
        assert (status["episodes_done"], status["successes"], status["misses"]) == (2, 0, 0)
        ends = {(s["episode"], s["init_state"], s["steps"]) for s in probe.statuses if s["state"] == "timeout"}
        assert ends == {(0, 49, 2), (1, 0, 2)}  # the next episode takes the next init state, wrapping around
        assert bridge.process.wait(timeout=WAIT_S) == 0, bridge.output()
    finally:
        bridge.stop(signal.SIGKILL)
        probe.close()
