"""Token layout of one DeepThinkVLA sequence, shared by inference and training collation.

  [<image> x n_img*T] [<bos>] prompt_text(task)            segment PREFIX (token type 0, bidirectional)
  [<think>] cot ... [</think>]                               segment COT (causal)
  [<action>] a1 ... a70 [</action>] [<eos>]                  segment ACTION (bidirectional, sees all before)

At inference a1..a70 are placeholders (the pad id; their embeddings are zeroed either way). The logits of the
ACTION rows 0..69 (`<action>`, a1..a69) predict a1..a70 (the usual one-position shift).
Mirrors upstream's processor output plus `get_vla_action_mask_cot`; see docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from dtvla_policy.model.conventions import ACTION_TOKENS, MAX_TASK_CHARS, TokenIds, prompt_text
from dtvla_policy.model.hybrid_mask import Segment


def check_task(task: str) -> str:
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {type(task).__name__}")
    if not task.strip():
        raise ValueError("task instruction is empty; publish the task on /task/instruction first")
    if len(task) > MAX_TASK_CHARS:
        raise ValueError(f"task instruction has {len(task)} characters, more than the {MAX_TASK_CHARS} accepted")
    return task


def prefix_ids(
    tokenizer: PreTrainedTokenizerBase, ids: TokenIds, task: str, n_images: int, tokens_per_image: int
) -> list[int]:
    """Image slots, `<bos>`, then the byte-exact prompt (ending in ';' + '\\n')."""
    text_ids = tokenizer(prompt_text(check_task(task)), add_special_tokens=False)["input_ids"]
    return [ids.image] * (n_images * tokens_per_image) + [ids.bos] + list(text_ids)


def action_block_ids(ids: TokenIds, action_tokens: Sequence[int] | None = None) -> list[int]:
    """`<action>`, the 70 action tokens (placeholders when None), `</action>`, `<eos>`."""
    if action_tokens is None:
        action_tokens = [ids.pad] * ACTION_TOKENS
    if len(action_tokens) != ACTION_TOKENS:
        raise ValueError(f"an action block holds {ACTION_TOKENS} tokens, got {len(action_tokens)}")
    return [ids.action_start, *action_tokens, ids.action_end, ids.eos]


ACTION_BLOCK_LEN = ACTION_TOKENS + 3


def segments_for(prefix_len: int, cot_len: int, action_len: int = 0) -> list[Segment]:
    return [Segment.PREFIX] * prefix_len + [Segment.COT] * cot_len + [Segment.ACTION] * action_len
