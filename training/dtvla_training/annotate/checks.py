"""Checks every annotation must pass before its text is written: schema and temporal consistency.

Schema, per frame:
- `annotator_error`: the annotator produced nothing usable (its `error`);
- `empty`: no text;
- `special_tokens`: the text contains a special token's text (`<think>`, `<action>`, ...), which would corrupt the
  training sequence;
- `no_imperative`: the last sentence is not an imperative step: it must end with ".", "!" and start with a verb of
  IMPERATIVE_VERBS (upstream's final-verb statistics: place, pick/grasp, finish/hold, move, open/close, ...);
- `too_long`: the text is longer than `max_length` units: tokens of the checkpoint's tokenizer when one is given,
  else UTF-8 bytes, an upper bound of the token count for a byte-fallback BPE like Gemma's.
Temporal, per episode in frame order:
- `phase_missing`: the annotation names no phase, so its order cannot be checked;
- `phase_regression`: the phase comes earlier in `PHASES` than a phase already seen in the episode (sub-goals must
  follow the key frames' order; a scripted expert that re-grasps fails here, on purpose).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dtvla_policy.model.conventions import SPECIAL_TOKEN_TEXT
from dtvla_sim_bridge.sim.scene import PHASES
from dtvla_training.annotate.annotator import Annotation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IMPERATIVE_VERBS = (
    "align", "approach", "carry", "close", "finish", "grasp", "hold", "insert", "lift", "lower", "move", "open",
    "pick", "place", "pull", "push", "put", "release", "retreat", "rotate", "slide", "stack", "stop", "turn", "wait",
)
DEFAULT_MAX_LENGTH = 512  # the SFT config's max_reasoning_tokens: longer reasoning would be skipped by the reader
CHECK_NAMES = ("annotator_error", "empty", "special_tokens", "no_imperative", "too_long", "phase_missing",
               "phase_regression")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FIRST_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Failure:
    check: str  # one of CHECK_NAMES
    detail: str


class LengthCounter:
    """Measures text as the SFT reader will: tokens of the checkpoint's tokenizer, or UTF-8 bytes without one."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        self.tokenizer = tokenizer
        self.unit = "tokens" if tokenizer is not None else "bytes"

    @classmethod
    def from_checkpoint(cls, directory: str | Path | None) -> LengthCounter:
        """The tokenizer of a checkpoint (or tokenizer) directory; None counts bytes."""
        if directory is None:
            return cls()
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"tokenizer directory {directory} does not exist; pass a checkpoint directory")
        from transformers import AutoTokenizer  # slow import, needed only here

        return cls(AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False))

    def __call__(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.encode())
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class CheckConfig:
    max_length: int = DEFAULT_MAX_LENGTH
    verbs: tuple[str, ...] = IMPERATIVE_VERBS
    counter: LengthCounter = field(default_factory=LengthCounter)

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


def final_verb(text: str) -> str | None:
    """The lowercased first word of the last sentence, or None when the text does not end a sentence."""
    last = _SENTENCE_END.split(text.strip())[-1]
    if not last or last[-1] not in ".!":
        return None
    match = _FIRST_WORD.match(last)
    return match.group().lower() if match else None


def schema_failures(annotation: Annotation, length: int, config: CheckConfig) -> list[Failure]:
    """The schema checks' failures of one annotation whose text is `length` units long."""
    if annotation.error is not None:
        return [Failure("annotator_error", annotation.error)]
    text = annotation.text
    if not text:
        return [Failure("empty", "no text")]
    failures = []
    found = [tag for tag in SPECIAL_TOKEN_TEXT.values() if tag in text]
    if found:
        failures.append(Failure("special_tokens", f"contains {found}"))
    verb = final_verb(text)
    if verb not in config.verbs:
        last = _SENTENCE_END.split(text)[-1]
        failures.append(Failure("no_imperative", f"last sentence {last[:80]!r} does not start with a known verb "
                                                 "and end with '.' or '!'"))
    if length > config.max_length:
        failures.append(Failure("too_long", f"{length} {config.counter.unit} > {config.max_length}"))
    return failures


def temporal_failures(annotations: Sequence[Annotation]) -> dict[int, Failure]:
    """Frame -> failure for frames whose phase is missing or goes back in PHASES (see the module docstring)."""
    failures: dict[int, Failure] = {}
    reached = -1  # index in PHASES of the furthest phase so far
    for frame, annotation in enumerate(annotations):
        if annotation.error is not None:
            continue  # already failed; it says nothing about the order
        if annotation.phase not in PHASES:
            failures[frame] = Failure("phase_missing", f"phase {annotation.phase!r} is not one of PHASES")
            continue
        index = PHASES.index(annotation.phase)
        if index < reached:
            failures[frame] = Failure("phase_regression", f"{annotation.phase} after {PHASES[reached]}")
        reached = max(reached, index)
    return failures


def check_episode(annotations: Sequence[Annotation], config: CheckConfig) -> tuple[list[list[Failure]], list[int]]:
    """The failures of every frame (an empty list: the frame passes) and the length of every text."""
    measured: dict[str, int] = {}  # propagated frames repeat texts; tokenize each once
    for annotation in annotations:
        if annotation.text not in measured:
            measured[annotation.text] = config.counter(annotation.text)
    lengths = [measured[a.text] for a in annotations]
    per_frame = [schema_failures(a, n, config) for a, n in zip(annotations, lengths, strict=True)]
    for frame, failure in temporal_failures(annotations).items():
        per_frame[frame].append(failure)
    return per_frame, lengths
