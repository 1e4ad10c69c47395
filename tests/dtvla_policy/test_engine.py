"""PolicyEngine behaviour: modes, outputs, bad input, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dtvla_policy.inference.engine import DecodeConfig, Mode
from tests.fixtures.checkpoints import camera_image

TASK = "pick up the black bowl and place it on the plate"


@pytest.mark.parametrize("mode", [m.value for m in Mode])
def test_every_mode_returns_a_finite_chunk(tiny_engine, mode):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode=mode)
    assert prediction.actions.shape == (10, 7) and prediction.actions.dtype == np.float32
    assert np.all(np.isfinite(prediction.actions))
    assert prediction.action_tokens.shape == (70,)
    assert np.all(tiny_engine.codec.is_action_token(prediction.action_tokens))
    assert prediction.mode == mode
    assert prediction.timings["total_ms"] > 0 and prediction.timings["action_ms"] > 0
    if mode in ("full", "sample"):
        assert "prefill_ms" in prediction.timings and "cot_ms" in prediction.timings


def test_unnormalised_actions_follow_the_norm_stats(tiny_engine):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode="masked")
    norm = tiny_engine.ckpt.normalizer
    assert np.all(prediction.actions[:, :6] >= norm.q01[:6] - 1e-5)
    assert np.all(prediction.actions[:, :6] <= norm.q99[:6] + 1e-5)
    assert np.all(np.abs(prediction.actions[:, 6]) <= 1.0)  # gripper stays raw in [-1, 1]


def test_cot_cap_closes_the_thought_and_flags_it(tiny_engine, caplog):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "full", DecodeConfig(max_cot_tokens=4))
    assert prediction.cot_truncated  # a random model never writes </think><action> on its own
    assert prediction.cot_tokens == 4
    assert "max_cot_tokens=4" in caplog.text
    assert np.all(np.isfinite(prediction.actions))


def test_sample_mode_returns_log_probs_and_is_seeded(tiny_engine):
    config = DecodeConfig(max_cot_tokens=5, seed=3)
    a = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "sample", config)
    b = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "sample", config)
    assert a.action_logprobs.shape == (70,) and np.all(a.action_logprobs <= 0)
    assert a.cot_logprobs.shape == (a.cot_tokens + 2,)  # CoT tokens, </think>, <action>
    np.testing.assert_array_equal(a.action_tokens, b.action_tokens)
    assert a.cot_token_ids == b.cot_token_ids


def test_random_mode_uses_128_random_tokens(tiny_engine):
    prediction = tiny_engine.predict(camera_image(0), camera_image(1), TASK, "random", DecodeConfig(seed=1))
    assert prediction.cot_tokens == 128


@pytest.mark.parametrize(
    ("agentview", "message"),
    [
        (np.zeros((224, 224), np.uint8), "HxWx3"),
        (np.zeros((224, 224, 4), np.uint8), "HxWx3"),
        (np.zeros((224, 224, 3), np.float32), "uint8"),
        (np.zeros((1, 224, 3), np.uint8), "too small"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_images_are_refused(tiny_engine, agentview, message):
    with pytest.raises(ValueError, match=message):
        tiny_engine.predict(agentview, camera_image(1), TASK)


@pytest.mark.parametrize(("task", "message"), [("", "empty"), ("   ", "empty"), ("x" * 600, "more than")])
def test_bad_tasks_are_refused(tiny_engine, task, message):
    with pytest.raises(ValueError, match=message):
        tiny_engine.predict(camera_image(0), camera_image(1), task)


def test_unknown_mode_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        tiny_engine.predict(camera_image(0), camera_image(1), TASK, mode="fast")


def test_bad_decode_config_is_refused():
    with pytest.raises(ValueError, match="temperatures"):
        DecodeConfig(cot_temperature=0)
    with pytest.raises(ValueError, match="max_cot_tokens"):
        DecodeConfig(max_cot_tokens=-1)


def test_infer_cli_prints_json(tiny_checkpoint, tmp_path):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    Image.fromarray(camera_image(1, 128)[:, :, 0]).save(tmp_path / "w.png")  # greyscale file: converted
    out = subprocess.run(
        [sys.executable, "-m", "dtvla_policy.inference.cli", "--checkpoint", str(tiny_checkpoint),
         "--agentview", str(tmp_path / "a.png"), "--wrist", str(tmp_path / "w.png"), "--task", TASK,
         "--mode", "full", "--max-cot-tokens", "3"],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(out.stdout)
    assert np.array(result["actions"]).shape == (10, 7)
    assert result["cot_tokens"] == 3 and result["cot_truncated"] is True
    assert {"vision", "prefill", "cot", "action", "total"} <= set(result["timings_ms"])


def test_infer_cli_reports_a_bad_checkpoint(tmp_path):
    Image.fromarray(camera_image(0)).save(tmp_path / "a.png")
    out = subprocess.run(
        [sys.executable, "-m", "dtvla_policy.inference.cli", "--checkpoint", str(tmp_path / "nope"),
         "--agentview", str(tmp_path / "a.png"), "--wrist", str(tmp_path / "a.png"), "--task", TASK],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "does not exist" in out.stderr
