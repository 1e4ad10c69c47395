"""MP4 episode videos written with OpenCV (already installed as a robosuite dependency; no extra package)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

VIDEO_FPS = 20  # LIBERO's control rate: the video plays in real time


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = VIDEO_FPS) -> Path:
    """Write (H, W, 3) uint8 RGB frames of one size as an MPEG-4 Part 2 ('mp4v') file; returns `path`."""
    import cv2

    if not frames:
        raise ValueError(f"no frames to write to {path}")
    height, width = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open an mp4v writer for {path} (is it built with FFMPEG?)")
    try:
        for index, frame in enumerate(frames):
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frame {index} is {frame.shape} {frame.dtype}, expected ({height}, {width}, 3) uint8")
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()
    return path
