"""`dtvla-record BAG`: the dtvla topics to a rosbag2 bag with MCAP storage; `dtvla-record --reindex BAG` repairs one.

A thin adapter over `dtvla_policy.recording.bag_writer`: one raw subscription per contract topic (the serialized CDR
bytes go to the file as received, no re-serialisation), with the reliability and durability its publisher offers
(docs/topics.md) and a deeper queue; at a topic's first message the publishers' QoS profiles are read from the
graph and stored in the bag, as rosbag2 does. Log time = DDS reception time, publish time = the sender's source
timestamp. Recorded: both cameras, joint states, task, chunk requests, action chunks, chain-of-thought,
/diagnostics, episode status (the episode boundaries: the bridge publishes each episode's start and end with the
stamps of its first and last observation), the sim clock, and with --reasoning-image the reasoning picture. That one
is off by default: it is drawn from recorded topics (cameras, CoT, chunk), and subscribing to it stalled the policy
node 1.5-3 s in 5-10 % of its chunks on a loaded 2-core machine (benchmarks/ros_latency.py; none without it).
Names are relative, so `--ros-args -r __ns:=/robot1` records robot1. SIGINT/SIGTERM close the bag (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import MessageInfo
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.recording.bag_writer import (
    DEFAULT_CHUNK_BYTES,
    BagWriter,
    Topic,
    message_definition,
    qos_profile_dict,
    recover_bag,
)
from dtvla_policy.ros import contract
from dtvla_policy.ros.node_runner import run_node

NODE_NAME = "dtvla_recorder"
RECORD_DEPTH = 100  # messages a subscription holds while the recorder writes; the publishers' depth is 1 to 10
# (contract name, type, the QoS its publisher offers): the recorder asks for the same reliability and durability.
RECORDED_TOPICS = (
    (contract.AGENTVIEW_TOPIC, Image, contract.SENSOR_QOS),
    (contract.WRIST_TOPIC, Image, contract.SENSOR_QOS),
    (contract.JOINT_STATES_TOPIC, JointState, contract.COMMAND_QOS),
    (contract.TASK_TOPIC, String, contract.LATCHED_QOS),
    (contract.CHUNK_REQUEST_TOPIC, Header, contract.COMMAND_QOS),
    (contract.POLICY_ACTION_CHUNK, JointTrajectory, contract.COMMAND_QOS),
    (contract.POLICY_CHAIN_OF_THOUGHT, String, contract.COMMAND_QOS),
    (contract.POLICY_REASONING_IMAGE, Image, contract.VIEW_QOS),
    (contract.EPISODE_STATUS_TOPIC, String, contract.LATCHED_QOS),
    (contract.DIAGNOSTICS_TOPIC, DiagnosticArray, contract.COMMAND_QOS),
    (contract.CLOCK_TOPIC, Clock, contract.COMMAND_QOS),
)


@dataclass(frozen=True)
class RecorderSettings:
    """What and how to record; `max_*` 0 means no limit."""

    reasoning_image: bool = False
    max_file_bytes: int = 0
    max_file_duration_s: float = 0.0
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


def ros_type_name(msg_type: type) -> str:
    """`sensor_msgs/msg/Image` for the generated class sensor_msgs.msg.Image."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def offered_qos(profile: QoSProfile) -> dict:
    """A publisher's QoS (from the graph) as rosbag2 stores it in metadata.yaml."""
    return qos_profile_dict(profile.history.name, profile.depth, profile.reliability.name, profile.durability.name,
                            profile.deadline.nanoseconds, profile.lifespan.nanoseconds, profile.liveliness.name,
                            profile.liveliness_lease_duration.nanoseconds)


def recorded_topic_names(settings: RecorderSettings) -> tuple[str, ...]:
    """The contract names recorded (relative ones resolve in the recorder's namespace)."""
    return tuple(name for name, _, _ in RECORDED_TOPICS
                 if settings.reasoning_image or name != contract.POLICY_REASONING_IMAGE)


class RecorderNode(Node):
    """Writes every message of the recorded topics to `writer`, closing it with the node."""

    def __init__(self, writer: BagWriter, settings: RecorderSettings, **kwargs) -> None:
        self.writer: BagWriter | None = None  # destroy_node may run on a node whose __init__ failed
        super().__init__(NODE_NAME, **kwargs)
        self.writer = writer
        types = {name: (msg_type, qos) for name, msg_type, qos in RECORDED_TOPICS}
        names = recorded_topic_names(settings)
        for name in names:  # message definitions now (the type store takes ~1 s to build), not at a first message
            message_definition(ros_type_name(types[name][0]))
        for name in names:
            msg_type, qos = types[name]
            topic = self.resolve_topic_name(name)
            depth_qos = QoSProfile(history=qos.history, depth=RECORD_DEPTH, reliability=qos.reliability,
                                   durability=qos.durability)
            self.create_subscription(msg_type, name, partial(self._on_message, topic, ros_type_name(msg_type)),
                                     depth_qos, raw=True)
        self.get_logger().info(f"recording {len(names)} topics to {writer.path}")

    def _on_message(self, topic: str, msgtype: str, data: bytes, info: MessageInfo) -> None:
        if topic not in self.writer.topics:
            publishers = self.get_publishers_info_by_topic(topic)
            self.writer.add_topic(Topic(topic, msgtype, tuple(offered_qos(p.qos_profile) for p in publishers)))
        self.writer.write(topic, data, info["received_timestamp"], info["source_timestamp"])

    def destroy_node(self) -> None:
        if self.writer is not None:
            path = self.writer.close()
            self.get_logger().info(f"bag closed: {path}")
        super().destroy_node()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-record", description=__doc__.splitlines()[0],
                                     epilog="ROS arguments follow --ros-args, e.g. --ros-args -r __ns:=/robot1")
    parser.add_argument("bag", help="bag directory to create (with --reindex: the bag to repair)")
    parser.add_argument("--reindex", action="store_true",
                        help="repair a bag whose recorder was killed: finish its unfinished file, keeping every "
                             "complete chunk, and list it in metadata.yaml (no ROS)")
    parser.add_argument("--max-bag-size-mb", type=float, default=0.0, help="start a new file at this size (0: never)")
    parser.add_argument("--max-bag-duration-s", type=float, default=0.0,
                        help="start a new file after this many seconds (0: never)")
    parser.add_argument("--chunk-size-kb", type=int, default=DEFAULT_CHUNK_BYTES // 1024,
                        help="MCAP chunk size: at most this much is lost when the recorder is killed")
    parser.add_argument("--reasoning-image", action="store_true",
                        help=f"also record {contract.POLICY_REASONING_IMAGE} (costs the policy latency, see above)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Record until SIGINT/SIGTERM (exit 0); a bad argument or an existing directory exits 2."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    try:
        if args.reindex:
            print(json.dumps({"bag": str(Path(args.bag).resolve()), "recovered_files": recover_bag(args.bag)}))
            return 0
        settings = RecorderSettings(reasoning_image=args.reasoning_image,
                                    max_file_bytes=int(args.max_bag_size_mb * 1e6),
                                    max_file_duration_s=args.max_bag_duration_s, chunk_bytes=args.chunk_size_kb * 1024)
        writer = BagWriter(args.bag, max_file_bytes=settings.max_file_bytes,
                           max_file_duration_s=settings.max_file_duration_s, chunk_bytes=settings.chunk_bytes)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"dtvla-record: error: {exc}", file=sys.stderr)
        return 2
    run_node(lambda: RecorderNode(writer, settings), [sys.executable, *argv[split:]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
