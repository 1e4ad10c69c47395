"""Quantile normalisation of actions (upstream `src/dt_datasets/normalize.py`, scheme QUANTILE).

x_n = clip(2 (x - q01) / (q99 - q01 + 1e-8) - 1, -1, 1) on dims 0-5; the gripper (dim 6) passes through raw.
Stats come from `norm_stats.json` (openpi style: {"action": {"q01": [...], "q99": [...], ...}}), which the
checkpoint directory must carry so deployment normalises exactly as training did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtvla_policy.model.conventions import ACTION_DIM, COMMAND_NAMES, NORMALIZED_DIMS

log = logging.getLogger(__name__)

EPS = 1e-8  # upstream constant; part of the formula, not a tolerance


@dataclass(frozen=True)
class QuantileNormalizer:
    """Per-dimension q01/q99 normaliser; `mask[i]` False leaves dim i untouched."""

    q01: np.ndarray
    q99: np.ndarray
    mask: tuple[bool, ...] = NORMALIZED_DIMS
    extra: dict = field(default_factory=dict, compare=False)  # mean/std etc., kept for provenance

    def __post_init__(self) -> None:
        try:
            q01 = np.asarray(self.q01, dtype=np.float64)
            q99 = np.asarray(self.q99, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"norm stats q01/q99 must be lists of {ACTION_DIM} numbers: {err}") from None
        if q01.shape != (ACTION_DIM,) or q99.shape != (ACTION_DIM,):
            raise ValueError(f"norm stats need {ACTION_DIM} values per quantile, got q01 {q01.shape}, q99 {q99.shape}")
        if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))):
            raise ValueError(f"norm stats contain non-finite values: q01={q01.tolist()} q99={q99.tolist()}")
        if np.any(q99 < q01):
            raise ValueError(f"norm stats have q99 < q01: q01={q01.tolist()} q99={q99.tolist()}")
        with np.errstate(over="ignore"):
            span = q99 - q01 + EPS
        if not np.all(np.isfinite(span)) or not np.all(np.isfinite(np.abs(q01) + span)):
            raise ValueError(
                f"norm stats span q99 - q01 overflows float64 (q01={q01.tolist()} q99={q99.tolist()}); actions "
                "cannot be unnormalised with them: recompute norm_stats.json from the dataset"
            )
        if len(self.mask) != ACTION_DIM:
            raise ValueError(f"mask needs {ACTION_DIM} entries, got {len(self.mask)}")
        object.__setattr__(self, "q01", q01)
        object.__setattr__(self, "q99", q99)

    @property
    def _mask(self) -> np.ndarray:
        return np.asarray(self.mask, dtype=bool)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """(..., 7) raw actions -> (..., 7) in [-1, 1] on the masked dims."""
        actions = np.asarray(actions, dtype=np.float64)
        scaled = np.clip(2.0 * (actions - self.q01) / (self.q99 - self.q01 + EPS) - 1.0, -1.0, 1.0)
        return np.where(self._mask, scaled, actions)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """(..., 7) normalised actions -> (..., 7) raw actions (float32)."""
        normalized = np.asarray(normalized, dtype=np.float64)
        raw = 0.5 * (normalized + 1.0) * (self.q99 - self.q01 + EPS) + self.q01
        return np.where(self._mask, raw, normalized).astype(np.float32)

    @classmethod
    def from_stats(cls, stats: dict) -> QuantileNormalizer:
        """Build from the "action" entry of a norm-stats dict (accepts openpi's "actions" too)."""
        action = _action_entry(stats)
        missing = [k for k in ("q01", "q99") if k not in action]
        if missing:
            raise ValueError(f"norm stats 'action' entry lacks {missing}; found keys {sorted(action)}")
        extra = {k: v for k, v in action.items() if k not in ("q01", "q99")}
        normalizer = cls(q01=action["q01"], q99=action["q99"], extra=extra)
        constant = [i for i in np.flatnonzero(normalizer._mask) if normalizer.q01[i] == normalizer.q99[i]]
        if constant:  # legal (a dim the demonstrations never moved), but every action on it decodes to that value
            log.warning(
                "norm stats have q01 == q99 on normalised action dim(s) %s (%s): every predicted value there "
                "decodes to that constant; check the stats were computed on the right dataset",
                constant, ", ".join(COMMAND_NAMES[i] for i in constant),
            )
        return normalizer

    @classmethod
    def from_json(cls, path: str | Path) -> QuantileNormalizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no norm stats at {path}; copy the dataset's meta/norm_stats.json into the checkpoint directory"
            )
        try:
            stats = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        return cls.from_stats(stats)

    def to_stats(self) -> dict:
        """The openpi-style dict `from_stats` reads (written as norm_stats.json)."""
        return {"action": {"q01": self.q01.tolist(), "q99": self.q99.tolist(), **self.extra}}


def _action_entry(stats: dict) -> dict:
    if not isinstance(stats, dict):
        raise ValueError(f"norm stats must be a JSON object with an 'action' entry, got a {type(stats).__name__}")
    stats = stats.get("norm_stats", stats)
    if not isinstance(stats, dict):
        raise ValueError(f"norm stats 'norm_stats' entry must be a JSON object, got a {type(stats).__name__}")
    for key in ("action", "actions"):
        if isinstance(stats.get(key), dict):
            return stats[key]
    raise ValueError(f"norm stats have no 'action' entry; top-level keys are {sorted(stats)}")

