"""`dtvla-collect-demos`: two real scripted demonstrations with both cameras -> a LeRobot v2.1 dataset that the
SFT reader indexes once a reasoning column is added (the annotator's job; the reader requires one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dtvla_sim_bridge.sim.scene import SceneState
from dtvla_training.data.lerobot_dataset import INFO_FILE, NORM_STATS_PATH, REASONING_KEY, CotDataset, DatasetMeta
from dtvla_training.demos.collect import (
    COLLECTION_FILE,
    SCENE_KEY,
    STATE_KEY,
    Collection,
    collect_demos,
    main,
    plan_jobs,
)

IMAGE_SIZE = 32


def add_reasoning(root: Path) -> None:
    """A stand-in for the annotator: one text per frame naming the phase, and its feature in info.json."""
    meta = DatasetMeta.load(root)
    for episode in meta.episodes:
        path = meta.episode_path(episode.index)
        table = pq.read_table(path)
        scenes = [SceneState.from_json(text) for text in table.column(SCENE_KEY).to_pylist()]
        texts = [f"Phase {s.phase}. Move the {s.target_object} to the {s.target_place}." for s in scenes]
        pq.write_table(table.append_column(REASONING_KEY, pa.array(texts, pa.string())), path)
    info = json.loads((root / INFO_FILE).read_text())
    info["features"][REASONING_KEY] = {"dtype": "string", "shape": [1], "names": None}
    (root / INFO_FILE).write_text(json.dumps(info))


@pytest.mark.sim
def test_two_demonstrations_make_a_dataset_the_reader_indexes(tmp_path: Path) -> None:
    out = tmp_path / "demos"
    collection = Collection(suite="libero_spatial", image_size=IMAGE_SIZE, max_steps=220, object_jitter_m=0.0)
    report = collect_demos(out, collection, plan_jobs("libero_spatial", "0", "0-1", None))
    assert (report["attempted"], report["episodes"], report["dropped"]) == (2, 2, 0)
    assert json.loads((out / COLLECTION_FILE).read_text()) == {k: v for k, v in report.items() if k != "dataset"}
    assert not (tmp_path / ".demos.parts").exists()

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
        CotDataset(out, image_size=IMAGE_SIZE)  # no reasoning column yet
    add_reasoning(out)
    dataset = CotDataset(out, image_size=IMAGE_SIZE)
    assert len(dataset) == report["frames"] and not dataset.report.has_problems
    sample = dataset[0]
    assert "Phase approach" in sample.reasoning


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
