"""Data order and per-sample randomness that a resumed run reproduces exactly.

`ResumableDistributedSampler` is torch's `DistributedSampler` (same shuffle, same rank split) that can start
mid-epoch and yields (epoch, index) keys. `SeededSamples` turns such a key into (sample, seed). Every random draw
of a sample (augmentation, reasoning dropout) is then a function of (seed, epoch, index) alone, not of the
DataLoader worker that loaded it or of how many batches came before: a resumed run sees identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from dtvla_training.data.sample import Sample


class ResumableDistributedSampler(DistributedSampler):
    """`DistributedSampler` (drop_last) yielding (epoch, index); `set_position` skips the first samples of an epoch."""

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        if self.num_samples == 0:
            raise ValueError(
                f"dataset of {len(dataset)} samples is too small for {num_replicas} processes (drop_last)"
            )
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        """Start epoch `epoch` after its first `skip` samples (of this rank)."""
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f"cannot skip {skip} samples of an epoch of {self.num_samples}")
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.skip :]
        return iter([(self.epoch, index) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class SeededSamples(Dataset):
    """Wraps a map-style dataset of `Sample`s; item (epoch, index) -> (sample, seed).

    The inner dataset's `set_epoch` (if any) is called with the item's epoch before every read, so a reader that
    draws its augmentation from (epoch, index), like `CotDataset`, is right in every DataLoader worker without
    relying on the worker processes being recreated each epoch. `seed` is the collator's per-sample seed
    (reasoning dropout), a function of (run seed, epoch, index) only.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Sample, int]:
        epoch, index = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        return self.dataset[index], seed
