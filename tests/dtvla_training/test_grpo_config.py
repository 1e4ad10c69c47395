"""GRPO configuration: every default is upstream's, config/train/grpo.yaml says the same, bad values are refused
with the key named; the prompt stream is deterministic, split over ranks and resumable."""

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from dtvla_training.grpo.config import GrpoConfig
from dtvla_training.grpo.rollout import Prompt, PromptSampler, step_seed
from dtvla_training.grpo.train import parse_args
from dtvla_training.sft.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
GRPO_YAML = REPO / "config/train/grpo.yaml"

# upstream scripts/run_deepthinkvla_rl.sh and the veRL fork's defaults (../shared/reference/upstream.md section 5)
UPSTREAM = {
    "suite": "libero_10", "init_states": "0-49", "prompts_per_iteration": 64, "group_size": 8, "max_steps": 480,
    "settle_steps": 10, "execute_steps": 10, "camera_size": 256, "max_cot_tokens": 300, "cot_temperature": 1.0,
    "action_temperature": 1.6, "success_reward": 1.0, "format_reward": 0.4, "filter_groups": True,
    "filter_low": 0.1, "filter_high": 0.9, "ppo_epochs": 2, "mini_batch_size": 128, "slice_steps": 8,
    "clip_low": 0.2, "clip_high": 0.28, "clip_c": 3.0, "loss_agg_mode": "seq-mean-token-sum", "kl_coef": 0.0,
    "old_logprobs": "recompute", "lr_llm": 2e-6, "lr_vision": 2e-6, "lr_projector": 2e-6, "min_lr_ratio": 0.1,
    "warmup_iterations": 0, "max_iterations": 700, "betas": (0.9, 0.999), "weight_decay": 0.01,
    "no_decay_norms_and_biases": False, "grad_clip": 1.0, "seed": 429, "save_every": 4,
}


def minimal(tmp_path: Path, **extra) -> GrpoConfig:
    return GrpoConfig(init_checkpoint=tmp_path / "ckpt", output_dir=tmp_path / "out", **extra)


def test_defaults_are_upstreams(tmp_path):
    config = minimal(tmp_path)
    assert {key: getattr(config, key) for key in UPSTREAM} == UPSTREAM
    assert config.task_ids == tuple(range(10)) and config.init_state_ids == tuple(range(50))
    assert config.decode.deviations() == {"max_cot_tokens": 300}  # the RL cap: the eval's is 2048
    assert config.protocol.settle_steps == 10 and config.trajectories_per_iteration == 512


def test_the_shipped_yaml_holds_the_defaults(tmp_path):
    values = yaml.safe_load(GRPO_YAML.read_text())
    config = load_config(GRPO_YAML, {"init_checkpoint": str(tmp_path)}, GrpoConfig)
    defaults = minimal(tmp_path)
    differing = [f.name for f in fields(GrpoConfig) if f.name not in ("init_checkpoint", "output_dir", "deepspeed")
                 and getattr(config, f.name) != getattr(defaults, f.name)]
    assert differing == []
    assert set(values) == {f.name for f in fields(GrpoConfig)} - {"init_checkpoint"}  # every key documented


def test_init_is_the_init_checkpoint_and_every_key_is_a_flag(tmp_path):
    args, overrides = parse_args(["--config", str(GRPO_YAML), "--init", "/ckpt", "--group-size", "4",
                                  "--loss-agg-mode", "token-mean", "--tasks", "3", "--crash-after-iteration", "2"])
    config = load_config(args.config, overrides, GrpoConfig)
    assert (str(config.init_checkpoint), config.group_size, config.loss_agg_mode, config.task_ids) == (
        "/ckpt", 4, "token-mean", (3,))
    assert args.crash_after == 2


@pytest.mark.parametrize(("values", "message"), [
    ({"loss_agg_mode": "token-sum"}, "unknown loss_agg_mode 'token-sum'"),
    ({"filter_low": 0.5, "filter_high": 0.4}, r"filter bounds must satisfy"),
    ({"clip_c": 1.0}, r"clip_c \(dual clip\) must be > 1"),
    ({"old_logprobs": "cached"}, "old_logprobs must be one of"),
    ({"mini_batch_size": 100}, "do not split into mini-batches of 100"),
    ({"suite": "libero_11"}, "Did you mean 'libero_10'"),
    ({"tasks": "0-12"}, "0-12 is not within 0..9"),
    ({"group_size": 0}, "group_size must be > 0"),
])
def test_bad_values_are_refused_naming_them(tmp_path, values, message):
    with pytest.raises(ConfigError, match=message):
        minimal(tmp_path, **values)


def test_batch_sizes_must_split_over_the_ranks(tmp_path):
    config = minimal(tmp_path, prompts_per_iteration=6, mini_batch_size=16)
    config.check_world(2)
    with pytest.raises(ConfigError, match="prompts_per_iteration 6 does not split over 4 processes"):
        config.check_world(4)


PROMPTS = [Prompt(task, init) for task in range(3) for init in range(4)]


def test_prompt_stream_is_seeded_split_over_ranks_and_resumable():
    ranks = [PromptSampler(PROMPTS, seed=429, rank=r, world_size=2) for r in range(2)]
    first_epoch = [ranks[r].take(6) for r in range(2)]
    assert sorted(first_epoch[0] + first_epoch[1], key=lambda p: (p.task, p.init_state)) == PROMPTS  # a partition
    assert first_epoch[0] == PromptSampler(PROMPTS, seed=429, rank=0, world_size=2).take(6)  # seeded
    assert first_epoch[0] != PromptSampler(PROMPTS, seed=430, rank=0, world_size=2).take(6)
    sampler = PromptSampler(PROMPTS, seed=429, rank=0, world_size=1)
    sampler.take(10)
    state = sampler.state()
    assert state == {"epoch": 0, "position": 10}
    expected = sampler.take(5)  # crosses into epoch 1
    assert sampler.state() == {"epoch": 1, "position": 3}
    resumed = PromptSampler(PROMPTS, seed=429, rank=0, world_size=1)
    resumed.load_state(state)
    assert resumed.take(5) == expected
    with pytest.raises(ValueError, match="3 prompts cannot be shared by 4 processes"):
        PromptSampler(PROMPTS[:3], seed=0, rank=0, world_size=4)


def test_step_seeds_depend_on_where_the_step_is_only():
    assert step_seed(429, 0, 3, 5, 20) == step_seed(429, 0, 3, 5, 20)
    seeds = {step_seed(429, rank, it, rollout, step) for rank in (0, 1) for it in (0, 1) for rollout in (0, 1)
             for step in (0, 10)}
    assert len(seeds) == 16
