"""Training checkpoints (SFT and GRPO): policy-loadable directories that also carry what an exact resume needs.

  <output_dir>/checkpoints/
    latest                      name of the newest complete checkpoint (written last, atomically)
    step_00010000/              loadable by `dtvla_policy.model.checkpoint.load_checkpoint` / `dtvla-infer`
      config.json, model.safetensors, tokenizer files, norm_stats.json (copied from the dataset)
      trainer_state.json        step (GRPO: iteration), data position, batch geometry, last metrics, replica
                                fingerprints
      train_config.yaml         the run's resolved config
      train_state/              DeepSpeed engine state (ZeRO shards: weights, optimizer, lr scheduler) and one
                                rng_rank<R>.pt per rank; dropped from older checkpoints (`keep_train_states`)

A checkpoint is written into a hidden temp directory by all ranks and renamed into place by rank 0 (a shared
filesystem is assumed, as for any multi-node DeepSpeed checkpoint), so a killed run never leaves a half-written
`step_*` directory and `latest` always names a complete one. Ship `step_*` without `train_state/` to a robot.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from dtvla_policy.atomic_directory import share_files
from dtvla_policy.atomic_file import write_json, write_text
from dtvla_policy.model.checkpoint import NORM_STATS_FILE, check_tokenizer
from dtvla_policy.model.conventions import TokenIds
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_training.sft.config import ConfigError

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
TRAIN_STATE_DIR = "train_state"
TRAINER_STATE_FILE = "trainer_state.json"
TRAIN_CONFIG_FILE = "train_config.yaml"
DEEPSPEED_TAG = "engine"  # DeepSpeed's sub-directory inside train_state/
# trainer_state.json entries a resume reads: the data position and the batch geometry it is valid for.
RESUME_KEYS = ("step", "epoch", "samples_into_epoch", "world_size", "micro_batch_size", "grad_accum_steps", "seed",
               "dataset_size")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


@dataclass(frozen=True)
class InitFiles:
    """What a run needs from its starting checkpoint before the weights: model config and tokenizer."""

    model_config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase
    token_ids: TokenIds


def load_init_files(path: Path) -> InitFiles:
    """config.json and the tokenizer, checked against each other; the weights are only checked to exist.

    Cheap, so the trainer reads them (and refuses a bad checkpoint with ConfigError) before the process group
    exists. Unlike `load_checkpoint` this does not require norm_stats.json: a base checkpoint (e.g. converted
    from pi0-FAST) has none, and the run's stats come from the dataset anyway.
    """
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; is it a DeepThinkVLA checkpoint directory?")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path} has no *.safetensors weights; only safetensors are loaded")
    try:
        model_config = DeepThinkVLA.config_class.from_pretrained(path, local_files_only=True)
        ids = TokenIds.from_config(model_config)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        check_tokenizer(tokenizer, ids, path)
    except (OSError, ValueError, TypeError) as err:  # transformers reports a broken JSON file as OSError
        raise ConfigError(f"init checkpoint {path} is unusable: {err} (config key 'init_checkpoint')") from None
    return InitFiles(model_config=model_config, tokenizer=tokenizer, token_ids=ids)


def load_init_weights(path: Path, files: InitFiles) -> DeepThinkVLA:
    """The starting weights in fp32 (DeepSpeed keeps fp32 masters and casts for bf16 itself)."""
    return DeepThinkVLA.from_pretrained(
        path, config=files.model_config, local_files_only=True, use_safetensors=True, dtype=torch.float32,
        trust_remote_code=False,
    )


def replica_fingerprint(model: torch.nn.Module) -> float:
    """A float64 checksum of every parameter: equal on all ranks iff the replicas hold the same weights."""
    total = torch.zeros((), dtype=torch.float64)
    for index, param in enumerate(model.parameters(), start=1):
        total += index * param.detach().double().sum().cpu()  # position-weighted: a swap of tensors shows
    return float(total)


def gather_fingerprints(model: torch.nn.Module) -> list[float]:
    """Every rank's fingerprint (collective: all ranks must call)."""
    mine = replica_fingerprint(model)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return [float(v) for v in gathered]


def rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and plain values (loadable with weights_only=True: no pickled objects)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _replace_dir(tmp: Path, final: Path) -> None:
    """Atomically move `tmp` to `final`; an existing `final` (from a run that got further before it was
    killed) is moved aside first and deleted after."""
    stale = None
    if final.exists():
        stale = final.with_name(f".{final.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
    os.replace(tmp, final)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    engine: Any,
    model: DeepThinkVLA,
    tokenizer: PreTrainedTokenizerBase,
    norm_stats: Path,
    output_dir: Path,
    step: int,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    keep_train_states: int,
) -> Path:
    """Write step `step` (collective: every rank calls it). Returns the final directory."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    root = output_dir / CHECKPOINTS_DIR
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.tmp"
    fingerprints = gather_fingerprints(model)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(f"model replicas diverged at step {step}: fingerprints per rank {fingerprints}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        os.chmod(tmp, 0o755)
    _barrier()
    engine.save_checkpoint(str(tmp / TRAIN_STATE_DIR), tag=DEEPSPEED_TAG, save_latest=False)
    torch.save(rng_state(), tmp / TRAIN_STATE_DIR / f"rng_rank{rank}.pt")
    if rank == 0:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(norm_stats, tmp / NORM_STATS_FILE)
        state = {**trainer_state, "replica_fingerprints": fingerprints}
        write_json(tmp / TRAINER_STATE_FILE, state)  # fsynced before the directory is renamed into place
        write_text(tmp / TRAIN_CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        share_files(tmp, recursive=False)  # the deployable files (model.safetensors is written 0600)
    _barrier()  # every rank's shards are on disk
    if rank == 0:
        _replace_dir(tmp, final)
        write_text(root / LATEST_FILE, final.name + "\n")
        prune_train_states(root, keep_train_states)
    _barrier()
    return final


def prune_train_states(root: Path, keep: int) -> None:
    """Drop `train_state/` from all but the newest `keep` checkpoints (0 keeps all); weights stay."""
    if keep == 0:
        return
    steps = sorted(p for p in root.glob("step_*") if (p / TRAIN_STATE_DIR).is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old / TRAIN_STATE_DIR, ignore_errors=True)
        log.info("removed the optimizer state of %s (keep_train_states=%d)", old.name, keep)


def existing_checkpoints(output_dir: Path) -> list[Path]:
    return sorted((output_dir / CHECKPOINTS_DIR).glob("step_*"))


def resolve_resume_dir(output_dir: Path, resume: str | Path, keys: tuple[str, ...] = RESUME_KEYS) -> Path:
    """`resume` is "latest" (the newest complete checkpoint of `output_dir`) or a `step_*` directory; its
    trainer_state.json must hold `keys` (the trainer's resume keys)."""
    if str(resume) == LATEST_FILE:
        latest = output_dir / CHECKPOINTS_DIR / LATEST_FILE
        if not latest.is_file():
            raise FileNotFoundError(f"nothing to resume: {latest} does not exist; start without --resume")
        step_dir = latest.parent / latest.read_text().strip()
    else:
        step_dir = Path(resume).expanduser().resolve()
    if not (step_dir / TRAINER_STATE_FILE).is_file():
        raise FileNotFoundError(f"{step_dir} is not a training checkpoint (no {TRAINER_STATE_FILE})")
    if not (step_dir / TRAIN_STATE_DIR).is_dir():
        raise FileNotFoundError(
            f"{step_dir} has no {TRAIN_STATE_DIR}/ (pruned by keep_train_states); resume from a newer checkpoint"
        )
    read_trainer_state(step_dir, keys)  # a damaged state file is refused now, not after the model is up
    return step_dir


def read_trainer_state(step_dir: Path, keys: tuple[str, ...] = RESUME_KEYS) -> dict[str, Any]:
    """trainer_state.json of a checkpoint; ConfigError naming the file when it lacks one of `keys`."""
    path = step_dir / TRAINER_STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} cannot be read ({err}); resume from another step_* directory") from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ConfigError(f"{path} lacks {missing}; resume from another step_* directory")
    return state


def load_train_state(engine: Any, step_dir: Path, keys: tuple[str, ...] = RESUME_KEYS) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler into `engine` and this rank's RNGs; returns trainer_state."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    load_path, _ = engine.load_checkpoint(
        str(step_dir / TRAIN_STATE_DIR), tag=DEEPSPEED_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise FileNotFoundError(f"DeepSpeed found no engine state under {step_dir / TRAIN_STATE_DIR}")
    rng_file = step_dir / TRAIN_STATE_DIR / f"rng_rank{rank}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} is missing; was the checkpoint written with fewer processes?")
    set_rng_state(torch.load(rng_file, weights_only=True))
    return read_trainer_state(step_dir, keys)
