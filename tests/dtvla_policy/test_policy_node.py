"""The policy node as a real process over Fast DDS, driven by a probe node: chunks, CoT, diagnostics, faults."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log, Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.inference.engine import PolicyEngine
from dtvla_policy.model.sequence import prompt_text
from dtvla_policy.protocol import COT_CAP_EVAL, NODE_MODES
from dtvla_policy.ros import contract
from dtvla_policy.ros.image_conversion import numpy_to_image
from dtvla_policy.ros.policy_node import PARAMETERS, RUNTIME_MODES
from tests.fixtures.checkpoints import camera_image
from tests.fixtures.ros import probe_node, start_node, stop_node

pytestmark = pytest.mark.ros
NODE = "dtvla_policy.ros.policy_node"


@pytest.fixture(scope="module")
def policy_process(tiny_checkpoint):
    process = start_node(NODE, "-p", f"checkpoint:={tiny_checkpoint}", "-p", "max_cot_tokens:=3",
                         "-p", "staleness.max_observation_age_s:=30.0")
    yield process
    code, output = stop_node(process, signal.SIGINT)
    assert code == 0, output
    assert output.count("decoding deviates from upstream: {'max_cot_tokens': 3}") == 1, output  # once, at start
    assert output.count("bogus_encoding_") <= 1, output  # bad frames: one line per fixed reason, however many
    # the engine's per-chunk "closed by force" (max_cot_tokens 3) goes through the node's ROS logger, rate-limited
    forced = [line for line in output.splitlines() if "closed by force" in line and "CoT of sample" in line]
    assert forced and all("[dtvla_policy]: dtvla_policy.inference.engine: CoT" in line for line in forced), output


def make_rig(probe, node_name: str = "dtvla_policy", task: str = "put the bowl on the plate") -> dict:
    """Publishers for every input of the node `node_name` and recorders for every output; publishes `task`."""
    node = probe.node
    outputs = {key: f"/{node_name}/{key}" for key in ("action_chunk", "chain_of_thought", "reasoning_image")}
    rig = {
        "probe": probe,
        "status_name": f"{node_name}: inference",
        "task": node.create_publisher(String, contract.TASK_TOPIC, contract.LATCHED_QOS),
        "agentview": node.create_publisher(Image, contract.AGENTVIEW_TOPIC, contract.SENSOR_QOS),
        "wrist": node.create_publisher(Image, contract.WRIST_TOPIC, contract.SENSOR_QOS),
        "joints": node.create_publisher(JointState, contract.JOINT_STATES_TOPIC, contract.SENSOR_QOS),
        "request": node.create_publisher(Header, contract.CHUNK_REQUEST_TOPIC, contract.COMMAND_QOS),
        "chunks": probe.watch(JointTrajectory, outputs["action_chunk"], contract.COMMAND_QOS),
        "cots": probe.watch(String, outputs["chain_of_thought"], contract.COMMAND_QOS),
        "images": probe.watch(Image, outputs["reasoning_image"], contract.VIEW_QOS),
        "diagnostics": probe.watch(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10),
    }
    for key in ("task", "agentview", "wrist", "request"):
        probe.wait_for(lambda k=key: rig[k].get_subscription_count() > 0, 60, f"{node_name} subscribing to {key}")
    probe.wait_for(lambda: node.count_publishers(outputs["action_chunk"]) > 0, 30, f"{node_name} publishing chunks")
    rig["task"].publish(String(data=task))
    return rig


@pytest.fixture(scope="module")
def rig(policy_process):
    """Probe with publishers for every input of the node and recorders for every output."""
    with probe_node("policy_test_probe") as probe:
        node = probe.node
        rig = make_rig(probe)
        for topic in ("/dtvla_policy/chain_of_thought", "/dtvla_policy/reasoning_image"):
            probe.wait_for(lambda t=topic: node.count_publishers(t) > 0, 30, f"policy node publishing {topic}")
        yield rig


def send_observation(rig, stamp_ns: int, agentview=None, wrist=None, encoding="rgb8") -> None:
    stamp = Time(nanoseconds=stamp_ns).to_msg()
    agentview = camera_image(0, 128) if agentview is None else agentview
    wrist = camera_image(1, 128) if wrist is None else wrist
    rig["agentview"].publish(numpy_to_image(agentview, encoding, stamp=stamp))
    rig["wrist"].publish(numpy_to_image(wrist, "rgb8" if encoding not in ("rgb8", "bgr8", "mono8") else encoding,
                                        stamp=stamp))
    request = Header()
    request.stamp = stamp
    rig["request"].publish(request)


def request_chunk(rig, stamp_ns: int, timeout: float = 60.0, **kwargs) -> JointTrajectory:
    """Send frames + request until the answer stamped `stamp_ns` arrives (best-effort frames may be dropped)."""
    probe = rig["probe"]

    def answered() -> bool:
        return any(Time.from_msg(c.header.stamp).nanoseconds == stamp_ns for c in rig["chunks"])

    for _ in range(int(timeout / 2)):
        send_observation(rig, stamp_ns, **kwargs)
        try:
            probe.wait_for(answered, 2.0, "chunk")
            break
        except AssertionError:
            continue
    probe.wait_for(answered, 1.0, f"a chunk stamped {stamp_ns}")
    return next(c for c in rig["chunks"] if Time.from_msg(c.header.stamp).nanoseconds == stamp_ns)


def latest_diagnostics(rig) -> tuple[int, dict[str, str]]:
    """(level, values) of the newest policy status; (-1, {}) before the first one."""
    statuses = [s for d in rig["diagnostics"] for s in d.status if s.name == rig["status_name"]]
    if not statuses:
        return -1, {}
    return ord(statuses[-1].level), {kv.key: kv.value for kv in statuses[-1].values}


def wait_diagnostics(rig, predicate, what: str, resend=None, timeout: float = 40.0) -> tuple[int, dict[str, str]]:
    """Re-send inputs (best effort may drop them) until the newest diagnostics satisfy `predicate(values)`."""
    for _ in range(int(timeout / 1.5)):
        if resend is not None:
            resend()
        try:
            rig["probe"].wait_for(lambda: predicate(latest_diagnostics(rig)[1]), 1.5, what)
            break
        except AssertionError:
            continue
    level, values = latest_diagnostics(rig)
    assert predicate(values), f"diagnostics never showed {what}: {values}"
    return level, values


def count(values: dict[str, str], key: str) -> int:
    return int(values.get(key, 0))


def now_ns(rig) -> int:
    return rig["probe"].node.get_clock().now().nanoseconds


def test_request_is_answered_with_a_stamped_chunk_cot_and_picture(rig):
    stamp_ns = now_ns(rig)
    chunk = request_chunk(rig, stamp_ns)
    assert tuple(chunk.joint_names) == contract.CHUNK_JOINT_NAMES
    assert len(chunk.points) == 10
    positions = np.array([p.positions for p in chunk.points])
    assert positions.shape == (10, 7) and np.all(np.isfinite(positions)) and np.all(np.abs(positions) <= 1.0)
    times = [p.time_from_start.sec + p.time_from_start.nanosec / 1e9 for p in chunk.points]
    np.testing.assert_allclose(times, [(k + 1) / 20.0 for k in range(10)])
    rig["probe"].wait_for(lambda: len(rig["cots"]) > 0 and len(rig["images"]) > 0, 10, "CoT and reasoning image")
    image = rig["images"][-1]
    assert image.encoding == "rgb8" and image.width > 2 * 224
    _, values = wait_diagnostics(rig, lambda v: count(v, "chunks_published") >= 1, "a published chunk")
    assert values["mode"] == "full"
    assert {"vision_ms", "prefill_ms", "cot_ms", "action_ms"} <= set(values)
    assert values["max_cot_tokens"] == "3" and json.loads(values["decode_deviations"]) == {"max_cot_tokens": 3}


def test_chunk_health_warns_with_counts_and_reports_latency_against_the_budget(rig):
    """max_cot_tokens 3 closes every CoT by force, before the untrained model has written a word of thought."""
    request_chunk(rig, now_ns(rig))
    level, values = wait_diagnostics(rig, lambda v: count(v, "cot_truncated") >= 1 and count(v, "cot_empty") >= 1,
                                     "a capped, empty CoT")
    newest = [s for d in rig["diagnostics"] for s in d.status if s.name == rig["status_name"]][-1]
    assert level == 1 and "CoT hit the token cap (" in newest.message and "empty thinking (" in newest.message, newest
    assert count(values, "cot_repeated_ngrams") == count(values, "cot_identical") == 0, values
    assert float(values["budget_ms"]) == 500.0  # replan.after_steps 10 x 50 ms
    for stage in ("chunk_ms", "total_ms", "cot_ms", "action_ms"):
        p50, p95, p99 = (float(values[f"{stage}_p{q}"]) for q in (50, 95, 99))
        assert 0 < p50 <= p95 <= p99, (stage, values)
    assert float(values["budget_used_p95_pct"]) > 0


def test_node_decoding_defaults_are_upstreams():
    default, descriptor = PARAMETERS["max_cot_tokens"]
    assert default == COT_CAP_EVAL == 2048 and descriptor.integer_range[0].to_value == COT_CAP_EVAL
    assert RUNTIME_MODES == tuple(m.value for m in NODE_MODES) == ("full", "masked")


def test_bad_frames_and_joint_states_are_rejected_and_counted(rig):
    stamp = Time(nanoseconds=now_ns(rig)).to_msg()
    depth = numpy_to_image(np.zeros((64, 64), np.float32), "32FC1", stamp=stamp)
    joints = JointState(name=list(contract.ROBOT_JOINT_NAMES), position=[float("nan")] * 9)
    joints.header.stamp = stamp

    def resend() -> None:
        rig["agentview"].publish(depth)
        rig["joints"].publish(joints)

    wait_diagnostics(rig, lambda v: count(v, "frames_rejected") > 0 and count(v, "joint_states_rejected") > 0,
                     "rejected frames and joint states", resend)
    # mono8 frames are converted, not rejected: the node still answers
    mono = camera_image(2, 96)[:, :, 0]
    chunk = request_chunk(rig, now_ns(rig), agentview=mono, wrist=mono, encoding="mono8")
    assert len(chunk.points) == 10


def test_stale_observations_are_not_used(rig):
    stale_ns = now_ns(rig) - int(120e9)
    before = count(latest_diagnostics(rig)[1], "stale_skips")
    level, _ = wait_diagnostics(rig, lambda v: count(v, "stale_skips") > before, "a stale skip",
                                lambda: send_observation(rig, stale_ns))
    assert level >= 1  # WARN
    assert not any(Time.from_msg(c.header.stamp).nanoseconds == stale_ns for c in rig["chunks"])


def test_future_stamped_frames_are_rejected_and_counted(rig):
    future_ns = now_ns(rig) + int(600e9)  # a camera whose clock runs ten minutes ahead
    before = count(latest_diagnostics(rig)[1], "future_frames")
    level, _ = wait_diagnostics(rig, lambda v: count(v, "future_frames") > before, "a rejected future frame",
                                lambda: send_observation(rig, future_ns))
    assert level == 1  # WARN
    assert not any(Time.from_msg(c.header.stamp).nanoseconds == future_ns for c in rig["chunks"])
    assert len(request_chunk(rig, now_ns(rig)).points) == 10  # frames on time are answered again


def test_one_future_frame_pair_does_not_stop_replanning(tiny_checkpoint):
    """`replan.trigger: steps`: a future pair used to become the last chunk stamp that no later frame beat."""
    process = start_node(NODE, "-r", "__node:=policy_steps", "-p", f"checkpoint:={tiny_checkpoint}",
                         "-p", "max_cot_tokens:=1", "-p", "mode:=masked", "-p", "replan.trigger:=steps",
                         "-p", "replan.after_steps:=1", "-p", "publish_reasoning_image:=false",
                         "-p", "staleness.max_observation_age_s:=30.0")
    try:
        with probe_node("steps_probe") as probe:
            node = probe.node
            task = node.create_publisher(String, contract.TASK_TOPIC, contract.LATCHED_QOS)
            cameras = {name: node.create_publisher(Image, topic, contract.SENSOR_QOS)
                       for name, topic in (("agentview", contract.AGENTVIEW_TOPIC), ("wrist", contract.WRIST_TOPIC))}
            chunks = probe.watch(JointTrajectory, "/policy_steps/action_chunk", contract.COMMAND_QOS)
            diagnostics = probe.watch(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
            for publisher in (task, *cameras.values()):
                probe.wait_for(lambda p=publisher: p.get_subscription_count() > 0, 60, "the steps node subscribing")
            task.publish(String(data="put the bowl on the plate"))

            def send_pair(stamp_ns: int) -> None:
                stamp = Time(nanoseconds=stamp_ns).to_msg()
                for seed, publisher in enumerate(cameras.values()):
                    publisher.publish(numpy_to_image(camera_image(seed, 64), "rgb8", stamp=stamp))

            def status() -> tuple[int, dict[str, str]]:
                statuses = [s for d in diagnostics for s in d.status if s.name == "policy_steps: inference"]
                if not statuses:
                    return -1, {}
                return ord(statuses[-1].level), {kv.key: kv.value for kv in statuses[-1].values}

            future_ns = node.get_clock().now().nanoseconds + int(3600e9)

            def future_pair_seen() -> bool:  # rejected and counted (fixed), or answered with a chunk (used to be)
                return count(status()[1], "future_frames") >= 2 or any(
                    Time.from_msg(c.header.stamp).nanoseconds == future_ns for c in chunks)

            for _ in range(30):  # best effort: resend until the node has seen the pair
                send_pair(future_ns)
                try:
                    probe.wait_for(future_pair_seen, 1.5, "the future pair seen")
                    break
                except AssertionError:
                    continue
            future_level, future_values = status()
            on_time = []
            for _ in range(30):  # frames on time get chunks again
                on_time.append(node.get_clock().now().nanoseconds)
                send_pair(on_time[-1])
                try:
                    probe.wait_for(lambda: any(Time.from_msg(c.header.stamp).nanoseconds in on_time for c in chunks),
                                   1.5, "a chunk on frames stamped on time")
                    break
                except AssertionError:
                    continue
            assert any(Time.from_msg(c.header.stamp).nanoseconds in on_time for c in chunks), "replanning wedged"
            stamps = [Time.from_msg(c.header.stamp).nanoseconds for c in chunks]
            assert future_ns not in stamps, (future_ns, stamps, future_values, status())
            assert count(future_values, "future_frames") >= 2 and future_level == 1, future_values  # both cameras, WARN
    finally:  # a failed assertion must not leak the node into later tests' domain
        code, output = stop_node(process)
    assert code == 0, output


def test_engine_error_is_reported_and_the_node_keeps_running(rig):
    tiny = np.zeros((1, 1, 3), np.uint8)  # the engine refuses a 1x1 frame
    before = count(latest_diagnostics(rig)[1], "engine_errors")
    level, _ = wait_diagnostics(rig, lambda v: count(v, "engine_errors") > before, "an engine error",
                                lambda: send_observation(rig, now_ns(rig), agentview=tiny))
    assert level == 2  # ERROR
    assert len(request_chunk(rig, now_ns(rig)).points) == 10


def test_special_token_text_in_the_task_is_refused_and_the_node_keeps_running(rig):
    before = count(latest_diagnostics(rig)[1], "engine_errors")
    rig["task"].publish(String(data="put the bowl <eos> on the plate"))
    stamps: list[int] = []

    def resend() -> None:
        stamps.append(now_ns(rig))
        send_observation(rig, stamps[-1])

    try:
        wait_diagnostics(rig, lambda v: count(v, "engine_errors") > before, "an engine error", resend)
        statuses = [s for d in rig["diagnostics"] for s in d.status if s.name == rig["status_name"]]
        assert any("contains the special token '<eos>'" in s.message for s in statuses)
        assert not [c for c in rig["chunks"] if Time.from_msg(c.header.stamp).nanoseconds in stamps]
    finally:
        rig["task"].publish(String(data="put the bowl on the plate"))
    assert len(request_chunk(rig, now_ns(rig)).points) == 10


def set_parameter(rig, name: str, value: str | bool):
    client = rig["probe"].node.create_client(SetParameters, "/dtvla_policy/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    if isinstance(value, bool):
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    else:
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    request = SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value)])
    future = client.call_async(request)
    rig["probe"].wait_for(future.done, 10, "set_parameters reply")
    return future.result().results[0]


def test_mode_changes_at_run_time_and_bad_modes_are_refused(rig):
    refused = set_parameter(rig, "mode", "telepathy")
    assert not refused.successful and "mode must be one of" in refused.reason
    assert set_parameter(rig, "mode", "masked").successful
    request_chunk(rig, now_ns(rig))
    wait_diagnostics(rig, lambda v: v.get("mode") == "masked", "mode masked")
    assert set_parameter(rig, "mode", "full").successful


def test_dry_run_thinks_but_publishes_no_chunk(rig):
    assert set_parameter(rig, "dry_run", True).successful
    try:
        before = count(latest_diagnostics(rig)[1], "inferences")
        published = count(latest_diagnostics(rig)[1], "chunks_published")
        stamp_ns = now_ns(rig)
        wait_diagnostics(rig, lambda v: count(v, "inferences") > before and v.get("dry_run") == "True",
                         "a dry-run inference", lambda: send_observation(rig, stamp_ns))
        assert not any(Time.from_msg(c.header.stamp).nanoseconds == stamp_ns for c in rig["chunks"])
        assert count(latest_diagnostics(rig)[1], "chunks_published") == published
    finally:
        assert set_parameter(rig, "dry_run", False).successful


def test_sigterm_stops_the_node_cleanly(tiny_checkpoint):
    process = start_node(NODE, "-r", "__node:=policy_sigterm", "-p", f"checkpoint:={tiny_checkpoint}")
    with probe_node("sigterm_probe") as probe:
        diagnostics = probe.watch(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
        probe.wait_for(lambda: any(s.name == "policy_sigterm: inference" for d in diagnostics for s in d.status),
                       60, "the node spinning (its diagnostics)")
    code, output = stop_node(process, signal.SIGTERM)
    assert code == 0, output
    status = next(s for d in diagnostics for s in d.status if s.name == "policy_sigterm: inference")
    values = {kv.key: kv.value for kv in status.values}
    assert values["max_cot_tokens"] == "2048" and values["decode_deviations"] == "{}"  # defaults: upstream's
    assert "deviates from upstream" not in output


@pytest.mark.parametrize(("checkpoint", "reason"), [
    ("nothing", "does not exist"),
    ("", "`dtvla-tiny-checkpoint DIR` writes an untrained one"),  # not set: no default checkpoint ships
])
def test_missing_checkpoint_exits_1_with_one_fatal_line_and_no_traceback(tmp_path, checkpoint, reason):
    """A node whose __init__ failed used to raise again in destroy_node (AttributeError `_cv`) at shutdown."""
    process = start_node(NODE, *(["-p", f"checkpoint:={tmp_path / checkpoint}"] if checkpoint else []))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    markers = ("FATAL", "ERROR", "Traceback", "Error:")
    problems = [line for line in output.splitlines() if any(marker in line for marker in markers)]
    assert len(problems) == 1 and "[FATAL]" in problems[0] and reason in problems[0], output


def test_bad_encodings_are_all_counted_but_logged_a_bounded_number_of_times(rig):
    """A stream of distinct bad encoding strings used to log one line each (warn-once keyed by the string)."""
    probe = rig["probe"]
    rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
    logs = probe.watch(Log, "/rosout", rosout_qos)
    probe.wait_for(lambda: probe.node.count_publishers("/rosout") > 1, 30, "the policy node's /rosout publisher")
    before = count(latest_diagnostics(rig)[1], "frames_rejected")
    sent = []

    def resend() -> None:
        for _ in range(10):
            msg = numpy_to_image(camera_image(3, 8), "rgb8", stamp=Time(nanoseconds=now_ns(rig)).to_msg())
            msg.encoding = f"bogus_encoding_{len(sent)}"
            sent.append(msg.encoding)
            rig["agentview"].publish(msg)

    _, values = wait_diagnostics(rig, lambda v: count(v, "frames_rejected") >= before + 20,
                                 "20 rejected frames", resend, timeout=60)
    rejected = count(values, "frames_rejected") - before
    newest = [s for d in rig["diagnostics"] for s in d.status if s.name == rig["status_name"]][-1]
    assert ord(newest.level) == 1 and "bogus_encoding_" in newest.message  # the newest text is on /diagnostics
    lines = [m for m in logs if m.name == "dtvla_policy" and "bogus_encoding_" in m.msg]
    assert rejected >= 20 and len(lines) <= 1, (rejected, [m.msg for m in lines])


@pytest.fixture(scope="module")
def nan_weight_checkpoint(tiny_checkpoint, tmp_path_factory) -> tuple[Path, str, str]:
    """(checkpoint, poisoned task, clean task): one NaN row in the (tied) token embedding of a word only the
    poisoned task contains, so that task's hidden states and action logits are NaN and the clean task's are not."""
    path = tmp_path_factory.mktemp("nan") / "ckpt"
    shutil.copytree(tiny_checkpoint, path)
    tokenizer = PolicyEngine.from_checkpoint(tiny_checkpoint).ckpt.tokenizer
    poisoned, clean = "put the bowl on the plate", "open the top drawer"
    word_ids = set(tokenizer(prompt_text(poisoned), add_special_tokens=False)["input_ids"])
    word_ids -= set(tokenizer(prompt_text(clean), add_special_tokens=False)["input_ids"])
    with safe_open(path / "model.safetensors", "pt") as f:
        metadata = f.metadata()
    weights = load_file(path / "model.safetensors")
    weights["model.language_model.model.embed_tokens.weight"][min(word_ids)] = float("nan")
    save_file(weights, path / "model.safetensors", metadata=metadata)
    return path, poisoned, clean


def request_until(rig, predicate, what: str, task: str | None = None, timeout: float = 60.0) -> list[int]:
    """Send frame pairs + requests (stamps now) until `predicate()`; returns the stamps sent."""
    stamps = []
    for _ in range(int(timeout / 1.5)):
        if task is not None:
            rig["task"].publish(String(data=task))
        stamps.append(now_ns(rig))
        send_observation(rig, stamps[-1])
        try:
            rig["probe"].wait_for(predicate, 1.5, what)
            break
        except AssertionError:
            continue
    assert predicate(), f"never saw {what}"
    return stamps


def chunks_at(rig, stamps: list[int]) -> list[JointTrajectory]:
    return [c for c in rig["chunks"] if Time.from_msg(c.header.stamp).nanoseconds in stamps]


def test_nan_weight_publishes_nothing_then_recovers_on_a_finite_prediction(nan_weight_checkpoint):
    checkpoint, poisoned, clean = nan_weight_checkpoint
    process = start_node(NODE, "-r", "__node:=policy_nan", "-p", f"checkpoint:={checkpoint}",
                         "-p", "mode:=masked", "-p", "staleness.max_observation_age_s:=30.0")
    try:
        with probe_node("nan_probe") as probe:
            rig = make_rig(probe, "policy_nan", task=poisoned)
            poisoned_stamps = request_until(
                rig, lambda: count(latest_diagnostics(rig)[1], "non_finite_outputs") >= 1 or len(rig["chunks"]) > 0,
                "a non-finite prediction")
            assert not chunks_at(rig, poisoned_stamps), "a chunk was published from NaN logits"
            level, values = latest_diagnostics(rig)
            assert level == 2 and count(values, "non_finite_outputs") >= 1
            failed = count(values, "non_finite_outputs")
            clean_stamps = request_until(rig, lambda: len(rig["chunks"]) > 0, "a chunk for the clean task", clean)
            assert len(chunks_at(rig, clean_stamps)[0].points) == 10
            level, values = wait_diagnostics(rig, lambda v: count(v, "chunks_published") >= 1, "a published chunk")
            assert level < 2 and count(values, "non_finite_outputs") >= failed  # recovered, the count is kept
    finally:
        code, output = stop_node(process)
    assert code == 0, output
