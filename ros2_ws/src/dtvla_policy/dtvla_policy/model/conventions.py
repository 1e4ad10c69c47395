"""Every convention that makes dtvla weight-compatible with the released DeepThinkVLA checkpoints.

One module, one place: token ids, the prompt, the action chunk shape, the action-token range and the image
preprocessing constants. Values are the upstream ones (OpenBMB/DeepThinkVLA `src/sft/constants.py`,
`src/experiments/deepthinkvla_utils.py`, `src/dt_datasets/action_tokenizer.py`); `TokenIds.from_config`
reads them from a checkpoint's config.json when present, so tiny test checkpoints go through the same code.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

# --- chunk -------------------------------------------------------------------------------------------------
CHUNK_STEPS = 10  # H: future steps per chunk (upstream NUM_ACTIONS_CHUNK)
ACTION_DIM = 7  # D: eef dx, dy, dz, drx, dry, drz, gripper (upstream ACTION_DIM)
ACTION_TOKENS = CHUNK_STEPS * ACTION_DIM  # 70, flattened time-major
COMMAND_NAMES = ("eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz", "gripper")
NORMALIZED_DIMS = (True,) * 6 + (False,)  # quantile-normalised dims; the gripper stays raw
GRIPPER_DIM = 6
N_BINS = 2048  # uniform bins over [-1, 1]; 2047 centres are used when decoding (upstream quirk)

# --- prompt ------------------------------------------------------------------------------------------------
# Byte-for-byte the upstream instruction; the literal tags tokenise to the special tokens.
THINK_INSTRUCTION = (
    "First output the thinking process in <think></think> tags and then output the final action in "
    "<action></action>."
)
MAX_TASK_CHARS = 512  # longer task strings are refused: they are operator errors, not instructions


def format_task(task: str) -> str:
    """Normalise a task string exactly as upstream does: lowercase, underscores to spaces, nothing else.

    Whitespace is kept as given (upstream does not strip it), so the prompt stays byte-identical to upstream's.
    """
    return task.lower().replace("_", " ")


def prompt_text(task: str) -> str:
    """The text that follows `<image>`x512 and `<bos>` in the prefix; ends with the ';' + '\\n' boundary."""
    return f"{THINK_INSTRUCTION}Task: {format_task(task)};\n"


# --- images ------------------------------------------------------------------------------------------------
CAMERA_ORDER = ("agentview", "wrist")  # upstream observation.images.image, then .wrist_image
IMAGE_MEAN = (0.5, 0.5, 0.5)  # PaliGemma/SigLIP normalisation to [-1, 1]
IMAGE_STD = (0.5, 0.5, 0.5)
DEFAULT_IMAGE_SIZE = 224

# --- checkpoint layout -------------------------------------------------------------------------------------
NORM_STATS_FILE = "norm_stats.json"  # q01/q99 stats next to the weights (upstream: the dataset's meta/)

# --- random-CoT ablation (upstream get_vla_action_mask_cot_random) -----------------------------------------
RANDOM_COT_TOKENS = 128
RANDOM_COT_MIN_ID = 0  # ids drawn uniformly from [RANDOM_COT_MIN_ID, TokenIds.random_cot_max_id)
RANDOM_COT_MAX_ID = 220_000  # upstream's bound: text ids (pad, eos, bos included), below every action id and tag


RELEASED_VOCAB_SIZE = 257_157
ACTION_GAP_BELOW_IMAGE = 128  # ids between the last action id and `<image>` in the released vocabulary


@dataclass(frozen=True)
class TokenIds:
    """Special token ids. Defaults are the released checkpoints' (vocab 257157)."""

    pad: int = 0
    eos: int = 1
    bos: int = 2
    image: int = 257152  # config key image_token_index
    think_start: int = 257153  # think_start_token_index
    think_end: int = 257154  # think_end_token_index
    action_start: int = 257155  # action_start_token_index
    action_end: int = 257156  # action_end_token_index
    action_begin: int = 254976  # action_token_begin_idx: lowest action id (bin 2047)
    action_end_id: int = 257023  # action_token_end_idx: highest action id (bin 0) = image - 1 - 128
    vocab_size: int = 257157

    # config.json key for each field; released checkpoints carry these keys.
    CONFIG_KEYS = {
        "image": "image_token_index",
        "think_start": "think_start_token_index",
        "think_end": "think_end_token_index",
        "action_start": "action_start_token_index",
        "action_end": "action_end_token_index",
        "action_begin": "action_token_begin_idx",
        "action_end_id": "action_token_end_idx",
    }

    @classmethod
    def from_config(cls, config: Any) -> TokenIds:
        """Read ids from a (PaliGemma) config object; missing keys keep the released defaults."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        values: dict[str, int] = {}
        for field, key in cls.CONFIG_KEYS.items():
            value = getattr(config, key, None)
            if value is not None:
                values[field] = int(value)
        for field in ("pad", "eos", "bos"):
            value = getattr(text, f"{field}_token_id", None)
            if value is not None:
                values[field] = int(value)
        values["vocab_size"] = int(text.vocab_size)
        ids = cls(**values)
        ids.validate()
        return ids

    def config_entries(self) -> dict[str, int]:
        """The config.json entries that describe these ids (written into checkpoints)."""
        return {key: getattr(self, field) for field, key in self.CONFIG_KEYS.items()}

    @classmethod
    def layout(cls, text_ids: int) -> TokenIds:
        """The released vocabulary's layout after `text_ids` text ids: 2048 action ids, the 128-id gap, the five tags.

        `layout(254976)` is the released vocabulary (`TokenIds()`); a smaller `text_ids` gives a compact vocabulary
        with the same relative layout, so every check below applies to it unchanged. pad, eos and bos stay 0-2.
        """
        action_end_id = text_ids + N_BINS - 1
        image = action_end_id + 1 + ACTION_GAP_BELOW_IMAGE
        return cls(image=image, think_start=image + 1, think_end=image + 2, action_start=image + 3,
                   action_end=image + 4, action_begin=text_ids, action_end_id=action_end_id,
                   vocab_size=image + len(SPECIAL_TOKEN_TEXT))

    @property
    def n_action_ids(self) -> int:
        return self.action_end_id - self.action_begin + 1

    @property
    def random_cot_max_id(self) -> int:
        """Exclusive bound of the random-CoT ids: upstream's 220000, or the first action id or tag of a vocabulary
        where text ends below it (a compact one), so a random CoT holds text ids only, as upstream's does."""
        tags = (self.image, self.think_start, self.think_end, self.action_start, self.action_end)
        return min(RANDOM_COT_MAX_ID, self.action_begin, *tags)

    def validate(self) -> None:
        """Refuse inconsistent ids: the codec and the action sub-vocabulary depend on them."""
        if self.n_action_ids != N_BINS:
            raise ValueError(
                f"action id range [{self.action_begin}, {self.action_end_id}] holds {self.n_action_ids} ids, "
                f"expected {N_BINS} (one per bin)"
            )
        specials = {k: v for k, v in asdict(self).items() if k not in ("vocab_size", "action_begin", "action_end_id")}
        for name, value in specials.items():
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"token id {name}={value} outside the vocabulary of {self.vocab_size}")
            if name not in ("pad", "eos", "bos") and self.action_begin <= value <= self.action_end_id:
                raise ValueError(f"special token {name}={value} falls inside the action id range")
        if len(set(specials.values())) != len(specials):
            raise ValueError(f"special token ids must be distinct, got {specials}")
        if self.action_end_id >= self.vocab_size:
            raise ValueError(f"action ids end at {self.action_end_id}, beyond the vocabulary of {self.vocab_size}")
        # Released layout: the 2048 action ids end 128 ids (the <seg> tokens) below `<image>`. A range shifted by
        # one still holds 2048 ids and passes every check above, but decodes every bin one off.
        expected_end = self.image - 1 - ACTION_GAP_BELOW_IMAGE
        if self.action_end_id != expected_end:
            message = (
                f"action_token_end_idx={self.action_end_id} but the vocabulary layout puts the last action id at "
                f"image_token_index - 1 - {ACTION_GAP_BELOW_IMAGE} = {expected_end} (action_token_begin_idx "
                f"{expected_end - N_BINS + 1}); check the action id range in config.json"
            )
            if self.vocab_size == RELEASED_VOCAB_SIZE:
                raise ValueError(message)
            log.warning("%s (vocabulary of %d, not the released %d: accepted)", message, self.vocab_size,
                        RELEASED_VOCAB_SIZE)


SPECIAL_TOKEN_TEXT = {
    "image": "<image>",
    "think_start": "<think>",
    "think_end": "</think>",
    "action_start": "<action>",
    "action_end": "</action>",
}
