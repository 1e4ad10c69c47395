"""Action-chunk parsing: a valid JointTrajectory gives (n, 7) actions, anything else a reason to reject it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dtvla_policy.ros.contract import CHUNK_JOINT_NAMES
from dtvla_sim_bridge.ros.action_chunk import ChunkRejected, chunk_to_actions


def chunk(points: list[list[float]], names: tuple[str, ...] = CHUNK_JOINT_NAMES) -> JointTrajectory:
    return JointTrajectory(joint_names=list(names), points=[JointTrajectoryPoint(positions=p) for p in points])


def test_valid_chunk_gives_actions_in_order() -> None:
    points = [[0.1 * k + 0.01 * d for d in range(7)] for k in range(10)]
    actions = chunk_to_actions(chunk(points))
    assert actions.shape == (10, 7) and actions.dtype == np.float64
    np.testing.assert_allclose(actions, points)


@pytest.mark.parametrize(
    ("names", "points", "reason"),
    [
        (CHUNK_JOINT_NAMES[:6], [[0.0] * 7], "joint_names"),
        (tuple(reversed(CHUNK_JOINT_NAMES)), [[0.0] * 7], "joint_names"),
        (CHUNK_JOINT_NAMES, [], "num_points"),
        (CHUNK_JOINT_NAMES, [[0.0] * 7] * 11, "num_points"),
        (CHUNK_JOINT_NAMES, [[0.0] * 7, [0.0] * 8], "num_positions"),
        (CHUNK_JOINT_NAMES, [[0.0] * 6 + [math.nan]], "non_finite"),
        (CHUNK_JOINT_NAMES, [[0.0] * 7, [-math.inf] + [0.0] * 6], "non_finite"),
    ],
)
def test_malformed_chunk_rejected_with_reason(names: tuple[str, ...], points: list[list[float]], reason: str) -> None:
    with pytest.raises(ChunkRejected) as info:
        chunk_to_actions(chunk(points, names))
    assert info.value.reason == reason
