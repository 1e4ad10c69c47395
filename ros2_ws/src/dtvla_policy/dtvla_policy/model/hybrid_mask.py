"""The one hybrid attention-mask builder, shared by inference and training.

Mirrors upstream `DeepThinkVLA._update_causal_mask` (src/sft/modeling_deepthinkvla.py) but from explicit
per-position segments instead of token searches:
  prefix  (images + prompt): bidirectional among itself, visible to every later row (PaliGemma prefix-LM);
  CoT     (`<think>` ... `</think>`): causal;
  action  (`<action>`, a1..a70, `</action>`, `<eos>`): bidirectional among itself and sees everything before;
  pad:    never attended to.
Nothing before the action block sees it. The mask is returned additive float (0 = attend, finfo.min = blocked)
because eager attention adds the mask: a bool 4D mask is silently wrong there.
"""

from __future__ import annotations

from enum import IntEnum

import torch


class Segment(IntEnum):
    PAD = 0
    PREFIX = 1
    COT = 2
    ACTION = 3


def allowed_attention(segments: torch.Tensor, query_len: int | None = None) -> torch.Tensor:
    """(B, K) segment ids of all keys -> (B, Q, K) bool, queries being the last Q positions (Q defaults to K).

    Q < K is the cached case: keys already in the KV cache plus the Q new positions.
    """
    batch, key_len = segments.shape
    query_len = key_len if query_len is None else query_len
    if not 0 < query_len <= key_len:
        raise ValueError(f"query length {query_len} must be in [1, {key_len}]")
    key_seg = segments[:, None, :]  # (B, 1, K)
    query_seg = segments[:, key_len - query_len :, None]  # (B, Q, 1)
    key_idx = torch.arange(key_len, device=segments.device)
    query_idx = key_idx[key_len - query_len :]
    causal = (key_idx[None, :] <= query_idx[:, None])[None]  # (1, Q, K)
    query_is_action = query_seg == Segment.ACTION
    allowed = (key_seg == Segment.PREFIX) | causal | query_is_action
    allowed &= (key_seg != Segment.ACTION) | query_is_action  # the action block is invisible to earlier rows
    allowed &= (key_seg != Segment.PAD) & (query_seg != Segment.PAD)
    # A pad row attends to itself only, so its softmax stays finite; its output is never read.
    diagonal = (key_idx[None, :] == query_idx[:, None])[None]
    return allowed | (diagonal & (query_seg == Segment.PAD))


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, Q, K) bool -> (B, 1, Q, K) additive float mask in `dtype`."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def hybrid_mask(segments: torch.Tensor, dtype: torch.dtype, query_len: int | None = None) -> torch.Tensor:
    """(B, K) segments -> (B, 1, Q, K) additive float mask for the last Q positions."""
    return additive_mask(allowed_attention(segments, query_len), dtype)


def position_ids(segments: torch.Tensor) -> torch.Tensor:
    """(B, K) segments -> (B, K) PaliGemma positions: 1-indexed, pads skipped (pads repeat the last position)."""
    return (segments != Segment.PAD).long().cumsum(-1).clamp(min=1)
