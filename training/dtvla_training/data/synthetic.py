"""`dtvla-synthetic-dataset OUT_DIR`: a tiny CoT dataset in the LeRobot v2.1 layout, for tests and demos.

Real files that the real reader reads, not a mock: one parquet file per episode with PNG image structs, plus
meta/info.json, episodes.jsonl, tasks.jsonl and meta/norm_stats.json (written by `compute_norm_stats`). Actions are
smooth and within LIBERO's ranges (translation within +-0.94, rotation within +-0.3, gripper -1 open / +1 closed);
the scene image shows a "gripper" square that follows the commanded translation. The last episode is shorter than a
chunk, so chunk padding is exercised. Reasoning is stored as text, or, given a tokenizer, as upstream stores it:
token ids of `<think>...</think>` padded with 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.model.conventions import ACTION_DIM, CHUNK_STEPS, COMMAND_NAMES, GRIPPER_DIM, SPECIAL_TOKEN_TEXT
from dtvla_training.data.lerobot_dataset import (
    ACTION_KEY,
    AGENTVIEW_KEY,
    NORM_STATS_PATH,
    REASONING_KEY,
    REASONING_PAD_ID,
    WRIST_KEY,
)
from dtvla_training.data.lerobot_writer import (
    EpisodeEntry,
    image_column,
    image_feature,
    index_columns,
    png,
    vector_column,
    write_episode,
    write_meta,
)
from dtvla_training.data.norm_stats import compute_norm_stats, write_norm_stats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FPS = 10
ROW_GROUP_ROWS = 8  # small on purpose: readers must address rows across several row groups
SHORT_EPISODE_FRAMES = 6  # the last episode, shorter than a chunk
MAX_TRANSLATION = 0.9375  # LIBERO's delta-EEF translation limit (scaled units)
MAX_ROTATION = 0.3

# (task as stored, object, target): LIBERO-style instructions and the nouns the reasoning talks about.
TASKS = (
    ("pick up the black bowl and place it on the plate", "black bowl", "plate"),
    ("put the cream cheese in the basket", "cream cheese", "basket"),
    ("put the butter in the top drawer", "butter", "drawer"),
)


def write_synthetic_dataset(
    out_dir: str | Path,
    *,
    episodes: int = 4,
    frames_per_episode: int = 24,
    image_size: int = 64,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
    tasks: Sequence[tuple[str, str, str]] = TASKS,
) -> Path:
    """Write the dataset to `out_dir` atomically (temp dir + rename) and return its path.

    episodes: at least 2; the last one has SHORT_EPISODE_FRAMES frames, the others `frames_per_episode`.
    tokenizer: store reasoning as `<think>...</think>` token ids padded with 0 instead of text.
    tasks: (instruction, object, target) triples, assigned to episodes in turn (e.g. real LIBERO instructions).
    """
    if episodes < 2:
        raise ValueError(f"episodes must be >= 2 (the last one is the short one), got {episodes}")
    if frames_per_episode < CHUNK_STEPS:
        raise ValueError(f"frames_per_episode must be >= {CHUNK_STEPS} (one chunk), got {frames_per_episode}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    with new_directory(out_dir) as tmp:
        _write(tmp, episodes, frames_per_episode, image_size, np.random.default_rng(seed), tokenizer, tasks)
    return Path(out_dir).expanduser().resolve()


def _write(root: Path, episodes: int, frames: int, size: int, rng: np.random.Generator,
           tokenizer: PreTrainedTokenizerBase | None, tasks: Sequence[tuple[str, str, str]]) -> None:
    lengths = [frames] * (episodes - 1) + [SHORT_EPISODE_FRAMES]
    episode_data = [_episode(rng, n, e % len(tasks), size, tasks[e % len(tasks)]) for e, n in enumerate(lengths)]
    if tokenizer is None:
        reasoning_type, reasoning_feature = pa.string(), {"dtype": "string", "shape": [1], "names": None}
    else:
        texts = [t for data in episode_data for t in data["reasoning"]]
        ids = _reasoning_ids(texts, tokenizer)
        width = ids.shape[1]
        reasoning_type = pa.list_(pa.int64(), width)
        reasoning_feature = {"dtype": "int64", "shape": [width], "names": None}
        starts = np.cumsum([0, *lengths])
        for e, data in enumerate(episode_data):
            data["reasoning"] = ids[starts[e]:starts[e + 1]].tolist()

    index = 0
    for e, data in enumerate(episode_data):
        n = lengths[e]
        table = pa.table({
            AGENTVIEW_KEY: image_column(data["agentview"]),
            WRIST_KEY: image_column(data["wrist"]),
            ACTION_KEY: vector_column(data["actions"]),
            **index_columns(e, index, data["task_index"], n, FPS),
            REASONING_KEY: pa.array(data["reasoning"], type=reasoning_type),
        })
        write_episode(root, e, table, row_group_size=ROW_GROUP_ROWS)
        index += n

    features = {
        AGENTVIEW_KEY: image_feature(size),
        WRIST_KEY: image_feature(size),
        ACTION_KEY: {"dtype": "float32", "shape": [ACTION_DIM], "names": list(COMMAND_NAMES)},
        REASONING_KEY: reasoning_feature,
    }
    entries = [EpisodeEntry(e, tasks[data["task_index"]][0], lengths[e]) for e, data in enumerate(episode_data)]
    write_meta(root, fps=FPS, features=features, tasks=[task for task, _, _ in tasks], episodes=entries)
    write_norm_stats(compute_norm_stats(root), root / NORM_STATS_PATH)


def _episode(rng: np.random.Generator, n: int, task_index: int, size: int, task: tuple[str, str, str]) -> dict:
    """Actions, encoded images and reasoning of one episode of `task` (instruction, object, target)."""
    actions = _actions(rng, n)
    _, obj, target = task
    # Scene position of the gripper in [0.1, 0.9]^2: it integrates the commanded x/y translation.
    position = np.clip(0.5 + 0.04 * np.cumsum(actions[:, :2], axis=0), 0.1, 0.9)
    height = np.clip(0.5 + 0.04 * np.cumsum(actions[:, 2]), 0.1, 0.9)
    background = _background(rng, size)
    object_xy = rng.uniform(0.2, 0.8, 2)
    agentview, wrist, reasoning = [], [], []
    for t in range(n):
        closed = actions[t, GRIPPER_DIM] > 0
        colour = (40, 200, 60) if closed else (220, 50, 40)
        scene = background.copy()
        _square(scene, object_xy, 0.10, (230, 200, 40))
        _square(scene, position[t], 0.08, colour)
        view = np.full((size, size, 3), 70, dtype=np.uint8)
        _square(view, (0.5, 0.5), 0.1 + 0.3 * (1 - height[t]), (230, 200, 40))
        _square(view, (0.5, 0.9), 0.15, colour)
        agentview.append(png(scene))
        wrist.append(png(view))
        reasoning.append(_reasoning(t, n, actions, position[t], obj, target))
    return {"actions": actions, "task_index": task_index, "agentview": agentview, "wrist": wrist,
            "reasoning": reasoning}


def _actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 7) float32: sums of slow sines (smooth, like teleoperated deltas) and a gripper closing then opening."""
    t = np.arange(n, dtype=np.float64)[:, None] / FPS
    amplitude = np.concatenate([rng.uniform(0.2, 0.7, 3), rng.uniform(0.02, 0.2, 3)])
    frequency = rng.uniform(0.1, 0.5, 6)
    phase = rng.uniform(0, 2 * np.pi, 6)
    motion = amplitude * np.sin(2 * np.pi * frequency * t + phase) + rng.normal(0, 0.01, (n, 6))
    motion[:, :3] = np.clip(motion[:, :3], -MAX_TRANSLATION, MAX_TRANSLATION)
    motion[:, 3:] = np.clip(motion[:, 3:], -MAX_ROTATION, MAX_ROTATION)
    close_at, open_at = int(n * rng.uniform(0.3, 0.5)), int(n * rng.uniform(0.7, 0.9))
    gripper = np.where((np.arange(n) >= close_at) & (np.arange(n) < open_at), 1.0, -1.0)
    return np.concatenate([motion, gripper[:, None]], axis=1).astype(np.float32)


