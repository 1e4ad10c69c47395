"""What one evaluation run does: the protocol settings, validated against the suite before anything starts."""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dtvla_sim_bridge.sim import get_suite

MODES = ("full", "masked", "random")  # the paper's three CoT settings (97.0 / 96.5 / 85.1 average SR)
GLOBAL_SEED = 429  # upstream run_libero_eval.py `seed`
ENV_SEED = 0  # upstream `env.seed(0)`
SETTLE_STEPS = 10  # upstream `num_steps_wait`
CAMERA_SIZE = 256  # upstream `env_img_res`; the policy resizes to its own input size
CHUNK_STEPS = 10  # actions per policy chunk; upstream executes them all before replanning
MAX_COT_TOKENS = 2048  # upstream eval's generation cap; real LIBERO CoTs are ~60-150 tokens


class EvalInputError(ValueError):
    """Bad command-line input, caught before any worker starts; the message says what to change."""


@dataclass(frozen=True)
class TaskInfo:
    """One LIBERO task as the benchmark defines it."""

    task_id: int
    name: str
    language: str
    num_init_states: int


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run. Paths are absolute; `max_steps` is already resolved from the suite."""

    checkpoint: Path
    suite: str
    tasks: tuple[int, ...]
    trials: int  # init states 0..trials-1 of every task, in order (upstream: 50)
    max_steps: int  # policy steps per episode, settle steps excluded
    out: Path
    mode: str = "full"
    replan_steps: int = CHUNK_STEPS  # actions of a chunk executed open-loop before the next query
    workers: int = 1
    seed: int = GLOBAL_SEED
    env_seed: int = ENV_SEED
    settle_steps: int = SETTLE_STEPS
    camera_size: int = CAMERA_SIZE
    max_cot_tokens: int = MAX_COT_TOKENS
    device: str = "cpu"
    dtype: str = "auto"
    video_episodes: tuple[tuple[int, int], ...] = ()  # (task, init state) pairs to record as mp4
    via_ros: bool = False
    step_caps: dict[str, int] = field(default_factory=dict)  # the suite's caps, for the manifest

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EvalInputError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if not 1 <= self.replan_steps <= CHUNK_STEPS:
            raise EvalInputError(f"--replan-steps must be 1..{CHUNK_STEPS} (a chunk's length), got {self.replan_steps}")
        for name in ("trials", "max_steps", "workers", "camera_size"):
            if getattr(self, name) < 1:
                raise EvalInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_cot_tokens < 0:
            raise EvalInputError(f"--max-cot-tokens must be >= 0, got {self.max_cot_tokens}")
        if self.via_ros:
            self._check_ros_protocol()

    def _check_ros_protocol(self) -> None:
        """The ROS path takes these from config/sim.yaml; refuse settings it would silently ignore."""
        fixed = {"replan_steps": CHUNK_STEPS, "camera_size": CAMERA_SIZE, "settle_steps": SETTLE_STEPS,
                 "env_seed": ENV_SEED, "workers": 1}
        for name, value in fixed.items():
            if getattr(self, name) != value:
                raise EvalInputError(f"--via-ros runs with {name} {value} (config/sim.yaml), got {getattr(self, name)}")
        if self.mode == "random":
            raise EvalInputError("--via-ros supports modes full and masked (the policy node has no random mode)")

    @property
    def jobs(self) -> list[tuple[int, int]]:
        """Every (task, init state) episode of the run, in upstream order."""
        return [(task, init) for task in self.tasks for init in range(self.trials)]


def _import_benchmark():
    os.environ.setdefault("MUJOCO_GL", "egl")  # robosuite picks its GL backend at import
    from libero.libero import benchmark

    return benchmark


def suite_tasks(suite: str) -> list[TaskInfo]:
    """Names, instructions and init-state counts of every task in `suite`; reads files, creates no env."""
    spec = get_suite(suite)
    with contextlib.redirect_stdout(sys.stderr):  # libero prints "[info] ..." on stdout
        task_suite = _import_benchmark().get_benchmark_dict()[spec.name]()
    infos = []
    for task_id in range(spec.num_tasks):
        task = task_suite.get_task(task_id)
        infos.append(TaskInfo(task_id, task.name, task.language, len(task_suite.get_task_init_states(task_id))))
    return infos


def resolve_tasks(requested: list[str] | None, infos: list[TaskInfo], suite: str) -> tuple[int, ...]:
    """Task ids from ids or task names (all tasks when None); unknown names get a "did you mean"."""
    if not requested:
        return tuple(info.task_id for info in infos)
    names = {info.name: info.task_id for info in infos}
    resolved: list[int] = []
    for item in requested:
        if item.lstrip("-").isdigit():
            task_id = int(item)
            if not 0 <= task_id < len(infos):
                raise EvalInputError(
                    f"task {task_id} out of range: {suite} has {len(infos)} tasks (0..{len(infos) - 1})"
                )
        elif item in names:
            task_id = names[item]
        else:
            close = difflib.get_close_matches(item, list(names), n=1, cutoff=0.4)
            hint = f" Did you mean {close[0]!r} (task {names[close[0]]})?" if close else ""
            raise EvalInputError(f"unknown task {item!r} in {suite}.{hint} Give a task id 0..{len(infos) - 1} or name.")
        if task_id in resolved:
            raise EvalInputError(f"task {task_id} given twice in --tasks")
        resolved.append(task_id)
    return tuple(resolved)


def check_trials(trials: int, tasks: tuple[int, ...], infos: list[TaskInfo], suite: str) -> None:
    """EvalInputError unless every chosen task has at least `trials` init states (LIBERO ships 50)."""
    for task_id in tasks:
        available = infos[task_id].num_init_states
        if trials > available:
            raise EvalInputError(
                f"--trials {trials} exceeds the {available} init states of {suite} task {task_id}; "
                f"use --trials {available} or fewer (each trial is one fixed init state)"
            )


def parse_video_episodes(specs: list[str] | None, tasks: tuple[int, ...], trials: int) -> tuple[tuple[int, int], ...]:
    """'TASK:INIT' strings -> (task, init) pairs that belong to this run."""
    pairs: list[tuple[int, int]] = []
    for spec in specs or []:
        task, sep, init = spec.partition(":")
        if not sep or not task.isdigit() or not init.isdigit():
            raise EvalInputError(f"--video-episodes expects TASK:INIT pairs like 0:3, got {spec!r}")
        pair = (int(task), int(init))
        if pair[0] not in tasks or pair[1] >= trials:
            raise EvalInputError(
                f"--video-episodes {spec} is not in this run (tasks {list(tasks)}, init states 0..{trials - 1})"
            )
        pairs.append(pair)
    return tuple(pairs)


def suite_max_steps(suite: str, max_steps: int | None, long_horizon_520: bool) -> int:
    """The episode cap: explicit, else DeepThinkVLA's suite cap, or OpenVLA's (520 for libero_10) on request."""
    spec = get_suite(suite)
    if max_steps is not None and long_horizon_520:
        raise EvalInputError(f"--max-steps {max_steps} and --long-horizon-520 contradict each other; give one")
    if max_steps is not None:
        return max_steps
    return spec.openvla_max_steps if long_horizon_520 else spec.max_steps
