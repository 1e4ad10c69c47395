"""DeepThinkVLA in pure torch: conventions, action codec, normaliser, hybrid mask, model class, checkpoint IO.

The public names are exported lazily (PEP 562): torch-free code imports `dtvla_policy.model.conventions`, which runs
this file, and must not pull in torch and transformers by doing so (the sim bridge, `dtvla-eval`'s workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtvla_policy.lazy_exports import lazy_exports

_EXPORTS = {
    "ActionCodec": "dtvla_policy.model.action_codec",
    "Checkpoint": "dtvla_policy.model.checkpoint",
    "DeepThinkVLA": "dtvla_policy.model.modeling",
    "QuantileNormalizer": "dtvla_policy.model.normalizer",
    "TokenIds": "dtvla_policy.model.conventions",
    "load_checkpoint": "dtvla_policy.model.checkpoint",
}
# listed literally for static tools
__all__ = ["ActionCodec", "Checkpoint", "DeepThinkVLA", "QuantileNormalizer", "TokenIds", "load_checkpoint"]

if TYPE_CHECKING:
    from dtvla_policy.model.action_codec import ActionCodec
    from dtvla_policy.model.checkpoint import Checkpoint, load_checkpoint
    from dtvla_policy.model.conventions import TokenIds
    from dtvla_policy.model.modeling import DeepThinkVLA
    from dtvla_policy.model.normalizer import QuantileNormalizer


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
