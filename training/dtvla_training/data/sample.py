"""One training example, as the dataset reader yields it and the SFT collator consumes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """A frame of an episode with its 10-step future action chunk.

    agentview, wrist: (H, W, 3) uint8 RGB, upright (LIBERO data is already rotated 180 degrees), H = W = the
        reader's image_size; agentview is augmented when the reader has an AugmentConfig, wrist never is.
    actions: (10, 7) float32 RAW actions (not normalised): frame t .. t+9 of the episode, the last action repeated
        past the episode's end, as upstream. Always finite (the reader skips frames whose chunk is not).
    task: the instruction as stored in the dataset (the prompt normalises case and underscores).
    reasoning: the CoT text without the `<think>` tags and outer whitespace, decoded from token ids when the dataset
        stores ids; "" for an empty thought.
    episode_index, frame_index: provenance, for logging and the resumable data position.
    fallbacks: reads that failed before this frame was returned in place of the one asked for (0 normally); it
        travels with the sample out of a DataLoader worker, so the trainer can count them for the whole run.
    """

    agentview: np.ndarray
    wrist: np.ndarray
    actions: np.ndarray
    task: str
    reasoning: str
    episode_index: int
    frame_index: int
    fallbacks: int = 0
