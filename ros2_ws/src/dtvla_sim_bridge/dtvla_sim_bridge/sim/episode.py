"""The one lockstep episode loop: reset and settle, ask for a chunk, run its first actions open-loop, repeat.

Upstream's loop (DeepThinkVLA `run_libero_eval.py` `run_episode`) as a step-wise state machine, so that both kinds of
driver run the same protocol: `EpisodeLoop.run` drives it synchronously (the eval workers: `ask` returns the chunk),
and the sim-bridge node drives it one env step per timer tick while chunks arrive in callbacks (`start`,
`awaiting_chunk`, `give_chunk`, `step_once`; `hold_step` for its realtime mode). No ROS, no torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from dtvla_policy.model.conventions import ACTION_DIM, GRIPPER_DIM
from dtvla_policy.protocol import UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_sim_bridge.sim.libero_env import SETTLE_ACTION, Frame, LiberoSim, SimulationError, StepResult

AskChunk = Callable[[Frame, str], np.ndarray]  # (observation, task instruction) -> (n, 7) actions, unnormalised


class Outcome(StrEnum):
    """How an episode ended."""

    SUCCESS = "success"  # LIBERO's done: the BDDL goal holds
    TIMEOUT = "timeout"  # the step cap came first
    FAILED = "failed"  # the simulator failed in the reset or a step; the next reset builds a new env
    ABORTED = "aborted"  # the driver ended it (the bridge's reset service)


@dataclass
class Episode:
    """One episode's progress; `outcome` is None while it runs."""

    init_state: int
    hard_reset: bool  # the reset built a new env (the protocol's reset kind, or the last episode failed)
    outcome: Outcome | None = None
    error: str = ""  # why it failed or was aborted
    steps: int = 0  # policy steps, settle steps excluded
    reward: float = 0.0  # sum of LIBERO's step rewards (1.0 on success)
    chunks: int = 0  # chunks given
    holds: int = 0  # hold steps run with no action queued (realtime driving)


class EpisodeLoop:
    """Episodes of one `LiberoSim` under an `EpisodeProtocol`: its chunk execution and reset kind.

    The protocol's settle steps, camera size, env seed and object jitter are the simulator's own
    (`LiberoSim.for_protocol`); a simulator built with other values is refused, so a record never names settings that
    did not run.
    """

    def __init__(self, sim: LiberoSim, protocol: EpisodeProtocol = UPSTREAM_EPISODE) -> None:
        built = {"settle_steps": sim.settle_steps, "camera_size": sim.camera_size, "env_seed": sim.seed,
                 "object_jitter_m": sim.object_jitter_m}
        clashes = [f"{name} {value} (protocol: {getattr(protocol, name)})" for name, value in built.items()
                   if value != getattr(protocol, name)]
        if clashes:
            raise ValueError(f"the simulator was built for another protocol: {', '.join(clashes)}")
        self.sim = sim
        self.protocol = protocol
        self.episode: Episode | None = None
        self._queue: deque[np.ndarray] = deque()
        self._gripper = float(SETTLE_ACTION[GRIPPER_DIM])  # last gripper command, what a hold step keeps
        self._rebuild = False  # the last episode failed: the next reset builds a new env

    @property
    def running(self) -> bool:
        return self.episode is not None and self.episode.outcome is None

    @property
    def awaiting_chunk(self) -> bool:
        """Running with no action left: time to ask the policy, with the latest frame."""
        return self.running and not self._queue

    def start(self, init_state: int) -> Frame | None:
        """Reset to `init_state` and settle; the frame to ask the first chunk with, or None if the reset failed.

        A previous episode still running is dropped. ValueError for an init state the task does not have.
        """
        hard = self.protocol.hard_reset or self._rebuild
        self.sim.check_init_state(init_state)
        self.episode = Episode(init_state, hard_reset=hard)
        self._queue.clear()
        self._gripper = float(SETTLE_ACTION[GRIPPER_DIM])
        try:
            frame = self.sim.reset(init_state, hard_reset=hard)
        except SimulationError as exc:
            self._end(Outcome.FAILED, str(exc))
            return None
        self._rebuild = False
        return frame

    def give_chunk(self, actions: np.ndarray) -> None:
        """Queue the first `execute_steps` actions of an (n, 7) chunk, replacing any still queued."""
        if not self.running:
            raise RuntimeError("no running episode: start() one first")
        chunk = np.asarray(actions, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] < 1 or chunk.shape[1] != ACTION_DIM:
            raise ValueError(f"a chunk must have shape (n >= 1, {ACTION_DIM}), got {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise ValueError("a chunk must be finite; it has NaN/Inf")
        self._queue = deque(chunk[: self.protocol.execute_steps])
        self.episode.chunks += 1

    def step_once(self) -> StepResult | None:
        """Execute the next queued action; None if the simulator failed (the episode is then over)."""
        if not self._queue:
            raise RuntimeError("no action queued: give_chunk() first")
        return self._step(self._queue.popleft())

    def hold_step(self) -> StepResult | None:
        """One step holding the pose (zero deltas) and the last gripper command, for a driver that cannot wait."""
        if not self.running:
            raise RuntimeError("no running episode: start() one first")
        self.episode.holds += 1
        action = np.zeros(ACTION_DIM)
        action[GRIPPER_DIM] = self._gripper
        return self._step(action)

    def abort(self, reason: str) -> None:
        """End the running episode as ABORTED (nothing to do when none runs)."""
        if self.running:
            self._end(Outcome.ABORTED, reason)

    def run(self, init_state: int, ask: AskChunk, on_step: Callable[[StepResult], None] | None = None) -> Episode:
        """A whole episode, calling `ask(frame, instruction)` whenever the queue runs empty and `on_step` after
        every step. Exceptions of `ask` and `on_step` propagate; the next `start` resets anyway."""
        frame = self.start(init_state)
        while self.running:
            if self.awaiting_chunk:
                self.give_chunk(ask(frame, self.sim.task_language))
            result = self.step_once()
            if result is not None:
                frame = result.frame
                if on_step is not None:
                    on_step(result)
        return self.episode

    def _step(self, action: np.ndarray) -> StepResult | None:
        episode = self.episode
        try:
            result = self.sim.step(action)
        except SimulationError as exc:
            self._end(Outcome.FAILED, str(exc))
            return None
        self._gripper = float(action[GRIPPER_DIM])
        episode.steps = result.steps
        episode.reward += result.reward
        if result.success:
            self._end(Outcome.SUCCESS)
        elif result.timeout:
            self._end(Outcome.TIMEOUT)
        return result

    def _end(self, outcome: Outcome, error: str = "") -> None:
        self.episode.outcome = outcome
        self.episode.error = error
        self._queue.clear()
        self._rebuild = outcome is Outcome.FAILED
