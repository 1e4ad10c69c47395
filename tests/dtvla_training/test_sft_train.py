"""SFT end to end on CPU with the tiny checkpoint and the synthetic dataset, through the real reader and DeepSpeed:
the loss falls, checkpoints load in the inference engine, a killed run resumes exactly (torn metrics line and all),
two gloo processes stay in step, decode-time fallbacks are counted over workers and ranks, bad inputs are refused
before the process group and the model, and a NaN loss stops the run naming the step."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from dtvla_policy.atomic_directory import current_umask
from dtvla_policy.inference.engine import DecodeConfig, PolicyEngine
from dtvla_policy.model.checkpoint import NORM_STATS_FILE, load_checkpoint
from dtvla_training.data.lerobot_dataset import AGENTVIEW_KEY, CotDataset
from dtvla_training.sft.checkpoint_io import LATEST_FILE, TRAIN_STATE_DIR, TRAINER_STATE_FILE
from dtvla_training.sft.collate import SftCollator
from dtvla_training.sft.config import ConfigError, load_config
from dtvla_training.sft.metrics import read_metrics
from dtvla_training.sft.objective import SftObjective
from dtvla_training.sft.sampling import ResumableDistributedSampler
from dtvla_training.sft.train import DATA_REPORT_FILE, NonFiniteLossError, SftTrainer, train
from tests.fixtures.datasets import copy_dataset, set_cell, truncated_jpeg

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "config/train/tiny.yaml"
ZERO2 = REPO / "config/train/zero2.json"
STEPS = 24
# Set by in-process runs in this pytest process; a child must pick its own rendezvous.
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


def overrides(dataset: Path, checkpoint: Path, output_dir: Path, **extra) -> dict:
    """config/train/tiny.yaml pointed at the fixtures, with small micro-batches."""
    return {"dataset": str(dataset), "init_checkpoint": str(checkpoint), "output_dir": str(output_dir),
            "deepspeed": str(ZERO2), "micro_batch_size": 2, **extra}


def cli(values: dict) -> list[str]:
    """The same overrides as command-line flags (JSON is YAML, which the flags are parsed as)."""
    args = ["--config", str(TINY_YAML)]
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", json.dumps(value)]
    return args


def child_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in DIST_ENV}


def losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records}


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tiny_checkpoint, tmp_path_factory):
    """24 steps in this process (one DataLoader worker), checkpoints at 12 and 24."""
    out = tmp_path_factory.mktemp("sft") / "run"
    config = load_config(TINY_YAML, overrides(tiny_dataset, tiny_checkpoint, out, max_steps=STEPS, save_every=12,
                                              num_workers=1))
    return train(config)


def test_loss_falls_over_a_couple_dozen_steps(tiny_run):
    records = tiny_run.records
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    curve = [r["loss"] for r in records]
    print("loss curve:", ", ".join(f"{r['step']}: {r['loss']:.3f}" for r in records))
    assert np.all(np.isfinite(curve))
    assert np.mean(curve[-4:]) < np.mean(curve[:4]) - 1.0, curve
    last = records[-1]
    assert 0.0 <= last["action_accuracy"] <= 1.0 and 0.0 <= last["action_l1"] <= 2.0
    assert last["tokens_per_s"] > 0 and last["samples_per_s"] > 0 and last["grad_norm"] > 0
    assert last["lr_llm"] == pytest.approx(3e-4)  # the cosine ends at min_lr


def test_checkpoint_loads_in_the_engine_and_predicts_a_chunk(tiny_run, tiny_dataset):
    engine = PolicyEngine.from_checkpoint(tiny_run.checkpoint, decode=DecodeConfig(max_cot_tokens=4))
    sample = CotDataset(tiny_dataset, image_size=56)[5]
    for mode in ("masked", "full"):
        prediction = engine.predict(sample.agentview, sample.wrist, sample.task, mode=mode)
        assert prediction.actions.shape == (10, 7) and np.all(np.isfinite(prediction.actions))
    trained = dict(tiny_run.model.named_parameters())
    for name, param in engine.model.named_parameters():
        torch.testing.assert_close(param, trained[name].detach(), rtol=0, atol=0)
    assert (tiny_run.checkpoint / NORM_STATS_FILE).read_text() == (tiny_dataset / "meta/norm_stats.json").read_text()


def test_checkpoint_directory_layout(tiny_run):
    root = tiny_run.checkpoint.parent
    assert tiny_run.checkpoint.name == "step_00000024"
    assert (root / LATEST_FILE).read_text().strip() == "step_00000024"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000012", "step_00000024"]  # no temp dirs
    assert (tiny_run.checkpoint / TRAIN_STATE_DIR / "rng_rank0.pt").is_file()
    assert not (root / "step_00000012" / TRAIN_STATE_DIR).exists()  # keep_train_states: 1
    load_checkpoint(root / "step_00000012")  # older checkpoints stay policy-loadable
    weights = tiny_run.checkpoint / "model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~current_umask()  # safetensors alone writes 0600
    out = root.parent
    assert len(read_metrics(out)) == STEPS and any((out / "tensorboard").iterdir())
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] == STEPS


def test_a_second_run_into_the_same_output_dir_needs_resume(tiny_run):
    config = load_config(TINY_YAML, yaml.safe_load((tiny_run.checkpoint.parent.parent / "config.yaml").read_text()))
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        SftTrainer(config)


def test_objective_loss_equals_hybrid_forward_with_labels(tiny_checkpoint, tiny_dataset):
    ckpt = load_checkpoint(tiny_checkpoint)
    dataset = CotDataset(tiny_dataset, image_size=ckpt.image_size)
    collator = SftCollator(ckpt.tokenizer, ckpt.token_ids, ckpt.normalizer, ckpt.image_size, ckpt.tokens_per_image)
    batch = collator([dataset[0], dataset[40], dataset[75]])
    with torch.no_grad():
        ours = SftObjective(ckpt.model)(batch.input_ids, batch.segments, batch.labels, batch.pixel_values)
        features = ckpt.model.encode_images(batch.pixel_values)
        reference = ckpt.model.hybrid_forward(batch.input_ids, batch.segments, features, labels=batch.labels).loss
    torch.testing.assert_close(ours.loss, reference, rtol=1e-5, atol=1e-5)
    assert ours.stats[2] == 3 * 70  # action targets counted: 70 per sample


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_checkpoint, tiny_dataset, tmp_path):
    broken = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nan_ckpt"))
    weights = load_file(broken / "model.safetensors")
    weights["model.multi_modal_projector.linear.weight"][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    config = load_config(TINY_YAML, overrides(tiny_dataset, broken, tmp_path / "out", max_steps=3))
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 1 \(micro-batch 1 of 1\)"):
        train(config)


def test_killed_run_resumes_with_the_same_losses_as_an_uninterrupted_one(tiny_dataset, tiny_checkpoint, tmp_path):
    # Augmentation and reasoning dropout on: their draws must repeat after the resume too.
    common = dict(max_steps=6, save_every=3, augment=True, reasoning_dropout=0.3)
    reference = train(load_config(TINY_YAML, overrides(tiny_dataset, tiny_checkpoint, tmp_path / "ref", **common)))

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "dtvla_training.sft.train", *cli(overrides(tiny_dataset, tiny_checkpoint, out,
                                                                              **common))]
    # Killed after step 5: past the step-3 checkpoint, with two steps' metrics the resume must drop.
    killed = subprocess.run(args + ["--crash-after-step", "5"], env=child_env(), capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert (out / "checkpoints" / LATEST_FILE).read_text().strip() == "step_00000003"
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4, 5]
    with (out / "metrics.jsonl").open("a") as metrics:  # a kill in the middle of appending step 6's record
        metrics.write('{"step": 6, "epoch": 0, "lo')

    resumed = subprocess.run(args + ["--resume"], env=child_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "at step 3" in resumed.stderr
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # the killed run's records past step 3 are dropped
    expected, got = losses(reference.records), losses(records)
    for step in (4, 5, 6):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=0), (step, got, expected)
    final = load_file(out / "checkpoints/step_00000006/model.safetensors")
    for name, tensor in load_file(reference.checkpoint / "model.safetensors").items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-6, atol=1e-7)


def with_torn_images(tiny_dataset: Path, root: Path) -> Path:
    """A copy of the dataset whose episode 0 and 1 agentview images are torn JPEGs: they pass the index scan and
    fail to decode, so every read of those frames falls back to the next frame at training time."""
    root = copy_dataset(tiny_dataset, root)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # header << body: cut in the body
    torn = {"bytes": truncated_jpeg(noise), "path": "torn.jpg"}
    for episode in (0, 1):
        for row in range(24):
            set_cell(root, episode, AGENTVIEW_KEY, row, torn)
    return root


def expected_fallbacks(root: Path, world_size: int, samples_per_rank: int, seed: int = 429) -> int:
    """Fallbacks of the samples the ranks consume first, read here in the order the trainer's sampler gives."""
    dataset = CotDataset(root, image_size=56)
    assert dataset.report.bad_images == 0  # the scan cannot see the damage: only decoding finds it
    total = 0
    for rank in range(world_size):
        keys = list(ResumableDistributedSampler(dataset, world_size, rank, seed=seed))[:samples_per_rank]
        total += sum(dataset[index].fallbacks for _, index in keys)
    return total


