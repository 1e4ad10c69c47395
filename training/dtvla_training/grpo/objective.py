"""The GRPO objective as an `nn.Module`, so DeepSpeed's engine forward computes one trajectory's loss.

A trajectory is scored in slices of `slice_steps` replanning steps (upstream `rob_actor.update_policy`, which runs
one forward and backward per slice of traj_mini_batch_size 8): `PolicyEngine.score` gives the teacher-forced
log-probs of every sampled CoT and action token. With more than one slice each is checkpointed (non-reentrant),
so a backward holds one slice's activations at a time while DeepSpeed still sees one backward per trajectory,
the same count on every rank (a ZeRO-2 engine reduces gradients in every backward).

Loss per token: the clipped PPO term (`loss.ppo_token_losses`) plus kl_coef x k3 KL to the reference policy,
aggregated by `loss.aggregate`; DeepSpeed's gradient accumulation then averages trajectories over the mini-batch
and all ranks (upstream: loss / gradient_accumulation, averaged by FSDP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dtvla_policy.inference.engine import Observation, PolicyEngine
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_policy.protocol import DecodeConfig
from dtvla_training.grpo.loss import LossAggMode, aggregate, k3_kl, ppo_token_losses
from dtvla_training.grpo.trajectory import StepRecord, Trajectory

# Order of `GrpoOutput.stats` (sums, so trajectories and ranks add up).
STAT_NAMES = ("loss", "trajectories", "valid_tokens", "valid_cot_tokens", "valid_action_tokens", "clipped",
              "dual_clipped", "ppo_kl_sum", "ref_kl_sum", "cot_entropy_sum", "action_entropy_sum")


@dataclass(frozen=True)
class LossSettings:
    """What the loss of one trajectory needs besides the trajectory."""

    decode: DecodeConfig  # the rollouts' temperatures and bans: the distributions the tokens were drawn from
    mode: LossAggMode
    slice_steps: int
    clip_low: float
    clip_high: float
    clip_c: float
    kl_coef: float = 0.0
    token_mean_scale: float | None = None  # token-mean: trajectories / valid tokens of the mini-batch (all ranks)
    entropy: bool = False  # also sum the entropies of the valid tokens (detached) into the stats


@dataclass
class GrpoOutput:
    loss: torch.Tensor  # scalar, with graph
    stats: torch.Tensor  # (len(STAT_NAMES),) float64, detached


class GrpoObjective(nn.Module):
    """Wraps the trained `DeepThinkVLA`; `forward(trajectory, settings) -> GrpoOutput`.

    `scorer` is a `PolicyEngine` on the same model (set once the DeepSpeed engine has placed it): the rollouts and
    the loss share its prompt, image preprocessing and sampling distributions.
    """

    def __init__(self, model: DeepThinkVLA) -> None:
        super().__init__()
        self.vla = model
        self.scorer: PolicyEngine | None = None

    def forward(self, trajectory: Trajectory, settings: LossSettings) -> GrpoOutput:
        layout = trajectory.layout
        logp, entropy = self.token_logprobs(trajectory, settings.decode, settings.slice_steps, settings.entropy)
        old = trajectory.old_logprobs.to(logp.device)
        advantages = torch.full_like(logp, trajectory.advantage)
        token_loss, clipped, dual = ppo_token_losses(logp, old, advantages, settings.clip_low, settings.clip_high,
                                                     settings.clip_c)
        mask, slices = layout.mask.to(logp.device), layout.slices.to(logp.device)
        ref_kl = None
        if settings.kl_coef > 0:
            ref_kl = k3_kl(logp, trajectory.ref_logprobs.to(logp.device))
            token_loss = token_loss + settings.kl_coef * ref_kl
        loss = aggregate(token_loss, mask, slices, settings.mode, settings.token_mean_scale)
        with torch.no_grad():
            stats = self._stats(loss, logp, old, clipped, dual, ref_kl, entropy, layout.mask, layout.is_action)
        return GrpoOutput(loss=loss, stats=stats)

    def token_logprobs(self, trajectory: Trajectory, decode: DecodeConfig, slice_steps: int, entropy: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(T,) log-probs of the trajectory's tokens in the flat layout, and (T,) detached entropies if asked.

        Slices are checkpointed when grad is on and there is more than one.
        """
        steps = trajectory.steps
        bounds = range(0, len(steps), slice_steps)
        recompute = torch.is_grad_enabled() and len(bounds) > 1
        logps, entropies = [], []
        for first in bounds:
            args = (trajectory.instruction, steps[first : first + slice_steps], decode, entropy)
            if recompute:
                logp, ent = checkpoint(self._slice_scores, *args, use_reentrant=False)
            else:
                logp, ent = self._slice_scores(*args)
            logps.append(logp)
            entropies.append(ent)
        return torch.cat(logps), (torch.cat(entropies) if entropy else None)

    def _slice_scores(self, instruction: str, steps: list[StepRecord], decode: DecodeConfig, entropy: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat (T_slice,) log-probs of the steps' tokens and their entropies (empty unless asked)."""
        observations = [Observation(s.agentview, s.wrist, instruction) for s in steps]
        scores = self.scorer.score(observations, [s.cot_segment for s in steps], [s.action_tokens for s in steps],
                                   decode, entropy=entropy)
        logp = torch.cat([part for k in range(len(steps)) for part in (scores.cot_logprobs[k],
                                                                       scores.action_logprobs[k])])
        if not entropy:
            return logp, logp.new_zeros(0)
        ent = torch.cat([part for k in range(len(steps)) for part in (scores.cot_entropy[k],
                                                                      scores.action_entropy[k])])
        return logp, ent.detach()

    @staticmethod
    def _stats(loss: torch.Tensor, logp: torch.Tensor, old: torch.Tensor, clipped: torch.Tensor, dual: torch.Tensor,
               ref_kl: torch.Tensor | None, entropy: torch.Tensor | None, mask: torch.Tensor, is_action: torch.Tensor
               ) -> torch.Tensor:
        mask = mask.to(logp.device)
        is_action = is_action.to(logp.device)

        def valid_sum(values: torch.Tensor, where: torch.Tensor = mask) -> float:
            return float(torch.where(where, values.double(), 0.0).sum())

        values = [float(loss), 1.0, float(mask.sum()), float((mask & ~is_action).sum()),
                  float((mask & is_action).sum()), valid_sum(clipped), valid_sum(dual), valid_sum(old - logp),
                  valid_sum(ref_kl) if ref_kl is not None else 0.0,
                  valid_sum(entropy, mask & ~is_action) if entropy is not None else 0.0,
                  valid_sum(entropy, mask & is_action) if entropy is not None else 0.0]
        return torch.tensor(values, dtype=torch.float64)
