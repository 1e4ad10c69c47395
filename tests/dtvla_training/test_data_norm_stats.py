"""dtvla-norm-stats: values against numpy on the parquet data, NaN frames and outliers left out, format the
normaliser reads, and clean refusals of a bad dataset from the CLI."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from dtvla_policy.model.normalizer import QuantileNormalizer
from dtvla_training.data.norm_stats import compute_norm_stats, main, outlier_frames, write_norm_stats
from tests.fixtures.datasets import copy_dataset, read_episode, set_cell


def all_actions(root) -> np.ndarray:
    """(frames, 7) of every episode, a null row as NaN; float32 as stored, then float64 as the stats use."""
    rows = [[np.nan] * 7 if row is None else row
            for e in range(4) for row in read_episode(root, e).column("action").to_pylist()]
    return np.array(rows, dtype=np.float32).astype(np.float64)


def check_against_numpy(stats: dict, actions: np.ndarray) -> None:
    action = stats["action"]
    assert action["count"] == len(actions)
    for name, value in {"q01": np.quantile(actions, 0.01, axis=0), "q99": np.quantile(actions, 0.99, axis=0),
                        "mean": actions.mean(0), "std": actions.std(0), "min": actions.min(0),
                        "max": actions.max(0)}.items():
        np.testing.assert_allclose(action[name], value, rtol=1e-12, err_msg=name)
        assert len(action[name]) == 7


def test_stats_match_numpy_and_the_generator_wrote_them(tiny_dataset):
    stats = compute_norm_stats(tiny_dataset)
    check_against_numpy(stats, all_actions(tiny_dataset))
    assert stats["action"]["q01"][6] == -1.0 and stats["action"]["q99"][6] == 1.0  # gripper in {-1, +1}
    assert json.loads((tiny_dataset / "meta/norm_stats.json").read_text()) == stats
    normalizer = QuantileNormalizer.from_json(tiny_dataset / "meta/norm_stats.json")
    np.testing.assert_array_equal(normalizer.q01, stats["action"]["q01"])


def test_non_finite_frames_are_left_out(tiny_dataset, tmp_path, caplog):
    root = copy_dataset(tiny_dataset, tmp_path / "ds")
    set_cell(root, 1, "action", 4, [float("nan")] + [0.0] * 6)
    set_cell(root, 2, "action", 0, None, pa.list_(pa.float32()))
    actions = all_actions(root)
    check_against_numpy(compute_norm_stats(root), actions[np.isfinite(actions).all(1)])
    assert "2 frames with non-finite actions" in caplog.text


def test_cli_writes_atomically_to_meta_by_default_or_to_out(tiny_dataset, tmp_path, capsys):
    root = copy_dataset(tiny_dataset, tmp_path / "ds")
    (root / "meta/norm_stats.json").unlink()
    main([str(root)])
    assert QuantileNormalizer.from_json(root / "meta/norm_stats.json").q99.shape == (7,)
    assert sorted(p.name for p in (root / "meta").iterdir()) == [
        "episodes.jsonl", "info.json", "norm_stats.json", "tasks.jsonl"]  # no temp file left behind
    main([str(root), "--out", str(tmp_path / "out/stats.json")])
    assert json.loads((tmp_path / "out/stats.json").read_text()) == compute_norm_stats(root)
    assert "q01" in capsys.readouterr().out


def test_write_keeps_the_old_file_when_serialising_fails(tmp_path):
    path = write_norm_stats({"action": {"q01": [0.0]}}, tmp_path / "stats.json")
    with pytest.raises(TypeError):
        write_norm_stats({"action": {"q01": object()}}, path)
    assert json.loads(path.read_text()) == {"action": {"q01": [0.0]}} and len(list(tmp_path.iterdir())) == 1


def test_missing_dataset_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compute_norm_stats(tmp_path / "nowhere")


def test_an_outlier_frame_is_left_out_and_counted(tiny_dataset, tmp_path, caplog):
    root = copy_dataset(tiny_dataset, tmp_path / "ds")
    set_cell(root, 2, "action", 7, [1e30] + [0.0] * 6)  # one corrupt frame among 78
    actions = all_actions(root)
    stats = compute_norm_stats(root)
    assert stats["action"]["outliers"] == 1 and stats["action"]["outlier_iqr_multiple"] == 10.0
    check_against_numpy(stats, np.delete(actions, 2 * 24 + 7, axis=0))
    assert "left out 1 outlier frame(s) beyond median +- 10 x IQR; e.g. episode 2 frame 7" in caplog.text
    kept = compute_norm_stats(root, outlier_iqr_multiple=0)  # openpi's behaviour: the frame drives q99
    assert kept["action"]["outliers"] == 0 and kept["action"]["q99"][0] > 1e27


def test_outlier_rule_uses_the_1_99_range_where_the_iqr_is_zero():
    rng = np.random.default_rng(0)
    actions = np.column_stack([rng.normal(size=(200, 6)), np.where(np.arange(200) < 180, -1.0, 1.0)])
    assert not outlier_frames(actions, 10.0).any()  # a mostly-closed gripper: its open frames are not outliers
    actions[5, 6] = 50.0
    assert np.flatnonzero(outlier_frames(actions, 10.0)).tolist() == [5]
    assert not outlier_frames(actions, 0.0).any()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dtvla_training.data.norm_stats", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("damage", "message"), [
    ("torn_info", "meta/info.json is not valid JSON"),
    ("info_list", "meta/info.json holds a list, expected a JSON object"),
    ("no_features", "meta/info.json has no 'features'"),
    ("features_list", "'features' an object, got str and list"),
    ("no_dataset", "does not exist"),
])
def test_cli_refuses_a_bad_dataset_with_one_line(tiny_dataset, tmp_path, damage, message):
    root = copy_dataset(tiny_dataset, tmp_path / "ds")
    info = root / "meta/info.json"
    if damage == "torn_info":
        info.write_text(info.read_text()[:40])
    elif damage == "info_list":
        info.write_text("[]")
    elif damage == "no_features":
        info.write_text(json.dumps({k: v for k, v in json.loads(info.read_text()).items() if k != "features"}))
    elif damage == "features_list":
        info.write_text(json.dumps(json.loads(info.read_text()) | {"features": ["action"]}))
    done = run_cli(str(root if damage != "no_dataset" else tmp_path / "nowhere"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("dtvla-norm-stats: error: ") and message in line
    assert (root / "meta/norm_stats.json").read_text() == (tiny_dataset / "meta/norm_stats.json").read_text()
