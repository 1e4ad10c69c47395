"""The sim-bridge node: a LIBERO task behind the dtvla topic contract, so the policy node runs as on a robot.

Publishes the two cameras, /joint_states, the task instruction, episode status and /diagnostics; executes the
policy's action chunks; asks for each chunk with a std_msgs/Header on the chunk-request topic whose stamp is the
stamp of the observation to answer. The episodes themselves (reset, settle, chunk execution, success / timeout /
simulator failure) are the shared loop of `dtvla_sim_bridge.sim.episode`, the one the evaluation runs; this node
adapts it to ROS: parameters, stamps, requests and their timeouts, publishing, status. Two clock modes:

- `lockstep` (evaluation): the sim waits for the policy. Stamps are sim time, also published on `clock`
  (/clock without a namespace; policy nodes run with use_sim_time and the remap `/clock:=clock`). After a reset
  or after `execute_steps` actions, publish + request, then wait for the chunk answering exactly that stamp
  (others are counted stale); no answer in `chunk_timeout_s` (wall) re-publishes the same observation and
  request and counts a miss. No miss is counted while nobody
  subscribes to the request topic, and the request is re-sent as soon as a subscriber appears.
- `realtime` (deployment rehearsal): a wall timer at `control_rate_hz` steps the sim with the next queued action,
  holding position (zero deltas, last gripper command) and counting a miss when the queue is empty. Stamps are
  wall time (no /clock); a chunk is requested whenever the queue runs empty, re-requested after
  `chunk_timeout_s`; a fresh chunk replaces the queue, an older-stamped one is stale.

The simulator runs in timer callbacks on the executor thread, one env step per callback (~0.15-0.25 s), so
service calls and chunks are handled between steps. A reset (with its settle steps) takes one callback. After
`num_episodes` the process exits 0 (1 when it stopped on repeated simulator failures), so a launch can end there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock as RclClock
from rclpy.clock import ClockType
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.model.conventions import CHUNK_STEPS
from dtvla_policy.protocol import UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_policy.ros.contract import (
    AGENTVIEW_TOPIC,
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
from dtvla_policy.ros.image_conversion import numpy_to_image
from dtvla_policy.ros.node_runner import FinishingNode, run_node
from dtvla_sim_bridge.ros.action_chunk import ChunkRejected, chunk_to_actions
from dtvla_sim_bridge.sim.episode import EpisodeLoop, Outcome
from dtvla_sim_bridge.sim.libero_env import CONTROL_FREQ_HZ, Frame, LiberoSim, StepResult
from dtvla_sim_bridge.sim.object_jitter import MAX_OBJECT_JITTER_M
from dtvla_sim_bridge.sim.suites import SUITE_NAMES, get_suite

NODE_NAME = "dtvla_sim_bridge"
CLOCK_MODES = ("lockstep", "realtime")
# Reliable publishers match both reliable and best-effort subscribers (rclpy's TimeSource is best effort).
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LOCKSTEP_TICK_S = 0.001  # step timer period while lockstep has work; cancelled while it waits for the policy
WATCH_PERIOD_S = 0.1  # chunk-timeout resolution
DIAGNOSTICS_PERIOD_S = 1.0
WARN_THROTTLE_S = 10.0  # per rejection reason
MAX_CONSECUTIVE_FAILURES = 3  # a simulator that keeps failing stops the run instead of looping
FINAL_STATUS_ACK_S = 5.0  # before exiting, wait this long for subscribers to confirm the final status


@dataclass(frozen=True)
class BridgeConfig:
    """The node's parameters, read once at start-up (all are read-only ROS parameters).

    The episode protocol's defaults are `dtvla_policy.protocol.UPSTREAM_EPISODE` (the upstream evaluation's).
    """

    suite: str = "libero_spatial"
    task_id: int = 0
    init_state_index: int = 0  # init state of episode 0; episode e uses (index + e) mod the number of states
    camera_size: int = UPSTREAM_EPISODE.camera_size  # square render size in px; the policy resizes
    seed: int = UPSTREAM_EPISODE.env_seed  # env seed: each reset seeds numpy with seed + init state
    clock_mode: str = "lockstep"
    control_rate_hz: float = float(CONTROL_FREQ_HZ)  # realtime mode only; LIBERO's control rate
    max_steps: int = 0  # policy steps per episode; 0 = the suite's DeepThinkVLA cap
    settle_steps: int = UPSTREAM_EPISODE.settle_steps  # no-op steps after each reset, not counted in max_steps
    execute_steps: int = UPSTREAM_EPISODE.execute_steps  # actions of each chunk to run before asking again
    chunk_timeout_s: float = 60.0  # wall time before a chunk request is repeated (lockstep: counted as a miss)
    num_episodes: int = 0  # episodes to run, then idle reporting "finished"; 0 = unlimited
    hard_reset: bool = UPSTREAM_EPISODE.hard_reset  # a new env at every reset (~4 s instead of ~0.5 s; same state)
    object_jitter_m: float = UPSTREAM_EPISODE.object_jitter_m  # seeded x/y displacement of movable objects (0: off)

    def __post_init__(self) -> None:
        get_suite(self.suite)  # unknown -> ValueError with "did you mean"
        if self.clock_mode not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {self.clock_mode!r}")

    @property
    def lockstep(self) -> bool:
        return self.clock_mode == "lockstep"

    @property
    def protocol(self) -> EpisodeProtocol:
        return EpisodeProtocol(settle_steps=self.settle_steps, camera_size=self.camera_size, env_seed=self.seed,
                               execute_steps=self.execute_steps, hard_reset=self.hard_reset,
                               object_jitter_m=self.object_jitter_m)


# name -> (description, (min, max) or None); defaults and types come from BridgeConfig.
_PARAMETERS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "suite": (f"LIBERO suite: {', '.join(SUITE_NAMES)}", None),
    "task_id": ("task index in the suite (libero_90: 0..89, others 0..9)", (0, 89)),
    "init_state_index": ("init state of the first episode; later episodes take the next ones, wrapping", (0, 9999)),
    "camera_size": (
        f"square camera render size in px (upstream eval: {UPSTREAM_EPISODE.camera_size}; the policy resizes)",
        (16, 1024),
    ),
    "seed": ("env seed: each reset seeds numpy (LIBERO's fixture placement) with seed + init state", (0, 2**31 - 1)),
    "clock_mode": ("lockstep: the sim waits for each chunk, sim time on /clock; realtime: wall-clock stepping", None),
    "control_rate_hz": (f"realtime mode: env steps per wall second (LIBERO's: {CONTROL_FREQ_HZ})", (0.1, 100.0)),
    "max_steps": ("policy steps per episode before 'timeout'; 0 = the suite's default", (0, 10000)),
    "settle_steps": (
        f"no-op steps after each reset (upstream num_steps_wait: {UPSTREAM_EPISODE.settle_steps})", (0, 100)
    ),
    "execute_steps": (f"actions of each chunk run before the next request (1..{CHUNK_STEPS})", (1, CHUNK_STEPS)),
    "chunk_timeout_s": ("wall seconds without a chunk before the request is repeated (lockstep: a miss)", (0.1, 3600)),
    "num_episodes": ("episodes to run, then idle reporting 'finished'; 0 = unlimited", (0, 1_000_000)),
    "hard_reset": ("build a new simulator at every reset (~4 s instead of ~0.5 s; the state is the same)", None),
    "object_jitter_m": ("displace every movable object by up to this many metres in x and y after the init state "
                        "(seeded by seed + init state; 0 = upstream's fixed init states)", (0.0, MAX_OBJECT_JITTER_M)),
}


def _descriptor(description: str, bounds: tuple[float, float] | None, default: Any) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, read_only=True)
    if bounds is not None and isinstance(default, float):
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)
        ]
    elif bounds is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    return descriptor


class _Phase(Enum):
    RESET = "reset"  # the next tick starts an episode
    WAIT = "wait"  # lockstep: waiting for the chunk answering the request
    EXECUTE = "execute"  # lockstep: running the queued actions, one per tick
    RUN = "run"  # realtime: stepping at the control rate
    FINISHED = "finished"  # num_episodes done (or the simulator keeps failing); idle


@dataclass
class _Episode:
    """The ROS side of one episode; published as JSON on the status topic with the loop's steps and reward."""

    episode: int
    init_state: int
    state: str = "running"  # running | success | timeout | failed | aborted (~/reset) | finished (run over)
    # The episode's end (success | timeout | failed | aborted), kept when state becomes "finished": the two are
    # published back to back, and a keep-last-1 subscriber may only see the second.
    outcome: str = ""
    chunks_received: int = 0  # every chunk message that arrived while the episode ran
    chunks_rejected: int = 0  # malformed: wrong joint names, point count, positions count, NaN/Inf
    chunks_stale: int = 0  # well-formed but not answering the pending request (lockstep) / older (realtime)
    request_timeouts: int = 0  # lockstep misses: requests repeated after chunk_timeout_s
    error: str = ""
    # Stamps of the episode's first and newest observation (-1: none yet): a recording's episode boundaries.
    first_stamp_ns: int = -1
    last_stamp_ns: int = -1


