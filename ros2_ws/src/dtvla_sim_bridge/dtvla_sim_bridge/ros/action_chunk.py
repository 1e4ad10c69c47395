"""trajectory_msgs/JointTrajectory action chunk -> (n, 7) actions, refusing malformed chunks with a reason.

The policy publishes one chunk per observation (docs/topics.md): joint_names = the command dims
(`CHUNK_JOINT_NAMES`), point k holds the 7 commands of step k in `positions`.
"""

from __future__ import annotations

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy.model.conventions import CHUNK_STEPS
from dtvla_policy.ros.contract import CHUNK_JOINT_NAMES


class ChunkRejected(ValueError):
    """A chunk the bridge will not execute; `reason` is a short key for counting and log throttling."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def chunk_to_actions(msg: JointTrajectory) -> np.ndarray:
    """(n, 7) float64 actions of a valid chunk (1 <= n <= CHUNK_STEPS); raises ChunkRejected otherwise."""
    names = tuple(msg.joint_names)
    if names != CHUNK_JOINT_NAMES:
        raise ChunkRejected("joint_names", f"chunk joint_names must be {list(CHUNK_JOINT_NAMES)}, got {list(names)}")
    if not 1 <= len(msg.points) <= CHUNK_STEPS:
        raise ChunkRejected("num_points", f"chunk must have 1..{CHUNK_STEPS} points, got {len(msg.points)}")
    width = len(CHUNK_JOINT_NAMES)
    for k, point in enumerate(msg.points):
        if len(point.positions) != width:
            raise ChunkRejected(
                "num_positions", f"chunk point {k} must have {width} positions, got {len(point.positions)}"
            )
    actions = np.array([point.positions for point in msg.points], dtype=np.float64)
    if not np.isfinite(actions).all():
        bad = sorted({int(k) for k in np.argwhere(~np.isfinite(actions))[:, 0]})
        raise ChunkRejected("non_finite", f"chunk has NaN/Inf positions in points {bad}")
    return actions
