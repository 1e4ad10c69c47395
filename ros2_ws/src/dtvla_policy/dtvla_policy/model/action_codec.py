"""Uniform 2048-bin action tokens, exactly as upstream `src/dt_datasets/action_tokenizer.py`.

token = action_end_id - bin (257023 - bin on the released vocabulary), bin = bucketize(x, linspace(-1, 1, 2048)).
Decoding clips the bin to [0, 2046] and returns one of 2047 bin centres: a half-bin offset kept on purpose,
because the released weights were trained against it.
"""

from __future__ import annotations

import numpy as np

from dtvla_policy.model.conventions import N_BINS, TokenIds


class ActionCodec:
    """Maps normalised action values in [-1, 1] to action token ids and back."""

    def __init__(self, token_ids: TokenIds | None = None) -> None:
        self.ids = token_ids or TokenIds()
        self.edges = np.linspace(-1.0, 1.0, N_BINS)
        self.centres = (self.edges[:-1] + self.edges[1:]) / 2.0  # 2047 centres (upstream)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """(..., D) floats -> (..., D) int64 token ids; values are clamped to [-1, 1] first, NaN is refused."""
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError("cannot encode non-finite action values")
        clipped = np.clip(values, -1.0, 1.0)
        # torch.bucketize(right=False) == searchsorted(side="left"): edges[i-1] < x <= edges[i]
        bins = np.searchsorted(self.edges, clipped, side="left")
        return (self.ids.action_end_id - bins).astype(np.int64)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """(..., D) action token ids -> (..., D) float32 values on the 2047 bin centres."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        bins = np.clip(self.ids.action_end_id - token_ids, 0, N_BINS - 2)
        return self.centres[bins].astype(np.float32)

    def bins_from_subvocab_index(self, index: np.ndarray) -> np.ndarray:
        """Index j into the logits slice [action_begin, action_end_id] -> token id action_begin + j."""
        return np.asarray(index, dtype=np.int64) + self.ids.action_begin

    def is_action_token(self, token_ids: np.ndarray) -> np.ndarray:
        token_ids = np.asarray(token_ids)
        return (token_ids >= self.ids.action_begin) & (token_ids <= self.ids.action_end_id)
