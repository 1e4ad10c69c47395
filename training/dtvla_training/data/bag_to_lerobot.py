"""`dtvla-bag-to-lerobot BAG OUT`: recorded episodes as a LeRobot v2.1 dataset, the layout the SFT reader and the CoT
annotator take, so robot runs enter training the same way as demonstrations.

Every episode the bag saw end (the bridge's episode status, `dtvla_policy.recording.trace`) becomes one dataset
episode and every executed control step one frame: the two camera images (PNG, as the policy received them), the
joint positions (`observation.joint_state`), the action executed (the chunk's point, gripper sign-binarised as the
simulator applies it) and `reasoning`, the chain-of-thought of the chunk the action came from. The final
observation of an episode (no action followed it) is not a frame. Lockstep recordings only (see the trace reader).
The dataset is written by the shared writer (`lerobot_writer`) into a temp directory renamed into place, with
meta/norm_stats.json and meta/conversion.json (source bag, episodes, outcomes). Exit 2 for refused input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.atomic_file import write_json
from dtvla_policy.lerobot_layout import JOINT_STATE_KEY
from dtvla_policy.model.conventions import ACTION_DIM, COMMAND_NAMES, GRIPPER_DIM
from dtvla_policy.recording.trace import BagTrace, RecordedEpisode
from dtvla_policy.topic_names import EPISODE_END_STATES, ROBOT_JOINT_NAMES
from dtvla_sim_bridge.sim import binarize_gripper
from dtvla_training.data.lerobot_dataset import ACTION_KEY, AGENTVIEW_KEY, NORM_STATS_PATH, REASONING_KEY, WRIST_KEY
from dtvla_training.data.lerobot_writer import (
    image_column,
    image_feature,
    png,
    vector_column,
    write_episodes,
    write_meta,
)
from dtvla_training.data.norm_stats import compute_norm_stats, write_norm_stats

CONVERSION_FILE = "meta/conversion.json"
TEXT_FEATURE = {"dtype": "string", "shape": [1], "names": None}


def executed_action(point: np.ndarray) -> np.ndarray:
    """A chunk point as the simulator executes it: the gripper sign-binarised (upstream's np.sign)."""
    action = np.asarray(point, dtype=np.float32).copy()
    action[GRIPPER_DIM] = binarize_gripper(float(action[GRIPPER_DIM]))
    return action


def episode_table(episode: RecordedEpisode, cots: dict[int, str], with_joints: bool) -> pa.Table:
    """One episode's frame columns (the writer's index columns are added by the caller)."""
    frames = episode.frames
    columns: dict[str, Any] = {
        AGENTVIEW_KEY: image_column([png(f.agentview) for f in frames]),
        WRIST_KEY: image_column([png(f.wrist) for f in frames]),
        ACTION_KEY: vector_column(np.stack([executed_action(f.action) for f in frames])),
        REASONING_KEY: pa.array([cots[f.chunk_index] for f in frames], pa.string()),
    }
    if with_joints:
        columns[JOINT_STATE_KEY] = vector_column(np.stack([f.joint_positions for f in frames]))
    return pa.table(columns)


def convert(bag: str | Path, out: str | Path, namespace: str = "",
            outcomes: tuple[str, ...] = EPISODE_END_STATES) -> dict[str, Any]:
    """Write the dataset at `out` (new or empty); returns the conversion report. ValueError when nothing is left."""
    trace = BagTrace.read(bag, namespace)
    recorded = trace.episodes()
    wanted = [e.outcome in outcomes and bool(e.frames) for e in recorded]
    episodes = [e for e, keep in zip(recorded, wanted, strict=True) if keep]
    if not episodes:
        raise ValueError(f"{bag}: none of its {len(recorded)} ended episodes has an outcome in {list(outcomes)} "
                         "and executed frames")
    cots = {record.index: record.cot for record in trace.chunk_records()}
    frames = [f for e in episodes for f in e.frames]
    height, width = frames[0].agentview.shape[:2]
    joint_dims = {None if f.joint_positions is None else len(f.joint_positions) for f in frames}
    with_joints = len(joint_dims) == 1 and None not in joint_dims
    stamps = np.array([f.stamp_ns for f in episodes[0].frames], dtype=np.int64)
    fps = round(1e9 / float(np.median(np.diff(stamps))), 3) if len(stamps) > 1 else 0.0
    tasks = list(dict.fromkeys(e.task for e in episodes))
    report = {"bag": str(Path(bag).resolve()), "namespace": namespace or "/", "fps": fps,
              "episodes": [{"episode": number, "recorded_episode": e.episode, "outcome": e.outcome,
                            "frames": len(e.frames), "frames_without_action": e.frames_without_action}
                           for number, e in enumerate(episodes)],
              "skipped_episodes": [{"recorded_episode": e.episode, "outcome": e.outcome}
                                   for e, keep in zip(recorded, wanted, strict=True) if not keep]}
    with new_directory(out) as root:
        entries = write_episodes(root, ((episode_table(e, cots, with_joints), e.task) for e in episodes), tasks, fps)
        features = {AGENTVIEW_KEY: image_feature(height, width), WRIST_KEY: image_feature(height, width),
                    ACTION_KEY: {"dtype": "float32", "shape": [ACTION_DIM], "names": list(COMMAND_NAMES)},
                    REASONING_KEY: TEXT_FEATURE}
        if with_joints:
            dims = joint_dims.pop()
            features[JOINT_STATE_KEY] = {"dtype": "float32", "shape": [dims],
                                         "names": list(ROBOT_JOINT_NAMES) if dims == len(ROBOT_JOINT_NAMES) else None}
        write_meta(root, fps=fps, features=features, tasks=tasks, episodes=entries)
        write_json(root / CONVERSION_FILE, report)
        write_norm_stats(compute_norm_stats(root), root / NORM_STATS_PATH)
    return {"dataset": str(Path(out).resolve()), "frames": sum(e.length for e in entries), **report}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-bag-to-lerobot", description=__doc__.splitlines()[0])
    parser.add_argument("bag", help="rosbag2 directory recorded by dtvla-record (or dtvla-sim --record)")
    parser.add_argument("out", help="dataset directory to create (must not exist or be empty)")
    parser.add_argument("--namespace", default="", help="the robot's namespace in the bag, e.g. robot1")
    parser.add_argument("--outcomes", default=",".join(EPISODE_END_STATES),
                        help="episodes to keep, by outcome (default: all; e.g. success)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outcomes = tuple(o.strip() for o in args.outcomes.split(",") if o.strip())
    unknown = sorted(set(outcomes) - set(EPISODE_END_STATES))
    try:
        if unknown or not outcomes:
            raise ValueError(f"--outcomes takes {', '.join(EPISODE_END_STATES)}; got {args.outcomes!r}")
        report = convert(args.bag, args.out, args.namespace, outcomes)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"dtvla-bag-to-lerobot: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
