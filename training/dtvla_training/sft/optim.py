"""Parameter groups, AdamW and the learning-rate schedule of upstream SFT (`src/sft/sft_trainer.py`).

Three learning rates (LLM, vision tower, projector), each split into a decayed and a non-decayed group: like
upstream (HF `get_parameter_names(model, ALL_LAYERNORM_LAYERS)`), biases and `nn.LayerNorm` weights get no weight
decay; Gemma's RMSNorm weights are not LayerNorms and do.

Schedule (upstream `get_cosine_with_min_lr_schedule_with_warmup_align_jax`, i.e. openpi's JAX schedule): one
factor multiplies every group's lr. It rises linearly from 1 / (warmup + 1) to 1 over `warmup_steps`, then
follows a cosine down to min_lr / lr_llm at `max_steps`. The floor is a ratio, so the vision and projector groups
end at 0.1x their own lr (with the upstream numbers), not at min_lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from dtvla_training.sft.config import SftConfig

VISION_KEY = "vision_tower"  # upstream's name filters
PROJECTOR_KEY = "multi_modal_projector"


def group_of(name: str) -> str:
    """Parameter name -> "llm", "vision" or "projector"."""
    if PROJECTOR_KEY in name:
        return "projector"
    if VISION_KEY in name:
        return "vision"
    return "llm"


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of biases and LayerNorm parameters (upstream exempts them from weight decay)."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, nn.LayerNorm) or param_name == "bias":
                names.add(full)
    return names


def param_groups(model: nn.Module, config: SftConfig, exempt_norms_and_biases: bool = True) -> list[dict]:
    """Up to six AdamW groups (three lrs x decay / no decay); each carries a "name" for logging.

    `config` is any config with lr_llm, lr_vision, lr_projector and weight_decay (SFT's or GRPO's). Without
    `exempt_norms_and_biases` every parameter is decayed (upstream's GRPO optimiser)."""
    lrs = {"llm": config.lr_llm, "vision": config.lr_vision, "projector": config.lr_projector}
    exempt = no_decay_names(model) if exempt_norms_and_biases else set()
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            buckets.setdefault((group_of(name), name not in exempt), []).append(param)
    groups = []
    for (group, decay), params in sorted(buckets.items(), key=lambda kv: (list(lrs).index(kv[0][0]), not kv[0][1])):
        groups.append({
            "name": group if decay else f"{group}_no_decay",
            "params": params,
            "lr": lrs[group],
            "weight_decay": config.weight_decay if decay else 0.0,
        })
    return groups


def make_optimizer(model: nn.Module, config: SftConfig, exempt_norms_and_biases: bool = True) -> torch.optim.AdamW:
    """Plain torch AdamW (no DeepSpeed fused/CPU Adam: those JIT-compile C++ ops)."""
    return torch.optim.AdamW(param_groups(model, config, exempt_norms_and_biases), betas=config.betas, eps=config.eps)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Multiplier of every group's lr after `step` optimizer steps."""
    if step < warmup_steps:
        start = 1.0 / (warmup_steps + 1)
        return start + (1.0 - start) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(config: SftConfig) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LambdaLR]:
    """The scheduler factory `deepspeed.initialize(lr_scheduler=...)` calls with the (wrapped) optimizer."""
    min_ratio = config.min_lr / config.lr_llm

    def factor(step: int) -> float:
        return lr_factor(step, config.warmup_steps, config.max_steps, min_ratio)

    def build(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return build
