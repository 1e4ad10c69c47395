"""SftCollator: the training sequence checked token by token against the documented layout (docs/architecture.md,
../shared/reference/upstream.md section 2), padding, reasoning dropout and cap, and bad samples."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from dtvla_policy.model.conventions import TokenIds
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.model.image_preprocessing import to_pixel_values
from dtvla_policy.model.normalizer import QuantileNormalizer
from dtvla_training.data.sample import Sample
from dtvla_training.sft.collate import IGNORE_INDEX, SftCollator
from tests.fixtures.checkpoints import camera_image

IMAGE_SIZE = 56  # the tiny checkpoint's
TOKENS_PER_IMAGE = 16  # (56 / 14) ** 2
TASK = "Put_the_Bowl on the plate"
# The documented prompt, byte for byte: instruction, no space before "Task:", task lowercased with '_' -> ' ', ";\n".
PROMPT = ("First output the thinking process in <think></think> tags and then output the final action in "
          "<action></action>.Task: put the bowl on the plate;\n")
REASONING = "The gripper is open above the bowl. Move down and grasp the bowl."
# Identity quantile stats on dims 0-5 (x_n = x up to 1e-8), so the action tokens below follow from the values alone.
IDENTITY_STATS = QuantileNormalizer(q01=-np.ones(7), q99=np.ones(7))
# value -> token with 2048 bins over [-1, 1]: bin 0 -> 257023, bin 2047 -> 254976, 0.0 -> bin 1024.
TOKEN_OF = {-1.0: 257023, 0.0: 257023 - 1024, 1.0: 254976}
IDS = TokenIds()


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return AutoTokenizer.from_pretrained(tiny_checkpoint, local_files_only=True)


def collator(tokenizer, **kwargs) -> SftCollator:
    return SftCollator(tokenizer, IDS, IDENTITY_STATS, IMAGE_SIZE, TOKENS_PER_IMAGE, **kwargs)


def actions_pattern() -> np.ndarray:
    """(10, 7): step t, dim d holds (-1, 0, 1)[(t + 2d) % 3], so time-major order is visible in the tokens."""
    values = (-1.0, 0.0, 1.0)
    return np.array([[values[(t + 2 * d) % 3] for d in range(7)] for t in range(10)], dtype=np.float32)


def sample(reasoning: str = REASONING, task: str = TASK, actions: np.ndarray | None = None, seed: int = 0) -> Sample:
    return Sample(agentview=camera_image(seed, 64), wrist=camera_image(seed + 100, 64),
                  actions=actions_pattern() if actions is None else actions, task=task, reasoning=reasoning,
                  episode_index=3, frame_index=7)


def test_sequence_matches_the_documented_layout_token_by_token(tokenizer):
    batch = collator(tokenizer)([sample()])
    prompt = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    reasoning = tokenizer(REASONING, add_special_tokens=False)["input_ids"]
    action_tokens = [TOKEN_OF[float(v)] for v in actions_pattern().reshape(-1)]  # time-major: a1..a7 = step 0
    prefix = [257152] * (2 * TOKENS_PER_IMAGE) + [2] + prompt  # <image> x 2T, <bos>, prompt
    cot = [257153, *reasoning, 257154]  # <think> reasoning </think>
    block = [257155, *action_tokens, 257156, 1]  # <action> a1..a70 </action> <eos>
    expected_ids = prefix + cot + block
    expected_segments = [Segment.PREFIX] * len(prefix) + [Segment.COT] * len(cot) + [Segment.ACTION] * len(block)
    expected_labels = [IGNORE_INDEX] * len(prefix) + cot + block

    assert batch.input_ids.tolist() == [expected_ids]
    assert batch.segments.tolist() == [[int(s) for s in expected_segments]]
    assert batch.labels.tolist() == [expected_labels]
    assert len(block) == 73 and action_tokens[:7] == [257023, 254976, 255999, 257023, 254976, 255999, 257023]
    assert batch.n_tokens == len(expected_ids) and batch.n_reasoning_truncated == batch.n_reasoning_dropped == 0


def test_pixel_values_are_agentview_then_wrist_per_sample(tokenizer):
    samples = [sample(seed=1), sample(seed=2)]
    batch = collator(tokenizer)(samples)
    assert batch.pixel_values.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE) and batch.pixel_values.dtype == torch.float32
    expected = [to_pixel_values(image, IMAGE_SIZE) for s in samples for image in (s.agentview, s.wrist)]
    torch.testing.assert_close(batch.pixel_values, torch.stack(expected), atol=0, rtol=0)


def test_batch_is_right_padded_with_pad_segment_and_ignored_labels(tokenizer):
    long, short = sample(), sample(reasoning="Grasp.")
    batch = collator(tokenizer)([long, short])
    alone = [collator(tokenizer)([s]) for s in (long, short)]
    width = alone[0].input_ids.shape[1]
    n = alone[1].input_ids.shape[1]
    assert batch.input_ids.shape == (2, width) and n < width
    for row, single in enumerate(alone):
        length = single.input_ids.shape[1]
        assert torch.equal(batch.input_ids[row, :length], single.input_ids[0])
        assert torch.equal(batch.segments[row, :length], single.segments[0])
        assert torch.equal(batch.labels[row, :length], single.labels[0])
    assert batch.input_ids[1, n:].eq(IDS.pad).all()
    assert batch.segments[1, n:].eq(Segment.PAD).all()
    assert batch.labels[1, n:].eq(IGNORE_INDEX).all()


def test_reasoning_dropout_empties_the_thought_and_keeps_the_instruction(tokenizer):
    kept = collator(tokenizer)([sample()])
    dropped = collator(tokenizer, reasoning_dropout=1.0)([sample()])
    prefix_len = int((kept.segments[0] == Segment.PREFIX).sum())
    assert torch.equal(dropped.input_ids[0, :prefix_len], kept.input_ids[0, :prefix_len])  # same prompt
    assert dropped.input_ids[0, prefix_len:prefix_len + 3].tolist() == [257153, 257154, 257155]
    assert dropped.n_reasoning_dropped == 1


def test_dropout_draws_depend_only_on_the_item_seeds(tokenizer):
    samples = [sample() for _ in range(40)]
    seeds = list(range(1000, 1040))
    first = collator(tokenizer, reasoning_dropout=0.5, seed=1)(samples, seeds)
    again = collator(tokenizer, reasoning_dropout=0.5, seed=2)(samples, seeds)
    assert torch.equal(first.input_ids, again.input_ids)
    assert 5 < first.n_reasoning_dropped < 35


def test_reasoning_longer_than_the_cap_is_cut_and_counted(tokenizer):
    batch = collator(tokenizer, max_reasoning_tokens=3)([sample()])
    reasoning = tokenizer(REASONING, add_special_tokens=False)["input_ids"]
    cot = batch.input_ids[0][batch.segments[0] == Segment.COT].tolist()
    assert cot == [257153, *reasoning[:3], 257154]
    assert batch.n_reasoning_truncated == 1


@pytest.mark.parametrize("bad, message", [
    (dict(actions=np.full((10, 7), np.nan, dtype=np.float32)), "episode 3 frame 7: actions contain NaN"),
    (dict(actions=np.zeros((8, 7), dtype=np.float32)), r"actions must be \(10, 7\)"),
    (dict(reasoning="<think>nested</think>"), "reasoning contains special tokens"),
    (dict(task="  "), "task instruction is empty"),
])
def test_bad_samples_are_refused_with_their_provenance(tokenizer, bad, message):
    with pytest.raises(ValueError, match=message):
        collator(tokenizer)([sample(**bad)])
