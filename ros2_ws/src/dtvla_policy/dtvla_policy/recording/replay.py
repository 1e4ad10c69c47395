"""Replay: a recorded run's observations through a checkpoint, each new chunk and CoT compared with the recorded one.

"What would the new checkpoint have done on yesterday's run": every recorded chunk's camera pair and task go to
`PolicyEngine.predict` exactly as the policy node sent them (same image conversion, same decoding: the node's mode
and CoT cap from its diagnostics unless overridden, the same clip to the action limits). Greedy modes on the same
checkpoint and device reproduce the recorded chunks bit for bit; another checkpoint shows where it would differ.
Per chunk: L2 and max-abs difference per action dimension, gripper flips (steps where the sign-binarised gripper
command differs, i.e. the robot would open instead of close), and the CoT text diff.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dtvla_policy.inference.engine import PolicyEngine
from dtvla_policy.model.conventions import COMMAND_NAMES, GRIPPER_DIM
from dtvla_policy.recording.trace import RecordedChunk

NODE_ACTION_LIMITS = (-1.0, 1.0)  # the policy node's default action_limits.low / .high (config/sim.yaml)


@dataclass(frozen=True)
class ChunkComparison:
    """One recorded chunk against its replay."""

    recorded: RecordedChunk
    mode: str
    max_cot_tokens: int
    actions: np.ndarray  # (steps, 7) replayed, clipped like the node's
    cot: str

    @property
    def difference(self) -> np.ndarray:
        steps = min(len(self.actions), len(self.recorded.actions))
        return self.actions[:steps].astype(np.float64) - self.recorded.actions[:steps]

    @property
    def identical(self) -> bool:
        return self.cot == self.recorded.cot and np.array_equal(self.actions.astype(np.float64),
                                                                self.recorded.actions)

    @property
    def gripper_flips(self) -> int:
        steps = min(len(self.actions), len(self.recorded.actions))
        return int(np.sum(np.sign(self.actions[:steps, GRIPPER_DIM]) !=
                          np.sign(self.recorded.actions[:steps, GRIPPER_DIM])))

    def cot_diff(self) -> list[str]:
        """Word-level unified diff, recorded -> replayed ([] when equal)."""
        return [line for line in difflib.unified_diff(self.recorded.cot.split(), self.cot.split(), "recorded",
                                                      "replayed", n=2, lineterm="")]

    def as_dict(self) -> dict[str, Any]:
        diff = self.difference
        return {
            "chunk": self.recorded.index,
            "stamp_ns": self.recorded.stamp_ns,
            "task": self.recorded.task,
            "mode": self.mode,
            "max_cot_tokens": self.max_cot_tokens,
            "identical": self.identical,
            "action_l2": dict(zip(COMMAND_NAMES, np.sqrt((diff ** 2).sum(axis=0)).round(6).tolist(), strict=True)),
            "action_max_abs": dict(zip(COMMAND_NAMES, np.abs(diff).max(axis=0).round(6).tolist(), strict=True)),
            "gripper_flips": self.gripper_flips,
            "cot_identical": self.cot == self.recorded.cot,
            "cot_similarity": round(difflib.SequenceMatcher(None, self.recorded.cot, self.cot).ratio(), 4),
            "cot_diff": self.cot_diff(),
            "recorded": {"actions": self.recorded.actions.tolist(), "cot": self.recorded.cot},
            "replayed": {"actions": self.actions.astype(np.float64).tolist(), "cot": self.cot},
        }


def replay_chunks(records: list[RecordedChunk], engine: PolicyEngine, mode: str | None = None,
                  max_cot_tokens: int | None = None,
                  action_limits: tuple[float, float] = NODE_ACTION_LIMITS) -> list[ChunkComparison]:
    """Predict every recorded chunk again; `mode` / `max_cot_tokens` override what the node ran (None: the same)."""
    comparisons = []
    for record in records:
        run_mode = mode or record.mode
        if run_mode is None:
            raise ValueError(f"chunk {record.index}: the bag has no policy diagnostics saying its mode; pass --mode")
        cap = max_cot_tokens if max_cot_tokens is not None else record.max_cot_tokens
        decode = engine.decode_config if cap is None else replace(engine.decode_config, max_cot_tokens=cap)
        prediction = engine.predict(record.agentview, record.wrist, record.task, run_mode, decode)
        actions = np.clip(prediction.actions, *action_limits)
        comparisons.append(ChunkComparison(record, str(run_mode), decode.max_cot_tokens, actions, prediction.cot))
    return comparisons


def summary(comparisons: list[ChunkComparison]) -> dict[str, Any]:
    """Totals over the replayed chunks."""
    diffs = [np.abs(c.difference) for c in comparisons]
    return {
        "chunks": len(comparisons),
        "identical_chunks": sum(c.identical for c in comparisons),
        "identical_actions": sum(np.array_equal(c.actions.astype(np.float64), c.recorded.actions)
                                 for c in comparisons),
        "identical_cots": sum(c.cot == c.recorded.cot for c in comparisons),
        "mean_action_l2": round(float(np.mean([np.sqrt((d ** 2).sum()) for d in diffs])), 6) if diffs else None,
        "max_action_abs": round(float(max(d.max() for d in diffs)), 6) if diffs else None,
        "gripper_flips": sum(c.gripper_flips for c in comparisons),
    }
