"""Numerical checks of the hybrid decoder on a real (tiny, random-init) transformers model."""

import contextlib
import shutil
import sys

import numpy as np
import torch

from dtvla_policy.inference.engine import DecodeConfig, Observation, PolicyEngine
from dtvla_policy.model.checkpoint import NORM_STATS_FILE
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.model.sequence import ACTION_BLOCK_LEN, action_block_ids
from tests.fixtures.checkpoints import camera_image

TASK = "put the bowl on the plate"


def full_sequence(engine, cot, action_tokens=None, block_override=None):
    """ids, segments, image features of one [prefix, <think> cot </think>, action block] sequence."""
    batch = engine.prepare([Observation(camera_image(0), camera_image(1), TASK)])
    prefix = batch.prefixes[0]
    body = [engine.ids.think_start, *cot, engine.ids.think_end]
    block = block_override or action_block_ids(engine.ids, action_tokens)
    ids = torch.tensor([prefix + body + block])
    segs = torch.tensor([[Segment.PREFIX] * len(prefix) + [Segment.COT] * len(body) + [Segment.ACTION] * len(block)])
    return ids, segs, batch.image_features, len(prefix) + len(body)


@torch.inference_mode()
def test_cot_logits_ignore_the_action_block_and_action_logits_see_it(tiny_engine):
    model = tiny_engine.model
    cot = [300, 301, 302, 303]
    ids, segs, feats, before = full_sequence(tiny_engine, cot)
    changed = ids.clone()
    changed[0, -2] = 310  # </action> -> another token, inside the bidirectional block
    changed[0, -1] = 311  # <eos> -> another token
    a = model.hybrid_forward(ids, segs, feats).logits
    b = model.hybrid_forward(changed, segs, feats).logits
    assert torch.equal(a[:, :before], b[:, :before]), "prefix/CoT rows must not see the action block"
    assert (a[:, before] - b[:, before]).abs().max() > 1e-6, "the <action> row must see the whole block"


@torch.inference_mode()
def test_action_placeholders_are_zeroed(tiny_engine):
    model = tiny_engine.model
    ids_a, segs, feats, _ = full_sequence(tiny_engine, [300], action_tokens=[255000] * 70)
    ids_b, _, _, _ = full_sequence(tiny_engine, [300], action_tokens=list(range(256000, 256070)))
    a = model.hybrid_forward(ids_a, segs, feats).logits
    b = model.hybrid_forward(ids_b, segs, feats).logits
    assert torch.equal(a, b), "action identities must be invisible to the model (zeroed embeddings)"


