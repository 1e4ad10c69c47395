"""Baseline chunk sources for `dtvla-eval`: the floor a success rate must be read against (issue 11).

LIBERO's fixed init states are easy to memorise: one demonstration replayed blind succeeds in about half of the
libero_spatial episodes. A model's number means something only beside these, run on the same episodes through the
same episode loop and worker pool; only the chunk source differs. Both ignore the cameras.

  noop    every action holds still with the gripper open: zero translation and rotation, gripper -1 (LIBERO's
          settle action). It succeeds only where the init state already satisfies the goal.
  replay  one recorded demonstration per task, open-loop: the LOWEST episode index of the dataset whose task is the
          LIBERO task's instruction (the collector keeps successful demonstrations only, as LIBERO's datasets do).
          Frame k of that episode holds the action executed at policy step k (settle steps excluded, as the
          evaluation counts them), so the chunk asked at step s is its actions s..s+9. Past the demonstration's end
          the robot holds still with the demonstration's last gripper command (zero deltas), as a driver with no
          chunk does, rather than repeating a last motion.
The dataset is a LeRobot v2.1 directory read with pyarrow (`dtvla_policy.lerobot_layout` names its files and
columns); the sim bridge package does not depend on the training package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dtvla_policy.lerobot_layout import (
    ACTION_KEY,
    EPISODE_INDEX_KEY,
    EPISODES_FILE,
    FRAME_INDEX_KEY,
    INFO_FILE,
    episode_file,
)
from dtvla_policy.model.conventions import ACTION_DIM, CHUNK_STEPS, GRIPPER_DIM, format_task
from dtvla_sim_bridge.eval.config import PolicyKind
from dtvla_sim_bridge.eval.manifest import sha256_file
from dtvla_sim_bridge.eval.worker import PolicyQuery, PolicyReply
from dtvla_sim_bridge.sim import SETTLE_ACTION


def hold_chunk(gripper: float) -> np.ndarray:
    """(10, 7): zero deltas with the gripper command `gripper` at every step."""
    chunk = np.zeros((CHUNK_STEPS, ACTION_DIM))
    chunk[:, GRIPPER_DIM] = gripper
    return chunk


class NoopPolicy:
    """Zero deltas, gripper open (-1), for every query."""

    decode = None  # nothing is decoded

    def describe(self) -> dict[str, Any]:
        """The manifest's record of the policy."""
        return {"kind": PolicyKind.NOOP.value, "action": hold_chunk(float(SETTLE_ACTION[GRIPPER_DIM]))[0].tolist()}

    def __call__(self, queries: list[PolicyQuery]) -> list[PolicyReply]:
        chunk = hold_chunk(float(SETTLE_ACTION[GRIPPER_DIM]))
        return [PolicyReply(chunk, batch_size=len(queries)) for _ in queries]


@dataclass(frozen=True)
class Demonstration:
    """The recorded episode replayed for one LIBERO task."""

    episode_index: int
    actions: np.ndarray  # (T, 7) raw env actions, frame order
    sha256: str  # of its parquet file

    def chunk(self, step: int) -> np.ndarray:
        """(10, 7): actions step..step+9, the tail padded with zero deltas and the last gripper command."""
        chunk = hold_chunk(float(self.actions[-1, GRIPPER_DIM]))
        recorded = self.actions[step : step + CHUNK_STEPS]
        chunk[: len(recorded)] = recorded
        return chunk


class ReplayPolicy:
    """Each query answered from its task's demonstration at the query's policy step."""

    decode = None  # nothing is decoded

    def __init__(self, dataset: Path, demonstrations: dict[int, Demonstration]) -> None:
        self.dataset = dataset
        self.demonstrations = demonstrations

    def __call__(self, queries: list[PolicyQuery]) -> list[PolicyReply]:
        return [PolicyReply(self.demonstrations[q.task].chunk(q.step), batch_size=len(queries)) for q in queries]

    def describe(self) -> dict[str, Any]:
        """The manifest's record of what is replayed: per task, the episode, its length and its file's hash."""
        episodes = {str(task): {"episode_index": d.episode_index, "length": len(d.actions), "sha256": d.sha256}
                    for task, d in sorted(self.demonstrations.items())}
        return {"kind": PolicyKind.REPLAY.value, "dataset": str(self.dataset), "episodes": episodes}


def load_demonstrations(dataset: Path, instructions: dict[int, str]) -> dict[int, Demonstration]:
    """The demonstration of every task in `instructions` (task id -> LIBERO instruction) from a LeRobot dataset.

    An episode's task is its `tasks` entry in meta/episodes.jsonl; it matches an instruction when both are equal
    after the prompt's normalisation (lowercase, '_' -> ' ').
    FileNotFoundError or ValueError name the file and what is missing.
    """
    for rel in (INFO_FILE, EPISODES_FILE):
        if not (dataset / rel).is_file():
            raise FileNotFoundError(f"replay dataset {dataset} has no {rel}; pass a LeRobot v2.1 dataset directory "
                                    "(dtvla-collect-demos writes one)")
    info = json.loads((dataset / INFO_FILE).read_text())
    first_episode: dict[str, int] = {}
    for row in sorted(_jsonl(dataset / EPISODES_FILE), key=lambda r: int(r[EPISODE_INDEX_KEY])):
        for text in row.get("tasks", []):
            first_episode.setdefault(format_task(text), int(row[EPISODE_INDEX_KEY]))
    demonstrations = {}
    for task, instruction in instructions.items():
        episode = first_episode.get(format_task(instruction))
        if episode is None:
            raise ValueError(f"replay dataset {dataset} has no episode of task {task} ({instruction!r}); its tasks: "
                             f"{sorted(first_episode)}")
        demonstrations[task] = _read_demonstration(episode_file(dataset, info, episode), episode)
    return demonstrations


def _read_demonstration(path: Path, episode: int) -> Demonstration:
    table = pq.read_table(path, columns=[ACTION_KEY, FRAME_INDEX_KEY])
    order = np.argsort(table.column(FRAME_INDEX_KEY).to_numpy())
    actions = np.asarray(table.column(ACTION_KEY).to_pylist(), dtype=np.float64)[order]
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or len(actions) == 0:
        raise ValueError(f"{path}: episode {episode} holds actions of shape {actions.shape}, expected (T >= 1, "
                         f"{ACTION_DIM})")
    if not np.isfinite(actions).all():
        raise ValueError(f"{path}: episode {episode} holds non-finite actions; it cannot be replayed")
    return Demonstration(episode, actions, sha256_file(path))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
