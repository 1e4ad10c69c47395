"""LIBERO simulator wrapper: suites and step caps, one task env, the one lockstep episode loop. No ROS."""

from dtvla_sim_bridge.sim.episode import AskChunk, Episode, EpisodeLoop, Outcome
from dtvla_sim_bridge.sim.libero_env import (
    ACTION_DIM,
    CONTROL_FREQ_HZ,
    SETTLE_ACTION,
    Frame,
    LiberoSim,
    SimulationError,
    StepResult,
    binarize_gripper,
    libero_state,
    rotate_180,
)
from dtvla_sim_bridge.sim.suites import SUITE_NAMES, SUITES, SuiteSpec, get_suite

__all__ = [
    "ACTION_DIM",
    "CONTROL_FREQ_HZ",
    "SETTLE_ACTION",
    "SUITES",
    "SUITE_NAMES",
    "AskChunk",
    "Episode",
    "EpisodeLoop",
    "Frame",
    "LiberoSim",
    "Outcome",
    "SimulationError",
    "StepResult",
    "SuiteSpec",
    "binarize_gripper",
    "get_suite",
    "libero_state",
    "rotate_180",
]
