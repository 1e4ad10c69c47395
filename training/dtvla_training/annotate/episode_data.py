"""One episode of the input dataset, as the annotators see it: task, actions, scene states and camera images.

The input is a LeRobot v2.1 dataset in the layout `dtvla_training.data.lerobot_dataset` reads, optionally with the
string column `observation.scene` (one `SceneState.to_json()` per frame) that `dtvla-collect-demos` records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dtvla_policy.lerobot_layout import SCENE_KEY
from dtvla_sim_bridge.sim.scene import SceneFormatError, SceneState
from dtvla_training.data.lerobot_dataset import (
    ACTION_KEY,
    AGENTVIEW_KEY,
    WRIST_KEY,
    DatasetMeta,
    EpisodeMeta,
    action_array,
)


@dataclass(frozen=True)
class Episode:
    """An episode's table sorted by frame_index, and what the annotators read from it."""

    index: int
    task: str
    table: pa.Table  # every column of the episode file, rows in frame order

    @property
    def length(self) -> int:
        return self.table.num_rows

    @cached_property
    def actions(self) -> np.ndarray:
        """(n, 7) float32 raw actions."""
        return action_array(self.table.column(ACTION_KEY))

    @property
    def has_scene(self) -> bool:
        return SCENE_KEY in self.table.column_names

    @cached_property
    def scenes(self) -> tuple[SceneState, ...]:
        """The privileged state of every frame; raises ValueError naming the frame when it is absent or broken."""
        if not self.has_scene:
            raise ValueError(f"episode {self.index} has no {SCENE_KEY!r} column")
        states = []
        for frame, text in enumerate(self.table.column(SCENE_KEY).to_pylist()):
            try:
                if text is None:
                    raise SceneFormatError("null")
                states.append(SceneState.from_json(text))
            except SceneFormatError as err:
                raise ValueError(f"episode {self.index} frame {frame}: bad {SCENE_KEY!r} value ({err})") from err
        return tuple(states)

    def images(self, frame: int) -> tuple[bytes, bytes]:
        """Encoded (agentview, wrist) images of a frame, as stored (PNG or JPEG bytes)."""
        return tuple(_image_bytes(self.table.column(key)[frame].as_py(), f"episode {self.index} frame {frame} {key}")
                     for key in (AGENTVIEW_KEY, WRIST_KEY))


def read_episode(meta: DatasetMeta, episode: EpisodeMeta) -> Episode:
    """Read one episode file whole; a missing or malformed file is a ValueError naming it (the engine writes
    every listed episode, so it cannot skip one the way the training reader does)."""
    path = meta.episode_path(episode.index)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"episode {episode.index}: cannot read {path} ({err})") from err
    for column in (ACTION_KEY, "frame_index", "task_index"):
        if column not in table.column_names:
            raise ValueError(f"episode {episode.index}: {path} has no {column!r} column")
    if table.num_rows == 0:
        raise ValueError(f"episode {episode.index}: {path} has no frames")
    frames = table.column("frame_index").to_numpy(zero_copy_only=False)
    order = np.argsort(frames, kind="stable")
    if not np.array_equal(frames[order], np.arange(len(frames))):
        raise ValueError(f"episode {episode.index}: frame_index in {path} is not 0..{len(frames) - 1}")
    table = table.take(pa.array(order))
    task_index = table.column("task_index")[0].as_py()
    if task_index not in meta.tasks:
        raise ValueError(f"episode {episode.index}: task_index {task_index} is not in meta/tasks.jsonl")
    return Episode(index=episode.index, task=meta.tasks[task_index], table=table)


def _image_bytes(value: dict | bytes | None, where: str) -> bytes:
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise ValueError(f"{where}: no image bytes")
    return data
