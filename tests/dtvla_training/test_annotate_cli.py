"""End to end: `dtvla-annotate` on a small recorded-demos dataset -> the SFT reader loads the output."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dtvla_policy.lerobot_layout import SCENE_KEY
from dtvla_policy.model.tiny_checkpoint import build_tokenizer
from dtvla_training.annotate.cli import main
from dtvla_training.annotate.report import REPORT_JSON, REPORT_MARKDOWN, REVIEW_QUEUE
from dtvla_training.data.lerobot_dataset import INFO_FILE, NORM_STATS_PATH, REASONING_KEY, CotDataset
from dtvla_training.data.synthetic import ROW_GROUP_ROWS, SHORT_EPISODE_FRAMES, write_synthetic_dataset
from tests.fixtures.chat_server import ChatServer
from tests.fixtures.datasets import episode_file, read_episode
from tests.fixtures.demo_episodes import (
    DONE_FRAME,
    GRASP_FRAME,
    LENGTH,
    RELEASE_FRAME,
    phase_start,
    pick_and_place,
    regrasp_phases,
)

REGRASP_EPISODE = 1
FRAMES = 2 * LENGTH + SHORT_EPISODE_FRAMES


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """3 recorded pick-and-place episodes (the last cut after 6 frames, episode 1 with a re-grasp), images from the
    synthetic writer, a scene column and no reasoning: what `dtvla-collect-demos` writes."""
    root = write_synthetic_dataset(tmp_path_factory.mktemp("demos") / "demos", episodes=3,
                                   frames_per_episode=LENGTH, image_size=16)
    for episode in range(3):
        table = read_episode(root, episode).drop_columns([REASONING_KEY])
        actions, scenes = pick_and_place(regrasp_phases() if episode == REGRASP_EPISODE else None)
        n = table.num_rows
        recorded = pa.FixedSizeListArray.from_arrays(pa.array(actions[:n].ravel(), pa.float32()), 7)
        table = table.set_column(table.column_names.index("action"), "action", recorded)
        table = table.append_column(SCENE_KEY, [[s.to_json() for s in scenes[:n]]])
        pq.write_table(table, episode_file(root, episode), row_group_size=ROW_GROUP_ROWS)
    info = json.loads((root / INFO_FILE).read_text())
    del info["features"][REASONING_KEY]
    info["features"][SCENE_KEY] = {"dtype": "string", "shape": [1], "names": None}
    (root / INFO_FILE).write_text(json.dumps(info))
    return root


def test_privileged_annotations_reach_the_sft_reader(demos, tmp_path, capsys):
    tokenizer = tmp_path / "tokenizer"
    build_tokenizer().save_pretrained(tokenizer)
    out = tmp_path / "cot"
    main([str(demos), str(out), "--tokenizer", str(tokenizer)])
    assert "failed the checks" in capsys.readouterr().out

    report = json.loads((out / REPORT_JSON).read_text())
    summary = report["summary"]
    assert (summary["episodes"], summary["frames"], summary["frames_failed"]) == (3, FRAMES, 4)
    assert report["settings"]["length_unit"] == "tokens"
    regressions = [(f["episode_index"], f["frame_index"]) for f in report["failing_frames"]]
    lift = phase_start("lift")
    assert regressions == [(REGRASP_EPISODE, frame) for frame in range(lift + 2, lift + 6)]
    assert f"| {REGRASP_EPISODE} | {lift + 2}-{lift + 5} | phase_regression |" in (out / REPORT_MARKDOWN).read_text()
    assert len((out / REVIEW_QUEUE).read_text().splitlines()) == 4
    assert report["episodes"][0]["segments"] == [[0, GRASP_FRAME], [GRASP_FRAME, RELEASE_FRAME],
                                                 [RELEASE_FRAME, DONE_FRAME], [DONE_FRAME, LENGTH]]
    assert "q01" in json.loads((out / NORM_STATS_PATH).read_text())["action"]

    dataset = CotDataset(out, scan_images=False)
    assert len(dataset) == FRAMES - 4  # the failing frames' reasoning is null: skipped, counted
    assert dataset.report.bad_rows == 4
    first = dataset[0]
    assert (first.episode_index, first.frame_index) == (0, 0)
    assert first.reasoning == ("The gripper (center, front) is open; the black bowl (center) is away from the plate "
                               "(right). Sub-goal 1 of 4: reach the black bowl. Move the gripper above the black bowl.")
    assert dataset[LENGTH - 1].reasoning.endswith("Finish: the black bowl is on the plate.")
    assert pq.read_table(episode_file(out, 2)).column(REASONING_KEY).null_count == 0


def test_vlm_key_frames_propagated_and_rerun_from_the_cache(demos, tmp_path, monkeypatch):
    monkeypatch.setenv("DTVLA_VLM_CACHE", str(tmp_path / "cache"))
    with ChatServer() as server:
        server.script = [500]
        args = ["--annotator", "propagate", "--key-frame-annotator", "vlm", "--vlm-url", server.url,
                "--vlm-model", "test-vlm", "--vlm-backoff", "0.01", "--review-key-frames"]
        main([str(demos), str(tmp_path / "first"), *args])
        key_frames = json.loads((tmp_path / "first" / REPORT_JSON).read_text())["summary"]["key_frames"]
        assert len(server.requests) == key_frames + 1  # one retry
        main([str(demos), str(tmp_path / "second"), *args])
        assert len(server.requests) == key_frames + 1  # the rerun asked nothing

    report = json.loads((tmp_path / "second" / REPORT_JSON).read_text())
    assert report["summary"]["frames_failed"] == 0
    assert report["summary"]["annotator_stats"] == {"requests": 0, "retries": 0, "cache_hits": key_frames}
    queue = [json.loads(line) for line in (tmp_path / "second" / REVIEW_QUEUE).read_text().splitlines()]
    assert len(queue) == key_frames and all(row["key_frame"] for row in queue)
    assert queue[0]["why"] == ["confidence 0.3 < 0.5", "key frame"]
    dataset = CotDataset(tmp_path / "second", scan_images=False)
    assert len(dataset) == FRAMES
    assert dataset[1].reasoning.endswith("This sub-task is about 10% done. Grasp the black bowl.")


def test_the_norm_stats_written_beside_the_data_take_the_outlier_setting(demos, tmp_path):
    main([str(demos), str(tmp_path / "cot"), "--outlier-iqr-multiple", "0"])
    stats = json.loads((tmp_path / "cot" / NORM_STATS_PATH).read_text())["action"]
    assert (stats["outlier_iqr_multiple"], stats["outliers"], stats["count"]) == (0.0, 0, FRAMES)
    assert json.loads((tmp_path / "cot" / REPORT_JSON).read_text())["settings"]["outlier_iqr_multiple"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    (["--annotator", "privileged"], "needs the 'observation.scene' column"),
    (["--annotator", "gpt"], "unknown annotator 'gpt'"),
    (["--annotator", "vlm", "--vlm-url", "ftp://x", "--vlm-model", "m"], "must start with http"),
    (["--max-length", "0"], "max_length must be >= 1"),
    (["--outlier-iqr-multiple", "-1"], "outlier_iqr_multiple must be >= 0"),
])
def test_bad_settings_exit_2_without_output(tiny_dataset, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny_dataset), str(tmp_path / "out"), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
