import json

import numpy as np
import pytest

from dtvla_policy.model.normalizer import QuantileNormalizer

Q01 = np.array([-0.5, -0.4, -0.3, -0.1, -0.2, -0.3, -1.0])
Q99 = np.array([0.5, 0.6, 0.7, 0.1, 0.2, 0.3, 1.0])


def test_normalize_hand_values_and_gripper_passthrough():
    norm = QuantileNormalizer(Q01, Q99)
    raw = np.array([0.5, -0.4, 0.2, 0.0, 1.0, -1.0, 0.7])
    out = norm.normalize(raw)
    # 2 (x - q01) / (q99 - q01 + 1e-8) - 1, clipped to [-1, 1]; gripper (dim 6) untouched
    assert out[0] == pytest.approx(1.0, abs=1e-7)
    assert out[1] == pytest.approx(-1.0)
    assert out[2] == pytest.approx(2 * 0.5 / 1.0 - 1, abs=1e-6)
    assert out[3] == pytest.approx(0.0, abs=1e-6)
    assert out[4] == 1.0 and out[5] == -1.0  # clipped
    assert out[6] == 0.7


def test_round_trip_inside_the_quantiles():
    norm = QuantileNormalizer(Q01, Q99)
    raw = np.random.default_rng(0).uniform(Q01, Q99, (100, 7))
    back = norm.unnormalize(norm.normalize(raw))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, raw, atol=1e-6)


def test_from_json_accepts_upstream_and_openpi_layouts(tmp_path):
    for layout in ({"action": {"q01": Q01.tolist(), "q99": Q99.tolist(), "mean": [0] * 7}},
                   {"norm_stats": {"actions": {"q01": Q01.tolist(), "q99": Q99.tolist()}}}):
        path = tmp_path / "norm_stats.json"
        path.write_text(json.dumps(layout))
        norm = QuantileNormalizer.from_json(path)
        np.testing.assert_array_equal(norm.q01, Q01)


@pytest.mark.parametrize(
    ("stats", "message"),
    [
        ({"action": {"q01": [0.0] * 6 + [float("nan")], "q99": [1.0] * 7}}, "non-finite"),
        ({"action": {"q01": [0.0] * 7, "q99": [float("inf")] * 7}}, "non-finite"),
        ({"action": {"q01": [0.0] * 6, "q99": [1.0] * 6}}, "7 values"),
        ({"action": {"q01": [1.0] * 7, "q99": [0.0] * 7}}, "q99 < q01"),
        ({"action": {"mean": [0.0] * 7}}, "lacks"),
        ({"state": {}}, "no 'action' entry"),
        ([0.1, 0.2], "must be a JSON object .* got a list"),
        ("q01", "must be a JSON object .* got a str"),
        ({"norm_stats": [1]}, "'norm_stats' entry must be a JSON object"),
        ({"action": {"q01": [-1e308] * 7, "q99": [1e308] * 7}}, "overflows float64"),
        ({"action": {"q01": [{"a": 1}] * 7, "q99": [1.0] * 7}}, "lists of 7 numbers"),
    ],
)
def test_bad_stats_are_refused(tmp_path, stats, message):
    path = tmp_path / "norm_stats.json"
    path.write_text(json.dumps(stats))
    with pytest.raises(ValueError, match=message):
        QuantileNormalizer.from_json(path)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta/norm_stats.json"):
        QuantileNormalizer.from_json(tmp_path / "norm_stats.json")


def test_constant_dims_are_warned_about_at_load(tmp_path, caplog):
    q01 = [0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0]
    q99 = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, -1.0]  # dims 1 and 5 constant; the gripper is not normalised
    path = tmp_path / "norm_stats.json"
    path.write_text(json.dumps({"action": {"q01": q01, "q99": q99}}))
    QuantileNormalizer.from_json(path)
    assert "q01 == q99 on normalised action dim(s) [1, 5] (eef_dy, eef_drz)" in caplog.text