@torch.inference_mode()
def test_cached_action_pass_equals_full_forward(tiny_engine):
    batch = tiny_engine.prepare([Observation(camera_image(0), camera_image(1), TASK)])
    cot = tiny_engine.generate_cot(batch, DecodeConfig(max_cot_tokens=6))
    assert len(cot["cot_segments"][0]) > 1
    cached = tiny_engine.cached_action_pass(cot)["action_logits"]
    recomputed = tiny_engine.one_pass_actions(batch, cot["cot_segments"])["action_logits"]
    torch.testing.assert_close(cached, recomputed, atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_cache_is_cropped_back_after_the_action_pass(tiny_engine):
    batch = tiny_engine.prepare([Observation(camera_image(0), camera_image(1), TASK)])
    cot = tiny_engine.generate_cot(batch, DecodeConfig(max_cot_tokens=3))
    length = cot["cache"].get_seq_length()
    first = tiny_engine.cached_action_pass(cot)["action_logits"]
    assert cot["cache"].get_seq_length() == length
    torch.testing.assert_close(tiny_engine.cached_action_pass(cot)["action_logits"], first)
    assert ACTION_BLOCK_LEN == 73


@torch.inference_mode()
def test_padded_batch_equals_single_samples(tiny_engine):
    observations = [
        Observation(camera_image(0), camera_image(1), TASK),
        Observation(camera_image(2, 128), camera_image(3, 96), "open the top drawer of the cabinet and look inside"),
    ]
    config = DecodeConfig(max_cot_tokens=5)
    batch = tiny_engine.prepare(observations)
    assert len(batch.prefixes[0]) != len(batch.prefixes[1])
    together = tiny_engine.generate_cot(batch, config)
    batch_logits = tiny_engine.cached_action_pass(together)["action_logits"]
    for row, obs in enumerate(observations):
        alone = tiny_engine.generate_cot(tiny_engine.prepare([obs]), config)
        assert alone["cot_segments"][0] == together["cot_segments"][row]
        single_logits = tiny_engine.cached_action_pass(alone)["action_logits"]
        torch.testing.assert_close(batch_logits[row : row + 1], single_logits, atol=1e-4, rtol=1e-4)
    preds = tiny_engine.predict_batch(observations, "masked")
    for row, obs in enumerate(observations):
        single = tiny_engine.predict(obs.agentview, obs.wrist, obs.task, "masked")
        np.testing.assert_array_equal(preds[row].action_tokens, single.action_tokens)


def test_masked_equals_full_with_a_forced_empty_cot(tiny_engine):
    """The opt-in `<think>` prefill with no budget left gives exactly the masked layout."""
    obs = (camera_image(4), camera_image(5), TASK)
    full = tiny_engine.predict(*obs, mode="full", decode=DecodeConfig(max_cot_tokens=0, force_think_start=True))
    masked = tiny_engine.predict(*obs, mode="masked")
    assert full.cot_segment_ids == masked.cot_segment_ids == [tiny_engine.ids.think_start, tiny_engine.ids.think_end]
    assert full.cot_token_ids == [] and full.cot_truncated
    np.testing.assert_array_equal(full.action_tokens, masked.action_tokens)
    np.testing.assert_allclose(full.actions, masked.actions)


def test_saved_and_reloaded_model_predicts_the_same(tiny_checkpoint, tiny_engine, tmp_path):
    """Weights, config and tokenizer survive save_pretrained + load_checkpoint: same logits, same predictions."""
    with contextlib.redirect_stdout(sys.stderr):  # save_pretrained may import DeepSpeed, which prints
        tiny_engine.model.save_pretrained(tmp_path, safe_serialization=True)
    tiny_engine.ckpt.tokenizer.save_pretrained(tmp_path)
    shutil.copy(tiny_checkpoint / NORM_STATS_FILE, tmp_path / NORM_STATS_FILE)
    reloaded = PolicyEngine.from_checkpoint(tmp_path, decode=tiny_engine.decode_config)
    obs = Observation(camera_image(6), camera_image(7), TASK)
    with torch.inference_mode():
        segment = [[tiny_engine.ids.think_start, 300, 301, tiny_engine.ids.think_end]]
        original = tiny_engine.one_pass_actions(tiny_engine.prepare([obs]), segment)["action_logits"]
        again = reloaded.one_pass_actions(reloaded.prepare([obs]), segment)["action_logits"]
    assert torch.equal(original, again)
    for mode in ("masked", "full"):
        a = tiny_engine.predict(obs.agentview, obs.wrist, obs.task, mode)
        b = reloaded.predict(obs.agentview, obs.wrist, obs.task, mode)
        assert a.cot_segment_ids == b.cot_segment_ids and a.cot == b.cot
        np.testing.assert_array_equal(a.action_tokens, b.action_tokens)
        np.testing.assert_array_equal(a.actions, b.actions)


@torch.inference_mode()
def test_an_image_id_written_in_the_cot_is_a_token_not_an_image_slot(tiny_engine):
    """Upstream merges images on the first step only, so a CoT `<image>` keeps its token embedding."""
    ids, segs, feats, _ = full_sequence(tiny_engine, [tiny_engine.ids.image, 300])
    position = int(torch.nonzero(segs[0] == Segment.COT)[1])
    assert ids[0, position] == tiny_engine.ids.image
    embeds = tiny_engine.model.embed(ids, segs, feats)  # would raise: one more <image> slot than image features
    token = tiny_engine.model.get_input_embeddings()(ids[:, position])
    torch.testing.assert_close(embeds[0, position], token[0])
