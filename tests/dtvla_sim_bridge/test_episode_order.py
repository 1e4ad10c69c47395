"""An episode does not depend on the episodes that ran before it in the same process (real LIBERO, one env).

libero_spatial task 4: at every reset LIBERO samples the open drawer's joint, places the bowl in the drawer and the
cabinet and stove on the table. Init state 0 run first in the fresh env is the reference; then an episode that ends
with the gripper closed, then init state 0 again, by a soft and by a hard reset. Required bit for bit, after the
settle steps and after 20 identical actions: MuJoCo's whole integration state (`mj_getState`), the model's body
poses (the fixtures' placement) and both camera images.
"""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np
import pytest

from dtvla_sim_bridge.sim import Frame, LiberoSim

pytestmark = pytest.mark.sim

TASK = 4
INIT_STATE = 0
OTHER_INIT_STATE = 1
ACTIONS = np.random.default_rng(0).uniform(-1.0, 1.0, size=(20, 7))  # moves the arm; gripper signs mixed
CLOSE = np.array([0.0] * 6 + [1.0])
CLOSE_STEPS = 5  # robosuite integrates the gripper command by 0.25 per step: fully closed after 4

Snapshot = dict[str, np.ndarray]


def snapshot(sim: LiberoSim, frame: Frame) -> Snapshot:
    mj = sim.env.sim
    kind = mujoco.mjtState.mjSTATE_INTEGRATION  # time, qpos, qvel, act, warmstart, ctrl, applied forces, mocap
    state = np.empty(mujoco.mj_stateSize(mj.model._model, kind))
    mujoco.mj_getState(mj.model._model, mj.data._data, state, kind)
    return {
        "mujoco state": state,
        "body_pos": mj.model.body_pos.copy(),
        "body_quat": mj.model.body_quat.copy(),
        "agentview": frame.agentview,
        "wrist": frame.wrist,
    }


def episode(sim: LiberoSim, hard_reset: bool) -> tuple[Snapshot, Snapshot]:
    """Init state 0: the state after the settle steps, and after ACTIONS."""
    settled = snapshot(sim, sim.reset(INIT_STATE, hard_reset=hard_reset))
    for action in ACTIONS:
        result = sim.step(action)
    return settled, snapshot(sim, result.frame)


@pytest.fixture(scope="module")
def sim_and_reference() -> Iterator[tuple[LiberoSim, tuple[Snapshot, Snapshot]]]:
    with LiberoSim("libero_spatial", TASK, camera_size=32, max_steps=len(ACTIONS)) as sim:
        yield sim, episode(sim, hard_reset=False)


@pytest.mark.parametrize("hard_reset", [False, True], ids=["soft", "hard"])
def test_episode_after_a_closed_gripper_episode_is_bit_identical(
    sim_and_reference: tuple[LiberoSim, tuple[Snapshot, Snapshot]], hard_reset: bool
) -> None:
    sim, reference = sim_and_reference
    opened = sim.reset(OTHER_INIT_STATE).gripper_qpos
    for _ in range(CLOSE_STEPS):
        closed = sim.step(CLOSE).frame.gripper_qpos
    assert closed[0] < opened[0] - 0.005  # the fingers really closed
    again = episode(sim, hard_reset)
    for when, expected, actual in zip(("after the settle steps", "after 20 actions"), reference, again, strict=True):
        for key, value in expected.items():
            np.testing.assert_array_equal(actual[key], value, err_msg=f"{key} differs {when}")
