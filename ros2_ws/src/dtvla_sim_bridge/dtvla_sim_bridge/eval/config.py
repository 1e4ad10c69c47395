"""What one evaluation run does: the protocol settings, validated against the suite before anything starts.

Defaults come from `dtvla_policy.protocol` (the one source both packages import). On the ROS path the settings
come from the parameter file `dtvla-sim` passes to the nodes; `EvalConfig` refuses any value that path would
silently ignore, so the manifest records what ran.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dtvla_policy.protocol import COT_CAP_EVAL, EVAL_MODES, NODE_MODES, UPSTREAM_EPISODE, EpisodeProtocol, Mode
from dtvla_policy.ros.sim_params import BRIDGE_NODE, POLICY_NODE, SimSettings, default_params_file
from dtvla_sim_bridge.sim import get_suite

# EvalConfig field -> the (node, parameter) that sets it on the ROS path
ROS_PARAMETERS = {
    "mode": (POLICY_NODE, "mode"),
    "max_cot_tokens": (POLICY_NODE, "max_cot_tokens"),
    "device": (POLICY_NODE, "device"),
    "dtype": (POLICY_NODE, "dtype"),
    "max_steps": (BRIDGE_NODE, "max_steps"),
    "replan_steps": (BRIDGE_NODE, "execute_steps"),
    "camera_size": (BRIDGE_NODE, "camera_size"),
    "settle_steps": (BRIDGE_NODE, "settle_steps"),
    "env_seed": (BRIDGE_NODE, "seed"),
    "hard_reset": (BRIDGE_NODE, "hard_reset"),
    "object_jitter_m": (BRIDGE_NODE, "object_jitter_m"),
}


class EvalInputError(ValueError):
    """Bad command-line input, caught before any worker starts; the message says what to change."""


class PolicyKind(StrEnum):
    """What answers the episodes' chunk requests (`eval.baselines` documents the two baselines)."""

    MODEL = "model"  # a checkpoint through PolicyEngine, in the CoT `mode` asked for
    NOOP = "noop"  # zero deltas, gripper open
    REPLAY = "replay"  # one recorded demonstration per task, open-loop


MODEL_OPTIONS = ("mode", "max_cot_tokens", "device", "dtype")  # settings only a model uses


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

    checkpoint: Path | None  # None for a baseline
    suite: str
    tasks: tuple[int, ...]
    trials: int  # init states first_init_state..first_init_state+trials-1 of every task, in order (upstream: 50)
    max_steps: int  # policy steps per episode, settle steps excluded
    out: Path
    policy: str = PolicyKind.MODEL.value
    first_init_state: int = 0  # upstream: 0; e.g. 40 for init states a demo policy never saw in training
    replay_dataset: Path | None = None  # policy replay: the LeRobot dataset holding the demonstrations
    mode: str | None = Mode.FULL.value  # None for a baseline, which has no CoT
    replan_steps: int = UPSTREAM_EPISODE.execute_steps  # actions of a chunk executed open-loop before the next query
    workers: int = 1
    seed: int | None = UPSTREAM_EPISODE.seed  # global seed; None on the ROS path, where no node seeds anything
    env_seed: int = UPSTREAM_EPISODE.env_seed
    settle_steps: int = UPSTREAM_EPISODE.settle_steps
    camera_size: int = UPSTREAM_EPISODE.camera_size
    hard_reset: bool = UPSTREAM_EPISODE.hard_reset
    object_jitter_m: float = UPSTREAM_EPISODE.object_jitter_m  # seeded x/y displacement of movable objects (0: off)
    max_cot_tokens: int = COT_CAP_EVAL
    device: str = "cpu"
    dtype: str = "auto"
    video_episodes: tuple[tuple[int, int], ...] = ()  # (task, init state) pairs to record as mp4
    via_ros: bool = False
    params_file: Path | None = None  # ROS path: the parameter file dtvla-sim passes (None: its default sim.yaml)
    step_caps: dict[str, int] = field(default_factory=dict)  # the suite's caps, for the manifest

    def __post_init__(self) -> None:
        self._check_policy()
        for name in ("trials", "max_steps", "workers"):
            if getattr(self, name) < 1:
                raise EvalInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_cot_tokens < 0:
            raise EvalInputError(f"--max-cot-tokens must be >= 0, got {self.max_cot_tokens}")
        if self.first_init_state < 0:
            raise EvalInputError(f"--first-init-state must be >= 0, got {self.first_init_state}")
        try:
            self.protocol  # noqa: B018 (validates the episode settings)
        except ValueError as exc:
            raise EvalInputError(f"{exc} (--replan-steps sets execute_steps)") from None
        if self.via_ros:
            self._check_ros_protocol()
        else:
            self._check_in_process_protocol()

    @property
    def is_baseline(self) -> bool:
        """No model: the chunks come from `eval.baselines`, which look at no camera."""
        return self.policy != PolicyKind.MODEL

    def _check_policy(self) -> None:
        """A model needs a checkpoint and a mode; a baseline takes neither, and runs in process only."""
        kinds = [kind.value for kind in PolicyKind]
        if self.policy not in kinds:
            raise EvalInputError(f"unknown --policy {self.policy!r}; expected one of {', '.join(kinds)}")
        if (self.replay_dataset is None) == (self.policy == PolicyKind.REPLAY):
            raise EvalInputError("--replay-dataset DIR goes with --policy replay, and only with it")
        if not self.is_baseline:
            if self.checkpoint is None:
                raise EvalInputError("--policy model needs --checkpoint DIR")
            if self.mode not in EVAL_MODES:
                raise EvalInputError(f"unknown mode {self.mode!r}; expected one of {', '.join(EVAL_MODES)}")
            return
        if self.checkpoint is not None:
            raise EvalInputError(f"--policy {self.policy} loads no model: drop --checkpoint")
        if self.mode is not None:
            raise EvalInputError(f"--policy {self.policy} writes no CoT: it has no mode (got {self.mode!r})")
        if self.via_ros:
            raise EvalInputError(f"--policy {self.policy} runs in process only: --via-ros drives the policy node")

    @property
    def protocol(self) -> EpisodeProtocol:
        """The episode protocol this run's settings describe (ValueError when they are inconsistent)."""
        return EpisodeProtocol(settle_steps=self.settle_steps, camera_size=self.camera_size, env_seed=self.env_seed,
                               seed=self.seed if self.seed is not None else UPSTREAM_EPISODE.seed,
                               execute_steps=self.replan_steps, hard_reset=self.hard_reset,
                               object_jitter_m=self.object_jitter_m)

    def _check_in_process_protocol(self) -> None:
        """Refuse what the in-process path would silently ignore."""
        if self.params_file is not None:
            raise EvalInputError("--params-file is the parameter file of dtvla-sim's nodes: use it with --via-ros")
        if self.seed is None:
            raise EvalInputError("the in-process path needs a global seed (upstream: 429)")

    def ros_settings(self) -> SimSettings:
        """What `dtvla-sim` runs with for this evaluation: its parameter file and the options eval passes."""
        return sim_settings(self.params_file, self.mode, self.suite, self.max_steps, self.max_cot_tokens)

    def _check_ros_protocol(self) -> None:
        """The ROS path runs what the parameter file says: refuse every setting that differs from it."""
        if self.mode not in NODE_MODES:
            raise EvalInputError(f"--via-ros supports modes {', '.join(NODE_MODES)} (those of the policy node), "
                                 f"got {self.mode!r}")
        if self.workers != 1:
            raise EvalInputError(f"--via-ros runs one episode at a time (--workers 1), got --workers {self.workers}")
        if self.seed is not None:
            raise EvalInputError(f"--via-ros: the policy node seeds nothing (full and masked decode greedily); "
                                 f"drop --seed {self.seed}")
        if self.video_episodes:
            raise EvalInputError("--via-ros records no videos; use the in-process path for --video-episodes")
        try:
            settings = self.ros_settings()
        except (OSError, ValueError) as exc:
            raise EvalInputError(f"--via-ros: {exc}") from None
        for name, (node, parameter) in ROS_PARAMETERS.items():
            used = settings.parameters(node).get(parameter)
            if getattr(self, name) != used:
                raise EvalInputError(
                    f"--via-ros runs with {node}.{parameter} = {used!r} from {settings.params_file}, but this "
                    f"evaluation asks for {name} {getattr(self, name)!r}; change the parameter file (--params-file) "
                    "or drop the option"
                )

    @property
    def render_threads(self) -> int:
        """llvmpipe threads per worker: the workers' render threads add up to the cores whatever their number, so
        1 and N workers get the same budget (more would oversubscribe: every render context starts its threads)."""
        return max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def jobs(self) -> list[tuple[int, int]]:
        """Every (task, init state) episode of the run, in upstream order."""
        return [(task, init) for task in self.tasks for init in self.init_states]

    @property
    def init_states(self) -> range:
        return range(self.first_init_state, self.first_init_state + self.trials)


