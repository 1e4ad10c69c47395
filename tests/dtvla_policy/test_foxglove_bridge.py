"""The live view end to end: ROS messages over Fast DDS -> `dtvla-foxglove` (a real process) -> a websocket client
speaking the Foxglove protocol; and the shipped layout against the channels the bridge serves."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import websocket
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dtvla_policy import live_view
from dtvla_policy.model.conventions import COMMAND_NAMES
from dtvla_policy.ros import contract
from dtvla_policy.ros.image_conversion import numpy_to_image
from tests.fixtures.checkpoints import camera_image
from tests.fixtures.ros import probe_node, start_node

ROOT = Path(__file__).resolve().parents[2]
SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01  # server binary opcode: uint32 subscription id, uint64 log time, payload (little endian)


def test_the_shipped_layout_is_the_generated_one():
    """Regenerate with `python -m dtvla_policy.live_view > config/foxglove_layout.json`."""
    assert (ROOT / "config" / "foxglove_layout.json").read_text() == live_view.layout_json(COMMAND_NAMES)


def shown_topics(node) -> set[str]:
    """The channels a layout's panels read: image topics and the topic part of message paths."""
    if isinstance(node, list):
        return set().union(*map(shown_topics, node))
    if not isinstance(node, dict):
        return set()
    paths = [v for k, v in node.items() if k in ("imageTopic", "messagePath", "topicPath", "value")]
    return {re.split(r"[.\[]", path)[0] for path in paths} | set().union(*map(shown_topics, node.values()))


def test_the_layout_shows_both_cameras_the_cot_the_chunk_per_dimension_and_latency():
    layout = json.loads(live_view.layout_json(COMMAND_NAMES))
    assert {live_view.AGENTVIEW, live_view.WRIST, live_view.CHAIN_OF_THOUGHT, live_view.ACTION_CHUNK,
            live_view.POLICY_STATUS} <= shown_topics(layout) <= set(live_view.IMAGES) | set(live_view.JSON_CHANNELS)
    text = json.dumps(layout)
    assert all(f'"{live_view.ACTION_CHUNK}.{name}[:]"' in text for name in COMMAND_NAMES)
    assert f'"{live_view.POLICY_STATUS}.values.chunk_ms_p95"' in text


def panel_ids(tree) -> list[str]:
    return [tree] if isinstance(tree, str) else panel_ids(tree["first"]) + panel_ids(tree["second"])


def test_the_layout_file_is_in_the_apps_import_format():
    """Panel configs by `<type>!<id>`, each placed once in a binary split tree."""
    exported = json.loads(live_view.layout_json(COMMAND_NAMES))
    placed = panel_ids(exported["layout"])
    assert sorted(placed) == sorted(exported["configById"]) and len(set(placed)) == len(placed)
    assert sorted(i.split("!")[0] for i in placed) == ["Image", "Image", "Plot", "Plot", "RawMessages", "RawMessages",
                                                      "RawMessages"]
    chunk_plot = next(c for c in exported["configById"].values() if c.get("xAxisVal") == "index")
    assert [series["label"] for series in chunk_plot["paths"]] == list(COMMAND_NAMES)


class Bridge:
    """`dtvla-foxglove` on a free port, its output collected by a thread (the port is read from its log line)."""

    def __init__(self) -> None:
        self.process = start_node("dtvla_policy.ros.foxglove_bridge", "-p", "port:=0")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    def port(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = [m for line in list(self.lines) if (m := re.search(r"ws://127\.0\.0\.1:(\d+)", line))]
            if found:
                return int(found[0].group(1))
            time.sleep(0.05)
        raise AssertionError(f"no server line from dtvla-foxglove: {''.join(self.lines)}")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=10)
        return code, "".join(self.lines)


