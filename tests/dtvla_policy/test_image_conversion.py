"""sensor_msgs/Image <-> numpy: encodings, row padding, endianness, refusals."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image

from dtvla_policy.ros.image_conversion import (
    ImageConversionError,
    image_to_numpy,
    image_to_rgb8,
    numpy_to_image,
    rgb8_to_mono8,
)

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "mono16", "32FC1", "rgba8"])
def test_round_trip(encoding):
    shapes = {"mono8": (5, 7), "mono16": (5, 7), "32FC1": (5, 7), "rgba8": (5, 7, 4)}
    dtypes = {"mono16": np.uint16, "32FC1": np.float32}
    array = np.random.default_rng(1).integers(0, 255, shapes.get(encoding, (5, 7, 3))).astype(
        dtypes.get(encoding, np.uint8))
    msg = numpy_to_image(array, encoding, frame_id="cam")
    assert msg.step == array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    assert bytes(msg.data) == array.tobytes() and msg.header.frame_id == "cam"
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_colour_conversions_to_rgb8():
    assert np.array_equal(image_to_rgb8(numpy_to_image(RGB, "rgb8")), RGB)
    assert np.array_equal(image_to_rgb8(numpy_to_image(RGB[..., ::-1], "bgr8")), RGB)
    rgba = np.concatenate([RGB, np.full((5, 7, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb8(numpy_to_image(rgba, "rgba8")), RGB)
    grey = RGB[..., 0]
    assert np.array_equal(image_to_rgb8(numpy_to_image(grey, "mono8")), np.repeat(grey[..., None], 3, axis=2))


def test_row_padding_is_skipped():
    padded = np.zeros((5, 7 * 3 + 11), np.uint8)  # each row carries 11 bytes of padding
    padded[:, : 7 * 3] = RGB.reshape(5, -1)
    msg = Image(height=5, width=7, encoding="rgb8", step=padded.shape[1], is_bigendian=0)
    msg.data = padded.tobytes()
    assert np.array_equal(image_to_rgb8(msg), RGB)


def test_big_endian_mono16_is_read_correctly():
    values = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    msg = Image(height=5, width=7, encoding="mono16", step=14, is_bigendian=1)
    msg.data = values.astype(">u2").tobytes()
    out = image_to_numpy(msg)
    assert out.dtype.isnative and np.array_equal(out, values)
    assert sys.byteorder == "little" or numpy_to_image(values, "mono16").is_bigendian == 1


def test_luma_of_pure_colours():
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    assert rgb8_to_mono8(pixels).tolist() == [[76, 150, 29, 255]]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "unsupported encoding"),
        (lambda m: setattr(m, "step", 3), "too small"),
        (lambda m: setattr(m, "data", bytes(10)), "expected"),
        (lambda m: setattr(m, "width", 0), "empty image"),
    ],
)
def test_malformed_messages_are_refused(mutate, message):
    msg = numpy_to_image(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb8(msg)


def test_wrong_channel_count_is_refused_when_publishing():
    with pytest.raises(ImageConversionError, match="3 channel"):
        numpy_to_image(RGB[..., 0], "rgb8")


def test_32fc1_cannot_become_rgb():
    with pytest.raises(ImageConversionError, match="cannot convert 32FC1"):
        image_to_rgb8(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))
