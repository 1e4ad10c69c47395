"""`dtvla-collect-demos`: two real scripted demonstrations with both cameras -> a LeRobot v2.1 dataset that the
SFT reader indexes once `dtvla-annotate` adds the reasoning column -> 5 SFT steps -> a checkpoint the engine runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dtvla_policy.inference import PolicyEngine
from dtvla_policy.lerobot_layout import SCENE_KEY, STATE_KEY
from dtvla_policy.protocol import DecodeConfig
from dtvla_sim_bridge.sim.scene import SceneState
from dtvla_training.annotate.cli import main as annotate
from dtvla_training.data.lerobot_dataset import NORM_STATS_PATH, CotDataset, DatasetMeta
from dtvla_training.demos.collect import COLLECTION_FILE, Collection, collect_demos, main, plan_jobs
from dtvla_training.sft.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Two real demonstrations of libero_spatial task 0 (init states 0 and 1) and the collector's report."""
    out = tmp_path_factory.mktemp("collect") / "demos"
    collection = Collection(suite="libero_spatial", image_size=IMAGE_SIZE, max_steps=220, object_jitter_m=0.0)
    return out, collect_demos(out, collection, plan_jobs("libero_spatial", "0", "0-1", None))


@pytest.mark.sim
def test_two_demonstrations_make_a_dataset_the_reader_indexes(demos: tuple[Path, dict]) -> None:
    out, report = demos
    assert (report["attempted"], report["episodes"], report["dropped"]) == (2, 2, 0)
    assert json.loads((out / COLLECTION_FILE).read_text()) == {k: v for k, v in report.items() if k != "dataset"}
    assert not (out.parent / ".demos.parts").exists()

    meta = DatasetMeta.load(out)
    assert meta.fps == 20 and [e.index for e in meta.episodes] == [0, 1]
    assert meta.tasks == {0: "pick up the black bowl between the plate and the ramekin and place it on the plate"}
    assert (out / NORM_STATS_PATH).is_file()
    table = pq.read_table(meta.episode_path(1))
    assert table.num_rows == meta.episodes[1].length == report["frames"] - meta.episodes[0].length
    state = np.array(table.column(STATE_KEY).to_pylist())
    assert state.shape == (table.num_rows, 8)
    assert table.column("index").to_pylist()[0] == meta.episodes[0].length
    np.testing.assert_allclose(table.column("timestamp").to_numpy(), np.arange(table.num_rows) / 20, atol=1e-6)
    scenes = [SceneState.from_json(text) for text in table.column(SCENE_KEY).to_pylist()]
    assert scenes[0].phase == "approach" and not scenes[0].gripper_closed
    np.testing.assert_allclose(state[:, :3], [s.gripper_position for s in scenes], atol=1e-6)

    with pytest.raises(ValueError, match="no usable frames|reasoning"):
        CotDataset(out, image_size=IMAGE_SIZE)  # no reasoning column yet: the annotator adds it


@pytest.mark.sim
def test_annotated_demonstrations_train_a_checkpoint_the_engine_runs(demos: tuple[Path, dict], tiny_checkpoint: Path,
                                                                     tmp_path: Path) -> None:
    out, report = demos
    annotate([str(out), str(tmp_path / "cot")])  # exits 2 on a refusal
    dataset = CotDataset(tmp_path / "cot", image_size=IMAGE_SIZE)
    assert len(dataset) + dataset.report.bad_rows == report["frames"] and len(dataset) > report["frames"] // 2
    assert "black bowl" in dataset[0].reasoning and dataset[0].reasoning.rstrip().endswith(".")

    # A child process, as a user runs it: an in-process run would leave its process group to later test modules.
    sft = tmp_path / "sft"
    overrides = {"dataset": tmp_path / "cot", "init_checkpoint": tiny_checkpoint, "output_dir": sft,
                 "deepspeed": REPO / "config/train/zero2.json", "micro_batch_size": 2, "max_steps": 5, "save_every": 5}
    args = [sys.executable, "-m", "dtvla_training.sft.train", "--config", str(REPO / "config/train/tiny.yaml")]
    for key, value in overrides.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")}
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert [r["step"] for r in read_metrics(sft)] == [1, 2, 3, 4, 5]
    engine = PolicyEngine.from_checkpoint(sft / "checkpoints/step_00000005", decode=DecodeConfig(max_cot_tokens=4))
    sample = dataset[len(dataset) // 2]
    for mode in ("masked", "full"):
        prediction = engine.predict(sample.agentview, sample.wrist, sample.task, mode=mode)
        assert prediction.actions.shape == (10, 7) and np.all(np.isfinite(prediction.actions))


@pytest.mark.sim
def test_failed_demonstrations_are_dropped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["--suite", "libero_spatial", "--tasks", "0", "--init-states", "0", "--max-steps", "3",
                 "--image-size", str(IMAGE_SIZE), "--workers", "1", "--out", str(tmp_path / "demos")])
    assert code == 2
    assert "no demonstration succeeded (1 attempted, all dropped)" in capsys.readouterr().err
    assert not (tmp_path / "demos").exists()
    record = json.loads((tmp_path / ".demos.parts" / "episodes.jsonl").read_text())
    assert (record["outcome"], record["steps"], record["success"]) == ("timeout", 3, False)


@pytest.mark.parametrize(
    ("tasks", "inits", "per_task", "message"),
    [("0-10", "0", None, "--tasks"), ("0", "0-50", None, "--init-states"), ("0", "0-3", 5, "--episodes-per-task")],
)
def test_bad_plans_are_refused(tasks: str, inits: str, per_task: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_jobs("libero_spatial", tasks, inits, per_task)


def test_plan_takes_the_first_init_states_of_each_task() -> None:
    assert plan_jobs("libero_spatial", "1,3", "4-9", 2) == [(1, 4), (1, 5), (3, 4), (3, 5)]