class FoxgloveClient:
    """The Foxglove WebSocket protocol, client side: channels from `advertise`, JSON payloads by topic."""

    def __init__(self, port: int) -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], timeout=5)
        self.channels: dict[str, dict] = {}
        self.subscriptions: dict[int, str] = {}

    def _receive(self, timeout: float):
        self.ws.settimeout(timeout)
        try:
            frame = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        if isinstance(frame, str):
            message = json.loads(frame)
            if message.get("op") == "advertise":
                self.channels.update({c["topic"]: c for c in message["channels"]})
            return None
        opcode, subscription, _ = struct.unpack_from("<BIQ", frame)
        assert opcode == MESSAGE_DATA, opcode
        return self.subscriptions[subscription], frame[13:]

    def subscribe(self, *topics: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not set(topics) <= set(self.channels) and time.monotonic() < deadline:
            self._receive(0.5)
        assert set(topics) <= set(self.channels), sorted(self.channels)
        self.subscriptions = {i: topic for i, topic in enumerate(topics, start=1)}
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": self.channels[topic]["id"]} for i, topic in self.subscriptions.items()]}))

    def next_message(self, timeout: float) -> tuple[str, bytes] | None:
        """(topic, payload) of the next message on a subscribed channel within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            received = self._receive(left)
            if received:
                return received
        return None


@pytest.mark.ros
def test_cot_chunk_and_status_published_over_dds_reach_a_foxglove_websocket_client():
    bridge = Bridge()
    client = None
    try:
        port = bridge.port()
        client = FoxgloveClient(port)
        client.subscribe(live_view.CHAIN_OF_THOUGHT, live_view.ACTION_CHUNK, live_view.POLICY_STATUS,
                         live_view.AGENTVIEW)
        assert client.channels[live_view.AGENTVIEW]["schemaName"] == "foxglove.RawImage"
        with probe_node("foxglove_probe") as probe:
            node = probe.node
            cot_pub = node.create_publisher(String, "/dtvla_policy/chain_of_thought", contract.COMMAND_QOS)
            chunk_pub = node.create_publisher(JointTrajectory, contract.POLICY_ACTION_CHUNK, contract.COMMAND_QOS)
            diag_pub = node.create_publisher(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, 10)
            camera_pub = node.create_publisher(Image, contract.AGENTVIEW_TOPIC, contract.SENSOR_QOS)
            for publisher in (cot_pub, chunk_pub, diag_pub, camera_pub):
                probe.wait_for(lambda p=publisher: p.get_subscription_count() > 0, 60, "dtvla-foxglove subscribing")
            thought = "The gripper is open above the black bowl (left). Sub-goal 1 of 4: reach the black bowl."
            chunk = JointTrajectory(joint_names=list(COMMAND_NAMES), points=[
                JointTrajectoryPoint(positions=[0.1 * k + d / 100 for d in range(7)]) for k in range(10)])
            status = DiagnosticStatus(level=DiagnosticStatus.WARN, name="dtvla_policy: inference",
                                      message="CoT hit the token cap (1 of 1 chunks)",
                                      values=[KeyValue(key="chunk_ms_p95", value="612.5"),
                                              KeyValue(key="mode", value="full")])
            other = DiagnosticStatus(name="robot2/dtvla_policy: inference", message="another robot's")
            frame = camera_image(0, 16)
            received: dict[str, bytes] = {}
            for _ in range(30):  # the server drops what arrives before the subscription is live; frames best effort
                cot_pub.publish(String(data=thought))
                chunk_pub.publish(chunk)
                diag_pub.publish(DiagnosticArray(status=[other, status]))
                camera_pub.publish(numpy_to_image(frame, "rgb8", stamp=Time(seconds=3).to_msg()))
                while (message := client.next_message(1.0)) is not None:
                    received.setdefault(*message)
                if len(received) == 4:
                    break
    finally:
        if client is not None:
            client.ws.close()
        code, output = bridge.stop()
    assert code == 0, output
    assert json.loads(received[live_view.CHAIN_OF_THOUGHT]) == {"text": thought}
    shown_chunk = json.loads(received[live_view.ACTION_CHUNK])
    np.testing.assert_allclose(shown_chunk["gripper"], [0.1 * k + 0.06 for k in range(10)])
    assert set(COMMAND_NAMES) <= set(shown_chunk)
    assert json.loads(received[live_view.POLICY_STATUS]) == {"level": "WARN", "message": status.message,
                                                             "values": {"chunk_ms_p95": 612.5, "mode": "full"}}
    assert frame.tobytes() in received[live_view.AGENTVIEW] and b"rgb8" in received[live_view.AGENTVIEW]


@pytest.mark.ros
@pytest.mark.parametrize("taken", [True, False])
def test_a_taken_or_invalid_port_exits_1_with_one_fatal_line(taken):
    first = Bridge() if taken else None
    try:
        second = start_node("dtvla_policy.ros.foxglove_bridge", "-p", f"port:={first.port() if first else 70000}")
        output, _ = second.communicate(timeout=60)
    finally:
        first_code, first_output = first.stop() if first else (0, "")
    assert first_code == 0, first_output
    problems = [line for line in output.splitlines() if any(m in line for m in ("FATAL", "ERROR", "Traceback"))]
    assert second.returncode == 1 and len(problems) == 1 and "[FATAL]" in problems[0], output
    assert ("Address already in use" if taken else "out of range") in problems[0], output
