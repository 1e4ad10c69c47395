"""`policy_node`: the DeepThinkVLA policy as a ROS 2 node (a thin adapter over `PolicyEngine`).

Subscribes to the two cameras, /joint_states and /task/instruction; answers chunk requests from the sim bridge
(`replan.trigger: request`) or replans every `replan.after_steps` control steps on the newest frame pair
(`replan.trigger: steps`); publishes ~/action_chunk, ~/chain_of_thought, ~/reasoning_image and /diagnostics.
Inference runs on one worker thread fed the newest job, so camera callbacks keep flowing while the model thinks.
Topics and parameters: docs/topics.md.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dtvla_policy.inference.chunk_health import ChunkHealth, ChunkRecord, HealthThresholds
from dtvla_policy.inference.engine import Observation, PolicyEngine
from dtvla_policy.inference.observation_pairing import CameraFrame, FramePair, ObservationPairer
from dtvla_policy.inference.reasoning_view import render_reasoning_view
from dtvla_policy.latest_only_worker import LatestOnlyWorker
from dtvla_policy.model.conventions import ACTION_DIM, CHUNK_STEPS
from dtvla_policy.protocol import COT_CAP_EVAL, NODE_MODES, DecodeConfig
from dtvla_policy.ros import contract
from dtvla_policy.ros.image_conversion import ImageConversionError, image_to_rgb8, numpy_to_image
from dtvla_policy.ros.node_runner import run_node
from dtvla_policy.ros.ros_logging import RosLogHandler, route_library_logs, unroute_library_logs

RUNTIME_MODES = tuple(m.value for m in NODE_MODES)

# The reasons a log line may be limited to once per run. Keys are these fixed names, never message text (a stream
# of varying encoding strings must not grow the set or flood the log); every occurrence is counted in /diagnostics,
# whose message carries the newest text.
WARN_ONCE_REASONS = frozenset({"frame:agentview", "frame:wrist", "future_frame", "joint_nan", "stale"})


@dataclass(frozen=True)
class PolicySettings:
    """Parameters of the node, read once at start; the runtime-changeable ones are replaced on set."""

    checkpoint: str
    device: str
    dtype: str
    mode: str
    max_cot_tokens: int
    control_rate_hz: float
    replan_trigger: str
    replan_after_steps: int
    max_observation_age_s: float
    max_camera_skew_s: float
    max_future_s: float
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    dry_run: bool
    publish_reasoning_image: bool
    health: HealthThresholds


def _descriptor(description: str, *, read_only: bool = False, float_range: tuple[float, float] | None = None,
                int_range: tuple[int, int] | None = None) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if float_range:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1])]
    if int_range:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    return descriptor


# name -> (default, descriptor). The default fixes the type; config/sim.yaml sets these per deployment.
PARAMETERS: dict[str, tuple[object, ParameterDescriptor]] = {
    "checkpoint": ("", _descriptor("checkpoint directory (safetensors, config, tokenizer, norm_stats.json)",
                                   read_only=True)),
    "device": ("cpu", _descriptor("torch device: cpu, cuda, cuda:1 ...", read_only=True)),
    "dtype": ("auto", _descriptor("auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16 or float16", read_only=True)),
    "mode": ("full", _descriptor("full: chain-of-thought then actions; masked: empty CoT, one pass (changeable)")),
    "max_cot_tokens": (COT_CAP_EVAL, _descriptor(
        f"CoT cap counted like upstream's max_new_tokens; a longer CoT is closed by force. {COT_CAP_EVAL} is "
        "upstream's (evaluation); a lower value is a decoding deviation, reported in /diagnostics",
        int_range=(0, COT_CAP_EVAL))),
    "control_rate_hz": (20.0, _descriptor("rate the chunk's steps are executed at (time_from_start)",
                                          float_range=(1.0, 1000.0))),
    "replan.trigger": ("request", _descriptor("request: answer the bridge's chunk requests; steps: replan every "
                                              "replan.after_steps control steps on the newest frames",
                                              read_only=True)),
    "replan.after_steps": (10, _descriptor("steps of a chunk executed before the next one (trigger steps)",
                                           int_range=(1, CHUNK_STEPS))),
    "staleness.max_observation_age_s": (1.0, _descriptor("no inference on frames older than this (node clock)",
                                                         float_range=(0.0, 3600.0))),
    "staleness.max_camera_skew_s": (0.05, _descriptor("max stamp difference of the two camera frames of a pair",
                                                      float_range=(0.0, 10.0), read_only=True)),
    "staleness.max_future_s": (0.1, _descriptor(
        "frames stamped more than this ahead of the node clock are rejected and counted (future_frames): a "
        "clock-skewed camera must not pass as fresh nor block replanning", float_range=(0.0, 60.0))),
    "action_limits.low": ([-1.0] * ACTION_DIM, _descriptor("per-dim lower clip of published commands")),
    "action_limits.high": ([1.0] * ACTION_DIM, _descriptor("per-dim upper clip of published commands")),
    "dry_run": (False, _descriptor("think and publish CoT/diagnostics, but publish no action chunk")),
    "publish_reasoning_image": (True, _descriptor("publish ~/reasoning_image (views + CoT + chunk)")),
    # chunk health on /diagnostics (dtvla_policy.inference.chunk_health); defaults: HealthThresholds
    "health.window": (HealthThresholds.window, _descriptor(
        "recent chunks the per-stage latency p50/p95/p99 are taken over", read_only=True, int_range=(1, 100000))),
    "health.ngram_size": (HealthThresholds.ngram_size, _descriptor(
        "words per n-gram of the CoT repetition check", read_only=True, int_range=(1, 64))),
    "health.ngram_max_repeats": (HealthThresholds.ngram_max_repeats, _descriptor(
        "a CoT with an n-gram occurring more often than this counts as repetitive (WARN)", read_only=True,
        int_range=(1, 10000))),
    "health.identical_cot_chunks": (HealthThresholds.identical_cot_chunks, _descriptor(
        "this many consecutive identical non-empty CoTs count as a stuck CoT (WARN)", read_only=True,
        int_range=(2, 100000))),
}


class PolicyNode(Node):
    """Runs the policy engine on synchronized camera pairs and publishes chunks, CoT and diagnostics."""

    def __init__(self, **kwargs) -> None:
        # destroy_node also runs (context shutdown) on a node whose __init__ failed: what it needs comes first
        self._cv = threading.Condition()
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._view_worker: LatestOnlyWorker | None = None
        self._log_handler: RosLogHandler | None = None
        super().__init__("dtvla_policy", **kwargs)
        self._log_handler = route_library_logs(self.get_logger())  # engine warnings to /rosout, rate-limited
        self.settings = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.engine = PolicyEngine.from_checkpoint(
            self.settings.checkpoint, device=self.settings.device,
            dtype=None if self.settings.dtype == "auto" else self.settings.dtype,
        )
        self.get_logger().info(f"loaded checkpoint {self.settings.checkpoint} on {self.settings.device}")
        deviations = self._decode_config().deviations()
        if deviations:
            self.get_logger().warning(f"decoding deviates from upstream: {deviations} (upstream: max_cot_tokens="
                                      f"{COT_CAP_EVAL}); longer CoTs are closed by force and counted as cot_truncated")
        self.pairer = ObservationPairer(int(self.settings.max_camera_skew_s * 1e9))
        self.task: str | None = None
        self.stats = {k: 0 for k in ("inferences", "chunks_published", "stale_skips", "frames_rejected",
                                     "future_frames", "joint_states_rejected", "engine_errors", "non_finite_outputs",
                                     "chunks_clipped")}
        self.health = ChunkHealth(self.settings.health)  # deadline misses, CoT cap hits, ... and the percentiles
        self._health_lock = threading.Lock()  # the worker records, the diagnostics timer reads
        self.last = {"timings": {}, "cot_tokens": 0, "observation_age_ms": float("nan"), "error": "",
                     "error_level": DiagnosticStatus.OK, "joint_state_stamp_ns": None, "non_finite_streak": 0}
        self._warned: set[str] = set()
        self._job: tuple[FramePair, str] | None = None
        self._pending_request_ns: int | None = None
        self._last_chunk_stamp_ns: int | None = None
        self._busy = False

        self.chunk_pub = self.create_publisher(JointTrajectory, contract.ACTION_CHUNK_TOPIC, contract.COMMAND_QOS)
        self.cot_pub = self.create_publisher(String, contract.CHAIN_OF_THOUGHT_TOPIC, contract.COMMAND_QOS)
        self.image_pub = self.create_publisher(Image, contract.REASONING_IMAGE_TOPIC, contract.VIEW_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(Image, contract.AGENTVIEW_TOPIC, lambda m: self._on_image("agentview", m),
                                 contract.SENSOR_QOS)
        self.create_subscription(Image, contract.WRIST_TOPIC, lambda m: self._on_image("wrist", m),
                                 contract.SENSOR_QOS)
        self.create_subscription(JointState, contract.JOINT_STATES_TOPIC, self._on_joint_state, contract.SENSOR_QOS)
        self.create_subscription(String, contract.TASK_TOPIC, self._on_task, contract.LATCHED_QOS)
        self.create_subscription(Header, contract.CHUNK_REQUEST_TOPIC, self._on_request, contract.COMMAND_QOS)
        # wall-clock reporting, also while an idle simulator holds /clock still
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        # the reasoning picture is drawn and sent off the inference thread: a reliable subscriber to it could
        # block that publish for seconds (docs/topics.md)
        self._view_worker = LatestOnlyWorker(self._publish_reasoning_image, "dtvla-reasoning-image",
                                             on_error=self._on_view_error)
        self._worker = threading.Thread(target=self._work, name="dtvla-inference", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> PolicySettings:
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        settings = PolicySettings(
            checkpoint=get("checkpoint"), device=get("device"), dtype=get("dtype"), mode=get("mode"),
            max_cot_tokens=get("max_cot_tokens"), control_rate_hz=get("control_rate_hz"),
            replan_trigger=get("replan.trigger"), replan_after_steps=get("replan.after_steps"),
            max_observation_age_s=get("staleness.max_observation_age_s"),
            max_camera_skew_s=get("staleness.max_camera_skew_s"),
            max_future_s=get("staleness.max_future_s"),
            action_low=tuple(get("action_limits.low")), action_high=tuple(get("action_limits.high")),
            dry_run=get("dry_run"), publish_reasoning_image=get("publish_reasoning_image"),
            health=HealthThresholds(window=get("health.window"), ngram_size=get("health.ngram_size"),
                                    ngram_max_repeats=get("health.ngram_max_repeats"),
                                    identical_cot_chunks=get("health.identical_cot_chunks")),
        )
        problems = [self._check(name, value) for name, value in (
            ("checkpoint", settings.checkpoint), ("mode", settings.mode), ("replan.trigger", settings.replan_trigger),
            ("action_limits.low", settings.action_low), ("action_limits.high", settings.action_high))]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("; ".join(problems))
        return settings

    def _check(self, name: str, value) -> str:
        """'' if `value` is acceptable for parameter `name`, else the reason."""
        if name == "checkpoint" and not value:
            return ("parameter 'checkpoint' is empty: set it to a checkpoint directory (no default checkpoint "
                    "ships; `dtvla-tiny-checkpoint DIR` writes an untrained one for trying the plumbing)")
        if name == "mode" and value not in RUNTIME_MODES:
            return f"mode must be one of {RUNTIME_MODES}, got {value!r}"
        if name == "replan.trigger" and value not in ("request", "steps"):
            return f"replan.trigger must be 'request' or 'steps', got {value!r}"
        if name.startswith("action_limits.") and (len(value) != ACTION_DIM or not np.all(np.isfinite(value))):
            return f"{name} needs {ACTION_DIM} finite values, got {list(value)}"
        return ""

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        fields = {"mode": "mode", "max_cot_tokens": "max_cot_tokens", "dry_run": "dry_run",
                  "publish_reasoning_image": "publish_reasoning_image", "replan.after_steps": "replan_after_steps",
                  "staleness.max_observation_age_s": "max_observation_age_s",
                  "staleness.max_future_s": "max_future_s", "action_limits.low": "action_low",
                  "action_limits.high": "action_high", "control_rate_hz": "control_rate_hz"}
        updates = {}
        for param in params:
            reason = self._check(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if param.name in fields:
                value = param.value
                updates[fields[param.name]] = tuple(value) if param.name.startswith("action_limits.") else value
        if hasattr(self, "settings") and updates:
            self.settings = replace(self.settings, **updates)
            self.get_logger().info(f"parameters changed: {updates}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------ callbacks
    def _warn_once(self, key: str, message: str) -> None:
        if key not in WARN_ONCE_REASONS:
            raise ValueError(f"warn-once key {key!r} is not one of {sorted(WARN_ONCE_REASONS)}")
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(message)

    def _report(self, level: bytes, message: str) -> None:
        """The newest problem, shown on /diagnostics until the next good prediction."""
        self.last.update(error=message, error_level=level)

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb8(msg)
        except ImageConversionError as err:
            self.stats["frames_rejected"] += 1
            self._report(DiagnosticStatus.WARN, f"{camera} frame rejected: {err}")
            self._warn_once(f"frame:{camera}", self.last["error"])
            return
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        ahead_s = (stamp_ns - self.get_clock().now().nanoseconds) / 1e9
        if ahead_s > self.settings.max_future_s:
            # a future stamp would count as fresh and, once a chunk carried it, no later frame would be newer
            self.stats["future_frames"] += 1
            self._report(DiagnosticStatus.WARN, f"{camera} frame stamped {ahead_s:.3f} s ahead of the node clock "
                         f"(limit staleness.max_future_s={self.settings.max_future_s} s) rejected; check the camera's "
                         "clock and use_sim_time")
            self._warn_once("future_frame", self.last["error"])
            return
        self.pairer.add(camera, CameraFrame(stamp_ns, rgb))
        self._schedule()

    def _on_joint_state(self, msg: JointState) -> None:
        if not np.all(np.isfinite(np.asarray(msg.position, dtype=np.float64))):
            self.stats["joint_states_rejected"] += 1
            self._warn_once("joint_nan", "joint state with NaN/inf positions rejected")
            return
        self.last["joint_state_stamp_ns"] = Time.from_msg(msg.header.stamp).nanoseconds

    def _on_task(self, msg: String) -> None:
        self.task = msg.data
        self.get_logger().info(f"task: {msg.data!r}")
        self._schedule()

    def _on_request(self, msg: Header) -> None:
        self._pending_request_ns = Time.from_msg(msg.stamp).nanoseconds
        self._schedule()

    def _schedule(self) -> None:
        """Hand the worker the newest due job: a requested stamp's pair, or the newest pair when a replan is due."""
        if self.task is None:
            return
        settings = self.settings
        now_ns = self.get_clock().now().nanoseconds
        if settings.replan_trigger == "request":
            if self._pending_request_ns is None:
                return
            pair = self.pairer.pair_at(self._pending_request_ns)
        else:
            pair = self.pairer.newest_pair()
            if (self._last_chunk_stamp_ns is not None
                    and self._last_chunk_stamp_ns - now_ns > int(settings.max_future_s * 1e9)):
                # the clock went back (e.g. a simulator reset /clock): the old chunk stamp must not block replanning
                self._last_chunk_stamp_ns = None
            horizon_ns = int(settings.replan_after_steps / settings.control_rate_hz * 1e9)
            if pair is None or (self._last_chunk_stamp_ns is not None
                                and pair.stamp_ns - self._last_chunk_stamp_ns < horizon_ns):
                return
        if pair is None:
            return
        age_s = (now_ns - pair.stamp_ns) / 1e9
        if age_s > settings.max_observation_age_s:
            self.stats["stale_skips"] += 1
            self._report(DiagnosticStatus.WARN,
                         f"observation {age_s:.2f} s old (limit {settings.max_observation_age_s} s): skipped")
            self._warn_once("stale", self.last["error"])
            self._pending_request_ns = None
            return
        with self._cv:
            if self._busy and settings.replan_trigger == "steps":
                return
            self._job = (pair, self.task)
            self._pending_request_ns = None
            self._cv.notify()

    # ------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                pair, task = self._job
                self._job = None
                self._busy = True
            try:
                self._infer_and_publish(pair, task)
            except Exception as err:  # noqa: BLE001 - a publish failure must not kill the worker thread
                self._report(DiagnosticStatus.WARN, f"publishing failed: {type(err).__name__}: {err}")
                self.get_logger().error(self.last["error"])
            finally:
                with self._cv:
                    self._busy = False

    def _infer_and_publish(self, pair: FramePair, task: str) -> None:
        settings = self.settings
        self._last_chunk_stamp_ns = pair.stamp_ns
        start = time.perf_counter()
        try:
            prediction = self.engine.predict_batch(
                [Observation(pair.agentview.image, pair.wrist.image, task)], settings.mode, self._decode_config(),
            )[0]
        except FloatingPointError as err:  # the engine's NonFiniteOutputError (issue 9) is a FloatingPointError
            # no chunk for this request: the bridge's miss/hold path keeps the robot still
            self.stats["non_finite_outputs"] += 1
            self.last["non_finite_streak"] += 1
            self._report(DiagnosticStatus.ERROR, f"non-finite model output, no chunk published: {err}")
            if self.last["non_finite_streak"] == 1:  # one line per failing streak, not one per request
                self.get_logger().error(f"{self.last['error']}; holding until a prediction is finite again")
            self._publish_diagnostics()
            return
        except Exception as err:  # noqa: BLE001 - any engine failure is reported and the node keeps running
            self.stats["engine_errors"] += 1
            self._report(DiagnosticStatus.ERROR, f"engine error: {type(err).__name__}: {err}")
            self.get_logger().error(self.last["error"])
            self._publish_diagnostics()
            return
        if self.last["non_finite_streak"]:
            self.get_logger().info(f"prediction finite again after {self.last['non_finite_streak']} non-finite ones")
            self.last["non_finite_streak"] = 0
        actions = np.clip(prediction.actions, settings.action_low, settings.action_high)
        if not np.array_equal(actions, prediction.actions):
            self.stats["chunks_clipped"] += 1
        stamp = Time(nanoseconds=pair.stamp_ns).to_msg()
        if not settings.dry_run:
            self.chunk_pub.publish(self._chunk_message(actions, stamp, settings.control_rate_hz))
            self.stats["chunks_published"] += 1
        self.cot_pub.publish(String(data=prediction.cot))
        self.stats["inferences"] += 1
        chunk = ChunkRecord(timings_ms={**prediction.timings, "chunk_ms": (time.perf_counter() - start) * 1e3},
                            budget_ms=settings.replan_after_steps / settings.control_rate_hz * 1e3,
                            cot=prediction.cot, cot_truncated=prediction.cot_truncated,
                            thinking_expected=settings.mode == "full")
        with self._health_lock:
            self.health.record(chunk)
        self.last.update(timings=prediction.timings, cot_tokens=prediction.cot_tokens, error="",
                         error_level=DiagnosticStatus.OK,
                         observation_age_ms=(self.get_clock().now().nanoseconds - pair.stamp_ns) / 1e6)
        if settings.publish_reasoning_image:
            self._view_worker.submit((pair, prediction.cot, actions, f"{settings.mode} | {task}", stamp))
        self._publish_diagnostics()

    def _publish_reasoning_image(self, job: tuple) -> None:
        pair, cot, actions, caption, stamp = job
        view = render_reasoning_view(pair.agentview.image, pair.wrist.image, cot, actions, caption=caption)
        self.image_pub.publish(numpy_to_image(view, "rgb8", stamp=stamp, frame_id="reasoning"))

    def _on_view_error(self, err: Exception) -> None:
        self.get_logger().error(f"reasoning image failed: {type(err).__name__}: {err}", throttle_duration_sec=10.0)

    def _decode_config(self) -> DecodeConfig:
        """The decoding in use: upstream's defaults with this node's (run-time changeable) CoT cap."""
        return replace(self.engine.decode_config, max_cot_tokens=self.settings.max_cot_tokens)

    @staticmethod
    def _chunk_message(actions: np.ndarray, stamp, rate_hz: float) -> JointTrajectory:
        msg = JointTrajectory(joint_names=list(contract.CHUNK_JOINT_NAMES))
        msg.header.stamp = stamp
        for k, row in enumerate(actions):
            t = (k + 1) / rate_hz
            msg.points.append(JointTrajectoryPoint(
                positions=[float(v) for v in row],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))),
            ))
        return msg

    def _publish_diagnostics(self) -> None:
        settings = self.settings
        level = DiagnosticStatus.OK
        message = "ok"
        if self.last["error"]:
            level, message = self.last["error_level"], self.last["error"]
        elif self.task is None:
            level, message = DiagnosticStatus.WARN, "waiting for a task instruction"
        with self._health_lock:
            health_values, health_problems = self.health.values(), list(self.health.problems)
        if health_problems and level == DiagnosticStatus.OK:  # the newest chunk's; the counts stay in the values
            level, message = DiagnosticStatus.WARN, "; ".join(health_problems)
        if self.last["non_finite_streak"] and level != DiagnosticStatus.ERROR:  # a later warning must not hide it
            level, message = DiagnosticStatus.ERROR, f"last prediction non-finite, no chunk published; then: {message}"
        values = {"mode": settings.mode, "checkpoint": settings.checkpoint, "dry_run": settings.dry_run,
                  "max_cot_tokens": settings.max_cot_tokens,
                  "decode_deviations": json.dumps(self._decode_config().deviations(), sort_keys=True),
                  "cot_tokens": self.last["cot_tokens"],
                  "observation_age_ms": round(self.last["observation_age_ms"], 1),
                  **self.stats, "reasoning_images_dropped": self._view_worker.dropped,
                  **{k: round(v, 2) for k, v in self.last["timings"].items()},
                  **{k: round(v, 2) for k, v in health_values.items()}}
        if self.last["joint_state_stamp_ns"] is not None:
            age = (self.get_clock().now().nanoseconds - self.last["joint_state_stamp_ns"]) / 1e9
            values["joint_state_age_s"] = round(age, 3)
        fqn = self.get_fully_qualified_name()
        status = DiagnosticStatus(level=level, name=contract.status_name(fqn, "inference"), message=message,
                                  hardware_id=fqn,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        try:
            self.diag_pub.publish(msg)
        except Exception:  # noqa: BLE001 - the context may be shutting down under the worker
            pass

    def destroy_node(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._worker is not None:
            self._worker.join(timeout=30)
        if self._view_worker is not None:
            self._view_worker.close()
        unroute_library_logs(self._log_handler)
        self._log_handler: RosLogHandler | None = None
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the policy node until SIGINT or SIGTERM (exit 0); a bad checkpoint or parameter exits 1."""
    run_node(PolicyNode, args, startup_errors=(ValueError, FileNotFoundError))


if __name__ == "__main__":
    main()
