"""SFT configuration: one frozen dataclass, loaded from YAML (`config/train/sft.yaml`) plus command-line overrides.

Defaults are upstream's recipe (OpenBMB/DeepThinkVLA `scripts/finetune.sh`, `src/configs/sft_params.py`,
`src/sft/sft_trainer.py`; digest in ../shared/reference/upstream.md section 4). Relative paths are resolved
against the current directory, as every launcher starts ranks there. Unknown keys are refused with a
"did you mean"; inputs that do not exist are refused by `check_inputs` before any process group or model exists.
The loading functions take the config class, so the GRPO config (`dtvla_training.grpo.config`) loads the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dtvla_training.data.lerobot_dataset import NORM_STATS_PATH


class ConfigError(ValueError):
    """A config file or override that cannot describe a training run."""


@dataclass(frozen=True)
class SftConfig:
    """One SFT run. Learning rates are per parameter group; the schedule counts optimizer steps."""

    dataset: Path  # LeRobot v2.1 CoT dataset directory (local; never fetched from the hub)
    init_checkpoint: Path  # checkpoint directory to start from: a released/base checkpoint or a tiny one
    output_dir: Path  # checkpoints/, metrics.jsonl, tensorboard/, config.yaml
    norm_stats: Path | None = None  # None: <dataset>/meta/norm_stats.json (`dtvla-norm-stats DATASET` writes it)
    augment: bool = True  # upstream agentview augmentation (crop, rotation, colour jitter)
    scan_images: bool = True  # decode-check every image while indexing; false starts big datasets faster
    reasoning_dropout: float = 0.0  # probability of an empty <think></think> (upstream default 0)
    max_reasoning_tokens: int = 512  # longer reasoning is truncated (engine's default CoT budget)
    num_workers: int = 8  # DataLoader worker processes per rank (upstream 32)

    max_steps: int = 150_005  # optimizer steps (upstream)
    micro_batch_size: int = 8  # samples per process per forward (upstream per_device_train_batch_size)
    grad_accum_steps: int = 2  # micro-batches per optimizer step
    lr_llm: float = 2.5e-5  # Gemma decoder + LM head (upstream learning_rate)
    lr_vision: float = 5e-6  # SigLIP tower (upstream vision_lr)
    lr_projector: float = 2.5e-6  # multi-modal projector (upstream merger_lr)
    min_lr: float = 2.5e-6  # cosine floor, as a fraction min_lr / lr_llm of every group's lr (upstream)
    warmup_steps: int = 1000  # linear warmup from lr / (warmup + 1), JAX/openpi style
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 1e-10  # not applied to biases and LayerNorm weights (upstream)
    grad_clip: float = 1.0  # max global gradient norm
    bf16: bool | str = "auto"  # "auto": bf16 on GPUs that support it, fp32 on CPU (bf16 matmuls are slow there)
    deepspeed: Path = Path("config/train/zero2.json")  # DeepSpeed JSON; "auto" entries are filled from this config
    seed: int = 429  # data order, augmentation and dropout draws

    log_every: int = 10  # optimizer steps per metrics record (JSONL, TensorBoard, progress bar)
    save_every: int = 10_000  # optimizer steps per checkpoint; the last step is always saved
    keep_train_states: int = 2  # newest checkpoints that keep their optimizer state (resumable); 0 = all

    def __post_init__(self) -> None:
        positive = ("max_steps", "micro_batch_size", "grad_accum_steps", "log_every", "save_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("num_workers", "warmup_steps", "max_reasoning_tokens", "keep_train_states"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr_llm", "lr_vision", "lr_projector", "min_lr", "eps", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_llm <= 0:
            raise ConfigError(f"lr_llm must be > 0 (the schedule is expressed relative to it), got {self.lr_llm}")
        if self.min_lr > self.lr_llm:
            raise ConfigError(f"min_lr {self.min_lr} is larger than lr_llm {self.lr_llm}")
        if not 0.0 <= self.reasoning_dropout <= 1.0:
            raise ConfigError(f"reasoning_dropout must be in [0, 1], got {self.reasoning_dropout}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.bf16 not in (True, False, "auto"):
            raise ConfigError(f"bf16 must be true, false or auto, got {self.bf16!r}")

    @property
    def norm_stats_path(self) -> Path:
        return self.norm_stats if self.norm_stats is not None else self.dataset / NORM_STATS_PATH

    @property
    def samples_per_step(self) -> int:
        """Samples per optimizer step on one process (times the world size for the global batch)."""
        return self.micro_batch_size * self.grad_accum_steps

    def check_inputs(self) -> None:
        """Refuse a run whose inputs are missing or whose output directory cannot be written, before anything
        expensive starts (the trainer then checks the contents of those files, still before the process group)."""
        if not self.dataset.is_dir():
            raise FileNotFoundError(f"dataset directory {self.dataset} does not exist (config key 'dataset')")
        if not self.init_checkpoint.is_dir():
            raise FileNotFoundError(
                f"init checkpoint {self.init_checkpoint} does not exist (config key 'init_checkpoint'); "
                "`dtvla-tiny-checkpoint DIR` writes a random-init one for trials"
            )
        if not self.norm_stats_path.is_file():
            raise FileNotFoundError(
                f"no norm stats at {self.norm_stats_path}; run `dtvla-norm-stats {self.dataset}` "
                "or set 'norm_stats' in the config"
            )
        check_run_files(self.deepspeed, self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return plain_values(self)


def check_run_files(deepspeed: Path, output_dir: Path) -> None:
    """Refuse a missing DeepSpeed JSON, or an output directory that is a file or cannot be written."""
    if not deepspeed.is_file():
        raise FileNotFoundError(f"DeepSpeed config {deepspeed} does not exist (config key 'deepspeed')")
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir {output_dir} is a file, not a directory; choose another output_dir")
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {output_dir} cannot be written ({existing} is not writable); "
                          "choose another output_dir")


def plain_values(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-ready values (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out


def field_names(cls: type = SftConfig) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(values: dict[str, Any], source: str = "config", cls: type = SftConfig) -> Any:
    """Build a `cls` config from plain values (YAML types); unknown or missing keys raise `ConfigError`."""
    known = field_names(cls)
    unknown = [key for key in values if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"{source}: unknown key(s) {', '.join(hints)}; known keys: {', '.join(known)}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [key for key in required if values.get(key) is None]
    if missing:
        raise ConfigError(f"{source}: missing required key(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: _coerce(key, value, hints[key], source) for key, value in values.items()})


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, cls: type = SftConfig) -> Any:
    """YAML mapping at `path`, then `overrides` (e.g. from the command line) on top, as a `cls` config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(values).__name__}")
    return from_dict({**values, **(overrides or {})}, source=str(path), cls=cls)


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """YAML value -> the field's type, or a `ConfigError` naming the key, the value and the expected type."""
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: '{name}' must be {expected}, got {value!r}")

    if hint in (Path, Path | None):
        if value is None and hint == Path | None:
            return None
        if not isinstance(value, str | Path) or not str(value):
            raise fail("a path")
        return Path(value).expanduser().resolve()
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is str:
        if not isinstance(value, str | int) or isinstance(value, bool):  # YAML reads `tasks: 3` as an integer
            raise fail("a string")
        return str(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        # PyYAML reads "1e-8" (no dot) as a string: accept any number written as text.
        if isinstance(value, bool):
            raise fail("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if hint == tuple[float, float]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise fail("a list of two numbers")
        return tuple(_coerce(name, v, float, source) for v in value)
    if hint == bool | str:
        if value == "auto" or isinstance(value, bool):
            return value
        raise fail("true, false or auto")
    raise TypeError(f"no coercion for config field {name} of type {hint}")
