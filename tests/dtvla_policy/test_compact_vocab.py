"""A checkpoint with a compact vocabulary: every id the engine uses comes from its config.json.

Tiny dims with the compact vocabulary (`--vocab compact`), so it is as cheap as the tiny checkpoint; the demo
preset differs only in its dims.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dtvla_policy.inference.engine import DecodeConfig, Mode, PolicyEngine
from dtvla_policy.model.action_codec import ActionCodec
from dtvla_policy.model.conventions import ACTION_TOKENS, RANDOM_COT_MAX_ID, TokenIds, prompt_text
from dtvla_policy.model.robot_corpus import LIBERO_INSTRUCTIONS
from dtvla_policy.model.tiny_checkpoint import COMPACT_TEXT_IDS, PRESETS, main, write_tiny_checkpoint
from tests.fixtures.checkpoints import camera_image

TASK = LIBERO_INSTRUCTIONS[0]
RELEASED = TokenIds()


@pytest.fixture(scope="module")
def compact_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "compact", preset="tiny", vocab="compact")


@pytest.fixture(scope="module")
def compact_engine(compact_checkpoint: Path) -> PolicyEngine:
    torch.set_num_threads(2)
    return PolicyEngine.from_checkpoint(compact_checkpoint, decode=DecodeConfig(max_cot_tokens=6))


def test_the_released_layout_is_the_layout_after_its_text_ids():
    assert TokenIds.layout(RELEASED.action_begin) == RELEASED
    assert RELEASED.random_cot_max_id == RANDOM_COT_MAX_ID  # upstream's random-CoT range is unchanged


def test_config_declares_compact_ids_that_differ_from_the_released_ones(compact_checkpoint, compact_engine):
    config = json.loads((compact_checkpoint / "config.json").read_text())
    ids = compact_engine.ids
    assert ids == TokenIds.layout(COMPACT_TEXT_IDS) and ids.vocab_size == config["text_config"]["vocab_size"] == 3205
    for field, key in TokenIds.CONFIG_KEYS.items():
        assert config[key] == getattr(ids, field) != getattr(RELEASED, field)
    assert compact_engine.model.get_input_embeddings().weight.shape[0] == ids.vocab_size
    assert compact_engine.ckpt.tokenizer.convert_tokens_to_ids("<action>") == ids.action_start == 3203


def test_codec_ban_and_placeholders_use_the_config_ids(compact_engine):
    ids = compact_engine.ids
    codec = compact_engine.codec
    assert codec.ids == ids
    tokens = codec.encode(np.array([-1.0, 0.0, 1.0]))
    assert tokens.tolist() == [ids.action_end_id, ids.action_end_id - 1024, ids.action_begin] == [3071, 2047, 1024]
    assert np.allclose(codec.decode(tokens), ActionCodec().decode(ActionCodec().encode(np.array([-1.0, 0.0, 1.0]))))
    ban = compact_engine.cot_ban(compact_engine.decode_config)
    assert ban.shape == (ids.vocab_size,)
    assert ban.nonzero()[:, 0].tolist() == [ids.eos, *range(ids.action_begin, ids.action_end_id + 1)]
    placeholders = compact_engine.model._is_action_id(torch.tensor([ids.action_begin - 1, ids.action_begin,
                                                                    ids.action_end_id, ids.action_end_id + 1]))
    assert placeholders.tolist() == [False, True, True, False]
    assert ids.random_cot_max_id == ids.action_begin  # random CoTs draw text ids only, as upstream's


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.MASKED, Mode.RANDOM])
def test_engine_decodes_chunks_in_the_compact_action_range(compact_engine, mode):
    ids = compact_engine.ids
    prediction = compact_engine.predict(camera_image(0), camera_image(1), TASK, mode=mode)
    assert prediction.actions.shape == (10, 7) and np.all(np.isfinite(prediction.actions))
    assert prediction.action_tokens.shape == (ACTION_TOKENS,)
    assert np.all((prediction.action_tokens >= ids.action_begin) & (prediction.action_tokens <= ids.action_end_id))
    assert all(token < ids.action_begin or token in (ids.think_start, ids.think_end)
               for token in prediction.cot_segment_ids)


def test_the_compact_tokenizer_spells_libero_prompts_in_few_tokens(compact_engine):
    tokenizer = compact_engine.ckpt.tokenizer
    for task in LIBERO_INSTRUCTIONS:
        text_ids = tokenizer(prompt_text(task), add_special_tokens=False)["input_ids"]
        tags = {compact_engine.ids.think_start, compact_engine.ids.think_end, compact_engine.ids.action_start,
                compact_engine.ids.action_end}
        assert len(text_ids) <= 45 and all(t < compact_engine.ids.action_begin for t in set(text_ids) - tags)
        assert tokenizer.decode(text_ids) == prompt_text(task)
    unseen = "Grasp the zebra-striped über mug!"  # not in the corpus: byte fallback keeps it lossless
    assert tokenizer.decode(tokenizer(unseen, add_special_tokens=False)["input_ids"]) == unseen


def test_cli_writes_a_compact_checkpoint_the_demo_preset_s_default(tmp_path, capsys):
    assert PRESETS["demo"].vocab == "compact"
    with pytest.raises(ValueError, match="unknown vocabulary 'tiny'; choose one of released, compact"):
        write_tiny_checkpoint(tmp_path / "bad", vocab="tiny")
    main([str(tmp_path / "out"), "--preset", "tiny", "--vocab", "compact", "--seed", "1"])
    assert "UNTRAINED tiny checkpoint" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 3205 and "compact vocabulary" in (tmp_path / "out" /
                                                                                     "README.md").read_text()