def _reasoning(t: int, n: int, actions: np.ndarray, position: np.ndarray, obj: str, target: str) -> str:
    """A paragraph in upstream's style: gripper state and coarse places, progress, then an imperative next step."""
    side = ("left", "center", "right")[min(2, int(position[0] * 3))]
    closed = actions[t, GRIPPER_DIM] > 0
    was_closed = bool((actions[:t + 1, GRIPPER_DIM] > 0).any())
    if closed:
        return f"The gripper ({side}) holds the {obj}; the {target} is still empty. Carry the {obj} to the {target}."
    if was_closed:
        return f"The {obj} rests on the {target}; the gripper ({side}) is open. Finish: the task is complete."
    step = "Move down and grasp" if t >= n // 4 else "Move toward"
    return f"The gripper ({side}) is open and empty; the {obj} waits on the table. {step} the {obj}."


def _reasoning_ids(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """(frames, width) int64: `<think>text</think>` ids right-padded with 0, as upstream stores them."""
    start, end = SPECIAL_TOKEN_TEXT["think_start"], SPECIAL_TOKEN_TEXT["think_end"]
    encoded = tokenizer([f"{start}{text}{end}" for text in texts], add_special_tokens=False)["input_ids"]
    ids = np.full((len(encoded), max(map(len, encoded))), REASONING_PAD_ID, dtype=np.int64)
    for row, tokens in enumerate(encoded):
        ids[row, :len(tokens)] = tokens
    return ids


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A table-like vertical gradient with a random tint."""
    tint = rng.uniform(0.6, 1.0, 3)
    ramp = np.linspace(90, 200, size)[:, None, None] * tint
    return np.broadcast_to(ramp, (size, size, 3)).astype(np.uint8).copy()


def _square(image: np.ndarray, centre: tuple[float, float] | np.ndarray, half: float, colour: tuple) -> None:
    """Paint an axis-aligned square; centre and half-side are fractions of the image side."""
    size = image.shape[0]
    x0, x1 = (int(np.clip((centre[0] + s * half) * size, 0, size)) for s in (-1, 1))
    y0, y1 = (int(np.clip((centre[1] + s * half) * size, 0, size)) for s in (-1, 1))
    image[y0:y1, x0:x1] = colour


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to create (must not exist or be empty)")
    parser.add_argument("--episodes", type=int, default=4, help="episodes; the last one is shorter than a chunk")
    parser.add_argument("--frames-per-episode", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=64, help="stored image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", help="tokenizer directory: store reasoning as token ids, as upstream does")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer  # only this option needs transformers (slow to import)

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    path = write_synthetic_dataset(args.out_dir, episodes=args.episodes, frames_per_episode=args.frames_per_episode,
                                   image_size=args.image_size, seed=args.seed, tokenizer=tokenizer)
    total = args.frames_per_episode * (args.episodes - 1) + SHORT_EPISODE_FRAMES
    print(f"wrote a synthetic dataset of {args.episodes} episodes, {total} frames to {path}")


if __name__ == "__main__":
    main()
