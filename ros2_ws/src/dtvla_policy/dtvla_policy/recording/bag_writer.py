"""rosbag2 directories with MCAP storage, written from serialized CDR as it arrives, and their repair after a crash.

The layout `ros2 bag info` and `rosbags.rosbag2.Reader` open: `<dir>/<dir name>_<i>.mcap` plus `<dir>/metadata.yaml`
(rosbag2 format version 9). Each MCAP file has the `ros2` profile, one schema per message type (encoding `ros2msg`:
the definition followed by its dependencies, as rosbag2's MCAP storage plugin stores it) and one channel per topic
(encoding `cdr`, metadata `offered_qos_profiles` and `topic_type_hash`, as rosbag2 writes them).

Crash safety. Messages are grouped in zstd chunks of about `chunk_bytes`; a completed chunk goes straight to the
OS (no user-space buffer), so a killed recorder loses at most its open chunk. A file is finished (index, summary,
footer) when it reaches `max_file_bytes` or `max_file_duration_s` and when the bag is closed, and only a finished
file is listed in metadata.yaml, which is rewritten atomically each time. So whatever kills the recorder, the
directory opens as a bag holding every finished file; `recover_bag` (`dtvla-record --reindex BAG`) then salvages the
complete chunks of the unfinished file into a finished one and lists it. No rclpy here: the ROS side is
`dtvla_policy/ros/recorder_node.py`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from dtvla_policy.atomic_file import write_text

METADATA_FILE = "metadata.yaml"
BAG_VERSION = 9  # rosbag2's metadata format since Jazzy (offered_qos_profiles as a list)
ROS_DISTRO = "kilted"
DEFAULT_CHUNK_BYTES = 1 << 20  # about 5 frames of a 256 px camera pair; what a crash may lose at most
LIBRARY = "dtvla-record"


@dataclass(frozen=True)
class Topic:
    """A recorded topic: absolute name, ROS type (`sensor_msgs/msg/Image`) and the publishers' QoS profiles in
    rosbag2's metadata form (`qos_profile_dict`)."""

    name: str
    msgtype: str
    offered_qos: tuple[dict[str, Any], ...] = ()


@dataclass
class FileStats:
    """What metadata.yaml says about one finished file."""

    path: str  # relative to the bag directory
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, log_time_ns: int) -> None:
        self.start_ns = min(self.start_ns, log_time_ns)
        self.end_ns = max(self.end_ns, log_time_ns)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())


def qos_profile_dict(history: str, depth: int, reliability: str, durability: str, deadline_ns: int,
                     lifespan_ns: int, liveliness: str, liveliness_lease_ns: int) -> dict[str, Any]:
    """One offered QoS profile as rosbag2 writes it (policy names in lower case, durations as sec/nsec)."""

    def duration(ns: int) -> dict[str, int]:
        sec, nsec = divmod(int(ns), 1_000_000_000)
        return {"sec": sec, "nsec": nsec}

    return {"history": history.lower(), "depth": int(depth), "reliability": reliability.lower(),
            "durability": durability.lower(), "deadline": duration(deadline_ns), "lifespan": duration(lifespan_ns),
            "liveliness": liveliness.lower(), "liveliness_lease_duration": duration(liveliness_lease_ns),
            "avoid_ros_namespace_conventions": False}


@cache
def message_definition(msgtype: str) -> tuple[str, str]:
    """(ros2msg text with dependencies, RIHS01 type hash) of a Kilted message type; ValueError if unknown."""
    from rosbags.typesys import Stores, get_typestore  # its type store builds once, on first use

    store = get_typestore(Stores.ROS2_KILTED)
    if msgtype not in store.fielddefs:
        raise ValueError(f"unknown message type {msgtype!r}: not a ROS 2 Kilted standard type")
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)


