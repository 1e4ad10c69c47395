"""`dtvla-collect-demos`: scripted-expert demonstrations on LIBERO, written as a LeRobot v2.1 dataset.

Worker processes each own one `LiberoSim` with both cameras at `--image-size` (rotated 180 degrees, as the policy
sees them) and run the scripted expert (`dtvla_sim_bridge.sim.expert`) through the one episode loop, one action per
step. Every frame stores what the expert saw and did: the two camera images (PNG), `observation.state` (LIBERO's 8
dims), the `action` it sent, and `observation.scene` (its `SceneState` as JSON, which the CoT annotator reads).
Demonstrations that do not reach the goal within the step cap are dropped and counted. With `--action-noise` the
executed commands are perturbed and the recorded `action` stays the expert's clean command (`action_noise`: DART).

Each finished demonstration goes to a parts directory beside the output (`.<name>.parts/`: one parquet file per
successful episode and a JSONL record per attempt), so an interrupted collection resumes where it stopped. When all
are done the dataset is assembled in a temp directory and renamed into place (`atomic_directory.new_directory`),
with meta/norm_stats.json and meta/collection.json (the settings and the drop counts); then the parts go.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dtvla_policy.atomic_directory import new_directory
from dtvla_policy.atomic_file import write_json
from dtvla_policy.lerobot_layout import SCENE_KEY, STATE_KEY
from dtvla_policy.model.conventions import ACTION_DIM, CHUNK_STEPS, COMMAND_NAMES
from dtvla_policy.protocol import UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_sim_bridge.eval.records import EpisodeLog, read_records
from dtvla_sim_bridge.sim import CONTROL_FREQ_HZ, Frame, LiberoSim, Outcome, get_suite, libero_state
from dtvla_sim_bridge.sim.expert_session import ExpertSession
from dtvla_sim_bridge.sim.suites import INIT_STATES, parse_index_ranges
from dtvla_training.data.lerobot_dataset import ACTION_KEY, AGENTVIEW_KEY, NORM_STATS_PATH, WRIST_KEY
from dtvla_training.data.lerobot_writer import (
    image_column,
    image_feature,
    png,
    vector_column,
    write_episodes,
    write_meta,
)
from dtvla_training.data.norm_stats import compute_norm_stats, write_norm_stats
from dtvla_training.demos.action_noise import ActionNoise, check_action_noise, noise_rng

STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z",
               "gripper_qpos_left", "gripper_qpos_right")
COLLECTION_FILE = "meta/collection.json"


@dataclass(frozen=True)
class Collection:
    """What every demonstration of one dataset shares; a resumed collection must match it."""

    suite: str
    image_size: int
    max_steps: int
    object_jitter_m: float
    fast_render: bool = False  # LiberoSim(fast_render=True): no MSAA, no reflection pass; training data only
    env_seed: int = UPSTREAM_EPISODE.env_seed
    settle_steps: int = UPSTREAM_EPISODE.settle_steps
    action_noise: float = 0.0  # std (action units) of the offsets on executed commands; labels stay clean
    action_noise_hold_steps: int = CHUNK_STEPS  # steps one offset is held (one chunk)

    def __post_init__(self) -> None:
        check_action_noise(self.action_noise, self.action_noise_hold_steps)
        if self.image_size < 8:
            raise ValueError(f"--image-size must be >= 8 px, got {self.image_size}")
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        self.protocol  # noqa: B018 (validates the jitter)

    @property
    def protocol(self) -> EpisodeProtocol:
        return EpisodeProtocol(settle_steps=self.settle_steps, camera_size=self.image_size, env_seed=self.env_seed,
                               object_jitter_m=self.object_jitter_m)


def part_path(parts: Path, task: int, init_state: int) -> Path:
    return parts / f"task{task:03d}_init{init_state:03d}.parquet"


class DemoRecorder:
    """One process's simulator, loop and expert; turns (task, init state) jobs into part files and records."""

    def __init__(self, collection: Collection, parts: Path) -> None:
        self.collection = collection
        self.parts = parts
        self.session = ExpertSession(
            lambda task: LiberoSim.for_protocol(collection.suite, task, collection.protocol, collection.max_steps,
                                                fast_render=collection.fast_render),
            collection.protocol)

    def demo(self, task: int, init_state: int) -> dict[str, Any]:
        start = time.monotonic()
        record: dict[str, Any] = {"task": task, "init_state": init_state, "success": False, "outcome": "error",
                                  "steps": 0, "error": "", "task_language": ""}
        rows: list[dict[str, Any]] = []
        try:
            loop, expert = self.session.for_task(task)
            record["task_language"] = loop.sim.task_language
            noise = ActionNoise(self.collection.action_noise, self.collection.action_noise_hold_steps,
                                noise_rng(self.collection.env_seed, task, init_state))

            def act(frame: Frame, _: str) -> np.ndarray:
                action = expert.act(frame)
                rows.append({"agentview": png(frame.agentview), "wrist": png(frame.wrist),
                             "state": libero_state(frame), "action": action, "scene": expert.scene.to_json()})
                return noise(action)[None]

            episode = loop.run(init_state, act)
            record.update(success=episode.outcome is Outcome.SUCCESS, outcome=str(episode.outcome),
                          steps=episode.steps, error=episode.error)
            if record["success"]:
                self._write_part(task, init_state, rows)
        except Exception as exc:  # recorded as a dropped demonstration; the collection goes on
            record.update(success=False, error=repr(exc))
            self.session.close()
        record["wall_s"] = round(time.monotonic() - start, 2)
        return record

    def _write_part(self, task: int, init_state: int, rows: list[dict[str, Any]]) -> None:
        table = pa.table({
            AGENTVIEW_KEY: image_column([r["agentview"] for r in rows]),
            WRIST_KEY: image_column([r["wrist"] for r in rows]),
            STATE_KEY: vector_column(np.stack([r["state"] for r in rows])),
            ACTION_KEY: vector_column(np.stack([r["action"] for r in rows])),
            SCENE_KEY: pa.array([r["scene"] for r in rows], pa.string()),
        })
        path = part_path(self.parts, task, init_state)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # a part file exists only whole

