"""SFT config (YAML, overrides, refusals), the DeepSpeed JSON filling, parameter groups and the lr schedule."""

import json
from pathlib import Path

import pytest
import yaml
from torch import nn

from dtvla_training.sft.config import ConfigError, SftConfig, load_config
from dtvla_training.sft.optim import lr_factor, make_optimizer, make_scheduler, param_groups
from dtvla_training.sft.train import deepspeed_config, main, parse_args

REPO = Path(__file__).resolve().parents[2]
SFT_YAML = REPO / "config/train/sft.yaml"
TINY_YAML = REPO / "config/train/tiny.yaml"
DEMO_YAML = REPO / "config/train/demo.yaml"
ZERO2 = REPO / "config/train/zero2.json"


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def minimal(tmp_path: Path, **extra) -> dict:
    return {"dataset": str(tmp_path / "data"), "init_checkpoint": str(tmp_path / "ckpt"),
            "output_dir": str(tmp_path / "out"), "deepspeed": str(ZERO2), **extra}


def test_shipped_config_is_the_upstream_recipe():
    config = load_config(SFT_YAML)
    assert (config.lr_llm, config.lr_vision, config.lr_projector, config.min_lr) == (2.5e-5, 5e-6, 2.5e-6, 2.5e-6)
    assert (config.betas, config.eps, config.weight_decay, config.grad_clip) == ((0.9, 0.95), 1e-8, 1e-10, 1.0)
    assert (config.warmup_steps, config.max_steps, config.micro_batch_size, config.grad_accum_steps) == (
        1000, 150_005, 8, 2)
    assert (config.seed, config.save_every, config.bf16) == (429, 10_000, "auto")
    assert config.deepspeed == ZERO2 or config.deepspeed.name == "zero2.json"
    assert config.norm_stats_path == config.dataset / "meta/norm_stats.json"
    assert load_config(TINY_YAML).max_steps > 0  # the test/trial config parses too


def test_demo_config_departs_from_upstream_only_where_it_says():
    demo, upstream = load_config(DEMO_YAML), load_config(SFT_YAML)
    assert demo.lr_llm == demo.lr_vision == demo.lr_projector == 10 * demo.min_lr  # one rate: random-init groups
    assert (demo.bf16, demo.grad_accum_steps, demo.micro_batch_size) == (False, 1, upstream.micro_batch_size)
    assert (demo.augment, upstream.augment) == (False, True)  # off for a random-init model: see demo.yaml
    same = ("betas", "eps", "weight_decay", "grad_clip", "seed", "reasoning_dropout", "deepspeed")
    assert {k: getattr(demo, k) for k in same} == {k: getattr(upstream, k) for k in same}


def test_overrides_win_and_numbers_written_as_text_parse(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", minimal(tmp_path, eps="1e-8", lr_llm="3e-4"))
    config = load_config(path, {"max_steps": 7, "betas": [0.8, 0.9]})
    assert (config.max_steps, config.betas, config.eps, config.lr_llm) == (7, (0.8, 0.9), 1e-8, 3e-4)
    assert config.output_dir.is_absolute()


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", minimal(tmp_path, lr_lm=1e-4, max_step=3))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "'lr_lm' (did you mean 'lr_llm'?), 'max_step' (did you mean 'max_steps'?)" in str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("max_steps", 0, "max_steps must be > 0"),
    ("max_steps", 2.5, "'max_steps' must be an integer"),
    ("augment", "yes", "'augment' must be true or false"),
    ("reasoning_dropout", 1.5, r"reasoning_dropout must be in \[0, 1\]"),
    ("min_lr", 1.0, "min_lr 1.0 is larger than lr_llm"),
    ("bf16", "maybe", "'bf16' must be true, false or auto"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path / "c.yaml", minimal(tmp_path, **{key: value})))


def test_missing_required_key(tmp_path):
    values = minimal(tmp_path)
    del values["dataset"]
    with pytest.raises(ConfigError, match="missing required key"):
        load_config(write_yaml(tmp_path / "c.yaml", values))


