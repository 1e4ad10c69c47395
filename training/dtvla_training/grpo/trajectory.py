"""What one GRPO rollout keeps, and the flat token layout the loss works on.

Per replanning step a rollout keeps what the policy saw (both camera images, as sent) and what it sampled: the CoT
segment as fed (`<think>` ... `</think>`), the 70 action ids and their sampling log-probs (`Prediction` of the
engine's `sample` mode). The loss sees a trajectory as one flat run of tokens, step after step:

  step k:  CoT targets (the segment's tokens, then `<action>`: len(segment) + 1)  then  the 70 action tokens

A token is valid (gets gradient, counts in the aggregation) when the policy sampled it and it acted:
  * CoT target j is valid iff j < max_cot_tokens: past the cap the engine forces `</think>` / `<action>` (upstream
    stops generating there instead), and those were not sampled;
  * action token (t, d) of a chunk started at env step s is valid iff t < execute_steps and s + t < the episode's
    env steps: the actions the episode ran (upstream masks actions at or after its finish_step the same way).
Steps after the end do not exist here: the episode loop asks for no chunk once the episode is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dtvla_policy.model.conventions import ACTION_DIM, ACTION_TOKENS, CHUNK_STEPS


@dataclass
class StepRecord:
    """One replanning step of a rollout."""

    agentview: np.ndarray  # (H, W, 3) uint8, as the policy saw it
    wrist: np.ndarray
    start: int  # env steps run before this chunk (the episode loop's frame.step)
    cot_segment: list[int]  # `<think>` ... `</think>` as fed (a forced close included)
    action_tokens: np.ndarray  # (70,) int64
    cot_logprobs: np.ndarray  # (len(cot_segment) + 1,) float32 sampling log-probs (`<action>` last)
    action_logprobs: np.ndarray  # (70,) float32
    cot_tokens: int  # the thought's length (tags excluded): the CoT-length metric
    cot_truncated: bool  # closed by force at the cap
    well_formed: bool  # the CoT passes upstream's format check (`reward.well_formed`)


@dataclass
class Trajectory:
    """One finished rollout of a prompt; `reward` and `advantage` are filled in by the collector."""

    task: int
    init_state: int
    rollout: int  # its number in the iteration on this rank (the per-step seeds derive from it)
    instruction: str
    steps: list[StepRecord]
    success: bool
    env_steps: int  # policy steps run, settle steps excluded
    reward: float = 0.0
    advantage: float = 0.0
    old_logprobs: torch.Tensor | None = None  # (T,) the ratio's denominator, set before the update
    ref_logprobs: torch.Tensor | None = None  # (T,) under the frozen reference policy (KL only)
    layout: TokenLayout | None = field(default=None, repr=False)

    @property
    def format_rate(self) -> float:
        return sum(s.well_formed for s in self.steps) / len(self.steps) if self.steps else 0.0

    def summary(self) -> RolloutSummary:
        return RolloutSummary(self.success, self.reward, self.format_rate, self.env_steps, len(self.steps),
                              sum(s.cot_tokens for s in self.steps), sum(s.cot_truncated for s in self.steps))

    def sampling_logprobs(self) -> torch.Tensor:
        """(T,) the log-probs the rollout sampled with, in the flat token order."""
        parts = [np.concatenate([s.cot_logprobs, s.action_logprobs]) for s in self.steps]
        return torch.from_numpy(np.concatenate(parts).astype(np.float32))


@dataclass(frozen=True)
class RolloutSummary:
    """What the metrics need of a rollout (a filtered group's trajectories are not kept, their images are big)."""

    success: bool
    reward: float
    format_rate: float
    env_steps: int
    replans: int
    cot_tokens: int  # thought tokens over all its replanning steps
    cot_truncated: int  # its replanning steps whose CoT was closed by force


@dataclass(frozen=True)
class TokenLayout:
    """Where each step's tokens sit in the flat run, which are valid, and which loss slice each belongs to."""

    offsets: tuple[int, ...]  # start of each step's tokens; offsets[-1] is the total T
    mask: torch.Tensor  # (T,) bool
    slices: torch.Tensor  # (T,) int64: step // slice_steps
    is_action: torch.Tensor  # (T,) bool: an action token (else a CoT target)

    @property
    def n_tokens(self) -> int:
        return self.offsets[-1]

    def step_range(self, first: int, stop: int) -> slice:
        """The flat tokens of steps first..stop-1."""
        return slice(self.offsets[first], self.offsets[stop])


def action_mask(start: int, env_steps: int, execute_steps: int = CHUNK_STEPS) -> np.ndarray:
    """(70,) bool: the action tokens of a chunk started at env step `start` that the episode executed."""
    t = np.arange(CHUNK_STEPS)
    ran = (t < execute_steps) & (start + t < env_steps)
    return np.repeat(ran, ACTION_DIM)  # time-major: the 7 dims of step t are tokens 7t..7t+6


def token_layout(steps: Sequence[StepRecord], env_steps: int, max_cot_tokens: int, slice_steps: int,
                 execute_steps: int = CHUNK_STEPS) -> TokenLayout:
    """The flat token layout of a trajectory's `steps` (see the module docstring)."""
    if not steps:
        empty = torch.zeros(0, dtype=torch.bool)
        return TokenLayout((0,), empty, torch.zeros(0, dtype=torch.long), empty)
    masks, slices, kinds, offsets = [], [], [], [0]
    for k, step in enumerate(steps):
        n_cot = len(step.cot_segment) + 1
        cot_valid = np.arange(n_cot) < max_cot_tokens
        mask = np.concatenate([cot_valid, action_mask(step.start, env_steps, execute_steps)])
        masks.append(mask)
        slices.append(np.full(len(mask), k // slice_steps))
        kinds.append(np.arange(len(mask)) >= n_cot)
        offsets.append(offsets[-1] + n_cot + ACTION_TOKENS)
    return TokenLayout(tuple(offsets), torch.from_numpy(np.concatenate(masks)),
                       torch.from_numpy(np.concatenate(slices).astype(np.int64)),
                       torch.from_numpy(np.concatenate(kinds)))
