"""DART-style noise of `dtvla-collect-demos`: held x/y/z offsets on what runs, the expert's command recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dtvla_policy.lerobot_layout import STATE_KEY
from dtvla_training.data.lerobot_dataset import ACTION_KEY, DatasetMeta
from dtvla_training.demos.action_noise import ActionNoise, noise_rng
from dtvla_training.demos.collect import COLLECTION_FILE, Collection, collect_demos, plan_jobs

EXPERT = np.array([0.2, -0.4, 0.9, 0.05, -0.05, 0.1, 1.0])


def test_offsets_move_only_xyz_are_held_for_the_hold_steps_and_clipped() -> None:
    noise = ActionNoise(0.5, hold_steps=3, rng=noise_rng(0, 1, 2))
    executed = np.stack([noise(EXPERT) for _ in range(7)])
    np.testing.assert_array_equal(executed[:, 3:], np.tile(EXPERT[3:], (7, 1)))  # rotation and gripper untouched
    offsets = executed[:, :3] - EXPERT[:3]
    assert np.all(np.abs(executed) <= 1.0)
    assert not np.allclose(offsets[0], 0.0)
    np.testing.assert_array_equal(offsets[0], offsets[2])  # one offset per 3 steps ...
    assert not np.allclose(offsets[2], offsets[3])  # ... then a new one
    np.testing.assert_array_equal(offsets[3], offsets[5])


def test_the_draw_depends_on_the_episode_only_and_std_zero_is_the_expert() -> None:
    runs = [[ActionNoise(0.3, 10, noise_rng(0, task, 7))(EXPERT) for _ in range(2)] for task in (4, 4, 5)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
    np.testing.assert_array_equal(ActionNoise(0.0, 10, noise_rng(0, 0, 0))(EXPERT), EXPERT)


@pytest.mark.parametrize(("std", "hold"), [(-0.1, 10), (float("nan"), 10), (0.1, 0)])
def test_bad_settings_are_refused(std: float, hold: int) -> None:
    with pytest.raises(ValueError, match="action noise"):
        Collection(suite="libero_spatial", image_size=32, max_steps=10, object_jitter_m=0.0, action_noise=std,
                   action_noise_hold_steps=hold)


@pytest.mark.sim
def test_a_noisy_demonstration_records_the_clean_command_of_the_state_it_reached(tmp_path: Path) -> None:
    """Same task and init state, with and without noise: the first command (same state) is the same, the states
    that follow differ (the noisy commands ran), and the settings are in meta/collection.json."""
    tables = {}
    for std in (0.0, 0.15):
        out = tmp_path / f"demos-{std}"
        collection = Collection(suite="libero_spatial", image_size=32, max_steps=220, object_jitter_m=0.0,
                                fast_render=True, action_noise=std)
        report = collect_demos(out, collection, plan_jobs("libero_spatial", "0", "0", None))
        assert report["episodes"] == 1, report
        assert json.loads((out / COLLECTION_FILE).read_text())["action_noise"] == std
        tables[std] = pq.read_table(DatasetMeta.load(out).episode_path(0))
    actions = {std: np.array(t.column(ACTION_KEY).to_pylist()) for std, t in tables.items()}
    states = {std: np.array(t.column(STATE_KEY).to_pylist()) for std, t in tables.items()}
    np.testing.assert_allclose(actions[0.15][0], actions[0.0][0], atol=1e-6)
    np.testing.assert_allclose(states[0.15][0], states[0.0][0], atol=1e-6)
    assert np.abs(states[0.15][5, :3] - states[0.0][5, :3]).max() > 1e-3
    assert np.all(np.abs(actions[0.15]) <= 1.0)
