"""sensor_msgs/Image <-> numpy, written here because PyPI's cv_bridge is ROS 1 code and broken.

Honours row padding (`step`) and endianness; converts between rgb8, bgr8 and mono8 (mono8 -> RGB by
replication, colour -> mono8 by ITU-R 601 luma). Publishing always fills `data` with `arr.tobytes()`: assigning an
ndarray is ~700x slower in rclpy.

The readers are duck-typed (any object with Image's fields), so bag replay decodes recorded frames with the very
conversion the policy node used, without importing ROS; only `numpy_to_image` builds a real message.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sensor_msgs.msg import Image

_ENCODINGS: dict[str, tuple[type, int]] = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageConversionError(ValueError):
    """An Image message that cannot be read as (or converted to) the requested array."""


def image_to_numpy(msg: Image) -> np.ndarray:
    """Image -> HxW or HxWxC array in the message's own encoding (a read-only view when no copy is needed)."""
    if msg.encoding not in _ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r}; supported: {sorted(_ENCODINGS)}")
    dtype, channels = _ENCODINGS[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dt.itemsize
    if msg.height == 0 or msg.width == 0:
        raise ImageConversionError(f"empty image {msg.width}x{msg.height}")
    if msg.step < row_bytes or msg.step % dt.itemsize:
        raise ImageConversionError(f"step {msg.step} too small for {msg.width} px of {msg.encoding} ({row_bytes} B)")
    if len(msg.data) < msg.step * msg.height:
        raise ImageConversionError(f"data has {len(msg.data)} bytes, expected {msg.step * msg.height}")
    rows = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, bytes | memoryview) else msg.data, dtype=dt,
                         count=msg.height * msg.step // dt.itemsize)
    arr = rows.reshape(msg.height, msg.step // dt.itemsize)[:, : msg.width * channels]
    arr = arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(msg.height, msg.width)
    return arr if dt.isnative else arr.astype(dt.newbyteorder("="))


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Image in rgb8, bgr8, rgba8, bgra8 or mono8 -> HxWx3 uint8 RGB (what the policy consumes)."""
    arr = image_to_numpy(msg)
    encoding = msg.encoding
    if encoding in ("rgb8", "8UC3"):
        return arr
    if encoding == "bgr8":
        return arr[..., ::-1]
    if encoding == "rgba8":
        return arr[..., :3]
    if encoding == "bgra8":
        return arr[..., 2::-1]
    if encoding in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    raise ImageConversionError(f"cannot convert {encoding} to rgb8; publish rgb8, bgr8 or mono8")


def rgb8_to_mono8(arr: np.ndarray) -> np.ndarray:
    return (arr.astype(np.float32) @ _LUMA).round().clip(0, 255).astype(np.uint8)


def numpy_to_image(arr: np.ndarray, encoding: str = "rgb8", stamp=None, frame_id: str = "") -> Image:
    """HxW(xC) array -> Image in `encoding` (no colour conversion: the array must already be in it)."""
    from sensor_msgs.msg import Image
    if encoding not in _ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}; supported: {sorted(_ENCODINGS)}")
    dtype, channels = _ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=dtype)
    found = arr.shape[2] if arr.ndim == 3 else 1
    if arr.ndim not in (2, 3) or found != channels:
        raise ImageConversionError(f"{encoding} needs {channels} channel(s), got array of shape {arr.shape}")
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                is_bigendian=int(sys.byteorder == "big"), step=arr.shape[1] * channels * arr.itemsize)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = arr.tobytes()
    return msg