class _UnbufferedFile:
    """A write-through file for mcap's Writer: each completed chunk reaches the OS at once, so a SIGKILL cannot take
    it along. (mcap wraps a raw file in a BufferedWriter; an object that is not `RawIOBase` is used as given.)"""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by McapFile.finish

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]
        return len(data)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class McapFile:
    """One MCAP file of a bag being written: registers topics as they come and keeps the file's statistics."""

    def __init__(self, path: Path, chunk_bytes: int) -> None:
        self.path = path
        self._sink = _UnbufferedFile(path)
        self._writer = Writer(self._sink, chunk_size=chunk_bytes, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.stats = FileStats(path.name)

    @property
    def size(self) -> int:
        """Bytes in the file so far: the completed chunks (the open one is still in memory)."""
        return self._sink.tell()

    def add_topic(self, topic: Topic) -> None:
        if topic.name in self._channels:
            return
        if topic.msgtype not in self._schemas:
            text, _ = message_definition(topic.msgtype)
            self._schemas[topic.msgtype] = self._writer.register_schema(topic.msgtype, "ros2msg", text.encode())
        _, type_hash = message_definition(topic.msgtype)
        metadata = {"offered_qos_profiles": yaml.safe_dump(list(topic.offered_qos), sort_keys=False),
                    "topic_type_hash": type_hash}
        self._channels[topic.name] = self._writer.register_channel(topic.name, "cdr", self._schemas[topic.msgtype],
                                                                   metadata)

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int) -> None:
        self._writer.add_message(self._channels[topic], log_time=log_time_ns, data=bytes(data),
                                 publish_time=publish_time_ns)
        self.stats.add(topic, log_time_ns)

    def finish(self) -> FileStats:
        """Write the open chunk, the index and the footer: from here on the file is complete."""
        self._writer.finish()
        self._sink.close()
        return self.stats


def bag_metadata(topics: list[Topic], files: list[FileStats]) -> dict[str, Any]:
    """metadata.yaml's content for finished `files` (in order) holding `topics`."""
    counts = {topic.name: sum(f.counts.get(topic.name, 0) for f in files) for topic in topics}
    used = [f for f in files if f.message_count]
    start = min((f.start_ns for f in used), default=0)
    end = max((f.end_ns for f in used), default=0)
    duration = lambda first, last: {"nanoseconds": max(0, last - first)}  # noqa: E731
    return {"rosbag2_bagfile_information": {
        "version": BAG_VERSION,
        "storage_identifier": "mcap",
        "relative_file_paths": [f.path for f in files],
        "duration": duration(start, end),
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(counts.values()),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.msgtype, "serialization_format": "cdr",
                                "offered_qos_profiles": list(t.offered_qos),
                                "type_description_hash": message_definition(t.msgtype)[1]},
             "message_count": counts[t.name]}
            for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": f.path, "starting_time": {"nanoseconds_since_epoch": f.start_ns if f.message_count else 0},
                   "duration": duration(f.start_ns, f.end_ns) if f.message_count else {"nanoseconds": 0},
                   "message_count": f.message_count} for f in files],
        "custom_data": {},
        "ros_distro": ROS_DISTRO,
    }}


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (topics sharing one QoS dict would get them): plain as rosbag2's own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_metadata(bag: Path, topics: list[Topic], files: list[FileStats]) -> None:
    """Replace metadata.yaml atomically: a reader sees the previous list of files or the new one."""
    write_text(bag / METADATA_FILE, yaml.dump(bag_metadata(topics, files), Dumper=_PlainDumper, sort_keys=False))


