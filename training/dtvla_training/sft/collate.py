"""Samples -> the exact DeepThinkVLA training sequence, right-padded into one batch.

Per sample (upstream `src/dt_datasets/dataset.py` + `PadDataCollator`, built here with the runtime's own
`dtvla_policy.model.sequence`, so training and inference cannot drift apart):

  [<image> x 2T] [<bos>] prompt_text(task)        segment PREFIX   label -100
  [<think>] reasoning ... [</think>]               segment COT      label = token id
  [<action>] a1 ... a70 [</action>] [<eos>]        segment ACTION   label = token id
  [pad] ...                                        segment PAD      label -100

a1..a70 = ActionCodec.encode(QuantileNormalizer.normalize(actions)), flattened time-major. The model shifts the
labels itself (the row at p predicts p + 1) and zeroes the embeddings of a1..a70.

Reasoning dropout: with probability p a sample gets an empty `<think></think>`. Upstream also drops the
"First output the thinking process ..." instruction for such samples (and for samples without reasoning); here
the instruction is kept, because the engine's `masked` mode always sends it: a dropped sample then trains exactly
the prompt that masked-CoT inference uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dtvla_policy.model.action_codec import ActionCodec
from dtvla_policy.model.conventions import ACTION_DIM, ACTION_TOKENS, CAMERA_ORDER, CHUNK_STEPS, TokenIds
from dtvla_policy.model.hybrid_mask import Segment
from dtvla_policy.model.image_preprocessing import check_image, to_pixel_values
from dtvla_policy.model.normalizer import QuantileNormalizer
from dtvla_policy.model.sequence import action_block_ids, prefix_ids
from dtvla_training.data.sample import Sample

IGNORE_INDEX = -100  # labels the loss skips (torch cross_entropy's default ignore_index)


@dataclass
class SftBatch:
    """One right-padded micro-batch.

    input_ids, segments, labels: (B, L) int64; segments hold `Segment` values, labels -100 where no loss.
    pixel_values: (B * 2, 3, S, S) float32 in [-1, 1], agentview then wrist for each sample.
    n_reasoning_truncated, n_reasoning_dropped: how many samples of the batch were cut at the reasoning cap or
        had their reasoning dropped (counted here because collation may run in DataLoader workers).
    n_load_fallbacks: reads the dataset replaced by the next frame for this batch (sum of `Sample.fallbacks`).
    """

    input_ids: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    n_reasoning_truncated: int = 0
    n_reasoning_dropped: int = 0
    n_load_fallbacks: int = 0

    def to(self, device: torch.device | str) -> SftBatch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> SftBatch:
        """Called by DataLoader(pin_memory=True), so host-to-GPU copies can overlap compute."""
        return self._map(torch.Tensor.pin_memory)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> SftBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SftBatch(**{k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    @property
    def n_samples(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tokens(self) -> int:
        """Non-pad tokens, the unit of the tokens/s figure."""
        return int((self.segments != Segment.PAD).sum())


class SftCollator:
    """Turns `Sample`s into an `SftBatch`; picklable, so it can run in DataLoader workers.

    tokens_per_image and image_size come from the checkpoint being trained (256 and 224 for the released model).
    reasoning_dropout: probability of training a sample with an empty `<think></think>` (upstream default 0).
    max_reasoning_tokens: longer reasoning is cut to this many tokens and counted. `CotDataset` already skips such
        frames when given the same cap; this guards other datasets, so one bad annotation cannot blow up a batch.
    seed: drives the dropout draws when no per-sample seeds are given (see `__call__`).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        token_ids: TokenIds,
        normalizer: QuantileNormalizer,
        image_size: int,
        tokens_per_image: int,
        reasoning_dropout: float = 0.0,
        max_reasoning_tokens: int = 512,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= reasoning_dropout <= 1.0:
            raise ValueError(f"reasoning_dropout must be in [0, 1], got {reasoning_dropout}")
        if max_reasoning_tokens < 0:
            raise ValueError(f"max_reasoning_tokens must be >= 0, got {max_reasoning_tokens}")
        self.tokenizer = tokenizer
        self.ids = token_ids
        self.normalizer = normalizer
        self.codec = ActionCodec(token_ids)
        self.image_size = image_size
        self.tokens_per_image = tokens_per_image
        self.reasoning_dropout = reasoning_dropout
        self.max_reasoning_tokens = max_reasoning_tokens
        self._rng = random.Random(seed)
        self._prefix_cache: dict[str, list[int]] = {}  # a dataset has few distinct tasks
        # Ids that would break the sequence structure if they appeared inside the reasoning.
        self._structural_ids = {token_ids.think_start, token_ids.think_end, token_ids.action_start,
                                token_ids.action_end, token_ids.image, token_ids.bos, token_ids.eos}

    def __call__(self, samples: Sequence[Sample], seeds: Sequence[int] | None = None) -> SftBatch:
        """Collate `samples`. With `seeds` (one int per sample) the dropout draw of sample i depends on seeds[i]
        only, so a resumed run or another worker count drops exactly the same samples."""
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        if seeds is not None and len(seeds) != len(samples):
            raise ValueError(f"got {len(seeds)} seeds for {len(samples)} samples")
        rows, pixels = [], []
        truncated = dropped = 0
        for i, sample in enumerate(samples):
            draw = random.Random(seeds[i]).random() if seeds is not None else self._rng.random()
            drop = draw < self.reasoning_dropout
            ids, segments, labels, cut = self.sequence(sample, drop_reasoning=drop)
            rows.append((ids, segments, labels))
            truncated += cut
            dropped += drop
            for name, image in zip(CAMERA_ORDER, (sample.agentview, sample.wrist), strict=True):
                where = f"episode {sample.episode_index} frame {sample.frame_index} {name}"
                pixels.append(to_pixel_values(check_image(image, where), self.image_size))
        input_ids, segments, labels = self._right_pad(rows)
        fallbacks = sum(sample.fallbacks for sample in samples)
        return SftBatch(input_ids, segments, labels, torch.stack(pixels), truncated, dropped, fallbacks)

    def collate_items(self, items: Sequence[tuple[Sample, int]]) -> SftBatch:
        """DataLoader entry point for (sample, seed) items, as `SeededSamples` yields them."""
        return self([sample for sample, _ in items], [seed for _, seed in items])

    def sequence(self, sample: Sample, drop_reasoning: bool = False) -> tuple[list[int], list[int], list[int], bool]:
        """One sample -> (input ids, segments, labels, reasoning was truncated), unpadded."""
        prefix = self._prefix(sample.task)
        reasoning = [] if drop_reasoning else self._reasoning_ids(sample)
        cut = len(reasoning) > self.max_reasoning_tokens
        cot = [self.ids.think_start, *reasoning[: self.max_reasoning_tokens], self.ids.think_end]
        block = action_block_ids(self.ids, self.action_tokens(sample))
        ids = prefix + cot + block
        segments = [Segment.PREFIX] * len(prefix) + [Segment.COT] * len(cot) + [Segment.ACTION] * len(block)
        labels = [IGNORE_INDEX] * len(prefix) + cot + block
        return ids, [int(s) for s in segments], labels, cut

    def action_tokens(self, sample: Sample) -> list[int]:
        """(10, 7) raw actions -> 70 action token ids, time-major."""
        actions = np.asarray(sample.actions)
        where = f"episode {sample.episode_index} frame {sample.frame_index}"
        if actions.shape != (CHUNK_STEPS, ACTION_DIM):
            raise ValueError(f"{where}: actions must be ({CHUNK_STEPS}, {ACTION_DIM}), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"{where}: actions contain NaN/inf; the dataset reader should have skipped this frame")
        tokens = self.codec.encode(self.normalizer.normalize(actions)).reshape(ACTION_TOKENS)
        return tokens.tolist()

    def _prefix(self, task: str) -> list[int]:
        if task not in self._prefix_cache:
            self._prefix_cache[task] = prefix_ids(
                self.tokenizer, self.ids, task, len(CAMERA_ORDER), self.tokens_per_image
            )
        return self._prefix_cache[task]

    def _reasoning_ids(self, sample: Sample) -> list[int]:
        if not sample.reasoning:
            return []
        ids = list(self.tokenizer(sample.reasoning, add_special_tokens=False)["input_ids"])
        if self._structural_ids.intersection(ids):
            raise ValueError(
                f"episode {sample.episode_index} frame {sample.frame_index}: reasoning contains special tokens "
                "(<think>, </think>, <action>, <image>, ...); the reader must strip the think tags"
            )
        return ids

    def _right_pad(self, rows: list[tuple[list[int], list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
        width = max(len(ids) for ids, _, _ in rows)
        input_ids = torch.full((len(rows), width), self.ids.pad, dtype=torch.long)
        segments = torch.full((len(rows), width), int(Segment.PAD), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, segs, labs) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            segments[row, : len(segs)] = torch.tensor(segs)
            labels[row, : len(labs)] = torch.tensor(labs)
        return input_ids, segments, labels
