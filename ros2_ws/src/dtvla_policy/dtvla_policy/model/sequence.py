"""Token layout of one DeepThinkVLA sequence, shared by inference and training collation.

  [<image> x n_img*T] [<bos>] prompt_text(task)            segment PREFIX (token type 0, bidirectional)
  [<think>] cot ... [</think>]                               segment COT (causal)
  [<action>] a1 ... a70 [</action>] [<eos>]                  segment ACTION (bidirectional, sees all before)

At inference a1..a70 are placeholders (the pad id; their embeddings are zeroed either way). The logits of the
ACTION rows 0..69 (`<action>`, a1..a69) predict a1..a70 (the usual one-position shift).
Mirrors upstream's processor output plus `get_vla_action_mask_cot`; see docs/architecture.md.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from dtvla_policy.model.conventions import (
    ACTION_TOKENS,
    MAX_TASK_CHARS,
    SPECIAL_TOKEN_TEXT,
    TokenIds,
    format_task,
    prompt_text,
)
from dtvla_policy.model.hybrid_mask import Segment

# Per tokenizer: one regex matching the text of any of its special tokens (thousands in the released tokenizer).
_SPECIAL_TEXT: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, re.Pattern[str]] = weakref.WeakKeyDictionary()


def check_task(task: str) -> str:
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {type(task).__name__}")
    if not task.strip():
        raise ValueError("task instruction is empty; publish the task on /task/instruction first")
    if len(task) > MAX_TASK_CHARS:
        raise ValueError(f"task instruction has {len(task)} characters, more than the {MAX_TASK_CHARS} accepted")
    try:
        task.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates: what Python makes of non-UTF-8 bytes in argv
        raise ValueError(f"task instruction is not valid UTF-8 text ({err.reason} at character {err.start}); "
                         "pass the task as UTF-8") from None
    return task


def special_token_pattern(tokenizer: PreTrainedTokenizerBase) -> re.Pattern[str]:
    """A regex matching the text of every special token of `tokenizer` (and the five DeepThinkVLA tags)."""
    pattern = _SPECIAL_TEXT.get(tokenizer)
    if pattern is None:
        texts = set(tokenizer.all_special_tokens) | set(SPECIAL_TOKEN_TEXT.values())
        texts |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
        # longest first, so `</think>` is named rather than a shorter special inside it
        pattern = re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True) if t))
        _SPECIAL_TEXT[tokenizer] = pattern
    return pattern


def check_plain_text(tokenizer: PreTrainedTokenizerBase, task: str) -> None:
    """Refuse a task whose text holds a special token: the tokenizer would turn it into a control id (`<eos>`,
    `<think>`, `<action>`, `<image>`, ...) inside the prompt. The task is checked as the prompt will hold it
    (lowercased), so `<EOS>` is refused too."""
    found = special_token_pattern(tokenizer).search(format_task(task))
    if found:
        raise ValueError(
            f"task instruction contains the special token {found.group()!r} (at character {found.start()}), which "
            "would become a control token in the prompt; special tokens cannot be typed in a task: remove or "
            "reword it"
        )


def prefix_ids(
    tokenizer: PreTrainedTokenizerBase, ids: TokenIds, task: str, n_images: int, tokens_per_image: int
) -> list[int]:
    """Image slots, `<bos>`, then the byte-exact prompt (ending in ';' + '\\n'). The task is plain text: one that
    holds a special token's text is refused (`check_plain_text`)."""
    check_plain_text(tokenizer, check_task(task))
    text_ids = tokenizer(prompt_text(task), add_special_tokens=False)["input_ids"]
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