def sim_settings(params_file: Path | None, mode: str, suite: str, max_steps: int,
                 max_cot_tokens: int | None) -> SimSettings:
    """What `dtvla-sim` runs with for an evaluation with these options (the task and init states aside, which
    change from call to call); `params_file` None: dtvla-sim's default."""
    return SimSettings.resolve(params_file or default_params_file(), mode=mode, max_cot_tokens=max_cot_tokens,
                               suite=suite, max_steps=max_steps)


def ros_defaults(settings: SimSettings) -> dict[str, Any]:
    """EvalConfig values for the settings a --via-ros command line leaves out: what `settings` passes."""
    values = {name: settings.parameters(node).get(param) for name, (node, param) in ROS_PARAMETERS.items()}
    return values | {"seed": None, "params_file": settings.params_file}


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


def check_trials(trials: int, tasks: tuple[int, ...], infos: list[TaskInfo], suite: str, first: int = 0) -> None:
    """EvalInputError unless every chosen task has init states first..first+trials-1 (LIBERO ships 50)."""
    for task_id in tasks:
        available = infos[task_id].num_init_states
        if first + trials > available:
            raise EvalInputError(
                f"--first-init-state {first} + --trials {trials} exceeds the {available} init states of {suite} "
                f"task {task_id}; use at most {max(available - first, 0)} trials (each trial is one fixed init state)"
            )


def parse_video_episodes(specs: list[str] | None, tasks: tuple[int, ...], init_states: range
                         ) -> tuple[tuple[int, int], ...]:
    """'TASK:INIT' strings -> (task, init) pairs that belong to this run."""
    pairs: list[tuple[int, int]] = []
    for spec in specs or []:
        task, sep, init = spec.partition(":")
        if not sep or not task.isdigit() or not init.isdigit():
            raise EvalInputError(f"--video-episodes expects TASK:INIT pairs like 0:3, got {spec!r}")
        pair = (int(task), int(init))
        if pair[0] not in tasks or pair[1] not in init_states:
            raise EvalInputError(f"--video-episodes {spec} is not in this run (tasks {list(tasks)}, init states "
                                 f"{init_states.start}..{init_states.stop - 1})")
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
