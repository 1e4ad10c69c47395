"""Writing datasets in the LeRobot v2.1 layout that `lerobot_dataset.CotDataset` reads: the one writer of the
synthetic generator and the demonstration collector.

One parquet file per episode at `DATA_PATH` (images as PNG structs embedded in the file, as upstream's LIBERO CoT
dataset stores them), then meta/info.json, meta/tasks.jsonl and meta/episodes.jsonl describing them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from dtvla_training.data.lerobot_dataset import EPISODES_FILE, INFO_FILE, TASKS_FILE

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"  # LeRobot v2.1's template
CHUNKS_SIZE = 1000
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


@dataclass(frozen=True)
class EpisodeEntry:
    """One line of meta/episodes.jsonl."""

    episode_index: int
    task: str
    length: int


def png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes; fast compression, since datasets are written more often than archived."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def image_column(encoded: Sequence[bytes]) -> pa.Array:
    """LeRobot's image feature: a struct of the encoded bytes and a file name."""
    return pa.array([{"bytes": b, "path": f"frame_{i:06d}.png"} for i, b in enumerate(encoded)], type=IMAGE_STRUCT)


def vector_column(values: np.ndarray) -> pa.Array:
    """(n, d) numbers -> a fixed-size list column of float32 (LeRobot's layout of `action`, `observation.state`)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"a vector column needs shape (frames, dims), got {values.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), values.shape[1])


def index_columns(episode_index: int, first_index: int, task_index: int, length: int, fps: float) -> dict[str, Any]:
    """The bookkeeping columns of one episode: timestamps at `fps`, frame, episode, global and task indices."""
    return {
        "timestamp": pa.array(np.arange(length, dtype=np.float32) / np.float32(fps)),
        "frame_index": pa.array(np.arange(length, dtype=np.int64)),
        "episode_index": pa.array(np.full(length, episode_index, dtype=np.int64)),
        "index": pa.array(np.arange(first_index, first_index + length, dtype=np.int64)),
        "task_index": pa.array(np.full(length, task_index, dtype=np.int64)),
    }


def index_features() -> dict[str, dict[str, Any]]:
    scalar = {"shape": [1], "names": None}
    return {"timestamp": {"dtype": "float32", **scalar}, **{name: {"dtype": "int64", **scalar}
                                                            for name in INDEX_FEATURES[1:]}}


def image_feature(height: int, width: int | None = None) -> dict[str, Any]:
    """A camera feature of (height, width) px; one size: square."""
    return {"dtype": "image", "shape": [height, width or height, 3], "names": ["height", "width", "channel"]}


def episode_path(root: Path, episode_index: int) -> Path:
    return root / DATA_PATH.format(episode_chunk=episode_index // CHUNKS_SIZE, episode_index=episode_index)


def write_episode(root: Path, episode_index: int, table: pa.Table, row_group_size: int | None = None) -> Path:
    """Write one episode's parquet file where info.json's data_path puts it."""
    path = episode_path(root, episode_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_episodes(root: Path, episodes: Iterable[tuple[pa.Table, str]], tasks: Sequence[str],
                   fps: float) -> list[EpisodeEntry]:
    """Write each (frame columns, task) as episode 0, 1, ... with its index columns added (task_index = position in
    `tasks`, global indices running on); returns the meta/episodes.jsonl entries for `write_meta`."""
    entries, first_index = [], 0
    for number, (table, task) in enumerate(episodes):
        for name, column in index_columns(number, first_index, tasks.index(task), table.num_rows, fps).items():
            table = table.append_column(name, column)
        write_episode(root, number, table)
        entries.append(EpisodeEntry(number, task, table.num_rows))
        first_index += table.num_rows
    return entries


def write_meta(root: Path, *, fps: float, features: dict[str, dict[str, Any]], tasks: Sequence[str],
               episodes: Sequence[EpisodeEntry], robot_type: str = "panda") -> None:
    """meta/info.json, tasks.jsonl (task_index = position in `tasks`) and episodes.jsonl for written episodes."""
    count = len(episodes)
    info = {
        "codebase_version": "v2.1",
        "robot_type": robot_type,
        "total_episodes": count,
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": len(tasks),
        "total_videos": 0,
        "total_chunks": (count - 1) // CHUNKS_SIZE + 1 if count else 0,
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{count}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": {**features, **index_features()},
    }
    (root / INFO_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (root / TASKS_FILE).write_text("".join(json.dumps({"task_index": i, "task": task}) + "\n"
                                           for i, task in enumerate(tasks)))
    (root / EPISODES_FILE).write_text("".join(
        json.dumps({"episode_index": e.episode_index, "tasks": [e.task], "length": e.length}) + "\n"
        for e in episodes))
