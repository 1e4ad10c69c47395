"""Trajectory reward and dynamic filtering (upstream `src/verl/trainer/main_ppo.py` `RobRewardManager`,
`src/verl/trainer/ppo/ray_trainer.py` `filter`).

R = success_reward x success + format_reward x (fraction of the trajectory's replanning steps whose CoT is well
formed). Upstream decodes each step's generated text and searches it for `<think>` ... `</think><action>` (the
FORMAT_PATTERN below); a CoT cut by the cap never contains `</think><action>` there. The engine closes a cut CoT by
force, so a truncated step counts as malformed whatever its text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from dtvla_policy.model.conventions import TokenIds

FORMAT_PATTERN = re.compile(r"<think>\s*([\s\S]*?)\s*</think><action>")  # upstream RobRewardManager.pattern


def well_formed(tokenizer: PreTrainedTokenizerBase, ids: TokenIds, cot_segment: Sequence[int], truncated: bool) -> bool:
    """Upstream's format check of one replanning step: its text, tags included, then `<action>`."""
    if truncated:
        return False
    text = tokenizer.decode([*cot_segment, ids.action_start], skip_special_tokens=False)
    return FORMAT_PATTERN.search(text) is not None


def trajectory_reward(success: bool, format_rate: float, success_reward: float, format_reward: float) -> float:
    return success_reward * float(success) + format_reward * format_rate


def keep_group(successes: Sequence[bool], low: float, high: float) -> bool:
    """Dynamic filtering: a group is kept when its success rate lies in [low, high] (both inclusive)."""
    rate = sum(successes) / len(successes)
    return low <= rate <= high
