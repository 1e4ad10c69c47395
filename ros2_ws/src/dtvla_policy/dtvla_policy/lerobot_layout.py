"""File and column names of a LeRobot v2.1 dataset as dtvla reads and writes it, in one place.

The training reader (`dtvla_training.data.lerobot_dataset`), the dataset writers and the evaluation's replay
baseline (`dtvla_sim_bridge.eval.baselines`, which may not import the training package) all take them from here.
Camera columns are upstream's (`src/dt_datasets/dataset.py`), in `conventions.CAMERA_ORDER`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INFO_FILE = "meta/info.json"
EPISODES_FILE = "meta/episodes.jsonl"
TASKS_FILE = "meta/tasks.jsonl"
NORM_STATS_PATH = "meta/norm_stats.json"

AGENTVIEW_KEY = "observation.images.image"
WRIST_KEY = "observation.images.wrist_image"
CAMERA_KEYS = (AGENTVIEW_KEY, WRIST_KEY)
ACTION_KEY = "action"
REASONING_KEY = "reasoning"
STATE_KEY = "observation.state"  # LIBERO's 8 dims: eef position, eef axis-angle, finger joints
JOINT_STATE_KEY = "observation.joint_state"  # recorded robot joint positions (/joint_states), as dtvla-record saw them
SCENE_KEY = "observation.scene"  # dtvla's demonstrations: `SceneState.to_json()` per frame (the annotator reads it)
TASK_INDEX_KEY = "task_index"
EPISODE_INDEX_KEY = "episode_index"
FRAME_INDEX_KEY = "frame_index"

DEFAULT_CHUNKS_SIZE = 1000  # episodes per data/chunk-NNN directory when info.json does not say


def episode_file(root: Path, info: dict[str, Any], episode_index: int) -> Path:
    """The parquet file of one episode, from info.json's `data_path` template and `chunks_size`."""
    template = info["data_path"]
    chunk = episode_index // int(info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
    try:
        return root / template.format(episode_chunk=chunk, episode_index=episode_index)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"{root / INFO_FILE}: data_path {template!r} is not a template of episode_chunk and episode_index "
            f"({err!r})"
        ) from err
