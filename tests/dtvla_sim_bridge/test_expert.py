"""The scripted expert in raw LIBERO without cameras, and the seeded object jitter of `LiberoSim`.

No render context: every simulator here runs without cameras (`cameras=False`), so several can live in one process.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from dtvla_policy.protocol import EpisodeProtocol
from dtvla_sim_bridge.sim import EpisodeLoop, LiberoSim, Outcome
from dtvla_sim_bridge.sim.expert import ScriptedExpert
from dtvla_sim_bridge.sim.object_jitter import movable_joints
from dtvla_sim_bridge.sim.scene import PHASES, SceneState

pytestmark = pytest.mark.sim

TASK = 0  # libero_spatial: "pick up the black bowl between the plate and the ramekin and place it on the plate"
JITTER_M = 0.03


@pytest.fixture(scope="module")
def plain() -> Iterator[LiberoSim]:
    with LiberoSim("libero_spatial", TASK, cameras=False) as sim:
        yield sim


@pytest.fixture(scope="module")
def jittered() -> Iterator[LiberoSim]:
    with LiberoSim("libero_spatial", TASK, cameras=False, object_jitter_m=JITTER_M) as sim:
        yield sim


@pytest.mark.parametrize("init_state", [0, 1])
def test_expert_succeeds_through_the_episode_loop(plain: LiberoSim, init_state: int) -> None:
    expert = ScriptedExpert(plain)
    scenes: list[SceneState] = []

    def act(frame, _instruction):
        action = expert.act(frame)
        scenes.append(expert.scene)
        return action[None]

    episode = EpisodeLoop(plain).run(init_state, act)
    assert episode.outcome is Outcome.SUCCESS, (episode, expert.phase)
    assert episode.steps <= plain.max_steps == 220
    assert (expert.goal.target_object, expert.goal.place) == ("akita_black_bowl_1", "plate_1")
    phases = [scene.phase_index for scene in scenes]
    assert phases == sorted(phases) and PHASES[phases[-1]] in ("release", "retreat", "done")
    assert any(scene.holding == "akita_black_bowl_1" for scene in scenes)
    assert SceneState.from_json(scenes[-1].to_json()) == scenes[-1]
    assert {"plate_1", "akita_black_bowl_1", "wooden_cabinet_1"} <= set(scenes[0].objects)


def object_positions(sim: LiberoSim) -> dict[str, np.ndarray]:
    return {name: np.array(sim.observation[f"{name}_pos"]) for name in movable_joints(sim.env)}


def test_jitter_is_seeded_bounded_and_order_independent(plain: LiberoSim, jittered: LiberoSim) -> None:
    jittered.reset(3)
    first = object_positions(jittered)
    jittered.reset(7)  # another episode in between must not change init state 3's draw
    jittered.reset(3)
    again = object_positions(jittered)
    plain.reset(3)
    upstream = object_positions(plain)
    assert first.keys() == upstream.keys() and len(first) >= 4
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    offsets = np.array([first[name][:2] - upstream[name][:2] for name in first])
    assert np.abs(offsets).max() > 0.005  # moved ...
    assert np.abs(offsets).max() < JITTER_M + 0.01  # ... by about the magnitude at most (settling adds a little)


def test_jitter_changes_with_the_env_seed(jittered: LiberoSim) -> None:
    jittered.reset(3)
    base = object_positions(jittered)
    with LiberoSim("libero_spatial", TASK, cameras=False, object_jitter_m=JITTER_M, seed=1) as other:
        other.reset(3)
        moved = object_positions(other)
    assert any(not np.allclose(base[name][:2], moved[name][:2]) for name in base)


def test_loop_refuses_a_simulator_of_another_jitter(jittered: LiberoSim) -> None:
    with pytest.raises(ValueError, match="object_jitter_m"):
        EpisodeLoop(jittered, EpisodeProtocol())
    assert EpisodeLoop(jittered, EpisodeProtocol(object_jitter_m=JITTER_M)).sim is jittered


def test_bad_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="object_jitter_m"):
        LiberoSim("libero_spatial", TASK, cameras=False, object_jitter_m=-0.01)
