"""What the policy, the simulator, the evaluation and training agree on: decoding and the episode protocol.

One place for every setting that changes a reported number: inference modes, the CoT cap, temperatures, the
opt-in deviations from upstream decoding, and the LIBERO episode protocol (settle steps, camera size, seeds,
actions executed per chunk, reset kind). Defaults are upstream's (OpenBMB/DeepThinkVLA
`src/experiments/run_libero_eval.py`, `deepthinkvla_utils.py`, `scripts/run_deepthinkvla_rl.sh`); the suites'
step caps live with the suites (`dtvla_sim_bridge.sim.suites`). `config/sim.yaml` is checked against this module
by the tests. No torch, no ROS: the sim bridge, the policy node, `dtvla-eval` and the manifests all import it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from dtvla_policy.model.conventions import CHUNK_STEPS


class Mode(StrEnum):
    """Inference modes of the engine (see `dtvla_policy.inference.engine`)."""

    FULL = "full"  # greedy CoT, then the action block in one pass (the paper's headline setting)
    MASKED = "masked"  # empty CoT, one pass (the paper's masked-CoT setting)
    RANDOM = "random"  # random CoT ids, one pass (the paper's ablation)
    AR_ACTIONS = "ar_actions"  # actions one token at a time (latency baseline, not a trained setting)
    SAMPLE = "sample"  # sampled CoT and actions with log-probs (GRPO rollouts)

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown mode {value!r}; expected one of {[m.value for m in cls]}") from None


EVAL_MODES = (Mode.FULL, Mode.MASKED, Mode.RANDOM)  # the paper's three CoT settings (97.0 / 96.5 / 85.1 avg SR)
NODE_MODES = (Mode.FULL, Mode.MASKED)  # what the policy node switches between at run time

COT_CAP_EVAL = 2048  # upstream eval `max_new_tokens`
COT_CAP_RL = 300  # upstream RL rollouts `max_new_tokens` / `cot_length`


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding settings; every default equals upstream's greedy evaluation (temperatures: its RL rollouts).

    The two flags are opt-in deviations kept for experiments; both off reproduce upstream exactly: the model
    writes `<think>` itself, and only the action ids and `<eos>` are banned while it thinks.
    `max_cot_tokens` counts like upstream's `max_new_tokens`: every token after the prefix up to and including
    the `<action>` that ends the CoT (`<think>` and `</think>` count). A CoT not closed within it is closed by force
    and flagged `cot_truncated`, where upstream would have stopped without an `<action>`.
    """

    max_cot_tokens: int = COT_CAP_EVAL  # tokens after the prefix, `<think>` to `<action>`, before a forced close
    cot_temperature: float = 1.0  # sample mode only (upstream RL)
    action_temperature: float = 1.6  # sample mode only (upstream RL), over the 2048 action ids
    seed: int | None = None  # sample/random modes; None draws fresh randomness
    force_think_start: bool = False  # deviation: put `<think>` in the prefill instead of letting the model write it
    ban_extra_specials: bool = False  # deviation: also ban pad, bos, `<image>`, `</action>` (and a 2nd `<think>`)

    def __post_init__(self) -> None:
        if self.max_cot_tokens < 0:
            raise ValueError(f"max_cot_tokens must be >= 0, got {self.max_cot_tokens}")
        if self.cot_temperature <= 0 or self.action_temperature <= 0:
            raise ValueError(
                f"temperatures must be > 0, got cot {self.cot_temperature}, action {self.action_temperature}"
            )

    def deviations(self) -> dict[str, Any]:
        """The decoding settings that differ from upstream's evaluation defaults (empty when faithful)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("seed", "cot_temperature", "action_temperature")
                and getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class EpisodeProtocol:
    """How one LIBERO episode runs; defaults are upstream's evaluation (`run_libero_eval.py`)."""

    settle_steps: int = 10  # `num_steps_wait`: no-op steps after each reset, not counted in the step cap
    camera_size: int = 256  # `env_img_res`: render size in px; the policy resizes to its own input size
    env_seed: int = 0  # `env.seed(0)`; here also the base of every reset's numpy seed (env_seed + init state)
    seed: int = 429  # global seed (python, numpy, torch)
    execute_steps: int = CHUNK_STEPS  # actions of a chunk run open-loop before the next query (all 10)
    hard_reset: bool = False  # False: the soft reset, made equal to a rebuild (`LiberoSim.reset`), ~8x faster
    object_jitter_m: float = 0.0  # not upstream: every movable object displaced by up to this in x and y (seeded)

    def __post_init__(self) -> None:
        if not 1 <= self.execute_steps <= CHUNK_STEPS:
            raise ValueError(f"execute_steps must be 1..{CHUNK_STEPS} (a chunk's length), got {self.execute_steps}")
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {self.settle_steps}")
        if self.camera_size < 1:
            raise ValueError(f"camera_size must be >= 1 px, got {self.camera_size}")
        if not self.object_jitter_m >= 0:
            raise ValueError(f"object_jitter_m must be >= 0 m, got {self.object_jitter_m}")


UPSTREAM_DECODE = DecodeConfig()
UPSTREAM_EPISODE = EpisodeProtocol()
