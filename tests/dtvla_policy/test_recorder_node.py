"""`dtvla-record` over real DDS: a recorded sim episode read back with `rosbags`, and a recorder killed mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image

from dtvla_policy.recording.bag_writer import METADATA_FILE
from dtvla_policy.recording.trace import BagTrace
from dtvla_policy.ros import contract
from dtvla_policy.ros.recorder_node import main
from dtvla_policy.ros.sim_launcher import main as sim_main
from tests.fixtures.recording import MAX_STEPS, small_camera_params
from tests.fixtures.ros import probe_node, stop_node

pytestmark = pytest.mark.ros
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
CHUNK_KB = 16
IMAGE_BYTES = 64 * 64 * 3
EXPECTED_TYPES = {  # what dtvla-sim --record records: every contract topic but the reasoning image (opt-in)
    "/camera/agentview/image_raw": "sensor_msgs/msg/Image",
    "/camera/wrist/image_raw": "sensor_msgs/msg/Image",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/task/instruction": "std_msgs/msg/String",
    "/dtvla_sim_bridge/chunk_request": "std_msgs/msg/Header",
    "/dtvla_policy/action_chunk": "trajectory_msgs/msg/JointTrajectory",
    "/dtvla_policy/chain_of_thought": "std_msgs/msg/String",
    "/dtvla_sim_bridge/episode_status": "std_msgs/msg/String",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/clock": "rosgraph_msgs/msg/Clock",
}


def read_bag(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, decoded message)] in the order read."""
    messages: dict[str, list] = {}
    with AnyReader([bag], default_typestore=TYPESTORE) as reader:
        for connection, log_time, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((log_time, reader.deserialize(raw, connection.msgtype)))
    return messages


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@pytest.mark.sim
def test_a_recorded_sim_episode_reads_back_with_rosbags(recorded_sim_run):
    summary, bag = recorded_sim_run.summary, recorded_sim_run.bag
    assert summary["exit_codes"] == {"policy": 0, "bridge": 0, "recorder": 0} and summary["bag"] == str(bag)
    info = yaml.safe_load((bag / METADATA_FILE).read_text())["rosbag2_bagfile_information"]
    assert (info["version"], info["storage_identifier"]) == (9, "mcap")
    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == EXPECTED_TYPES
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        assert reader.message_count == sum(c.msgcount for c in reader.connections) > 0
    # the publishers' QoS as offered (the contract's), not the recorder's
    assert qos["/camera/agentview/image_raw"][0].reliability is QosReliability.BEST_EFFORT
    assert qos["/dtvla_sim_bridge/episode_status"][0].durability is QosDurability.TRANSIENT_LOCAL
    assert qos["/dtvla_policy/action_chunk"][0].reliability is QosReliability.RELIABLE

    messages = read_bag(bag)
    assert set(messages) == set(EXPECTED_TYPES)
    frames = MAX_STEPS + 1  # the first observation, then one per step
    for topic in ("/camera/agentview/image_raw", "/camera/wrist/image_raw", "/joint_states"):
        stamps = [stamp_ns(m.header.stamp) for _, m in messages[topic]]
        assert len(set(stamps)) == frames, topic
        assert stamps == sorted(stamps), f"{topic}: stamps not monotonic"
    clock = [stamp_ns(m.clock) for _, m in messages["/clock"]]
    assert clock == sorted(clock) and len(set(clock)) == frames
    chunks = [m for _, m in messages["/dtvla_policy/action_chunk"]]
    # two chunks answer the 12 steps; a request re-sent when the policy's subscription appears may be answered twice
    assert len(chunks) == summary["chunks"] >= 2 and len({stamp_ns(c.header.stamp) for c in chunks}) == 2
    assert len(messages["/dtvla_policy/chain_of_thought"]) == len(chunks)
    assert len(messages["/dtvla_sim_bridge/chunk_request"]) >= 2
    camera_stamps = {stamp_ns(m.header.stamp) for _, m in messages["/camera/agentview/image_raw"]}
    assert {stamp_ns(c.header.stamp) for c in chunks} <= camera_stamps  # each chunk answers a recorded frame
    image = messages["/camera/agentview/image_raw"][0][1]
    assert (image.height, image.width, image.encoding) == (64, 64, "rgb8")
    for topic, received in messages.items():
        log_times = [t for t, _ in received]
        assert log_times == sorted(log_times), f"{topic}: log times not monotonic"
    statuses = [json.loads(m.data) for _, m in messages["/dtvla_sim_bridge/episode_status"]]
    assert statuses[-1]["state"] == "finished" and statuses[-1]["steps"] == MAX_STEPS
    assert statuses[-1]["first_stamp_ns"] == min(camera_stamps) and statuses[-1]["last_stamp_ns"] == max(camera_stamps)


def _metadata_files(bag: Path) -> list[str]:
    if not (bag / METADATA_FILE).is_file():
        return []
    return yaml.safe_load((bag / METADATA_FILE).read_text())["rosbag2_bagfile_information"]["relative_file_paths"]


