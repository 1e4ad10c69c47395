"""Noise on the expert's executed commands, the recorded labels staying clean (DART, Laskey et al. 2017).

A policy trained only on perfect demonstrations never sees the states its own errors lead to, and its errors
compound. Perturbing what the expert *executes* while recording what it *commands* puts those states and their
corrections into the data. Errors of a chunked policy are systematic over a chunk (a chunk that descends too fast),
so one offset is drawn per `hold_steps` steps rather than per step. Only the translation deltas are perturbed: the
rotation and gripper commands are executed as the expert gave them (rim grasps fail when the hand tilts).
"""

from __future__ import annotations

import numpy as np

from dtvla_policy.model.conventions import ACTION_DIM

TRANSLATION_DIMS = 3  # x, y, z come first in LIBERO's OSC_POSE commands


def noise_rng(env_seed: int, task: int, init_state: int) -> np.random.Generator:
    """One episode's noise generator: depends on the env seed, task and init state only (a resumed collection
    redraws the same noise)."""
    return np.random.default_rng([env_seed, task, init_state, 0x6e6f697365])


def check_action_noise(std: float, hold_steps: int) -> None:
    """ValueError for settings no noise can have (NaN or negative std, a hold under one step)."""
    if not std >= 0.0:
        raise ValueError(f"action noise std must be >= 0, got {std}")
    if hold_steps < 1:
        raise ValueError(f"action noise hold steps must be >= 1, got {hold_steps}")


class ActionNoise:
    """Offsets N(0, std^2) on the x, y, z deltas, redrawn every `hold_steps` steps; std 0 is a no-op."""

    def __init__(self, std: float, hold_steps: int, rng: np.random.Generator) -> None:
        check_action_noise(std, hold_steps)
        self.std = std
        self.hold_steps = hold_steps
        self._rng = rng
        self._offset = np.zeros(ACTION_DIM)
        self._steps = 0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        """The command to execute for the expert's `action`: offset, clipped to LIBERO's [-1, 1]."""
        if self.std == 0.0:
            return action
        if self._steps % self.hold_steps == 0:
            self._offset[:TRANSLATION_DIMS] = self._rng.normal(0.0, self.std, TRANSLATION_DIMS)
        self._steps += 1
        return np.clip(action + self._offset, -1.0, 1.0)
