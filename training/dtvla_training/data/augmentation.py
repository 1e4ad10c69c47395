"""Train-time image augmentation of the agentview camera (upstream `src/dt_datasets/dataset.py`).

Upstream applies, to agentview only: a random crop of 90% of the area resized back, a rotation of up to +-5 degrees,
then torchvision's ColorJitter(brightness=0.2, contrast=0.4, saturation=0.5). torchvision is not a dependency here,
so the same operations are written with PIL (torchvision's PIL backend uses the same `ImageEnhance` blends). Every
draw comes from a numpy Generator seeded by (seed, epoch, sample index), so a sample's augmentation does not depend
on worker count or visiting order: runs are reproducible and a resumed run sees the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance


@dataclass(frozen=True)
class AugmentConfig:
    """Upstream's agentview augmentation; defaults are upstream's values."""

    crop_area: float = 0.9  # fraction of the image area the random crop keeps (same aspect ratio), resized back
    max_rotation_deg: float = 5.0  # rotation angle drawn uniformly in [-max, +max] degrees
    brightness: float = 0.2  # ColorJitter: brightness factor uniform in [1 - b, 1 + b]
    contrast: float = 0.4  # ColorJitter: contrast factor uniform in [1 - c, 1 + c]
    saturation: float = 0.5  # ColorJitter: saturation factor uniform in [1 - s, 1 + s]
    seed: int = 0  # with the epoch and the sample index, fixes every random draw

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_area <= 1.0:
            raise ValueError(f"crop_area must be in (0, 1], got {self.crop_area}")
        if self.max_rotation_deg < 0:
            raise ValueError(f"max_rotation_deg must be >= 0, got {self.max_rotation_deg}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} jitter must be in [0, 1], got {value}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0 (numpy SeedSequence), got {self.seed}")

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator for one sample in one epoch; independent of every other (epoch, index)."""
        return np.random.default_rng([self.seed, epoch, index])


def augment_agentview(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB: crop + resize back, rotate, colour jitter (random order).

    The draws happen in a fixed order whatever the config, so changing one strength does not reshuffle the others.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    side = math.sqrt(config.crop_area)
    crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    angle = float(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    factors = [float(rng.uniform(1.0 - strength, 1.0 + strength))
               for strength in (config.brightness, config.contrast, config.saturation)]
    order = rng.permutation(3)  # torchvision's ColorJitter applies its three adjustments in a random order

    pil = Image.fromarray(image)
    pil = pil.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BILINEAR)
    pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)  # Color = saturation
    for k in order:
        pil = enhancers[k](pil).enhance(factors[k])
    return np.asarray(pil, dtype=np.uint8)
