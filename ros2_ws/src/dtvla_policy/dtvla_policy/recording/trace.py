"""A recorded run read back from its bag: each chunk with the observation it answered, and the episodes' frames.

What ties the streams together, all from the topic contract (docs/topics.md):
- a chunk's `header.stamp` is the stamp of the camera pair it answered, so its observation is the recorded agentview
  frame with that stamp and the wrist frame within `MAX_CAMERA_SKEW_NS` of it;
- the policy publishes one chain-of-thought per chunk, right after it, on a reliable topic, so the k-th recorded
  CoT belongs to the k-th recorded chunk (the counts must agree);
- the policy's /diagnostics status published right after a chunk carries the `mode` and `max_cot_tokens` it ran;
- the task in force is the newest task message received before the chunk;
- the bridge's episode status (its final one per episode) gives the episode's outcome and the stamps of its first
  and last observation, hence its frames; in lockstep (a `clock` topic in the bag), frame i of an episode executed
  point i - j of the chunk that answered frame j, until the next chunk.

Decoding uses `rosbags` (pure Python) and the policy node's own image conversion: no rclpy here. The whole bag is held
in memory (fine for episodes of minutes at small camera sizes; stream per episode before recording hours).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtvla_policy.recording.bag_writer import read_metadata
from dtvla_policy.ros.image_conversion import ImageConversionError, image_to_rgb8
from dtvla_policy.topic_names import (
    AGENTVIEW_TOPIC,
    CLOCK_TOPIC,
    DIAGNOSTICS_TOPIC,
    EPISODE_END_STATES,
    EPISODE_STATUS_TOPIC,
    JOINT_STATES_TOPIC,
    POLICY_ACTION_CHUNK,
    POLICY_CHAIN_OF_THOUGHT,
    TASK_TOPIC,
    WRIST_TOPIC,
    absolute_name,
    status_name,
)

POLICY_NODE_NAME = POLICY_ACTION_CHUNK.split("/")[0]  # the node whose ~/ topics the contract names
MAX_CAMERA_SKEW_NS = 50_000_000  # the policy node's default staleness.max_camera_skew_s


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class RecordedChunk:
    """One recorded policy answer and what it answered."""

    index: int  # position among the bag's chunks
    stamp_ns: int  # the observation's stamp
    log_time_ns: int
    actions: np.ndarray  # (steps, 7) float64, as published (unnormalised, clipped to the node's action limits)
    cot: str
    task: str
    agentview: np.ndarray  # (H, W, 3) uint8 RGB, as the node converted it
    wrist: np.ndarray
    mode: str | None  # from the policy's diagnostics right after the chunk (None: none recorded)
    max_cot_tokens: int | None


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class RecordedFrame:
    """One executed control step of an episode."""

    stamp_ns: int
    agentview: np.ndarray
    wrist: np.ndarray
    joint_positions: np.ndarray | None  # the JointState with the same stamp, if recorded
    action: np.ndarray  # (7,) the chunk's point executed at this frame, as published
    chunk_index: int  # which RecordedChunk it came from (its CoT is the frame's reasoning)


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class RecordedEpisode:
    episode: int
    outcome: str  # success | timeout | failed | aborted
    task: str
    frames: list[RecordedFrame]
    frames_without_action: int  # the final observation, and frames no recorded chunk covers


@dataclass
class BagTrace:
    """The messages of one robot's run, decoded and indexed (see the module docstring)."""

    bag: Path
    namespace: str
    frames: dict[str, dict[int, tuple[int, np.ndarray]]] = field(default_factory=dict)  # camera -> stamp -> (log, rgb)
    joints: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> positions
    chunks: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (log time, stamp, actions)
    cots: list[tuple[int, str]] = field(default_factory=list)
    tasks: list[tuple[int, str]] = field(default_factory=list)
    policy_status: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    episode_status: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lockstep: bool = False  # a sim clock was recorded
    _wrist_stamps: np.ndarray | None = None  # sorted, built on first need

    @classmethod
    def read(cls, bag: str | Path, namespace: str = "") -> BagTrace:
        """Read a bag recorded by dtvla-record (or any rosbag2 bag of the contract's topics) for robot `namespace`.

        FileNotFoundError / ValueError when it is not a bag or holds no action chunks of that robot.
        """
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        bag = Path(bag).expanduser().resolve()
        read_metadata(bag)  # a clear error for a directory that is not a bag
        name = lambda topic: absolute_name(namespace, topic)  # noqa: E731
        trace = cls(bag, namespace, frames={"agentview": {}, "wrist": {}})
        cameras = {name(AGENTVIEW_TOPIC): "agentview", name(WRIST_TOPIC): "wrist"}
        policy_status = status_name(name(POLICY_NODE_NAME), "inference")
        handlers = {
            name(JOINT_STATES_TOPIC): lambda t, m: trace.joints.setdefault(
                _stamp_ns(m.header.stamp), np.asarray(m.position, dtype=np.float64)),
            name(POLICY_ACTION_CHUNK): lambda t, m: trace.chunks.append(
                (t, _stamp_ns(m.header.stamp), np.array([p.positions for p in m.points], dtype=np.float64))),
            name(POLICY_CHAIN_OF_THOUGHT): lambda t, m: trace.cots.append((t, m.data)),
            name(TASK_TOPIC): lambda t, m: trace.tasks.append((t, m.data)),
            name(EPISODE_STATUS_TOPIC): lambda t, m: trace.episode_status.append((t, json.loads(m.data))),
            DIAGNOSTICS_TOPIC: lambda t, m: trace.policy_status.extend(
                (t, {kv.key: kv.value for kv in s.values}) for s in m.status if s.name == policy_status),
        }
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            trace.lockstep = any(c.topic == name(CLOCK_TOPIC) for c in reader.connections)
            wanted = [c for c in reader.connections if c.topic in handlers or c.topic in cameras]
            for connection, log_time, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, connection.msgtype)
                if connection.topic in cameras:
                    trace._add_frame(cameras[connection.topic], log_time, msg)
                else:
                    handlers[connection.topic](log_time, msg)
        if not trace.chunks:
            raise ValueError(f"{bag} holds no action chunks on {name(POLICY_ACTION_CHUNK)}; is the namespace "
                             f"{namespace or '(none)'!r} right? (dtvla-record records the robot of its namespace)")
        return trace

    def _add_frame(self, camera: str, log_time: int, msg: Any) -> None:
        try:
            rgb = image_to_rgb8(msg)
        except ImageConversionError as err:
            raise ValueError(f"{self.bag}: a {camera} frame cannot be read: {err}") from err
        self.frames[camera].setdefault(_stamp_ns(msg.header.stamp), (log_time, rgb))  # a re-sent frame: the first

    def chunk_records(self) -> list[RecordedChunk]:
        """Every recorded chunk whose observation was recorded, with its CoT, task and settings."""
        if len(self.cots) != len(self.chunks):
            raise ValueError(f"{self.bag}: {len(self.chunks)} action chunks but {len(self.cots)} chain-of-thought "
                             "messages; the policy publishes one of each per prediction (was it in dry_run, or did the "
                             "recording start or stop between the two?)")
        records = []
        for index, ((log_time, stamp, actions), (_, cot)) in enumerate(zip(self.chunks, self.cots, strict=True)):
            pair = self._pair(stamp)
            if pair is None:
                continue
            settings = next((values for t, values in self.policy_status if t >= log_time), {})
            cap = settings.get("max_cot_tokens")
            records.append(RecordedChunk(index, stamp, log_time, actions, cot, self._task_at(log_time), *pair,
                                         settings.get("mode"), int(cap) if cap is not None else None))
        return records

    def _pair(self, stamp: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The agentview frame stamped `stamp` and the wrist frame nearest to it (within the node's skew)."""
        agentview, wrists = self.frames["agentview"].get(stamp), self.frames["wrist"]
        if agentview is None or not wrists:
            return None
        if stamp not in wrists:  # the bridge stamps both alike; other cameras may differ a little
            if self._wrist_stamps is None:
                self._wrist_stamps = np.array(sorted(wrists), dtype=np.int64)
            at = int(np.searchsorted(self._wrist_stamps, stamp))
            near = [int(s) for s in self._wrist_stamps[max(0, at - 1):at + 1]]
            nearest = min(near, key=lambda s: abs(s - stamp))
            if abs(nearest - stamp) > MAX_CAMERA_SKEW_NS:
                return None
            stamp = nearest
        return agentview[1], wrists[stamp][1]

    def _task_at(self, log_time: int) -> str:
        earlier = [task for t, task in self.tasks if t <= log_time]
        return earlier[-1] if earlier else (self.tasks[0][1] if self.tasks else "")

    def episodes(self) -> list[RecordedEpisode]:
        """The recorded episodes that ended, with their executed frames (lockstep recordings only)."""
        if not self.lockstep:
            raise ValueError(f"{self.bag} has no sim clock: frames map to chunk points only in lockstep recordings "
                             "(in realtime the robot holds position while a chunk is computed)")
        ends: dict[int, dict[str, Any]] = {}
        for _, status in self.episode_status:
            outcome = status.get("outcome") if status.get("state") == "finished" else status.get("state")
            if outcome in EPISODE_END_STATES and status.get("first_stamp_ns", -1) >= 0:
                ends[int(status["episode"])] = {**status, "outcome": outcome}
        records = {r.stamp_ns: r for r in reversed(self.chunk_records())}  # a re-answered stamp: the first chunk
        return [self._episode(end, records) for _, end in sorted(ends.items())]

    def _episode(self, end: dict[str, Any], records: dict[int, RecordedChunk]) -> RecordedEpisode:
        stamps = sorted(s for s in self.frames["agentview"] if end["first_stamp_ns"] <= s <= end["last_stamp_ns"])
        frames: list[RecordedFrame] = []
        chunk: RecordedChunk | None = None
        start = 0
        for position, stamp in enumerate(stamps[:-1]):  # the last observation came after the last action
            if stamp in records:
                chunk, start = records[stamp], position
            pair = self._pair(stamp)
            if chunk is None or pair is None or position - start >= len(chunk.actions):
                continue
            frames.append(RecordedFrame(stamp, *pair, self.joints.get(stamp), chunk.actions[position - start],
                                        chunk.index))
        task = records[stamps[0]].task if stamps and stamps[0] in records else self._task_at(2**63 - 1)
        return RecordedEpisode(int(end["episode"]), end["outcome"], task, frames, len(stamps) - len(frames))
