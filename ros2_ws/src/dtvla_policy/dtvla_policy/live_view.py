"""The live Foxglove view of a running policy: its channels, in schemas the Foxglove app draws natively, and the layout.

Cameras and the reasoning picture go out as `foxglove.RawImage` (Image panel); the chain-of-thought, the task, the
action chunk (one array per command dimension, so the Plot panel draws the chunk per dimension over its steps),
the policy's /diagnostics status (numbers as numbers, so latency plots over time), the joint states and the episode
status go out as JSON. Channel names do not carry the ROS namespace: one server per robot, one layout for all.
Re-publishing in these schemas (rather than advertising ROS 2 channels with ros2msg schemas) keeps the app's panels
working without message definitions, which the ROS wheels do not ship. No rclpy here: `ros/foxglove_bridge.py`
converts messages to numpy, text and numbers and calls `LiveView`. The layout is built with the pinned SDK's typed
panel configs and written in the app's import format; `python -m dtvla_policy.live_view` prints what
config/foxglove_layout.json ships (tests keep the two equal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import foxglove
import foxglove.layouts as fl
import numpy as np
from foxglove.channels import RawImageChannel
from foxglove.messages import RawImage, Timestamp

AGENTVIEW = "/camera/agentview"
WRIST = "/camera/wrist"
REASONING_IMAGE = "/reasoning_image"
IMAGES = (AGENTVIEW, WRIST, REASONING_IMAGE)
CHAIN_OF_THOUGHT = "/chain_of_thought"  # {"text"}
TASK = "/task"  # {"text"}
ACTION_CHUNK = "/action_chunk"  # {"stamp_ns", "step_s": [T], <command name>: [T] per dimension}
POLICY_STATUS = "/policy_status"  # {"level", "message", "values": {key: number or text}}
JOINT_STATES = "/joint_states"  # {"stamp_ns", "name": [...], "position": [...]}
EPISODE_STATUS = "/episode_status"  # the sim bridge's JSON as it is
JSON_CHANNELS = (CHAIN_OF_THOUGHT, TASK, ACTION_CHUNK, POLICY_STATUS, JOINT_STATES, EPISODE_STATUS)
# Series of the latency plot: the last chunk's stages, the p95 of the time held against the budget, the budget.
LATENCY_SERIES = ("chunk_ms", "total_ms", "vision_ms", "cot_ms", "action_ms", "chunk_ms_p95", "budget_ms")
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}  # diagnostic_msgs/DiagnosticStatus levels


def _timestamp(stamp_ns: int) -> Timestamp:
    return Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)


def _number_or_text(value: str) -> float | str:
    """/diagnostics carries every value as text; numbers become numbers so that Plot panels can draw them."""
    try:
        return float(value)
    except ValueError:
        return value


class LiveView:
    """The channels of one robot's view, on their own foxglove `Context`: a WebSocket server started on
    `context` serves them (the view keeps the context alive: once it is collected, nothing is served)."""

    def __init__(self) -> None:
        self.context = foxglove.Context()
        self.images = {topic: RawImageChannel(topic, context=self.context) for topic in IMAGES}
        self.json = {topic: foxglove.Channel(topic, schema={"type": "object"}, context=self.context)
                     for topic in JSON_CHANNELS}

    def image(self, topic: str, rgb: np.ndarray, stamp_ns: int) -> None:
        """`rgb`: (H, W, 3) uint8, as `image_to_rgb8` returns it."""
        height, width, _ = rgb.shape
        self.images[topic].log(RawImage(timestamp=_timestamp(stamp_ns), frame_id=topic.lstrip("/"), width=width,
                                        height=height, encoding="rgb8", step=3 * width,
                                        data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()))

    def text(self, topic: str, text: str) -> None:
        """The chain-of-thought or the task (std_msgs/String has no stamp: the log time is the receive time)."""
        self.json[topic].log({"text": text})

    def action_chunk(self, names: Sequence[str], positions: np.ndarray, step_s: Sequence[float],
                     stamp_ns: int) -> None:
        """`positions`: (T, D) with D == len(names); each dimension becomes one array of T values."""
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != len(names):
            raise ValueError(f"action chunk of shape {positions.shape} does not match {len(names)} names {names}")
        self.json[ACTION_CHUNK].log({"stamp_ns": stamp_ns, "step_s": [float(t) for t in step_s],
                                     **{name: positions[:, i].tolist() for i, name in enumerate(names)}})

    def policy_status(self, level: int, message: str, values: Mapping[str, str]) -> None:
        self.json[POLICY_STATUS].log({"level": LEVELS.get(level, str(level)), "message": message,
                                      "values": {key: _number_or_text(value) for key, value in values.items()}})

    def joint_states(self, names: Sequence[str], positions: Sequence[float], stamp_ns: int) -> None:
        self.json[JOINT_STATES].log({"stamp_ns": stamp_ns, "name": list(names),
                                     "position": [float(p) for p in positions]})

    def episode_status(self, status_json: str) -> None:
        """The sim bridge's status JSON; text that is not a JSON object is wrapped, never dropped."""
        try:
            status = json.loads(status_json)
        except json.JSONDecodeError:
            status = None
        self.json[EPISODE_STATUS].log(status if isinstance(status, dict) else {"text": status_json})


