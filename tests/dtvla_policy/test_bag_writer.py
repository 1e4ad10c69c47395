"""The rosbag2 MCAP writer without ROS: splitting, metadata that `rosbags` accepts, repair of an abandoned bag."""

from __future__ import annotations

import pytest
import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from dtvla_policy.recording.bag_writer import METADATA_FILE, BagWriter, Topic, qos_profile_dict, recover_bag

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
QOS = qos_profile_dict("keep_last", 10, "reliable", "volatile", 0, 0, "automatic", 0)


def text(value: str) -> bytes:
    msg = TYPESTORE.types["std_msgs/msg/String"](data=value)
    return bytes(TYPESTORE.serialize_cdr(msg, "std_msgs/msg/String"))


def read_texts(bag) -> list[str]:
    with Reader(bag) as reader:
        return [TYPESTORE.deserialize_cdr(raw, c.msgtype).data for c, _, raw in reader.messages()]


def test_files_split_by_duration_and_the_bag_reads_in_order(tmp_path):
    writer = BagWriter(tmp_path / "bag", max_file_duration_s=1.0)
    writer.add_topic(Topic("/cot", "std_msgs/msg/String", (QOS,)))
    for i in range(10):
        writer.write("/cot", text(f"thought {i}"), log_time_ns=i * 300_000_000)  # 0.3 s apart: 4 per file
    writer.close()
    info = yaml.safe_load((tmp_path / "bag" / METADATA_FILE).read_text())["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == ["bag_0.mcap", "bag_1.mcap", "bag_2.mcap"]
    assert [f["message_count"] for f in info["files"]] == [4, 4, 2] and info["message_count"] == 10
    assert read_texts(tmp_path / "bag") == [f"thought {i}" for i in range(10)]
    assert recover_bag(tmp_path / "bag") == []  # a closed bag has nothing to repair


def test_an_abandoned_file_is_left_out_until_recovered_with_its_complete_chunks(tmp_path):
    """A writer that never closes (its process died): the finished file reads at once; recovery adds the
    complete chunks of the open one and drops only the chunk still in memory."""
    writer = BagWriter(tmp_path / "bag", max_file_bytes=2_000, chunk_bytes=500)
    writer.add_topic(Topic("/cot", "std_msgs/msg/String", (QOS,)))
    for i in range(40):
        writer.write("/cot", text(f"{i:03d}" + "x" * 200), log_time_ns=i)
    finished = read_texts(tmp_path / "bag")
    assert finished and len(finished) < 40
    assert recover_bag(tmp_path / "bag")
    recovered = read_texts(tmp_path / "bag")
    assert len(finished) < len(recovered) < 40  # the open chunk (the newest messages) is what a crash costs
    assert [int(t[:3]) for t in recovered] == list(range(len(recovered)))


def test_bad_input_is_refused_with_the_reason(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="new directory"):
        BagWriter(tmp_path / "taken")
    writer = BagWriter(tmp_path / "bag")
    with pytest.raises(ValueError, match="unknown message type"):
        writer.add_topic(Topic("/x", "my_msgs/msg/Nope"))
    with pytest.raises(ValueError, match="not registered"):
        writer.write("/x", b"", 0)
    with pytest.raises(FileNotFoundError, match="not a rosbag2 directory"):
        recover_bag(tmp_path)