_RECORDER: DemoRecorder | None = None  # one per worker process


def _init_worker(collection: Collection, parts: Path, render_threads: int) -> None:
    global _RECORDER
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("LP_NUM_THREADS", str(render_threads))  # the workers share the cores
    _RECORDER = DemoRecorder(collection, parts)


def _run_job(job: tuple[int, int]) -> dict[str, Any]:
    return _RECORDER.demo(*job)


def collect_demos(out: str | Path, collection: Collection, jobs: list[tuple[int, int]], workers: int = 1,
                  log: Any = None) -> dict[str, Any]:
    """Run every (task, init state) job not done yet, then assemble the dataset at `out`; returns its report.

    ValueError when no demonstration succeeded (the parts directory is kept) or when the parts directory holds a
    collection with other settings.
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    parts = out.parent / f".{out.name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    _check_settings(parts, collection)
    records_path = parts / "episodes.jsonl"
    done = {(r["task"], r["init_state"]) for r in read_records(records_path)
            if not r["success"] or part_path(parts, r["task"], r["init_state"]).is_file()}
    todo = [job for job in jobs if job not in done]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with EpisodeLog(records_path) as episodes, \
            mp.get_context("spawn").Pool(workers, _init_worker, (collection, parts, threads)) as pool:
        for record in pool.imap_unordered(_run_job, todo):
            episodes.append(record)
            if log is not None:
                print(f"task {record['task']} init {record['init_state']}: {record['outcome']} after "
                      f"{record['steps']} steps {record['error']}", file=log, flush=True)
    final = {(r["task"], r["init_state"]): r for r in read_records(records_path)}
    records = [final[job] for job in jobs]
    report = _report(collection, records)
    if not report["episodes"]:
        raise ValueError(f"no demonstration succeeded ({report['attempted']} attempted, all dropped); the attempts "
                         f"are in {records_path}")
    with new_directory(out) as tmp:
        _assemble(tmp, parts, [r for r in records if r["success"]], report)
    shutil.rmtree(parts)
    return {"dataset": str(out), **report}


def _check_settings(parts: Path, collection: Collection) -> None:
    path = parts / "collection.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != asdict(collection):
            raise ValueError(f"{parts} holds an interrupted collection with settings {previous}, this one uses "
                             f"{asdict(collection)}; rerun with the same settings or delete {parts}")
    else:
        write_json(path, asdict(collection))


def _report(collection: Collection, records: list[dict[str, Any]]) -> dict[str, Any]:
    kept = [r for r in records if r["success"]]
    per_task: dict[str, dict[str, int]] = {}
    for r in records:
        row = per_task.setdefault(str(r["task"]), {"attempted": 0, "kept": 0})
        row["attempted"] += 1
        row["kept"] += int(r["success"])
    return {
        **asdict(collection),
        "fps": CONTROL_FREQ_HZ,
        "attempted": len(records),
        "episodes": len(kept),
        "frames": sum(r["steps"] for r in kept),
        "dropped": len(records) - len(kept),
        "dropped_episodes": [{"task": r["task"], "init_state": r["init_state"], "outcome": r["outcome"],
                              "error": r["error"]} for r in records if not r["success"]],
        "per_task": per_task,
    }


def _assemble(root: Path, parts: Path, kept: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """The dataset from the successful parts: episodes numbered 0.. in (task, init state) order."""
    languages = list(dict.fromkeys(r["task_language"] for r in kept))
    entries = write_episodes(root, ((pq.read_table(part_path(parts, r["task"], r["init_state"])), r["task_language"])
                                    for r in kept), languages, CONTROL_FREQ_HZ)
    size = report["image_size"]
    features = {
        AGENTVIEW_KEY: image_feature(size),
        WRIST_KEY: image_feature(size),
        STATE_KEY: {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)},
        ACTION_KEY: {"dtype": "float32", "shape": [ACTION_DIM], "names": list(COMMAND_NAMES)},
        SCENE_KEY: {"dtype": "string", "shape": [1], "names": None},
    }
    write_meta(root, fps=CONTROL_FREQ_HZ, features=features, tasks=languages, episodes=entries)
    write_json(root / COLLECTION_FILE, report)
    write_norm_stats(compute_norm_stats(root), root / NORM_STATS_PATH)


def plan_jobs(suite: str, tasks: str, init_states: str, episodes_per_task: int | None) -> list[tuple[int, int]]:
    """(task, init state) pairs: the first `episodes_per_task` of the given init states of every given task."""
    spec = get_suite(suite)
    task_ids = parse_index_ranges(tasks, spec.num_tasks, "--tasks")
    inits = parse_index_ranges(init_states, INIT_STATES, "--init-states")
    count = len(inits) if episodes_per_task is None else episodes_per_task
    if not 1 <= count <= len(inits):
        raise ValueError(f"--episodes-per-task must be 1..{len(inits)} (the init states given; the same init state "
                         f"gives the same demonstration), got {count}")
    return [(task, init) for task in task_ids for init in inits[:count]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-collect-demos", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, help="libero_spatial or libero_object")
    parser.add_argument("--tasks", default=None, help="task ids, e.g. 0-9 or 0,3 (default: every task)")
    parser.add_argument("--init-states", default=f"0-{INIT_STATES - 1}", help="init state ids (default: 0-49)")
    parser.add_argument("--episodes-per-task", type=int, default=None,
                        help="demonstrations attempted per task: the first N of --init-states (default: all)")
    parser.add_argument("--image-size", type=int, default=128, help="camera render size in px (square)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode step cap (default: the suite's)")
    parser.add_argument("--object-jitter-m", type=float, default=UPSTREAM_EPISODE.object_jitter_m,
                        help="object-position jitter in m: every movable object moved by up to this in x and y")
    parser.add_argument("--fast-render", action="store_true",
                        help="render without MSAA and reflections (~2.8x less CPU; pixels differ by ~3/255 on average "
                             "from the evaluation's rendering)")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="std of offsets (action units) added to the executed x, y, z commands, one per "
                             "--action-noise-hold-steps, "
                             "while the clean commands are recorded (DART; default 0: the expert as it is)")
    parser.add_argument("--action-noise-hold-steps", type=int, default=CHUNK_STEPS,
                        help="steps each offset is held (default: one chunk)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one LIBERO env each)")
    parser.add_argument("--out", required=True, help="dataset directory to create (must not exist or be empty)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = get_suite(args.suite)
        jobs = plan_jobs(spec.name, args.tasks or f"0-{spec.num_tasks - 1}", args.init_states,
                         args.episodes_per_task)
        collection = Collection(suite=spec.name, image_size=args.image_size,
                                max_steps=args.max_steps or spec.max_steps, object_jitter_m=args.object_jitter_m,
                                fast_render=args.fast_render, action_noise=args.action_noise,
                                action_noise_hold_steps=args.action_noise_hold_steps)
        report = collect_demos(args.out, collection, jobs, args.workers, log=sys.stderr)
    except (ValueError, FileExistsError) as exc:
        print(f"dtvla-collect-demos: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
