"""dtvla-train-grpo end to end on CPU: the tag-prone tiny checkpoint (its format rewards vary, so advantages are not
all zero), libero_spatial task 0, 2 prompts x group 2, 12-step episodes, 2 env workers. Every run is a child
process (an in-process DeepSpeed run would leave its process group to later test modules).

An iteration changes the weights (weight decay off: only gradients move them) and writes a checkpoint the policy
engine loads; a run killed after iteration 1 resumes into the same iteration 2 as an uninterrupted one; two gloo
ranks keep identical weights; NaN weights stop the run naming the iteration; bad input is refused before the model.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dtvla_policy.inference.engine import PolicyEngine
from dtvla_training.sft.checkpoint_io import LATEST_FILE, TRAIN_STATE_DIR, TRAINER_STATE_FILE
from dtvla_training.sft.metrics import read_metrics
from tests.fixtures.checkpoints import camera_image

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "config/train/grpo_tiny.yaml"
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")
# Equal in an interrupted and an uninterrupted run: the rollouts' figures and the update's.
SAME_AFTER_RESUME = ("success_rate", "reward", "format_rate", "cot_tokens", "cot_truncated_rate", "env_steps",
                     "trajectories", "loss", "clip_fraction", "ppo_kl", "entropy_cot", "entropy_action", "grad_norm",
                     "lr")


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def grpo(checkpoint: Path, out: Path, *extra: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [sys.executable, *launcher, "-m", "dtvla_training.grpo.train", "--config", str(TINY_YAML),
               "--init", str(checkpoint), "--output-dir", str(out), "--max-steps", "12", "--weight-decay", "0",
               "--deepspeed", str(REPO / "config/train/zero2.json"), *extra]
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=900)


def failure(done: subprocess.CompletedProcess) -> str:
    return done.stdout[-3000:] + done.stderr[-5000:]


@pytest.fixture(scope="module")
def two_iterations(tag_prone_checkpoint, tmp_path_factory) -> Path:
    """The uninterrupted reference: 2 iterations, a checkpoint after each."""
    out = tmp_path_factory.mktemp("grpo") / "run"
    done = grpo(tag_prone_checkpoint, out)
    assert done.returncode == 0, failure(done)
    return out


def test_an_iteration_updates_the_weights_and_writes_a_policy_checkpoint(two_iterations, tag_prone_checkpoint):
    records = read_metrics(two_iterations)
    assert [r["step"] for r in records] == [1, 2]
    first = records[0]
    for key in ("success_rate", "reward", "format_rate", "cot_tokens", "clip_fraction", "ppo_kl", "entropy_cot",
                "entropy_action", "env_steps_per_s", "rollout_s", "learner_s", "rollout_share", "grad_norm"):
        assert isinstance(first[key], float), key
    assert first["rollouts"] == first["trajectories"] == 4 and first["env_steps"] == 4 * 12
    assert first["lr"] == pytest.approx(1e-4) and records[1]["lr"] == pytest.approx(1e-4 * 0.55)  # cosine to 0.1x
    assert 0 < first["rollout_s"] and 0 < first["learner_s"] and first["grad_norm"] > 0
    assert (two_iterations / "tensorboard").is_dir()

    step_dir = two_iterations / "checkpoints/step_00000001"
    state = json.loads((step_dir / TRAINER_STATE_FILE).read_text())
    assert state["step"] == 1 and state["samplers"] == [{"epoch": 1, "position": 0}]  # both prompts of epoch 0
    before = load_file(tag_prone_checkpoint / "model.safetensors")
    after = load_file(step_dir / "model.safetensors")
    moved = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(moved) > len(before) // 2, "gradients should have moved most tensors (weight decay is off)"

    engine = PolicyEngine.from_checkpoint(step_dir)  # what the policy node loads
    prediction = engine.predict(camera_image(0, 128), camera_image(1, 128), "put the bowl on the plate", "masked")
    assert prediction.actions.shape == (10, 7)
    assert (two_iterations / "checkpoints" / LATEST_FILE).read_text().strip() == "step_00000002"
    assert not (two_iterations / "checkpoints/step_00000001" / TRAIN_STATE_DIR).exists()  # keep_train_states 1


def test_a_run_killed_after_an_iteration_resumes_into_the_same_next_iteration(two_iterations, tag_prone_checkpoint,
                                                                              tmp_path):
    out = tmp_path / "killed"
    killed = grpo(tag_prone_checkpoint, out, "--crash-after-iteration", "1")
    assert killed.returncode == -signal.SIGKILL, failure(killed)
    assert (out / "checkpoints" / LATEST_FILE).read_text().strip() == "step_00000001"
    with (out / "metrics.jsonl").open("a") as metrics:  # killed while appending iteration 2's record
        metrics.write('{"step": 2, "success_ra')

    resumed = grpo(tag_prone_checkpoint, out, "--resume")
    assert resumed.returncode == 0, failure(resumed)
    assert "resumed from" in resumed.stderr and "at iteration 1" in resumed.stderr
    expected, got = read_metrics(two_iterations), read_metrics(out)
    assert [r["step"] for r in got] == [1, 2]
    for key in SAME_AFTER_RESUME:
        assert got[1][key] == pytest.approx(expected[1][key], rel=1e-5, abs=1e-9), key
    final = load_file(out / "checkpoints/step_00000002/model.safetensors")
    for name, tensor in load_file(two_iterations / "checkpoints/step_00000002/model.safetensors").items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-7)


def test_two_gloo_ranks_keep_identical_weights(tag_prone_checkpoint, tmp_path):
    """Also the options off the default path: token-mean (a token count over both ranks), the sampling log-probs
    as the ratio's denominator, and the k3 KL to a frozen reference."""
    out = tmp_path / "two"
    done = grpo(tag_prone_checkpoint, out, "--max-iterations", "1", "--env-workers", "1", "--loss-agg-mode",
                "token-mean", "--old-logprobs", "sampling", "--kl-coef", "0.1",
                launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert done.returncode == 0, failure(done)
    step_dir = out / "checkpoints/step_00000001"
    state = json.loads((step_dir / TRAINER_STATE_FILE).read_text())
    assert state["world_size"] == 2 and len(state["samplers"]) == 2
    assert len(state["replica_fingerprints"]) == 2 and len(set(state["replica_fingerprints"])) == 1
    [record] = read_metrics(out)
    assert record["rollouts"] == 4 and record["trajectories"] == 4  # one group of 2 per rank
    assert record["ref_kl"] >= 0 and record["entropy_cot"] > 0  # measured in the first epoch's forward passes
    before = load_file(tag_prone_checkpoint / "model.safetensors")
    after = load_file(step_dir / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_nan_weights_stop_the_run_naming_the_iteration(tiny_checkpoint, tmp_path):
    broken = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nan_ckpt"))
    weights = load_file(broken / "model.safetensors")
    weights["model.multi_modal_projector.linear.weight"][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    done = grpo(broken, tmp_path / "out", "--max-iterations", "1")
    assert done.returncode == 1, failure(done)
    assert "dtvla-train-grpo: error: the policy produced non-finite outputs in the rollouts of iteration 1" in (
        done.stderr)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("extra", "message"), [
    (("--loss-agg-mode", "sum"), "unknown loss_agg_mode 'sum'"),
    (("--mini-batch-size", "3"), "do not split into mini-batches of 3"),
])
def test_bad_input_is_refused_before_the_model(tiny_checkpoint, tmp_path, extra, message):
    done = grpo(tiny_checkpoint, tmp_path / "out", *extra)
    assert done.returncode == 2, failure(done)
    assert "dtvla-train-grpo: error: " in done.stderr and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_norm_stats_is_refused(tiny_checkpoint, tmp_path):
    bare = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bare"))
    (bare / "norm_stats.json").unlink()
    done = grpo(bare, tmp_path / "out")
    assert done.returncode == 2, failure(done)
    assert "has no norm_stats.json: GRPO starts from a policy checkpoint" in done.stderr
