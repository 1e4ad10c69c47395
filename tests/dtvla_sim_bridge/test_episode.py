"""The lockstep episode loop on a real LIBERO env (libero_spatial task 0, 64 px): both drivers' ways of using it.

One env serves the module (one render context per process; creating one costs seconds). Every test starts its own
episode, so their order does not matter.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import numpy as np
import pytest

from dtvla_policy.protocol import EpisodeProtocol
from dtvla_sim_bridge.sim import EpisodeLoop, Frame, LiberoSim, Outcome

pytestmark = pytest.mark.sim

PROTOCOL = EpisodeProtocol(settle_steps=1, camera_size=64, execute_steps=3)
MAX_STEPS = 7  # chunks of 3 executed actions: 3 + 3 + 1
SPATIAL_TASK_0 = "pick up the black bowl between the plate and the ramekin and place it on the plate"


@pytest.fixture(scope="module")
def loop() -> Iterator[EpisodeLoop]:
    with LiberoSim.for_protocol("libero_spatial", 0, PROTOCOL, max_steps=MAX_STEPS) as sim:
        yield EpisodeLoop(sim, PROTOCOL)


class ScriptedPolicy:
    """Answers every ask with the same chunk and remembers what it was asked with."""

    def __init__(self, chunk: np.ndarray) -> None:
        self.chunk = chunk
        self.asked: list[tuple[int, str]] = []  # (frame step, instruction)

    def __call__(self, frame: Frame, instruction: str) -> np.ndarray:
        self.asked.append((frame.step, instruction))
        return self.chunk


def test_zero_chunks_run_to_the_step_cap(loop: EpisodeLoop) -> None:
    policy = ScriptedPolicy(np.zeros((10, 7)))
    steps: list[int] = []
    episode = loop.run(2, policy, lambda result: steps.append(result.steps))
    assert (episode.outcome, episode.steps, episode.chunks, episode.reward) == (Outcome.TIMEOUT, MAX_STEPS, 3, 0.0)
    assert (episode.init_state, episode.hard_reset, episode.error) == (2, False, "")
    # asked with the latest frame every `execute_steps` actions, and never after the end
    assert policy.asked == [(0, SPATIAL_TASK_0), (3, SPATIAL_TASK_0), (6, SPATIAL_TASK_0)]
    assert steps == list(range(1, MAX_STEPS + 1))
    assert not loop.running and not loop.awaiting_chunk


def test_only_the_first_execute_steps_actions_of_a_chunk_run(loop: EpisodeLoop) -> None:
    close_then_open = np.zeros((10, 7))
    close_then_open[: PROTOCOL.execute_steps, 6] = 1.0  # close ...
    close_then_open[PROTOCOL.execute_steps :, 6] = -1.0  # ... then open: never executed
    fingers: list[float] = []
    episode = loop.run(0, ScriptedPolicy(close_then_open), lambda result: fingers.append(result.frame.gripper_qpos[0]))
    assert episode.outcome is Outcome.TIMEOUT
    assert all(later < earlier for earlier, later in zip(fingers, fingers[1:], strict=False))  # closing throughout
    assert fingers[-1] < fingers[0] - 0.005


def test_step_wise_driving_as_the_bridge_node_does(loop: EpisodeLoop) -> None:
    frame = loop.start(1)
    assert frame is not None and frame.step == 0
    assert loop.running and loop.awaiting_chunk
    with pytest.raises(RuntimeError, match="no action queued"):
        loop.step_once()
    with pytest.raises(ValueError, match=r"shape \(n >= 1, 7\), got \(10, 6\)"):
        loop.give_chunk(np.zeros((10, 6)))
    with pytest.raises(ValueError, match="finite"):
        loop.give_chunk(np.full((2, 7), np.nan))
    loop.give_chunk(np.zeros((2, 7)))  # fewer actions than execute_steps: both run
    assert [loop.step_once().steps for _ in range(2)] == [1, 2] and loop.awaiting_chunk
    assert loop.hold_step().steps == 3  # realtime: nothing queued, hold
    assert (loop.episode.holds, loop.episode.chunks, loop.episode.outcome) == (1, 1, None)
    loop.abort("reset requested")
    assert (loop.episode.outcome, loop.episode.error, loop.running) == (Outcome.ABORTED, "reset requested", False)
    with pytest.raises(RuntimeError, match="no running episode"):
        loop.give_chunk(np.zeros((1, 7)))


def test_success_ends_the_episode(loop: EpisodeLoop) -> None:
    assert loop.start(0) is not None
    mj = loop.sim.env.sim
    bowl = mj.data.get_joint_qpos("akita_black_bowl_1_joint0").copy()  # free joint: xyz + quaternion
    bowl[:3] = mj.data.body_xpos[mj.model.body_name2id("plate_1_main")] + np.array([0.0, 0.0, 0.05])
    mj.data.set_joint_qpos("akita_black_bowl_1_joint0", bowl)
    mj.forward()
    while loop.running:
        loop.give_chunk(np.array([[0.0] * 6 + [-1.0]] * 10))
        while not loop.awaiting_chunk and loop.running:
            loop.step_once()
    assert (loop.episode.outcome, loop.episode.reward) == (Outcome.SUCCESS, 1.0)
    assert loop.episode.steps < MAX_STEPS


def test_simulator_failure_fails_the_episode_and_the_next_reset_rebuilds(loop: EpisodeLoop) -> None:
    assert loop.start(0) is not None
    loop.give_chunk(np.zeros((3, 7)))
    loop.sim.env.sim.data.qvel[:] = np.nan
    assert loop.step_once() is None
    assert loop.episode.outcome is Outcome.FAILED and "NaN/Inf" in loop.episode.error
    assert not loop.running
    episode = loop.run(0, ScriptedPolicy(np.zeros((10, 7))))
    assert (episode.hard_reset, episode.outcome, episode.steps) == (True, Outcome.TIMEOUT, MAX_STEPS)
    assert loop.start(0) is not None and not loop.episode.hard_reset  # soft again once an episode went well


@pytest.mark.parametrize(
    ("change", "message"),
    [({"settle_steps": 10}, "settle_steps 1 (protocol: 10)"), ({"camera_size": 256}, "camera_size 64 (protocol: 256)")],
)
def test_loop_refuses_a_simulator_built_for_another_protocol(
    loop: EpisodeLoop, change: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"built for another protocol: {message}")):
        EpisodeLoop(loop.sim, dataclasses.replace(PROTOCOL, **change))
