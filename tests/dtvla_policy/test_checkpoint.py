"""Loader refusals for bad checkpoint directories, and the tiny-checkpoint writer's format."""

import json
import shutil
import stat

import pytest
import torch

from dtvla_policy.atomic_directory import current_umask
from dtvla_policy.model.checkpoint import load_checkpoint
from dtvla_policy.model.conventions import TokenIds
from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture
def ckpt_copy(tiny_checkpoint, tmp_path):
    path = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, path)
    return path


def test_tiny_checkpoint_has_the_released_layout(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "norm_stats.json"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert {config[k] for k in TokenIds.CONFIG_KEYS.values()} == {257152, 257153, 257154, 257155, 257156, 254976,
                                                                   257023}
    assert config["text_config"]["vocab_size"] == 257157
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.token_ids == TokenIds()
    assert ckpt.tokenizer.convert_tokens_to_ids("<think>") == 257153


def test_writer_refuses_a_non_empty_directory(tiny_checkpoint):
    with pytest.raises(FileExistsError):
        write_tiny_checkpoint(tiny_checkpoint)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_missing_norm_stats(ckpt_copy):
    (ckpt_copy / "norm_stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="norm_stats.json"):
        load_checkpoint(ckpt_copy)


def test_non_finite_norm_stats(ckpt_copy):
    (ckpt_copy / "norm_stats.json").write_text('{"action": {"q01": [NaN, 0, 0, 0, 0, 0, 0], "q99": [1,1,1,1,1,1,1]}}')
    with pytest.raises(ValueError, match="non-finite"):
        load_checkpoint(ckpt_copy)


def test_pickle_weights_are_refused(ckpt_copy):
    (ckpt_copy / "model.safetensors").rename(ckpt_copy / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="convert them to safetensors"):
        load_checkpoint(ckpt_copy)


def test_missing_config(ckpt_copy):
    (ckpt_copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(ckpt_copy)


def test_config_and_tokenizer_disagree_on_ids(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["think_start_token_index"], config["think_end_token_index"] = 257154, 257153
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="tokenizer maps <think> to 257153 but config.json says 257154"):
        load_checkpoint(ckpt_copy)


def test_inconsistent_action_range(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["action_token_begin_idx"] = 255000
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="expected 2048"):
        load_checkpoint(ckpt_copy)


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_empty_or_truncated_weights_are_refused(ckpt_copy, keep):
    weights = ckpt_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match="model.safetensors is not a complete safetensors file.*copy it again"):
        load_checkpoint(ckpt_copy)


@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu", "unknown device 'tpu'"), pytest.param("cuda", "no CUDA device", marks=NO_CUDA),
     pytest.param("cuda:1", "no CUDA device", marks=NO_CUDA), ("meta", "not supported")],
)
def test_unavailable_devices_are_refused(tiny_checkpoint, device, message):
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tiny_checkpoint, device=device)


def test_non_dict_norm_stats(ckpt_copy):
    (ckpt_copy / "norm_stats.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="JSON object"):
        load_checkpoint(ckpt_copy)


def test_an_action_range_shifted_by_one_is_refused(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    config["action_token_begin_idx"], config["action_token_end_idx"] = 254977, 257024  # still 2048 ids
    (ckpt_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"action_token_end_idx=257024 but .* image_token_index - 1 - 128 = 257023"):
        load_checkpoint(ckpt_copy)


def test_a_shifted_range_in_another_vocabulary_is_warned_about(caplog):
    TokenIds(image=5000, think_start=5001, think_end=5002, action_start=5003, action_end=5004,
             action_begin=2000, action_end_id=4047, vocab_size=5005).validate()
    assert "image_token_index - 1 - 128 = 4871" in caplog.text and "accepted" in caplog.text


def test_checkpoint_files_are_readable_by_other_users(tiny_checkpoint):
    # safetensors writes 0600; every file of a checkpoint gets what an ordinary write gives (0644 under umask 022)
    expected = 0o666 & ~current_umask()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tiny_checkpoint.iterdir()}
    assert modes["model.safetensors"] == expected and set(modes.values()) == {expected}
