"""Pairs the two camera streams into policy observations by timestamp (ROS-free; the policy node feeds it).

Cameras publish on separate topics, so a frame pair is assembled here: agentview and wrist frames whose stamps lie
within `max_skew_ns` of each other. A few recent frames per camera are kept so a chunk request for stamp t can be
answered even when the request overtakes its frames.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraFrame:
    stamp_ns: int
    image: np.ndarray  # HxWx3 uint8 RGB


@dataclass(frozen=True)
class FramePair:
    agentview: CameraFrame
    wrist: CameraFrame

    @property
    def stamp_ns(self) -> int:
        """The pair's stamp is the agentview stamp: chunks answer the scene camera's time."""
        return self.agentview.stamp_ns


class ObservationPairer:
    """Thread-safe store of the newest frames of both cameras."""

    CAMERAS = ("agentview", "wrist")

    def __init__(self, max_skew_ns: int, depth: int = 8) -> None:
        self.max_skew_ns = max_skew_ns
        self._frames = {camera: deque(maxlen=depth) for camera in self.CAMERAS}
        self._lock = threading.Lock()

    def add(self, camera: str, frame: CameraFrame) -> None:
        if camera not in self._frames:
            raise ValueError(f"unknown camera {camera!r}; expected one of {self.CAMERAS}")
        with self._lock:
            self._frames[camera].append(frame)

    def _match(self, agentview: CameraFrame) -> FramePair | None:
        candidates = [w for w in self._frames["wrist"] if abs(w.stamp_ns - agentview.stamp_ns) <= self.max_skew_ns]
        if not candidates:
            return None
        wrist = min(candidates, key=lambda w: abs(w.stamp_ns - agentview.stamp_ns))
        return FramePair(agentview, wrist)

    def pair_at(self, stamp_ns: int) -> FramePair | None:
        """The pair whose agentview frame has exactly `stamp_ns` (a chunk request), if both frames are here."""
        with self._lock:
            for frame in reversed(self._frames["agentview"]):
                if frame.stamp_ns == stamp_ns:
                    return self._match(frame)
        return None

    def newest_pair(self) -> FramePair | None:
        """The most recent agentview frame that has a wrist partner within the skew limit."""
        with self._lock:
            for frame in reversed(self._frames["agentview"]):
                pair = self._match(frame)
                if pair is not None:
                    return pair
        return None
