"""The LIBERO task suites dtvla evaluates on, with the episode step caps of the upstream evaluation.

Caps mirror DeepThinkVLA `src/experiments/run_libero_eval.py` (`max_steps`): spatial 220, object 280, goal 300,
libero_10 620, libero_90 400. OpenVLA's `run_libero_eval.py` uses the same caps except libero_10 at 520; that
variant is kept here so published OpenVLA-protocol numbers can be reproduced. The settle steps (10 no-ops after
each reset) are not counted in the cap, as upstream.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class SuiteSpec:
    """One LIBERO suite and the step cap of an evaluation episode in it."""

    name: str  # key of libero.libero.benchmark.get_benchmark_dict()
    num_tasks: int
    max_steps: int  # DeepThinkVLA eval cap (policy steps, settle steps excluded)
    openvla_max_steps: int  # OpenVLA eval cap; differs only for libero_10


SUITES: tuple[SuiteSpec, ...] = (
    SuiteSpec("libero_spatial", num_tasks=10, max_steps=220, openvla_max_steps=220),
    SuiteSpec("libero_object", num_tasks=10, max_steps=280, openvla_max_steps=280),
    SuiteSpec("libero_goal", num_tasks=10, max_steps=300, openvla_max_steps=300),
    SuiteSpec("libero_10", num_tasks=10, max_steps=620, openvla_max_steps=520),
    SuiteSpec("libero_90", num_tasks=90, max_steps=400, openvla_max_steps=400),
)
INIT_STATES = 50  # LIBERO ships 50 fixed init states per task (the eval's trials)
_BY_NAME = {spec.name: spec for spec in SUITES}
if len(_BY_NAME) != len(SUITES):
    raise RuntimeError(f"duplicate suite names in SUITES: {[spec.name for spec in SUITES]}")
SUITE_NAMES = tuple(_BY_NAME)


def get_suite(name: str) -> SuiteSpec:
    """The spec of suite `name`; an unknown name raises ValueError naming the closest known one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, SUITE_NAMES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown LIBERO suite {name!r}.{hint} Known suites: {', '.join(SUITE_NAMES)}") from None


def parse_index_ranges(text: str, count: int, what: str) -> tuple[int, ...]:
    """'0-9', '3', '0,2,5-7' -> sorted unique indices, each in 0..count-1; ValueError naming `what` otherwise."""
    indices: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{what} {text!r}: expected indices and ranges like 0-9 or 0,2,5-7")
        low, high = int(first), int(last) if dash else int(first)
        if low > high or high >= count:
            raise ValueError(f"{what} {text!r}: {part.strip()} is not within 0..{count - 1}")
        indices.update(range(low, high + 1))
    return tuple(sorted(indices))
