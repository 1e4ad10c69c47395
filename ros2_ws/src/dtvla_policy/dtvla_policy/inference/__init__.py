"""The inference engine (`PolicyEngine`: observation in; chunk, CoT and timings out), `dtvla-infer`, and helpers.

The public names are exported lazily (PEP 562): torch-free code imports `dtvla_policy.inference.reasoning_view`,
which runs this file, and must not pull in torch by doing so (`dtvla-eval`'s workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtvla_policy.lazy_exports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