class BagWriter:
    """A rosbag2 MCAP bag being recorded: `add_topic`, `write` serialized messages, `close`.

    `max_file_bytes` / `max_file_duration_s` (0: no limit) start a new file once the current one is that large (by
    its completed chunks) or spans that long (by log time), as rosbag2's `--max-bag-size` / `--max-bag-duration`.
    """

    def __init__(self, path: str | Path, *, max_file_bytes: int = 0, max_file_duration_s: float = 0.0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        if max_file_bytes < 0 or max_file_duration_s < 0 or chunk_bytes < 1:
            raise ValueError(f"file limits must be >= 0 and the chunk size >= 1, got max_file_bytes="
                             f"{max_file_bytes}, max_file_duration_s={max_file_duration_s}, chunk_bytes={chunk_bytes}")
        self.path = Path(path).expanduser().resolve()
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; a recording needs a new directory")
        self.path.mkdir(parents=True)
        self.max_file_bytes = max_file_bytes
        self.max_file_duration_ns = int(max_file_duration_s * 1e9)
        self.chunk_bytes = chunk_bytes
        self.topics: dict[str, Topic] = {}
        self.files: list[FileStats] = []  # finished files, in order
        self._open: McapFile | None = None
        self._sync_metadata()

    def add_topic(self, topic: Topic) -> None:
        """Register a topic (its messages may follow at once); registering a name twice keeps the first."""
        message_definition(topic.msgtype)  # an unknown type fails here, before any message
        self.topics.setdefault(topic.name, topic)
        if self._open is not None:
            self._open.add_topic(self.topics[topic.name])

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Append one serialized (CDR) message of a registered topic; log time = when it was received."""
        if topic not in self.topics:
            raise ValueError(f"topic {topic!r} is not registered; add_topic it first (known: {sorted(self.topics)})")
        if self._open is not None and self._full(log_time_ns):
            self._finish_file()
        if self._open is None:
            self._open = McapFile(self.path / f"{self.path.name}_{len(self.files)}.mcap", self.chunk_bytes)
            for known in self.topics.values():
                self._open.add_topic(known)
        self._open.write(topic, data, log_time_ns, log_time_ns if publish_time_ns is None else publish_time_ns)

    def close(self) -> Path:
        """Finish the open file and write the final metadata.yaml; returns the bag directory."""
        if self._open is not None:
            self._finish_file()
        self._sync_metadata()
        return self.path

    def _full(self, log_time_ns: int) -> bool:
        stats = self._open.stats
        too_big = self.max_file_bytes and self._open.size >= self.max_file_bytes
        too_long = self.max_file_duration_ns and stats.message_count and \
            log_time_ns - stats.start_ns >= self.max_file_duration_ns
        return bool(too_big or too_long)

    def _finish_file(self) -> None:
        self.files.append(self._open.finish())
        self._open = None
        self._sync_metadata()

    def _sync_metadata(self) -> None:
        write_metadata(self.path, list(self.topics.values()), self.files)


def read_metadata(bag: str | Path) -> dict[str, Any]:
    """The `rosbag2_bagfile_information` of a bag directory; FileNotFoundError / ValueError saying what is wrong."""
    path = Path(bag) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{bag} is not a rosbag2 directory: it has no {METADATA_FILE}")
    try:
        info = yaml.safe_load(path.read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is not rosbag2 metadata ({err!r})") from err
    return info


def recover_bag(bag: str | Path) -> list[str]:
    """Finish the files a crash left unfinished (every complete chunk kept) and list them in metadata.yaml.

    Returns the names of the files recovered ([] when the bag was closed properly). Each one is rewritten beside
    itself and renamed over it, so a crash during recovery leaves the bag as it was.
    """
    bag = Path(bag).expanduser().resolve()
    info = read_metadata(bag)
    listed = list(info.get("relative_file_paths") or [])
    topics = {entry["topic_metadata"]["name"]: Topic(entry["topic_metadata"]["name"], entry["topic_metadata"]["type"],
                                                     tuple(entry["topic_metadata"].get("offered_qos_profiles") or ()))
              for entry in info.get("topics_with_message_count") or []}
    files = [_file_stats(bag / name) for name in listed]
    unlisted = sorted((p for p in bag.glob("*.mcap") if p.name not in listed), key=_file_index)
    for path in unlisted:
        files.append(_salvage(path, topics))
    if unlisted:
        write_metadata(bag, list(topics.values()), files)
    return [p.name for p in unlisted]


def _file_index(path: Path) -> tuple[int, str]:
    number = path.stem.rsplit("_", 1)[-1]
    return (int(number) if number.isdigit() else 2**31, path.name)


def _records(path: Path):
    """The records of an MCAP file in order, chunks opened, up to where the file breaks off."""
    with path.open("rb") as handle:
        try:
            yield from StreamReader(handle).records
        except (McapError, EOFError, struct.error, ValueError):
            return  # the torn end of a killed recording: everything before it was yielded


def _file_stats(path: Path) -> FileStats:
    """A finished file's statistics, from its messages (for metadata.yaml when a bag is repaired)."""
    stats, channels = FileStats(path.name), {}
    for record in _records(path):
        if isinstance(record, Channel):
            channels[record.id] = record.topic
        elif isinstance(record, Message):
            stats.add(channels[record.channel_id], record.log_time)
    return stats


def _salvage(path: Path, topics: dict[str, Topic]) -> FileStats:
    """Rewrite the complete chunks of an unfinished MCAP file as a finished one, in place; adds its topics."""
    schemas: dict[int, Schema] = {}
    channels: dict[int, str] = {}
    tmp = path.with_name(f".{path.name}.recovering")
    tmp.unlink(missing_ok=True)
    out = McapFile(tmp, DEFAULT_CHUNK_BYTES)
    try:
        for record in _records(path):
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                qos = yaml.safe_load(record.metadata.get("offered_qos_profiles", "") or "[]") or []
                topic = topics.setdefault(record.topic, Topic(record.topic, schemas[record.schema_id].name,
                                                              tuple(qos)))
                out.add_topic(topic)
                channels[record.id] = record.topic
            elif isinstance(record, Message):
                out.write(channels[record.channel_id], record.data, record.log_time, record.publish_time)
        stats = out.finish()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    stats.path = path.name
    return stats