def _open_file_has_a_chunk(bag: Path) -> bool:
    """Whether a file not (yet) in metadata.yaml holds a completed chunk (its header alone is < 100 bytes)."""
    listed = set(_metadata_files(bag))
    return any(p.stat().st_size >= CHUNK_KB * 1024 for p in bag.glob("*.mcap") if p.name not in listed)


def _images_written(bag: Path) -> int:
    """A lower bound of the images in completed chunks: each one is IMAGE_BYTES and incompressible."""
    return sum(p.stat().st_size for p in bag.glob("*.mcap")) // (IMAGE_BYTES + 200)


def _frame_ids(bag: Path) -> list[int]:
    with Reader(bag) as reader:
        return [int(TYPESTORE.deserialize_cdr(raw, c.msgtype).header.frame_id) for c, _, raw in reader.messages()]


def test_a_killed_recorder_leaves_a_readable_bag_and_reindex_recovers_every_complete_chunk(tmp_path):
    """SIGKILL mid-run: the files finished before the kill read as they are; --reindex adds the complete chunks of
    the file that was open, and nothing read is torn or out of order."""
    bag = tmp_path / "killed"
    recorder = subprocess.Popen([sys.executable, "-m", "dtvla_policy.ros.recorder_node", str(bag), "--max-bag-size-mb",
                                 "0.05", "--chunk-size-kb", str(CHUNK_KB), "--reasoning-image"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rng = np.random.default_rng(0)
    qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
    sent = 0
    try:
        with probe_node("killed_recorder_probe") as probe:
            publisher = probe.node.create_publisher(Image, contract.POLICY_REASONING_IMAGE, qos)
            probe.wait_for(lambda: publisher.get_subscription_count() > 0, 30, "the recorder to subscribe")
            while not (len(_metadata_files(bag)) >= 3 and _open_file_has_a_chunk(bag)):
                assert sent < 400, "the recorder neither split files nor flushed chunks"
                # at most a few images in flight: the recorder's queue never overflows
                probe.wait_for(lambda n=sent: n - _images_written(bag) < 8, 60, "the recorder to write")
                pixels = rng.integers(0, 256, IMAGE_BYTES, dtype=np.uint8).tobytes()  # noise: zstd cannot shrink it
                msg = Image(height=64, width=64, encoding="rgb8", step=64 * 3, data=pixels)
                msg.header.frame_id = str(sent)
                publisher.publish(msg)
                sent += 1
            recorder.send_signal(signal.SIGKILL)
            recorder.wait(timeout=30)
    finally:
        stop_node(recorder)
    had_chunk = _open_file_has_a_chunk(bag)  # the files no longer change
    finished = _frame_ids(bag)  # rosbags opens the killed bag as it is: every finished file
    assert finished == list(range(len(finished))) and len(_metadata_files(bag)) >= 3
    assert main([str(bag), "--reindex"]) == 0
    recovered = _frame_ids(bag)
    assert recovered == list(range(len(recovered)))  # in order, none torn or lost between chunks
    assert len(finished) < len(recovered) <= sent if had_chunk else recovered == finished
    assert main([str(bag), "--reindex"]) == 0 and _frame_ids(bag) == recovered  # idempotent


def test_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main([str(tmp_path / "taken")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), "--reindex"]) == 2
    assert "not a rosbag2 directory" in capsys.readouterr().err
    assert main([str(tmp_path / "new"), "--chunk-size-kb", "0"]) == 2
    assert sim_main(["--record", str(tmp_path / "taken")]) == 2  # dtvla-sim refuses before starting anything
    assert "a recording needs a new directory" in capsys.readouterr().err


@pytest.mark.sim
def test_a_namespaced_robot_is_recorded_under_its_namespace_and_read_back_by_it(tiny_checkpoint, tmp_path):
    bag = tmp_path / "bag"
    run = subprocess.run([sys.executable, "-m", "dtvla_policy.ros.sim_launcher", "--params-file",
                          str(small_camera_params(tmp_path / "sim.yaml")), "--checkpoint", str(tiny_checkpoint),
                          "--namespace", "robot1", "--max-steps", "4", "--max-cot-tokens", "2", "--record", str(bag),
                          "--log-dir", str(tmp_path / "logs"), "--timeout", "600"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    with Reader(bag) as reader:
        topics = {c.topic for c in reader.connections}
    # the robot's own topics under /robot1 (the sim clock too); /diagnostics stays global
    assert {f"/robot1{t}" for t in EXPECTED_TYPES if t != "/diagnostics"} | {"/diagnostics"} == topics
    trace = BagTrace.read(bag, "robot1")
    assert trace.lockstep and len(trace.chunk_records()) == json.loads(run.stdout)["chunks"]
    assert all(r.mode == "full" for r in trace.chunk_records())  # its own policy's diagnostics, by status name
