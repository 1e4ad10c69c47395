"""LiberoSim on a real LIBERO env (libero_spatial task 0, 128 px): frames, stepping, caps, success, failures.

One env serves the module: MuJoCo allows one offscreen render context per process, and creating one costs
seconds. Tests that end an episode reset it first, so their order does not matter except the last (close).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from dtvla_sim_bridge.sim import LiberoSim, SimulationError, binarize_gripper, rotate_180

pytestmark = pytest.mark.sim

SETTLE = 2
MAX_STEPS = 8
HOLD = np.array([0.0] * 6 + [-1.0])


@pytest.fixture(scope="module")
def sim() -> Iterator[LiberoSim]:
    with LiberoSim("libero_spatial", 0, camera_size=128, settle_steps=SETTLE, max_steps=MAX_STEPS) as sim:
        yield sim


def test_task_metadata(sim: LiberoSim) -> None:
    assert sim.task_language == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    assert sim.num_init_states == 50
    assert (sim.max_steps, sim.control_freq) == (MAX_STEPS, 20)


def test_reset_gives_upright_read_only_frame(sim: LiberoSim) -> None:
    frame = sim.reset(0)
    raw = sim.env.env._get_observations()  # robosuite's (upside-down) images of the same state
    for image, key in ((frame.agentview, "agentview_image"), (frame.wrist, "robot0_eye_in_hand_image")):
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.flags.c_contiguous and not image.flags.writeable
        np.testing.assert_array_equal(image, raw[key][::-1, ::-1])
    shapes = [
        a.shape
        for a in (
            frame.joint_pos,
            frame.joint_vel,
            frame.gripper_qpos,
            frame.gripper_qvel,
            frame.eef_pos,
            frame.eef_quat,
        )
    ]
    assert shapes == [(7,), (7,), (2,), (2,), (3,), (4,)]
    assert math.isclose(np.linalg.norm(frame.eef_quat), 1.0, rel_tol=1e-6)
    assert frame.step == 0 and math.isclose(frame.sim_time, SETTLE / 20)


def test_step_advances_one_control_period(sim: LiberoSim) -> None:
    sim.reset(0)
    result = sim.step(np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # gripper 0: hold
    assert (result.steps, result.success, result.timeout, result.reward) == (1, False, False, 0.0)
    assert math.isclose(result.frame.sim_time, (SETTLE + 1) / 20)
    assert sim.steps == 1


@pytest.mark.parametrize(
    "action",
    [np.zeros(6), np.zeros(8), np.zeros((7, 1)), np.zeros((2, 7)), [0.0] * 6 + [math.nan], [math.inf] + [0.0] * 6],
    ids=["6", "8", "7x1", "2x7", "nan", "inf"],
)
def test_malformed_action_raises_value_error(sim: LiberoSim, action: object) -> None:
    sim.reset(0)
    with pytest.raises(ValueError, match="action must"):
        sim.step(action)
    assert sim.steps == 0


@pytest.mark.parametrize(
    ("value", "command"), [(0.7, 1.0), (1e-6, 1.0), (0.0, 0.0), (-0.0, 0.0), (-1e-6, -1.0), (-0.3, -1.0)]
)
def test_gripper_binarised_exactly_as_upstream_np_sign(value: float, command: float) -> None:
    assert binarize_gripper(value) == command == np.sign(value)


def test_rotate_180_is_a_contiguous_copy() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rotated = rotate_180(image)
    np.testing.assert_array_equal(rotated, image[::-1, ::-1])
    assert rotated.flags.c_contiguous and not np.shares_memory(rotated, image)


def test_init_state_out_of_range_names_both_numbers(sim: LiberoSim) -> None:
    with pytest.raises(ValueError, match=r"init_state_index 50 out of range: .* 50 init states \(0\.\.49\)"):
        sim.reset(50)


@pytest.mark.parametrize(
    ("suite", "task_id", "message"),
    [("libero_spatail", 0, "Did you mean 'libero_spatial'"), ("libero_goal", 10, "task_id 10 out of range")],
)
def test_bad_suite_or_task_refused_before_env_creation(suite: str, task_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiberoSim(suite, task_id)


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_out_of_range_seed_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match=rf"seed must be 0\.\.2\*\*31-1, got {seed}"):
        LiberoSim("libero_spatial", 0, seed=seed)


def test_timeout_at_max_steps_then_episode_over(sim: LiberoSim) -> None:
    sim.reset(1)
    results = [sim.step(HOLD) for _ in range(MAX_STEPS)]
    assert [r.timeout for r in results] == [False] * (MAX_STEPS - 1) + [True]
    with pytest.raises(RuntimeError, match="episode over"):
        sim.step(HOLD)


def test_success_when_bowl_placed_on_plate(sim: LiberoSim) -> None:
    sim.reset(0)
    mj = sim.env.sim
    plate = mj.data.body_xpos[mj.model.body_name2id("plate_1_main")]
    bowl = mj.data.get_joint_qpos("akita_black_bowl_1_joint0").copy()  # free joint: xyz + quaternion
    bowl[:3] = plate + np.array([0.0, 0.0, 0.05])
    mj.data.set_joint_qpos("akita_black_bowl_1_joint0", bowl)
    mj.forward()
    results = []
    while not results or not (results[-1].success or results[-1].timeout):
        results.append(sim.step(HOLD))
    assert results[-1].success and results[-1].reward == 1.0
    with pytest.raises(RuntimeError, match="episode over"):
        sim.step(HOLD)


def test_unstable_simulation_raises_simulation_error(sim: LiberoSim) -> None:
    sim.reset(0)
    sim.env.sim.data.qvel[:] = np.nan
    with pytest.raises(SimulationError, match="NaN/Inf"):
        sim.step(HOLD)
    with pytest.raises(RuntimeError, match="episode over"):
        sim.step(HOLD)
    assert sim.reset(0).step == 0  # the next episode starts cleanly


def test_close_is_idempotent(sim: LiberoSim) -> None:
    sim.close()
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.reset(0)
