"""Camera images -> SigLIP pixel values, as the PaliGemma processor does for the released model.

Resize to the checkpoint's image size (bicubic, PIL), rescale to [0, 1], normalise with mean/std 0.5.
Images arrive as HxWx3 uint8 arrays, exactly as a camera (or the sim bridge) gives them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dtvla_policy.model.conventions import IMAGE_MEAN, IMAGE_STD


def check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Refuse anything but an HxWx3 uint8 array, saying what was found."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} image must be HxWx3 (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} image must be uint8, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"{name} image is too small: {image.shape}")
    return image


def to_pixel_values(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> (3, size, size) float32 normalised to [-1, 1]."""
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    pixels = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    return (pixels - mean) / std
