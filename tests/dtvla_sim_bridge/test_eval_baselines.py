"""`dtvla-eval --policy noop|replay`: the baselines run through the same episode loop and worker pool as a model.

The replay dataset is written by the real synthetic generator with real LIBERO instructions as its tasks. End to end
runs are one short episode each (libero_spatial task 0, 12-step cap, 128 px cameras).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dtvla_policy.lerobot_layout import ACTION_KEY
from dtvla_sim_bridge.eval.baselines import NoopPolicy, ReplayPolicy, load_demonstrations
from dtvla_sim_bridge.eval.cli import build_config, build_parser, main
from dtvla_sim_bridge.eval.config import EvalInputError
from dtvla_sim_bridge.eval.runner import OutputPaths
from dtvla_sim_bridge.eval.worker import PolicyQuery
from dtvla_training.data.lerobot_dataset import DatasetMeta
from dtvla_training.data.synthetic import write_synthetic_dataset

SUITE = "libero_spatial"
MAX_STEPS = 12
FRAMES = 24
# libero_spatial tasks 0 and 1, as LIBERO spells them; the stored text differs in case and '_' on purpose
TASK_0 = "pick up the black bowl between the plate and the ramekin and place it on the plate"
TASK_1 = "pick up the black bowl next to the ramekin and place it on the plate"


@pytest.fixture(scope="module")
def replay_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Episodes 0 and 2 are task 0 (2 is the short one), episode 1 is task 1."""
    tasks = ((TASK_0.replace(" ", "_").upper(), "black bowl", "plate"), (TASK_1, "black bowl", "plate"))
    return write_synthetic_dataset(tmp_path_factory.mktemp("replay") / "demos", episodes=3,
                                   frames_per_episode=FRAMES, image_size=16, tasks=tasks)


def _actions(root: Path, episode: int) -> np.ndarray:
    return np.asarray(pq.read_table(DatasetMeta.load(root).episode_path(episode)).column(ACTION_KEY).to_pylist())


def _query(task: int, step: int) -> PolicyQuery:
    image = np.zeros((8, 8, 3), np.uint8)
    return PolicyQuery(image, image, "ignored", task, step)


def test_noop_holds_still_with_the_gripper_open():
    (reply,) = NoopPolicy()([_query(0, 0)])
    assert reply.actions.shape == (10, 7) and not reply.actions[:, :6].any() and (reply.actions[:, 6] == -1).all()


def test_replay_plays_the_first_episode_of_each_task_from_the_query_step(replay_dataset):
    demonstrations = load_demonstrations(replay_dataset, {0: TASK_0, 1: TASK_1})
    assert {task: d.episode_index for task, d in demonstrations.items()} == {0: 0, 1: 1}
    policy = ReplayPolicy(replay_dataset, demonstrations)
    recorded = _actions(replay_dataset, 0)
    first, middle, tail = policy([_query(0, 0), _query(0, 10), _query(0, FRAMES - 4)])
    assert np.allclose(first.actions, recorded[:10]) and np.allclose(middle.actions, recorded[10:20])
    # past the end: zero deltas with the demonstration's last gripper command
    assert np.allclose(tail.actions[:4], recorded[-4:])
    assert not tail.actions[4:, :6].any() and (tail.actions[4:, 6] == recorded[-1, 6]).all()
    assert policy.describe()["episodes"]["0"] == {"episode_index": 0, "length": FRAMES,
                                                  "sha256": demonstrations[0].sha256}


def test_replay_of_a_task_the_dataset_lacks_is_refused(replay_dataset):
    with pytest.raises(ValueError, match="has no episode of task 7 .*its tasks"):
        load_demonstrations(replay_dataset, {7: "put the bowl on the stove"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "replay"], "--replay-dataset DIR goes with --policy replay"),
        (["--policy", "noop", "--checkpoint", "."], "loads no model: drop --checkpoint"),
        (["--policy", "noop", "--mode", "masked"], "--mode applies to --policy model only"),
        (["--policy", "noop", "--max-cot-tokens", "4"], "--max-cot-tokens applies to --policy model only"),
        (["--policy", "noop", "--via-ros"], "runs in process only"),
        ([], "--policy model needs --checkpoint DIR"),
    ],
)
def test_contradictory_options_are_refused(tmp_path, extra, message):
    args = build_parser().parse_args(["--suite", SUITE, "--tasks", "0", "--trials", "1", "--out", str(tmp_path),
                                      *extra])
    with pytest.raises(EvalInputError, match=message):
        build_config(args)


def _run(out: Path, *policy: str) -> OutputPaths:
    assert main(["--suite", SUITE, "--tasks", "0", "--trials", "1", "--max-steps", str(MAX_STEPS), "--camera-size",
                 "128", "--workers", "1", "--out", str(out), "--no-progress", *policy]) == 0
    return OutputPaths.of(out, SUITE)


@pytest.mark.sim
def test_noop_episode_runs_and_the_outputs_name_the_baseline(tmp_path):
    paths = _run(tmp_path, "--policy", "noop")
    (record,) = [json.loads(line) for line in paths.episodes.read_text().splitlines()]
    assert (record["status"], record["steps"], record["chunks"], record["success"]) == ("ok", MAX_STEPS, 2, False)
    summary = json.loads(paths.summary_json.read_text())
    assert (summary["policy"], summary["mode"]) == ("noop", None)
    assert paths.summary_md.read_text().startswith(f"# {SUITE}: noop baseline, cap {MAX_STEPS} steps")
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["policy"]["kind"] == manifest["config"]["policy"] == "noop"
    assert manifest["checkpoint_sha256"] == {} and manifest["decode"] is None


@pytest.mark.sim
def test_replay_episode_runs_records_its_demonstration_and_resumes_only_with_it(tmp_path, replay_dataset,
                                                                                  capsys):
    paths = _run(tmp_path, "--policy", "replay", "--replay-dataset", str(replay_dataset))
    (record,) = [json.loads(line) for line in paths.episodes.read_text().splitlines()]
    assert (record["status"], record["steps"], record["chunks"]) == ("ok", MAX_STEPS, 2)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["policy"]["kind"] == "replay" and manifest["policy"]["dataset"] == str(replay_dataset)
    assert manifest["policy"]["episodes"]["0"]["episode_index"] == 0
    assert json.loads(paths.summary_json.read_text())["policy"] == "replay"
    # the same directory cannot mix in another policy's episodes
    assert main(["--suite", SUITE, "--tasks", "0", "--trials", "1", "--max-steps", str(MAX_STEPS), "--camera-size",
                 "128", "--out", str(tmp_path), "--policy", "noop", "--no-progress"]) == 2
    assert "policy: recorded 'replay', now 'noop'" in capsys.readouterr().err
