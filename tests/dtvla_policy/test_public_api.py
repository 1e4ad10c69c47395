"""The promised public API, and that torch-free importers stay torch-free (lazy package exports)."""

import subprocess
import sys

import pytest

import dtvla_policy.inference as inference
import dtvla_policy.model as model
from dtvla_policy import protocol
from dtvla_policy.inference import engine
from dtvla_policy.model import action_codec, checkpoint, modeling, normalizer

# Modules that must import without torch: the sim bridge and eval workers run in processes that never load a model.
TORCH_FREE = (
    "dtvla_policy.protocol",
    "dtvla_policy.model.conventions",
    "dtvla_policy.ros.contract",
    "dtvla_policy.inference.reasoning_view",
    "dtvla_policy.inference.chunk_health",
    "dtvla_policy.live_view",
    "dtvla_policy.ros.foxglove_bridge",  # a viewer machine needs no torch
    "dtvla_policy.ros.recorder_node",  # nor a recording one
    "dtvla_policy.recording.trace",  # reading a bag (bag -> dataset) neither
    "dtvla_sim_bridge.sim",
    "dtvla_sim_bridge.eval.cli",
    "dtvla_sim_bridge.eval.worker",
    "dtvla_sim_bridge.ros.sim_bridge_node",
)


def test_model_package_exports():
    from dtvla_policy.model import ActionCodec, DeepThinkVLA, QuantileNormalizer, load_checkpoint

    assert ActionCodec is action_codec.ActionCodec and QuantileNormalizer is normalizer.QuantileNormalizer
    assert DeepThinkVLA is modeling.DeepThinkVLA and load_checkpoint is checkpoint.load_checkpoint
    assert {"ActionCodec", "QuantileNormalizer", "DeepThinkVLA", "load_checkpoint"} <= set(model.__all__)


def test_inference_package_exports():
    from dtvla_policy.inference import DecodeConfig, Mode, NonFiniteOutputError, Observation, PolicyEngine, Prediction

    assert PolicyEngine is engine.PolicyEngine and Prediction is engine.Prediction
    assert NonFiniteOutputError is engine.NonFiniteOutputError and issubclass(NonFiniteOutputError, FloatingPointError)
    assert Observation is engine.Observation
    assert DecodeConfig is protocol.DecodeConfig and Mode is protocol.Mode
    assert set(inference.__all__) == {"DecodeConfig", "Mode", "NonFiniteOutputError", "Observation", "PolicyEngine",
                                      "Prediction"}


@pytest.mark.parametrize("package", [model, inference])
def test_every_exported_name_resolves_and_unknown_names_raise(package):
    for name in package.__all__:
        assert getattr(package, name).__name__ == name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018


def test_torch_free_modules_do_not_import_torch():
    script = (
        "import importlib, sys\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        sys.exit(f'importing {name} imported torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
