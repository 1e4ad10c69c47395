"""The SFT objective as an `nn.Module`, so DeepSpeed's engine forward computes loss and metrics in one call.

Loss: one token-level cross-entropy, mean over every labelled token (the CoT incl. `<think>`/`</think>`, the 70
action tokens, `</action>`, `<eos>`), with the usual shift (the row at p predicts the token at p + 1); no weighting
between CoT and action tokens (upstream `sft_trainer.py`). It equals `DeepThinkVLA.hybrid_forward(...,
labels=...).loss` (tested) but projects only the labelled rows onto the 257k vocabulary: the 512 image rows of
the prefix never need logits, which saves most of the LM-head compute and logits memory.

Metrics, as upstream logs them: argmax over the whole vocabulary at each labelled row; action-token accuracy
over rows whose target is an action id; action L1 between the decoded (normalised, [-1, 1]) values of the
predicted and target tokens; token accuracy over all labelled rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dtvla_policy.model.action_codec import ActionCodec
from dtvla_policy.model.modeling import DeepThinkVLA
from dtvla_training.sft.collate import IGNORE_INDEX

# Order of the entries of `SftOutput.stats` (sums, so micro-batches and ranks add up).
STAT_NAMES = ("loss", "action_correct", "action_count", "action_l1_sum", "token_correct", "token_count")


@dataclass
class SftOutput:
    loss: torch.Tensor  # scalar, with graph
    stats: torch.Tensor  # (len(STAT_NAMES),) float64, detached


class SftObjective(nn.Module):
    """Wraps a `DeepThinkVLA`; `forward(batch tensors) -> SftOutput`."""

    def __init__(self, model: DeepThinkVLA) -> None:
        super().__init__()
        self.vla = model
        self.codec = ActionCodec(model.token_ids)

    def forward(
        self, input_ids: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, pixel_values: torch.Tensor
    ) -> SftOutput:
        """input_ids, segments, labels: (B, L) int64; pixel_values: (B * 2, 3, S, S)."""
        features = self.vla.encode_images(pixel_values.to(self.vla.dtype))
        out = self.vla.hybrid_forward(input_ids, segments, features, compute_logits=False)
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX  # (B, L - 1)
        if not bool(keep.any()):
            raise ValueError("batch has no labelled tokens")
        rows = out.last_hidden_state[:, :-1][keep]  # (N, hidden): rows that predict a labelled token
        logits = self.vla.lm_logits(rows).float()  # (N, vocab)
        target = targets[keep]  # (N,)
        loss = F.cross_entropy(logits, target)
        return SftOutput(loss=loss, stats=self._stats(loss, logits, target))

    @torch.no_grad()
    def _stats(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted = logits.argmax(-1)
        correct = predicted == target
        is_action = (target >= self.vla.token_ids.action_begin) & (target <= self.vla.token_ids.action_end_id)
        decoded = self.codec.decode(torch.stack([predicted[is_action], target[is_action]]).cpu().numpy())
        l1_sum = float(abs(decoded[0] - decoded[1]).astype("float64").sum())
        values = [float(loss), float(correct[is_action].sum()), float(is_action.sum()), l1_sum,
                  float(correct.sum()), float(target.numel())]
        return torch.tensor(values, dtype=torch.float64)
