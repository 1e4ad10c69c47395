"""CotDataset on damaged copies of the synthetic dataset: each bad input is skipped and counted, or refused early."""

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from dtvla_policy.model.conventions import CHUNK_STEPS
from dtvla_training.data.lerobot_dataset import AGENTVIEW_KEY, CotDataset
from tests.fixtures.datasets import copy_dataset, episode_file, png, read_episode, set_cell

SIZE = 32
TOTAL = 3 * 24 + 6  # frames of tiny_dataset
SKIP_FIELDS = ("bad_rows", "bad_images", "nan_actions", "long_reasoning")


@pytest.fixture
def root(tiny_dataset, tmp_path):
    return copy_dataset(tiny_dataset, tmp_path / "ds")


def load(root, caplog, **kwargs) -> CotDataset:
    """Index `root`, check the report's bookkeeping, and that problems produced exactly one warning."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dtvla_training.data.lerobot_dataset"):
        dataset = CotDataset(root, image_size=SIZE, **kwargs)
    report = dataset.report
    assert report.frames_read == report.samples + sum(getattr(report, f) for f in SKIP_FIELDS)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == (1 if report.has_problems else 0)
    return dataset


def frames_of(dataset: CotDataset, episode: int) -> list[int]:
    return [dataset[i].frame_index for i in range(len(dataset)) if dataset[i].episode_index == episode]


def test_missing_directory_or_meta_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CotDataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "meta").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="meta/info.json"):
        CotDataset(tmp_path / "empty")


def test_video_cameras_are_refused_with_how_to_convert(root):
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][AGENTVIEW_KEY]["dtype"] = "video"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="stored as video.*Convert the dataset first"):
        CotDataset(root)


def test_missing_parquet_file_skips_the_episode(root, caplog):
    episode_file(root, 1).unlink()
    dataset = load(root, caplog)
    assert dataset.report.missing_files == 1 and dataset.report.episodes_used == 3
    assert len(dataset) == TOTAL - 24 and "episode 1" in caplog.text and "file missing" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_parquet_file_skips_the_episode(root, caplog, damage):
    path = episode_file(root, 2)
    data = path.read_bytes()
    path.write_bytes(b"not a parquet file" * 10 if damage == "garbage" else data[: len(data) // 2])
    dataset = load(root, caplog)
    assert dataset.report.corrupt_files == 1 and len(dataset) == TOTAL - 24
    assert 2 not in {dataset[i].episode_index for i in range(len(dataset))}


@pytest.mark.parametrize("scan_images", [True, False])
def test_mistyped_image_column_skips_the_episode(root, caplog, scan_images):
    table = read_episode(root, 1)
    table = table.set_column(table.column_names.index(AGENTVIEW_KEY), AGENTVIEW_KEY, pa.array(["x"] * 24))
    pq.write_table(table, episode_file(root, 1))
    dataset = load(root, caplog, scan_images=scan_images)
    assert dataset.report.corrupt_files == 1 and "image column has type string" in caplog.text


def test_duplicate_frame_index_skips_the_episode(root, caplog):
    set_cell(root, 0, "frame_index", 5, 4)
    dataset = load(root, caplog)
    assert dataset.report.corrupt_files == 1 and "frame_index" in caplog.text and len(dataset) == TOTAL - 24


@pytest.mark.parametrize("bad_action", [None, [0.1, float("nan"), 0, 0, 0, 0, -1.0], [0, 0, float("inf"), 0, 0, 0, 1]])
def test_bad_action_skips_exactly_the_frames_whose_chunk_holds_it(root, caplog, bad_action):
    set_cell(root, 0, "action", 15, bad_action, pa.list_(pa.float32()))  # variable-length lists, as in older LeRobot
    dataset = load(root, caplog)
    skipped = set(range(15 - CHUNK_STEPS + 1, 16))  # frames 6..15 reach frame 15 within 10 steps
    assert dataset.report.nan_actions == len(skipped) and len(dataset) == TOTAL - len(skipped)
    assert frames_of(dataset, 0) == [t for t in range(24) if t not in skipped]
    assert all(np.isfinite(dataset[i].actions).all() for i in range(len(dataset)))


def test_bad_last_action_also_poisons_the_padding(root, caplog):
    set_cell(root, 1, "action", 23, [float("nan")] * 7)
    dataset = load(root, caplog)
    assert frames_of(dataset, 1) == list(range(24 - CHUNK_STEPS))  # every chunk that reaches the end repeats it


def test_wrong_size_image_is_resized_and_counted(root, caplog):
    set_cell(root, 0, AGENTVIEW_KEY, 3, {"bytes": png(np.full((40, 50, 3), 200, np.uint8)), "path": "x.png"})
    dataset = load(root, caplog)
    assert dataset.report.resized_images == 1 and len(dataset) == TOTAL
    assert dataset[3].agentview.shape == (SIZE, SIZE, 3) and (dataset[3].agentview == 200).all()


def test_grayscale_image_is_converted_to_rgb(root, caplog):
    set_cell(root, 0, AGENTVIEW_KEY, 2, {"bytes": png(np.full((64, 64), 90, np.uint8)), "path": "g.png"})  # mode L
    dataset = load(root, caplog)
    assert dataset[2].agentview.shape == (SIZE, SIZE, 3) and (dataset[2].agentview == 90).all()


@pytest.mark.parametrize("value", [{"bytes": b"\x89PNG\r\n\x1a\n garbage", "path": "x.png"}, None,
                                   {"bytes": None, "path": "x.png"}])
def test_undecodable_or_missing_image_skips_the_frame_but_keeps_its_action(root, caplog, value):
    set_cell(root, 0, AGENTVIEW_KEY, 8, value)
    dataset = load(root, caplog)
    assert dataset.report.bad_images == 1 and 8 not in frames_of(dataset, 0) and len(dataset) == TOTAL - 1
    actions = np.array(read_episode(root, 0).column("action").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(dataset[7].actions[1], actions[8])  # frame 7's chunk still uses frame 8's action


def test_damaged_png_body_is_caught_by_the_checksum_scan(root, caplog):
    data = bytearray(read_episode(root, 0).column(AGENTVIEW_KEY)[4].as_py()["bytes"])
    data[len(data) // 2] ^= 0xFF
    set_cell(root, 0, AGENTVIEW_KEY, 4, {"bytes": bytes(data), "path": "x.png"})
    dataset = load(root, caplog)
    assert dataset.report.bad_images == 1 and 4 not in frames_of(dataset, 0)


def test_without_the_scan_a_bad_image_falls_back_to_the_next_frame(root, caplog):
    set_cell(root, 0, AGENTVIEW_KEY, 8, {"bytes": b"garbage", "path": "x.png"})
    dataset = load(root, caplog, scan_images=False)
    assert len(dataset) == TOTAL and not dataset.report.images_scanned
    with caplog.at_level(logging.WARNING):
        sample = dataset[8]
        dataset[8]
    assert (sample.episode_index, sample.frame_index, sample.fallbacks) == (0, 9, 1)  # it says it stands in
    assert dataset[9].fallbacks == 0
    assert dataset.report.load_fallbacks == 2 and caplog.text.count("returning the next frame") == 1


@pytest.mark.parametrize(("column", "value"), [("task_index", None), ("task_index", 99), ("reasoning", None)])
def test_null_or_unknown_fields_skip_the_frame(root, caplog, column, value):
    set_cell(root, 2, column, 0, value)
    dataset = load(root, caplog)
    assert dataset.report.bad_rows == 1 and frames_of(dataset, 2) == list(range(1, 24))


def test_reasoning_over_the_cap_is_skipped_not_truncated(tiny_checkpoint, root, caplog):
    set_cell(root, 0, "reasoning", 10, "The gripper moves. " * 200)
    dataset = load(root, caplog, tokenizer=AutoTokenizer.from_pretrained(tiny_checkpoint), max_reasoning_tokens=200)
    assert dataset.report.long_reasoning == 1 and 10 not in frames_of(dataset, 0) and len(dataset) == TOTAL - 1
    with pytest.raises(ValueError, match="pass the model's tokenizer"):
        CotDataset(root, max_reasoning_tokens=200)


def test_no_usable_frame_is_an_error_before_training(root):
    for episode in range(4):
        episode_file(root, episode).write_bytes(b"junk")
    with pytest.raises(ValueError, match="no usable frames.*corrupt_files=4"):
        CotDataset(root)


def test_broken_meta_is_a_value_error_naming_the_line(root):
    with (root / "meta/episodes.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"episodes.jsonl:5 is not valid JSON"):
        CotDataset(root)
