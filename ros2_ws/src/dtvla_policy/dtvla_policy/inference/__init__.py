"""The inference engine (`PolicyEngine`: observation in; chunk, CoT and timings out), `dtvla-infer`, and helpers.

The public names are exported lazily (PEP 562): torch-free code imports `dtvla_policy.inference.reasoning_view`,
which runs this file, and must not pull in torch by doing so (`dtvla-eval`'s workers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DecodeConfig": "dtvla_policy.protocol",
    "Mode": "dtvla_policy.protocol",
    "NonFiniteOutputError": "dtvla_policy.inference.engine",
    "Observation": "dtvla_policy.inference.engine",
    "PolicyEngine": "dtvla_policy.inference.engine",
    "Prediction": "dtvla_policy.inference.engine",
}
# listed literally for static tools
__all__ = ["DecodeConfig", "Mode", "NonFiniteOutputError", "Observation", "PolicyEngine", "Prediction"]

if TYPE_CHECKING:
    from dtvla_policy.inference.engine import NonFiniteOutputError, Observation, PolicyEngine, Prediction
    from dtvla_policy.protocol import DecodeConfig, Mode


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