def test_decode_fallbacks_in_dataloader_workers_reach_the_metrics_and_the_data_report(tiny_dataset, tiny_checkpoint,
                                                                                      tmp_path):
    root = with_torn_images(tiny_dataset, tmp_path / "ds")
    out = tmp_path / "run"
    result = train(load_config(TINY_YAML, overrides(root, tiny_checkpoint, out, max_steps=3, save_every=2,
                                                     num_workers=2)))
    expected = expected_fallbacks(root, world_size=1, samples_per_rank=3 * 2)
    assert expected > 0
    assert sum(r["load_fallbacks"] for r in result.records) == result.records[-1]["load_fallbacks_total"] == expected
    report = json.loads((out / DATA_REPORT_FILE).read_text())
    assert report["load_fallbacks"] == expected and report["through_step"] == 3
    assert json.loads((result.checkpoint / TRAINER_STATE_FILE).read_text())["load_fallbacks"] == expected


def test_two_gloo_processes_take_identical_optimizer_steps(tiny_dataset, tiny_checkpoint, tmp_path):
    out = tmp_path / "two"
    root = with_torn_images(tiny_dataset, tmp_path / "ds")  # fallbacks on both ranks: their sum is reported
    values = overrides(root, tiny_checkpoint, out, max_steps=2, save_every=2, micro_batch_size=1,
                       grad_accum_steps=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dtvla_training.sft.train", *cli(values)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    step_dir = out / "checkpoints/step_00000002"
    state = json.loads((step_dir / TRAINER_STATE_FILE).read_text())
    assert state["world_size"] == 2 and state["step"] == 2
    assert len(state["replica_fingerprints"]) == 2 and len(set(state["replica_fingerprints"])) == 1
    assert len(list((step_dir / TRAIN_STATE_DIR).glob("engine/zero_pp_rank_*_optim_states.pt"))) == 2
    before = load_file(tiny_checkpoint / "model.safetensors")
    after = load_file(step_dir / "model.safetensors")
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before), "every parameter should have moved after two AdamW steps"
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    expected = expected_fallbacks(root, world_size=2, samples_per_rank=2 * 2)
    assert expected > 0 and state["load_fallbacks"] == expected
    assert json.loads((out / DATA_REPORT_FILE).read_text())["load_fallbacks"] == expected


