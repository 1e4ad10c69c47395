"""GRPO arithmetic: group-normalised advantages, the clipped PPO token loss, the k3 KL and loss aggregation.

Pure tensor functions, mirroring upstream's veRL fork (OpenBMB/DeepThinkVLA `src/verl/trainer/ppo/core_algos.py`
`compute_grpo_outcome_advantage`, `compute_policy_loss`, `kl_penalty`, `agg_loss`, and the slice loop of
`src/verl/workers/actor/rob_actor.py` `update_policy`); the trainer feeds them one trajectory at a time.
Every token of a trajectory, CoT and action alike, is one entry of the flat per-token tensors below.
"""

from __future__ import annotations

from enum import StrEnum

import torch

ADVANTAGE_EPS = 1e-6  # upstream's epsilon in (R - mean) / (std + eps)
KL_CLAMP = 10.0  # upstream clamps the k3 estimate to [-10, 10]


class LossAggMode(StrEnum):
    """How one trajectory's token losses become its loss (the trainer then averages trajectories).

    seq-mean-token-sum   upstream's default as its code computes it: the trajectory is processed in slices of
                         `slice_steps` replanning steps and each slice's token sum is weighted by the slice's share
                         of the trajectory's valid tokens, sum_s (S_s * n_s / N); with one slice this is the plain
                         token sum. Trajectories are averaged.
    token-mean           veRL's token-mean: the mean over every valid token of the mini-batch (all ranks), so long
                         trajectories weigh more. Not what upstream's slice loop makes of it (that is the next mode).
    seq-mean-token-mean  each trajectory's token mean, averaged over trajectories: what upstream's loop computes when
                         set to token-mean (its n_s / N weights turn slice means into the trajectory mean).
    """

    SEQ_MEAN_TOKEN_SUM = "seq-mean-token-sum"
    TOKEN_MEAN = "token-mean"
    SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"


def group_advantages(rewards: torch.Tensor, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """(groups, G) trajectory rewards -> (groups, G) advantages (R - group mean) / (group std + eps).

    The std is torch's unbiased one, as upstream's; a group of one keeps its reward (mean 0, std 1, as upstream).
    A group whose rewards are all equal gets zero advantages: it teaches nothing (dynamic filtering drops such
    groups by their success rate).
    """
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (groups, group_size), got shape {tuple(rewards.shape)}")
    rewards = rewards.double()
    if rewards.shape[1] == 1:
        return (rewards / (1.0 + eps)).float()
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return ((rewards - mean) / (std + eps)).float()


def ppo_token_losses(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_low: float = 0.2,
    clip_high: float = 0.28, clip_c: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token clipped policy-gradient losses with asymmetric clipping and the dual clip for A < 0.

    All inputs share one shape. ratio = exp(logp - old_logp);
      loss = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))     (A >= 0)
      loss = min(that, -A * clip_c)                                              (A < 0: the dual clip)
    Returns (loss, clipped, dual_clipped): `clipped` where the clipped term won (upstream's pg_clipfrac), and
    `dual_clipped` where the dual clip bounded a negative-advantage token (upstream's pg_clipfrac_lower).
    """
    if clip_c <= 1.0:
        raise ValueError(f"the dual-clip constant must be > 1, got {clip_c}")
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped_term = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pessimistic = torch.maximum(unclipped, clipped_term)
    bound = -advantages * clip_c
    negative = advantages < 0
    loss = torch.where(negative, torch.minimum(bound, pessimistic), pessimistic)
    return loss, clipped_term > unclipped, (pessimistic > bound) & negative


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1, clamped to +-10
    (upstream's `low_var_kl`; Schulman, "Approximating KL divergence", 2020)."""
    log_ratio = ref_logp - logp
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1.0, -KL_CLAMP, KL_CLAMP)


def aggregate(
    token_loss: torch.Tensor, mask: torch.Tensor, slices: torch.Tensor, mode: LossAggMode,
    token_mean_scale: float | None = None,
) -> torch.Tensor:
    """One trajectory's loss from its (T,) token losses, (T,) bool validity mask and (T,) slice index per token.

    Invalid tokens (after the episode's end, forced by the CoT cap) contribute nothing, even when their loss is
    not finite. `token_mean_scale` (token-mean only) = trajectories / valid tokens of the whole mini-batch on all
    ranks, so that the trainer's mean over trajectories gives the mean over tokens.
    """
    kept = torch.where(mask, token_loss, torch.zeros_like(token_loss))
    total = kept.sum()
    count = mask.sum().clamp_min(1).to(kept.dtype)
    if mode is LossAggMode.SEQ_MEAN_TOKEN_SUM:
        n_slices = int(slices.max()) + 1 if slices.numel() else 1
        sums = torch.zeros(n_slices, dtype=kept.dtype, device=kept.device).index_add(0, slices, kept)
        counts = torch.zeros(n_slices, dtype=kept.dtype, device=kept.device).index_add(0, slices, mask.to(kept.dtype))
        return (sums * counts).sum() / count
    if mode is LossAggMode.SEQ_MEAN_TOKEN_MEAN:
        return total / count
    if token_mean_scale is None:
        raise ValueError("token-mean needs token_mean_scale (trajectories / valid tokens of the mini-batch)")
    return total * token_mean_scale
