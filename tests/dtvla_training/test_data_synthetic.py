"""dtvla-synthetic-dataset: a real LeRobot v2.1 layout with plausible LIBERO-like content, reproducible per seed."""

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from dtvla_policy.model.conventions import CHUNK_STEPS
from dtvla_training.data.lerobot_dataset import CotDataset
from dtvla_training.data.synthetic import MAX_ROTATION, MAX_TRANSLATION, ROW_GROUP_ROWS, main, write_synthetic_dataset
from tests.fixtures.datasets import episode_file, read_episode


def test_layout_and_meta_agree_with_the_parquet_files(tiny_dataset):
    info = json.loads((tiny_dataset / "meta/info.json").read_text())
    episodes = [json.loads(line) for line in (tiny_dataset / "meta/episodes.jsonl").read_text().splitlines()]
    assert info["codebase_version"] == "v2.1" and info["total_episodes"] == len(episodes) == 4
    assert info["features"]["observation.images.image"]["dtype"] == "image"
    lengths = [read_episode(tiny_dataset, e["episode_index"]).num_rows for e in episodes]
    assert lengths == [e["length"] for e in episodes] and sum(lengths) == info["total_frames"]
    assert min(lengths) < CHUNK_STEPS  # one short episode
    assert pq.ParquetFile(episode_file(tiny_dataset, 0)).num_row_groups == -(-24 // ROW_GROUP_ROWS)
    index = np.concatenate([read_episode(tiny_dataset, e).column("index").to_numpy() for e in range(4)])
    np.testing.assert_array_equal(index, np.arange(sum(lengths)))


def test_actions_are_smooth_and_in_libero_ranges(tiny_dataset):
    for e in range(4):
        actions = np.array(read_episode(tiny_dataset, e).column("action").to_pylist())
        assert np.abs(actions[:, :3]).max() <= MAX_TRANSLATION and np.abs(actions[:, 3:6]).max() <= MAX_ROTATION
        assert set(np.unique(actions[:, 6])) <= {-1.0, 1.0}
        assert np.abs(np.diff(actions[:, :6], axis=0)).max() < 0.25  # smooth: no jumps between frames


def test_generation_is_deterministic_and_refuses_a_non_empty_dir(tmp_path, tiny_dataset):
    root = write_synthetic_dataset(tmp_path / "again")
    for e in range(4):
        assert read_episode(root, e).equals(read_episode(tiny_dataset, e))
    with pytest.raises(FileExistsError):
        write_synthetic_dataset(root)
    with pytest.raises(ValueError, match="episodes must be >= 2"):
        write_synthetic_dataset(tmp_path / "one", episodes=1)


def test_cli_options_reach_the_files(tmp_path, capsys):
    main([str(tmp_path / "ds"), "--episodes", "3", "--frames-per-episode", "12", "--image-size", "24", "--seed", "5"])
    dataset = CotDataset(tmp_path / "ds", image_size=24)
    assert len(dataset) == 2 * 12 + 6 and dataset[0].agentview.shape == (24, 24, 3)
    assert "3 episodes, 30 frames" in capsys.readouterr().out


def test_console_scripts_are_installed():
    for script in ("dtvla-synthetic-dataset", "dtvla-norm-stats"):
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage" in result.stdout
