"""`dtvla-bag-to-lerobot`: a recorded sim episode -> LeRobot v2.1 dataset -> the SFT reader, frame for frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtvla_policy.lerobot_layout import JOINT_STATE_KEY
from dtvla_policy.recording.trace import BagTrace
from dtvla_training.data.bag_to_lerobot import main
from dtvla_training.data.lerobot_dataset import CotDataset, DatasetMeta
from tests.fixtures.recording import CAMERA_SIZE, MAX_STEPS

pytestmark = [pytest.mark.ros, pytest.mark.sim]


def test_a_recorded_episode_becomes_a_dataset_the_sft_reader_loads(recorded_sim_run, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert main([str(recorded_sim_run.bag), str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    (episode,) = report["episodes"]
    # every executed step is a frame; the last observation (after the last action) is not
    assert report["frames"] == episode["frames"] == MAX_STEPS and episode["frames_without_action"] == 1
    assert episode["outcome"] == recorded_sim_run.summary["episodes"][0]["state"]
    dataset = CotDataset(out, image_size=CAMERA_SIZE)
    assert len(dataset) == report["frames"] and dataset.report.samples == MAX_STEPS
    meta = DatasetMeta.load(out)
    assert meta.fps == 20.0 and meta.features[JOINT_STATE_KEY]["shape"] == [9]

    trace = BagTrace.read(recorded_sim_run.bag)
    first = trace.chunk_records()[0]
    sample = dataset[0]
    executed = first.actions.astype(np.float32)
    executed[:, 6] = np.sign(executed[:, 6])  # the simulator's gripper command
    np.testing.assert_array_equal(sample.actions, executed)  # frames 0..9 ran the first chunk
    assert sample.reasoning == first.cot.strip() and sample.task == first.task
    np.testing.assert_array_equal(sample.agentview, first.agentview)  # same size: the reader's resize is a copy


def test_bad_input_exits_2(recorded_sim_run, tmp_path, capsys):
    assert main([str(recorded_sim_run.bag), str(tmp_path / "a"), "--outcomes", "success"]) == 2
    assert "none of its 1 ended episodes" in capsys.readouterr().err  # the episode timed out
    assert main([str(recorded_sim_run.bag), str(tmp_path / "b"), "--outcomes", "won"]) == 2
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("taken")
    assert main([str(recorded_sim_run.bag), str(tmp_path / "c")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "d")]) == 2