def _stamp_key(stamp: TimeMsg) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


class SimBridgeNode(FinishingNode):
    """LIBERO task <-> dtvla topics; see the module docstring for the two clock modes."""

    def __init__(self, **kwargs: Any) -> None:
        self._sim: LiberoSim | None = None  # destroy_node may run (context shutdown) before the sim exists
        super().__init__(NODE_NAME, **kwargs)
        self.config = self._declare_config()
        cfg = self.config

        self._agentview_pub = self.create_publisher(Image, AGENTVIEW_TOPIC, SENSOR_QOS)
        self._wrist_pub = self.create_publisher(Image, WRIST_TOPIC, SENSOR_QOS)
        self._joints_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, STATE_QOS)
        self._task_pub = self.create_publisher(String, TASK_TOPIC, LATCHED_QOS)
        self._status_pub = self.create_publisher(String, EPISODE_STATUS_TOPIC, LATCHED_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, STATE_QOS)
        self._request_pub = self.create_publisher(Header, CHUNK_REQUEST_TOPIC, COMMAND_QOS)
        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, CLOCK_QOS) if cfg.lockstep else None
        self.create_subscription(JointTrajectory, POLICY_ACTION_CHUNK, self._on_chunk, COMMAND_QOS)
        self.create_service(Trigger, RESET_SERVICE, self._on_reset)

        self._sim = LiberoSim.for_protocol(cfg.suite, cfg.task_id, cfg.protocol, max_steps=cfg.max_steps or None)
        try:
            self._sim.check_init_state(cfg.init_state_index)
        except ValueError:
            self._sim.close()
            raise
        self._loop = EpisodeLoop(self._sim, cfg.protocol)
        self._ns_per_step = round(1e9 / self._sim.control_freq)

        self._phase = _Phase.RESET
        self._episode: _Episode | None = None
        self._episodes_started = 0
        self._successes = 0
        self._failure_streak = 0
        self._clock_steps = 0  # lockstep: control steps since start; stamps are clock_steps / control_freq
        self._frame: Frame | None = None  # last published observation
        self._stamp = TimeMsg()  # its stamp
        self._pending: tuple[int, int] | None = None  # stamp of the unanswered request
        self._request_time = 0.0  # monotonic time of the last request
        self._request_heard = False  # a subscriber existed when the request went out
        self._accepted: tuple[int, int] | None = None  # realtime: stamp of the chunk in the queue
        self._warned: dict[str, float] = {}
        self._overrun_warned = False

        # The bridge is the clock source: its timers run on the steady clock even if use_sim_time is set (they
        # would wait for a /clock that only they advance), and realtime stamps come from the system clock.
        if self.get_parameter("use_sim_time").value:
            self.get_logger().warning("use_sim_time is ignored: the sim bridge is the clock source")
        self._wall_clock = RclClock(clock_type=ClockType.SYSTEM_TIME)
        steady = RclClock(clock_type=ClockType.STEADY_TIME)
        period = LOCKSTEP_TICK_S if cfg.lockstep else 1.0 / cfg.control_rate_hz
        self._tick_timer = self.create_timer(period, self._on_tick, clock=steady)
        self.create_timer(WATCH_PERIOD_S, self._on_watch, clock=steady)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_report, clock=steady)
        self.get_logger().info(
            f"{cfg.suite} task {cfg.task_id} ({self._sim.task_language!r}), {cfg.clock_mode}, "
            f"{self._sim.num_init_states} init states, max {self._sim.max_steps} steps"
        )

    def destroy_node(self) -> None:
        """Close the simulator (frees its EGL context) with the node."""
        if self._sim is not None:
            self._sim.close()
        super().destroy_node()

    # --- parameters ------------------------------------------------------------------------------------------
    def _declare_config(self) -> BridgeConfig:
        values = {}
        for spec in fields(BridgeConfig):
            description, bounds = _PARAMETERS[spec.name]
            self.declare_parameter(spec.name, spec.default, _descriptor(description, bounds, spec.default))
            values[spec.name] = self.get_parameter(spec.name).value
        return BridgeConfig(**values)

    # --- callbacks -------------------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        """Start an episode or run one env step: every simulator call happens here."""
        if self._phase is _Phase.RESET:
            self._start_episode()
        elif self._phase is _Phase.EXECUTE:
            self._after_step(self._loop.step_once())
        elif self._phase is _Phase.RUN:
            self._run_realtime_step()

    def _on_chunk(self, msg: JointTrajectory) -> None:
        if not self._loop.running:
            return
        episode = self._episode
        episode.chunks_received += 1
        try:
            actions = chunk_to_actions(msg)
        except ChunkRejected as exc:
            episode.chunks_rejected += 1
            self._warn_throttled(exc.reason, f"rejected action chunk: {exc}")
            return
        stamp = _stamp_key(msg.header.stamp)
        if self.config.lockstep:
            if self._phase is not _Phase.WAIT or stamp != self._pending:
                episode.chunks_stale += 1
                return
            self._set_phase(_Phase.EXECUTE)
        elif self._accepted is not None and stamp < self._accepted:
            episode.chunks_stale += 1
            return
        self._loop.give_chunk(actions)
        self._accepted = stamp
        self._pending = None

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """End the running episode ("aborted") and start the next one at the next init state."""
        if self._phase is _Phase.FINISHED:
            response.success = False
            response.message = f"finished: all {self._episodes_started} episodes are done; nothing to reset"
            return response
        aborted = ""
        if self._loop.running:
            aborted = f"episode {self._episode.episode} aborted; "
            self._loop.abort("reset requested via service")
            self._end_episode()
        if self._phase is _Phase.FINISHED:
            response.success = True
            response.message = f"{aborted}finished: num_episodes={self.config.num_episodes} reached"
            return response
        index = self._episodes_started
        response.success = True
        response.message = f"{aborted}starting episode {index} (init state {self._init_state_of(index)})"
        return response

    def _on_watch(self) -> None:
        """Repeat an unanswered request after chunk_timeout_s, or at once when its first listener appears."""
        if self._pending is None or self._frame is None:
            return
        heard = self._request_pub.get_subscription_count() > 0
        newly_heard = heard and not self._request_heard  # the policy came up after the request went out
        timed_out = time.monotonic() - self._request_time >= self.config.chunk_timeout_s
        if not (newly_heard or timed_out):
            return
        if self.config.lockstep:
            if heard and not newly_heard:
                self._episode.request_timeouts += 1
                self.get_logger().warning(
                    f"no chunk for stamp {self._pending} in {self.config.chunk_timeout_s} s; "
                    f"requesting again (miss {self._episode.request_timeouts})"
                )
            self._publish_observation(self._frame)  # same stamp: lockstep time stands still while waiting
        self._request_chunk()

    # --- episode flow ----------------------------------------------------------------------------------------
    def _init_state_of(self, episode: int) -> int:
        return (self.config.init_state_index + episode) % self._sim.num_init_states

    def _start_episode(self) -> None:
        index = self._episodes_started
        self._episodes_started += 1
        self._episode = _Episode(episode=index, init_state=self._init_state_of(index))
        self._pending = None
        self._accepted = None
        frame = self._loop.start(self._episode.init_state)
        if frame is None:  # the reset failed
            self._end_episode()
            return
        # A reset advances the clock by its settle steps plus one, so stamps never repeat across episodes.
        self._clock_steps += self.config.settle_steps + 1
        self.get_logger().info(f"episode {index}: init state {self._episode.init_state}")
        self._task_pub.publish(String(data=self._sim.task_language))
        self._set_phase(_Phase.WAIT if self.config.lockstep else _Phase.RUN)
        self._publish_observation(frame)
        self._request_chunk()
        self._publish_report()

    def _run_realtime_step(self) -> None:
        """The next queued action, or a hold step (a miss) when the policy is late."""
        started = time.monotonic()
        self._after_step(self._loop.hold_step() if self._loop.awaiting_chunk else self._loop.step_once())
        if self._phase is _Phase.RUN and self._loop.awaiting_chunk and self._pending is None:
            self._request_chunk()
        elapsed = time.monotonic() - started
        if elapsed > 1.0 / self.config.control_rate_hz and not self._overrun_warned:
            self._overrun_warned = True
            self.get_logger().warning(
                f"a sim step took {elapsed:.3f} s, longer than the control period at "
                f"{self.config.control_rate_hz} Hz: realtime mode runs slower than real time"
            )

    def _after_step(self, result: StepResult | None) -> None:
        """Publish the step's observation (None: the simulator failed), then end the episode or ask again."""
        if result is not None:
            self._clock_steps += 1
            self._publish_observation(result.frame)
        if not self._loop.running:
            self._end_episode()
        elif self._phase is _Phase.EXECUTE and self._loop.awaiting_chunk:
            self._set_phase(_Phase.WAIT)
            self._request_chunk()

    def _end_episode(self) -> None:
        """Report the loop's outcome, then reset next, or finish."""
        episode, progress = self._episode, self._loop.episode
        failed = progress.outcome is Outcome.FAILED
        episode.state = episode.outcome = progress.outcome.value
        episode.error = progress.error
        self._successes += progress.outcome is Outcome.SUCCESS
        self._failure_streak = self._failure_streak + 1 if failed else 0
        self._pending = None
        summary = f"episode {episode.episode} {episode.state} after {progress.steps} steps"
        summary += f": {progress.error}" if progress.error else ""
        # two call sites: rclpy refuses one logging call site used with two severities
        if failed:
            self.get_logger().error(summary)
        else:
            self.get_logger().info(summary)
        self._publish_report()
        exhausted = 0 < self.config.num_episodes <= self._episodes_started
        if exhausted or self._failure_streak >= MAX_CONSECUTIVE_FAILURES:
            if not exhausted:
                episode.error = f"stopped after {self._failure_streak} consecutive failed episodes: {progress.error}"
            self._set_phase(_Phase.FINISHED)
            episode.state = "finished"
            self.get_logger().info(f"finished: {self._episodes_started} episodes, {self._successes} successes")
            self._publish_report()
            # the latched status dies with the process: let subscribers have it first
            self._status_pub.wait_for_all_acked(Duration(seconds=FINAL_STATUS_ACK_S))
            self.finished.set_result(0 if exhausted else 1)
        else:
            self._set_phase(_Phase.RESET)

    def _set_phase(self, phase: _Phase) -> None:
        """Switch phase; the step timer runs only in phases with simulator work, so waiting costs no CPU."""
        self._phase = phase
        if phase in (_Phase.RESET, _Phase.EXECUTE, _Phase.RUN):
            if self._tick_timer.is_canceled():
                self._tick_timer.reset()
        else:
            self._tick_timer.cancel()

    # --- publishing ------------------------------------------------------------------------------------------
    def _now_stamp(self) -> TimeMsg:
        if self.config.lockstep:
            return Time(nanoseconds=self._clock_steps * self._ns_per_step).to_msg()
        return self._wall_clock.now().to_msg()

    def _publish_observation(self, frame: Frame) -> None:
        """Clock (lockstep), cameras and joint states, all with one stamp."""
        stamp = self._now_stamp()
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        self._agentview_pub.publish(numpy_to_image(frame.agentview, "rgb8", stamp, "agentview"))
        self._wrist_pub.publish(numpy_to_image(frame.wrist, "rgb8", stamp, "wrist"))
        joints = JointState(name=list(ROBOT_JOINT_NAMES))
        joints.header.stamp = stamp
        joints.position = np.concatenate([frame.joint_pos, frame.gripper_qpos]).tolist()
        joints.velocity = np.concatenate([frame.joint_vel, frame.gripper_qvel]).tolist()
        self._joints_pub.publish(joints)
        self._frame = frame
        self._stamp = stamp
        stamp_ns = Time.from_msg(stamp).nanoseconds
        if self._episode.first_stamp_ns < 0:
            self._episode.first_stamp_ns = stamp_ns
        self._episode.last_stamp_ns = stamp_ns

    def _request_chunk(self) -> None:
        """Ask for the chunk answering the observation just published."""
        self._request_heard = self._request_pub.get_subscription_count() > 0
        self._request_pub.publish(Header(stamp=self._stamp))
        self._pending = _stamp_key(self._stamp)
        self._request_time = time.monotonic()

    def _status(self) -> dict[str, Any]:
        episode, progress = self._episode, self._loop.episode
        return {
            "episode": episode.episode,
            "suite": self.config.suite,
            "task_id": self.config.task_id,
            "init_state": episode.init_state,
            "state": episode.state,
            "outcome": episode.outcome,
            "steps": progress.steps,
            "reward": progress.reward,
            "chunks_received": episode.chunks_received,
            "chunks_rejected": episode.chunks_rejected,
            "chunks_stale": episode.chunks_stale,
            "misses": episode.request_timeouts + progress.holds,  # lockstep: timeouts; realtime: hold steps
            "error": episode.error,
            "first_stamp_ns": episode.first_stamp_ns,
            "last_stamp_ns": episode.last_stamp_ns,
            "episodes_done": self._episodes_done(),
            "successes": self._successes,
        }

    def _episodes_done(self) -> int:
        return self._episodes_started - self._loop.running

    def _publish_report(self) -> None:
        """Latched episode status (JSON) and one /diagnostics status with the same fields."""
        if self._episode is None:
            return
        status = self._status()
        self._status_pub.publish(String(data=json.dumps(status)))
        failed = status["state"] == "failed" or (status["state"] == "finished" and self._failure_streak > 0)
        if failed:
            level = DiagnosticStatus.ERROR
        elif status["misses"] or status["chunks_rejected"]:
            level = DiagnosticStatus.WARN
        else:
            level = DiagnosticStatus.OK
        message = f"episode {status['episode']} {status['state']}, {status['steps']} steps"
        diagnostic = DiagnosticStatus(
            level=level,
            name=status_name(self.get_fully_qualified_name(), "episode"),
            hardware_id=f"libero/{self.config.suite}/{self.config.task_id}",
            message=message + (f": {status['error']}" if status["error"] else ""),
            values=[KeyValue(key=key, value=str(value)) for key, value in status.items()],
        )
        array = DiagnosticArray(status=[diagnostic])
        array.header.stamp = self._wall_clock.now().to_msg()
        self._diagnostics_pub.publish(array)

    def _warn_throttled(self, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(reason, -WARN_THROTTLE_S) >= WARN_THROTTLE_S:
            self._warned[reason] = now
            self.get_logger().warning(message)


def main(args: list[str] | None = None) -> None:
    """Run the bridge until its episodes are done (exit 0; 1 on repeated simulator failures) or until SIGINT or
    SIGTERM (exit 0); each closes the simulator."""
    run_node(SimBridgeNode, args)


if __name__ == "__main__":
    main()
