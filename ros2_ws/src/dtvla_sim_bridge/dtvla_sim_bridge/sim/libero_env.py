"""One LIBERO task environment as the evaluation protocol drives it; used by the sim bridge and the eval harness.

Mirrors DeepThinkVLA `src/experiments/run_libero_eval.py` / `libero_utils.py`: each episode `reset()` +
`set_init_state(init_states[i])` + `settle_steps` no-ops `[0, 0, 0, 0, 0, 0, -1]`, cameras rotated 180 degrees
(`img[::-1, ::-1]`), the gripper sign-binarised, success = LIBERO's `done` (the BDDL goal holds), the episode capped
at the suite's max steps. One deliberate difference makes an episode independent of the ones before it: upstream
seeds numpy once per task (`env.seed(0)`), so the fixtures LIBERO places at random at every reset depend on how many
resets came first; here each reset seeds numpy with `seed + init state` (see `LiberoSim.reset`). libero / robosuite
/ mujoco are imported on first use, after MUJOCO_GL gets its default, because robosuite picks the GL backend at
import; importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dtvla_policy.model.conventions import ACTION_DIM
from dtvla_policy.protocol import UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_sim_bridge.sim.object_jitter import MAX_OBJECT_JITTER_M, jitter_objects, jitter_rng
from dtvla_sim_bridge.sim.suites import get_suite

CONTROL_FREQ_HZ = 20  # robosuite ControlEnv default, which LIBERO and its datasets use
SETTLE_ACTION = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])  # upstream "dummy action": hold, gripper open
AGENTVIEW_KEY = "agentview_image"
WRIST_KEY = "robot0_eye_in_hand_image"


class SimulationError(RuntimeError):
    """MuJoCo / robosuite failed or went unstable during a reset or step; the episode cannot continue."""


def binarize_gripper(value: float) -> float:
    """LIBERO gripper command from a policy value, exactly upstream's `np.sign`: > 0 closes (+1), < 0 opens (-1).

    Exactly 0 stays 0 (robosuite then holds the gripper's current command): the decoded centre of action bin 1023
    is 0.0, so a policy can send it, and upstream's evaluation sends it on as 0. `step()` refuses NaN first.
    """
    return float(np.sign(value))


def rotate_180(image: np.ndarray) -> np.ndarray:
    """Robosuite renders upside down; the upright, C-contiguous copy is what the policy was trained on."""
    return np.ascontiguousarray(image[::-1, ::-1])


def libero_state(frame: Frame) -> np.ndarray:
    """(8,) float64 robot state as LIBERO's datasets store `observation.state`: eef position (3, m), eef orientation
    as axis-angle (3, rad; robosuite's `quat2axisangle`, as openpi's LIBERO example computes it), finger joints (2, m).
    """
    from robosuite.utils.transform_utils import quat2axisangle  # robosuite picks its GL backend at import

    return np.concatenate([frame.eef_pos, quat2axisangle(np.array(frame.eef_quat)), frame.gripper_qpos])


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Frame:
    """What the robot senses after a reset or step. Arrays are read-only, so a frame can be shared freely."""

    agentview: np.ndarray | None  # (H, W, 3) uint8 RGB, already rotated 180 degrees; None without cameras
    wrist: np.ndarray | None  # (H, W, 3) uint8 RGB, already rotated 180 degrees; None without cameras
    joint_pos: np.ndarray  # (7,) float64 rad, Panda arm joints 1-7
    joint_vel: np.ndarray  # (7,) float64 rad/s
    gripper_qpos: np.ndarray  # (2,) float64 m, the two finger joints
    gripper_qvel: np.ndarray  # (2,) float64 m/s
    eef_pos: np.ndarray  # (3,) float64 m, world frame
    eef_quat: np.ndarray  # (4,) float64 x, y, z, w (robosuite order)
    step: int  # policy steps since the reset (settle steps excluded)
    sim_time: float  # s of simulated time since the init state was set, settle steps included


@dataclass(frozen=True)
class StepResult:
    """The outcome of one control step."""

    frame: Frame
    reward: float  # LIBERO's sparse reward: 1.0 on success, else 0.0
    success: bool  # LIBERO's `done`: the BDDL goal predicates hold; the episode is over
    timeout: bool  # the step cap was reached without success; the episode is over
    info: dict[str, Any] = field(default_factory=dict)  # robosuite's info dict, passed through

    @property
    def steps(self) -> int:
        return self.frame.step


def _import_libero() -> tuple[Any, Any, Any]:
    os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the robosuite import; egl is headless
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    return benchmark, get_libero_path, OffScreenRenderEnv


def _instability_count(env: Any) -> int:
    """MuJoCo's count of bad-state warnings: on NaN/Inf it resets the data and only warns, so poll it."""
    import mujoco

    warnings = env.sim.data.warning
    bad = (
        mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL,
        mujoco.mjtWarning.mjWARN_BADQACC,
        mujoco.mjtWarning.mjWARN_BADCTRL,
    )
    return sum(int(warnings[int(kind)].number) for kind in bad)


def _drop_costly_render_passes(env: Any) -> None:
    """No multisampling and no reflection pass in the offscreen context robosuite made (llvmpipe's main costs)."""
    import mujoco

    context = env.sim._render_context_offscreen
    context.model.vis.quality.offsamples = 0
    context.con.free()
    context._set_mujoco_context_and_buffers()  # the sample count is read when the GL buffers are made
    context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def _clear_soft_reset_leftovers(env: Any) -> None:
    """Reset what robosuite keeps across a soft reset but a new environment starts without.

    Only each gripper's integrated command is left over (`format_action` adds +-speed to `current_action` at every
    substep): after an episode that ended closed, the next one would settle with the fingers 2.8 mm apart from a
    fresh environment's. Everything else already starts over: MuJoCo's data (`mj_resetData`: qpos, qvel, act, ctrl,
    warmstart, applied forces), the controllers (rebuilt by `robot.reset`), the robots' recent-value buffers, the
    env's timestep and done flag, the observables (`_reset_internal`), LIBERO's fixture poses and object joints
    (placed again). tests/dtvla_sim_bridge/test_episode_order.py checks the result bit for bit.
    """
    for robot in env.env.robots:
        if robot.has_gripper:
            robot.gripper.current_action = np.zeros(robot.gripper.dof)


class LiberoSim:
    """One LIBERO task with two cameras, stepped with 7-dim delta-eef actions at 20 Hz.

    Owns an offscreen render context: only one `LiberoSim` per process can exist (MuJoCo's EGL limitation), and
    `close()` must run (or use `with LiberoSim(...) as sim:`), else EGL prints tracebacks at exit. With
    `cameras=False` nothing is rendered (about 15x faster: what a scripted expert measured on privileged state needs)
    and frames carry no images. `fast_render=True` renders without 4x MSAA and the table's reflection pass (about
    2.8x less CPU per step here; pixels differ from the reference rendering by ~3/255 on average): an opt-in for
    collecting training data, never the evaluation default.
    """

    def __init__(
        self,
        suite: str,
        task_id: int,
        *,
        camera_size: int = UPSTREAM_EPISODE.camera_size,
        seed: int = UPSTREAM_EPISODE.env_seed,
        settle_steps: int = UPSTREAM_EPISODE.settle_steps,
        max_steps: int | None = None,
        object_jitter_m: float = UPSTREAM_EPISODE.object_jitter_m,
        cameras: bool = True,
        fast_render: bool = False,
    ) -> None:
        """`camera_size` is the square render size in px (the upstream eval renders 256, the policy resizes);
        `seed + init state` seeds each reset (the env seed); `max_steps` caps policy steps per episode (None: the
        suite's DeepThinkVLA cap); `object_jitter_m` displaces every movable object after the init state (see
        `object_jitter`; 0: upstream's fixed init states); `cameras=False` renders nothing."""
        spec = get_suite(suite)
        if not 0 <= task_id < spec.num_tasks:
            raise ValueError(
                f"task_id {task_id} out of range: {suite} has {spec.num_tasks} tasks (0..{spec.num_tasks - 1})"
            )
        if camera_size < 1:
            raise ValueError(f"camera_size must be >= 1 px, got {camera_size}")
        if settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {settle_steps}")
        if not 0 <= seed < 2**31:  # numpy takes seeds below 2**32; seed + init state must stay under it
            raise ValueError(f"seed must be 0..2**31-1, got {seed}")
        if not 0.0 <= object_jitter_m <= MAX_OBJECT_JITTER_M:
            raise ValueError(f"object_jitter_m must be 0..{MAX_OBJECT_JITTER_M} m, got {object_jitter_m}")
        max_steps = spec.max_steps if max_steps is None else max_steps
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.suite = suite
        self.task_id = task_id
        self.camera_size = camera_size
        self.seed = seed
        self.settle_steps = settle_steps
        self.max_steps = max_steps
        self.object_jitter_m = object_jitter_m
        self.cameras = cameras
        self.fast_render = fast_render
        self.control_freq = CONTROL_FREQ_HZ

        benchmark, get_libero_path, offscreen_render_env = _import_libero()
        with contextlib.redirect_stdout(sys.stderr):  # libero-pro prints "[info] ..." there; stdout is for results
            task_suite = benchmark.get_benchmark_dict()[suite]()
        task = task_suite.get_task(task_id)
        self.task_name: str = task.name
        self.task_language: str = task.language
        self._init_states = np.asarray(task_suite.get_task_init_states(task_id))
        self.bddl_file = Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file
        self._env_kwargs = dict(
            bddl_file_name=str(self.bddl_file),
            camera_heights=camera_size,
            camera_widths=camera_size,
            has_offscreen_renderer=cameras,
            use_camera_obs=cameras,
            # robosuite raises once `horizon` steps are taken; settle + cap keeps it from ending an episode early.
            horizon=settle_steps + max_steps,
            hard_reset=False,  # the hard reset builds a new env instead (see `reset`)
        )
        self._make_env = offscreen_render_env
        self._env: Any = self._new_env()  # None after a failed rebuild: the next reset retries
        self._closed = False
        self._step = -1  # -1: no episode yet
        self._over = ""  # why the current episode is over ("" while it runs)
        self._obs: dict[str, Any] = {}  # robosuite's observation dict of the latest reset or step

    @classmethod
    def for_protocol(
        cls, suite: str, task_id: int, protocol: EpisodeProtocol, max_steps: int | None = None, cameras: bool = True,
        fast_render: bool = False,
    ) -> LiberoSim:
        """The simulator an `EpisodeLoop` under `protocol` runs: its camera size, env seed, settle steps and
        object jitter."""
        return cls(suite, task_id, camera_size=protocol.camera_size, seed=protocol.env_seed,
                   settle_steps=protocol.settle_steps, max_steps=max_steps, object_jitter_m=protocol.object_jitter_m,
                   cameras=cameras, fast_render=fast_render)

    # --- properties ------------------------------------------------------------------------------------------
    @property
    def num_init_states(self) -> int:
        return len(self._init_states)

    @property
    def steps(self) -> int:
        """Policy steps taken in the current episode (-1 before the first reset)."""
        return self._step

    @property
    def env(self) -> Any:
        """The underlying `OffScreenRenderEnv`, for tools that need MuJoCo state (object poses, videos)."""
        self._check_open()
        if self._env is None:
            raise RuntimeError("no environment: rebuilding it failed; reset() tries again")
        return self._env

    @property
    def observation(self) -> dict[str, Any]:
        """robosuite's observation dict of the latest reset or step: privileged state (`<object>_pos`, `_quat`)
        that a `Frame` leaves out. Read it, do not keep it: the next step replaces it."""
        return self._obs

    # --- episode ---------------------------------------------------------------------------------------------
    def check_init_state(self, init_state_index: int) -> None:
        """ValueError unless the task has init state `init_state_index`."""
        count = self.num_init_states
        if not 0 <= init_state_index < count:
            raise ValueError(
                f"init_state_index {init_state_index} out of range: {self.suite} task {self.task_id} has "
                f"{count} init states (0..{count - 1})"
            )

    def reset(self, init_state_index: int, hard_reset: bool = UPSTREAM_EPISODE.hard_reset) -> Frame:
        """Start an episode from init state `init_state_index`, then run the settle no-ops.

        The episode is the same whatever ran before it in this process, bit for bit. `hard_reset=True` builds a new
        environment (~4 s; what to do after a simulator failure). The soft reset (~0.5 s) resets the MuJoCo data
        and clears what robosuite keeps across it, which gives the same state. robosuite's own hard reset does not:
        LIBERO's model rebuild adds one more object-joint sampler each time, which shifts every later random draw.
        LIBERO re-places the fixtures (cabinet, stove, ...) at random within their BDDL regions at every reset, from
        numpy's global RNG; it is seeded with `seed + init_state_index` right before, so an init state always gets
        the same fixture poses (upstream: the draw after all the previous resets' draws of the task).
        """
        self._check_open()
        self.check_init_state(init_state_index)
        self._step = -1  # no usable episode until the settle steps are through
        try:
            if hard_reset or self._env is None:
                self._rebuild_env()
            else:
                _clear_soft_reset_leftovers(self._env)
            np.random.seed(self.seed + init_state_index)
            self._env.reset()
            obs = self._env.set_init_state(self._init_states[init_state_index])
            if self.object_jitter_m:
                obs = jitter_objects(self._env, self.object_jitter_m, jitter_rng(self.seed, init_state_index))
        except Exception as exc:  # any MuJoCo / robosuite failure ends the episode the same way
            raise SimulationError(f"reset to init state {init_state_index} failed: {exc!r}") from exc
        for _ in range(self.settle_steps):
            obs, *_ = self._env_step(SETTLE_ACTION)
        self._step = 0
        self._over = ""
        return self._frame(obs)

    def step(self, action: np.ndarray) -> StepResult:
        """Apply one 7-dim action (dims 0-5 delta eef in [-1, 1], robosuite clips; dim 6 gripper, binarised).

        Raises ValueError for a malformed action, RuntimeError outside an episode, SimulationError when the
        simulator fails (the episode is then over).
        """
        self._check_open()
        command = np.asarray(action, dtype=np.float64)
        if command.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {command.shape}")
        if not np.isfinite(command).all():
            raise ValueError(f"action must be finite, got {command.tolist()}")
        if self._step < 0:
            raise RuntimeError("no episode: call reset() first")
        if self._over:
            raise RuntimeError(f"episode over ({self._over} at step {self._step}): call reset() first")
        command = command.copy()
        command[-1] = binarize_gripper(command[-1])
        try:
            obs, reward, done, info = self._env_step(command)
        except SimulationError:
            self._over = "simulation error"
            raise
        self._step += 1
        success = bool(done)
        timeout = not success and self._step >= self.max_steps
        self._over = "success" if success else "timeout" if timeout else ""
        return StepResult(self._frame(obs), float(reward), success, timeout, dict(info))

    def close(self) -> None:
        """Free the simulator and its render context; safe to call twice."""
        self._closed = True
        self._free_env()

    def __enter__(self) -> LiberoSim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("LiberoSim is closed")

    def _free_env(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            env.close()

    def _rebuild_env(self) -> None:
        """A new environment, as the constructor built it; the old one goes first (one render context at a time)."""
        self._free_env()
        self._env = self._new_env()

    def _new_env(self) -> Any:
        env = self._make_env(**self._env_kwargs)
        if self.fast_render and self.cameras:
            _drop_costly_render_passes(env)
        return env

    def _env_step(self, command: np.ndarray) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        before = _instability_count(self._env)
        try:
            result = self._env.step(command)
        except Exception as exc:  # any MuJoCo / robosuite failure ends the episode the same way
            raise SimulationError(f"simulator step failed: {exc!r}") from exc
        if _instability_count(self._env) != before:
            raise SimulationError("MuJoCo found NaN/Inf in qpos, qvel, qacc or ctrl and reset the simulation")
        return result

    def _frame(self, obs: dict[str, Any]) -> Frame:
        self._obs = obs

        def vector(key: str) -> np.ndarray:
            return _read_only(np.array(obs[key], dtype=np.float64))

        def image(key: str) -> np.ndarray | None:
            return _read_only(rotate_180(obs[key])) if self.cameras else None

        return Frame(
            agentview=image(AGENTVIEW_KEY),
            wrist=image(WRIST_KEY),
            joint_pos=vector("robot0_joint_pos"),
            joint_vel=vector("robot0_joint_vel"),
            gripper_qpos=vector("robot0_gripper_qpos"),
            gripper_qvel=vector("robot0_gripper_qvel"),
            eef_pos=vector("robot0_eef_pos"),
            eef_quat=vector("robot0_eef_quat"),
            step=self._step,
            sim_time=(self.settle_steps + self._step) / self.control_freq,
        )