def refusal(args: list[str]) -> str:
    """Run the trainer CLI; it must exit 2 with one error line and no traceback. Returns that line."""
    done = subprocess.run([sys.executable, "-m", "dtvla_training.sft.train", *args], env=child_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [line] = [line for line in done.stderr.splitlines() if line.startswith("dtvla-train-sft: error: ")]
    return line


def _bad_info_json(root: Path, out: Path) -> None:
    (root / "meta/info.json").write_text('{"codebase_version": "v2.1", "features": {')


def _norm_stats_not_a_dict(root: Path, out: Path) -> None:
    (root / "meta/norm_stats.json").write_text("[1, 2, 3]")


def _no_usable_frame(root: Path, out: Path) -> None:
    for path in (root / "data").rglob("*.parquet"):
        path.unlink()


def _output_dir_is_a_file(root: Path, out: Path) -> None:
    out.write_text("not a directory")


def _torn_trainer_state(root: Path, out: Path) -> None:
    step = out / "checkpoints/step_00000003"
    (step / TRAIN_STATE_DIR).mkdir(parents=True)
    (step / TRAINER_STATE_FILE).write_text('{"step": 3, "epo')
    (out / "checkpoints" / LATEST_FILE).write_text("step_00000003\n")


@pytest.mark.parametrize(("damage", "message"), [
    (_bad_info_json, "meta/info.json is not valid JSON"),
    (_norm_stats_not_a_dict, "norm_stats.json are unusable"),
    (_no_usable_frame, "has no usable frames"),
    (_output_dir_is_a_file, "is a file, not a directory"),
    (_torn_trainer_state, "trainer_state.json cannot be read"),
])
def test_bad_input_is_refused_before_the_process_group_and_the_model(tiny_dataset, tiny_checkpoint, tmp_path, damage,
                                                                     message):
    root = copy_dataset(tiny_dataset, tmp_path / "ds")
    # Weights that cannot load: had the model been loaded before the data was checked, that would be the error.
    checkpoint = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    (checkpoint / "model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "out"
    damage(root, out)
    resume = ["--resume"] if damage is _torn_trainer_state else []
    assert message in refusal(cli(overrides(root, checkpoint, out, max_steps=2)) + resume)