def test_missing_dataset_is_refused_before_training(tmp_path, capsys):
    path = write_yaml(tmp_path / "c.yaml", minimal(tmp_path))
    with pytest.raises(FileNotFoundError, match="dataset directory .* does not exist"):
        load_config(path).check_inputs()
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path)])
    assert exit_info.value.code == 2  # a refusal, as every CLI's
    assert "dataset directory" in capsys.readouterr().err


def test_every_config_key_is_a_flag(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", minimal(tmp_path))
    args, overrides = parse_args(["--config", str(path), "--max-steps", "12", "--lr-vision", "1e-6", "--bf16", "true",
                                  "--betas", "[0.8, 0.99]", "--resume", "--local_rank", "3"])
    config = load_config(args.config, overrides)
    assert (config.max_steps, config.lr_vision, config.bf16, config.betas) == (12, 1e-6, True, (0.8, 0.99))
    assert args.resume == "latest" and args.local_rank == 3


def test_deepspeed_auto_entries_are_filled_and_contradictions_refused(tmp_path):
    config = SftConfig(**{**{k: Path(v) for k, v in minimal(tmp_path).items()}, "grad_accum_steps": 3})
    ds = deepspeed_config(config, world_size=4, bf16=True)
    assert ds["train_batch_size"] == 8 * 3 * 4 and ds["gradient_accumulation_steps"] == 3
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    assert ds["zero_optimization"]["stage"] == 2
    for patch, message in [({"gradient_accumulation_steps": 5}, "implies 3"),
                           ({"optimizer": {"type": "AdamW"}}, "has a 'optimizer' section")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**json.loads(ZERO2.read_text()), **patch}))
        with pytest.raises(ConfigError, match=message):
            deepspeed_config(SftConfig(**{**config.__dict__, "deepspeed": bad}), world_size=4, bf16=True)


class _Toy(nn.Module):
    """Names like PaliGemma's: vision tower (with LayerNorm), projector, language model."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.ModuleDict({
            "vision_tower": nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)),
            "multi_modal_projector": nn.Linear(2, 2),
            "language_model": nn.Linear(2, 2, bias=False),
        })


def test_three_learning_rates_and_no_decay_on_biases_and_layernorms(tmp_path):
    config = SftConfig(**{k: Path(v) for k, v in minimal(tmp_path).items()})
    groups = {g["name"]: g for g in param_groups(_Toy(), config)}
    assert set(groups) == {"llm", "vision", "vision_no_decay", "projector", "projector_no_decay"}
    assert groups["llm"]["lr"] == 2.5e-5 and groups["vision"]["lr"] == 5e-6 and groups["projector"]["lr"] == 2.5e-6
    assert groups["vision"]["weight_decay"] == 1e-10 and groups["vision_no_decay"]["weight_decay"] == 0.0
    assert len(groups["vision"]["params"]) == 1 and len(groups["vision_no_decay"]["params"]) == 3  # bias, LN w+b
    assert make_optimizer(_Toy(), config).defaults["betas"] == (0.9, 0.95)


def test_schedule_is_jax_style_warmup_then_cosine_to_the_floor_ratio(tmp_path):
    assert lr_factor(0, 1000, 150_005, 0.1) == pytest.approx(1 / 1001)
    assert lr_factor(500, 1000, 150_005, 0.1) == pytest.approx(1 / 1001 + (1 - 1 / 1001) * 0.5)
    assert lr_factor(1000, 1000, 150_005, 0.1) == pytest.approx(1.0)
    assert lr_factor(150_005, 1000, 150_005, 0.1) == pytest.approx(0.1)
    factors = [lr_factor(s, 1000, 150_005, 0.1) for s in range(1000, 150_006, 5000)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    config = SftConfig(**{k: Path(v) for k, v in minimal(tmp_path).items()})
    optimizer = make_optimizer(_Toy(), config)
    scheduler = make_scheduler(config)(optimizer)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["vision"] == pytest.approx(5e-6 / 1001)
    for _ in range(1000):
        optimizer.step()
        scheduler.step()
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["llm"] == pytest.approx(2.5e-5)
