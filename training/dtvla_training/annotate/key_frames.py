"""Key frames and sub-task segments of one episode, found in its action commands alone.

Upstream's data engine picks key frames "heuristically from gripper-state changes" (README Fig. 1). Here a key frame
is the first frame of the episode, a frame where the commanded gripper changes sign (LIBERO: -1 open, +1 close), or
the first frame of a motion pause (translation command norm below a threshold for at least N frames: the robot
settling over an object before a grasp or a release). Each key frame opens a segment that lasts until the next one,
so every frame belongs to exactly one segment: the sub-task its key frame describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtvla_policy.model.conventions import ACTION_DIM, GRIPPER_DIM

START = "start"
GRIPPER_CLOSE = "gripper_close"
GRIPPER_OPEN = "gripper_open"
PAUSE = "pause"


@dataclass(frozen=True)
class KeyFrameConfig:
    """How key frames are found; defaults suit LIBERO's OSC delta-pose commands (translation within +-1)."""

    pause_threshold: float = 0.05  # translation command norm (dims 0-2, action units) below which the arm pauses
    pause_min_frames: int = 5  # a pause lasts at least this many consecutive frames
    min_gap: int = 2  # key frames closer than this to the previous one merge into it (their reasons are joined)
    gripper_transitions: bool = True
    pauses: bool = True

    def __post_init__(self) -> None:
        if not self.pause_threshold >= 0:
            raise ValueError(f"pause_threshold must be >= 0, got {self.pause_threshold}")
        if self.pause_min_frames < 1:
            raise ValueError(f"pause_min_frames must be >= 1, got {self.pause_min_frames}")
        if self.min_gap < 1:
            raise ValueError(f"min_gap must be >= 1 (1 merges only key frames on the same frame), got {self.min_gap}")


@dataclass(frozen=True)
class KeyFrame:
    frame: int
    reasons: tuple[str, ...]  # START, GRIPPER_CLOSE, GRIPPER_OPEN and/or PAUSE


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of one sub-task; `start` is its key frame."""

    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Segmentation:
    """Key frames of an episode and the segments they open, both in frame order."""

    key_frames: tuple[KeyFrame, ...]
    segments: tuple[Segment, ...]

    def segment_of(self, frame: int) -> Segment:
        starts = [s.start for s in self.segments]
        return self.segments[int(np.searchsorted(starts, frame, side="right")) - 1]

    @property
    def key_frame_indices(self) -> tuple[int, ...]:
        return tuple(k.frame for k in self.key_frames)


def gripper_transitions(actions: np.ndarray) -> list[KeyFrame]:
    """Frames whose gripper command has the other sign than the last non-zero one before it (0 keeps the state)."""
    sign = np.sign(actions[:, GRIPPER_DIM])
    found = []
    previous = 0.0
    for frame, value in enumerate(sign):
        if value == 0:
            continue
        if previous and value != previous:
            found.append(KeyFrame(frame, (GRIPPER_CLOSE if value > 0 else GRIPPER_OPEN,)))
        previous = value
    return found


def pauses(actions: np.ndarray, threshold: float, min_frames: int) -> list[KeyFrame]:
    """First frame of every run of >= `min_frames` frames whose translation command norm is below `threshold`."""
    still = np.linalg.norm(actions[:, :3], axis=1) < threshold
    edges = np.diff(np.concatenate([[0], still.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [KeyFrame(int(s), (PAUSE,)) for s, e in zip(starts, ends, strict=True) if e - s >= min_frames]


def segment_episode(actions: np.ndarray, config: KeyFrameConfig | None = None) -> Segmentation:
    """Key frames and segments of an episode from its (n, 7) actions; raises ValueError on a bad array."""
    config = config or KeyFrameConfig()
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or not len(actions):
        raise ValueError(f"actions must be a non-empty (n, {ACTION_DIM}) array, got shape {actions.shape}")
    if not np.isfinite(actions).all():
        raise ValueError(f"actions hold non-finite values at frames {np.flatnonzero(~np.isfinite(actions).all(1))}")
    candidates = [KeyFrame(0, (START,))]
    if config.gripper_transitions:
        candidates += gripper_transitions(actions)
    if config.pauses:
        candidates += pauses(actions, config.pause_threshold, config.pause_min_frames)
    merged: list[KeyFrame] = []
    for key in sorted(candidates, key=lambda k: (k.frame, k.reasons)):
        if merged and key.frame - merged[-1].frame < config.min_gap:
            reasons = merged[-1].reasons + tuple(r for r in key.reasons if r not in merged[-1].reasons)
            merged[-1] = KeyFrame(merged[-1].frame, reasons)
        else:
            merged.append(key)
    ends = [k.frame for k in merged[1:]] + [len(actions)]
    segments = tuple(Segment(i, k.frame, end) for i, (k, end) in enumerate(zip(merged, ends, strict=True)))
    return Segmentation(tuple(merged), segments)