def layout(command_names: Sequence[str]) -> fl.Layout:
    """Both cameras, the chain-of-thought, the chunk per dimension, latency over time, the policy's status."""
    def series(path: str, label: str) -> fl.PlotSeries:  # explicit enabled/time: older apps default them off
        return fl.PlotSeries(value=path, label=label, enabled=True, timestamp_method="receiveTime")

    def image(topic: str, title: str) -> fl.ImagePanel:
        return fl.ImagePanel(title=title, config=fl.ImageConfig(image_mode=fl.ImageModeConfig(image_topic=topic)))

    chunk = fl.PlotPanel(title="action chunk per dimension (unnormalised, over its steps)", config=fl.PlotConfig(
        x_axis_val="index", x_axis_label="step", show_legend=True,
        paths=[series(f"{ACTION_CHUNK}.{name}[:]", name) for name in command_names]))
    latency = fl.PlotPanel(title="latency (ms) against the chunk's budget", config=fl.PlotConfig(
        x_axis_val="timestamp", y_axis_label="ms", show_legend=True,
        paths=[series(f"{POLICY_STATUS}.values.{key}", key) for key in LATENCY_SERIES]))
    def raw(title: str, path: str) -> fl.RawMessagesPanel:  # every app version has it, text fields included
        return fl.RawMessagesPanel(title=title, config=fl.RawMessagesConfig(
            topic_path=path, expansion="all", diff_enabled=False, diff_method="custom", diff_topic_path="",
            show_full_message_for_diff=False))

    cot, task = raw("chain-of-thought", f"{CHAIN_OF_THOUGHT}.text"), raw("task", f"{TASK}.text")
    status = raw("policy status (/diagnostics)", POLICY_STATUS)

    def split(direction: str, *items: tuple[float, object]) -> fl.SplitContainer:
        return fl.SplitContainer(direction=direction, items=[fl.SplitItem(proportion=p, content=c) for p, c in items])

    return fl.Layout(content=split(
        "row",
        (1, split("column", (1, image(AGENTVIEW, "agentview")), (1, image(WRIST, "wrist")))),
        (1, split("column", (1, task), (4, cot), (3, status))),
        (1, split("column", (1, chunk), (1, latency))),
    ))


def layout_json(command_names: Sequence[str]) -> str:
    """`layout` in the file format the Foxglove app exports and imports (Layouts -> Import from file): panel configs
    by id and a binary split tree of those ids. The SDK's own `Layout.to_json` format is for its embedded viewers."""
    config_by_id: dict[str, dict] = {}

    def tree(node: dict) -> str | dict:
        if node["type"] == "panel":
            panel_id = f"{node['panelType']}!dtvla{len(config_by_id)}"
            config_by_id[panel_id] = {**node.get("config", {}), "foxglovePanelTitle": node.get("title", "")}
            return panel_id
        first, *rest = node["items"]
        if not rest:
            return tree(first["content"])
        share = 100 * first["proportion"] / sum(item["proportion"] for item in node["items"])
        return {"direction": node["direction"], "first": tree(first["content"]),
                "second": tree({**node, "items": rest}), "splitPercentage": round(share, 1)}

    root = tree(json.loads(layout(command_names).to_json())["content"])
    exported = {"configById": config_by_id, "globalVariables": {}, "userNodes": {}, "playbackConfig": {"speed": 1},
                "layout": root}
    return json.dumps(exported, indent=2) + "\n"


def main() -> None:
    """Print the layout (how config/foxglove_layout.json is made)."""
    from dtvla_policy.model.conventions import COMMAND_NAMES

    print(layout_json(COMMAND_NAMES), end="")


if __name__ == "__main__":
    main()
