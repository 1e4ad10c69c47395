"""ActionCodec against hand-computed values of the upstream formulas (2048 edges, 2047 centres)."""

import numpy as np
import pytest

from dtvla_policy.model.action_codec import ActionCodec
from dtvla_policy.model.conventions import TokenIds

STEP = 2.0 / 2047  # distance between two of the 2048 edges of linspace(-1, 1, 2048)


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (-1.0, 257023),  # bin 0
        (-5.0, 257023),  # clamped to -1
        (1.0, 254976),  # bin 2047
        (3.0, 254976),  # clamped to 1
        (0.0, 257023 - 1024),  # edges[1023] = -1/2047 < 0 <= edges[1024] = 1/2047
        (-1.0 + STEP, 257022),  # exactly on edge 1 -> bin 1 (right=False)
        (-1.0 + 1.5 * STEP, 257021),
    ],
)
def test_encode_matches_upstream_formula(value, token):
    assert ActionCodec().encode(np.array([value]))[0] == token


@pytest.mark.parametrize(
    ("token", "value"),
    [
        (257023, -1.0 + STEP / 2),  # bin 0 -> centre 0
        (254976, 1.0 - STEP / 2),  # bin 2047 clipped to 2046 -> last of the 2047 centres
        (254977, 1.0 - STEP / 2),  # bin 2046
        (257023 - 1024, 2.0 / 2047),  # 0.0 encodes to bin 1024 whose centre is +2/2047 (upstream offset)
        (300000, -1.0 + STEP / 2),  # out-of-range ids are clipped to a valid bin
    ],
)
def test_decode_matches_upstream_formula(token, value):
    assert ActionCodec().decode(np.array([token]))[0] == pytest.approx(value, abs=1e-6)


def test_round_trip_error_is_within_one_and_a_half_bins():
    """x in (edges[i-1], edges[i]] decodes to centre[i] = (edges[i] + edges[i+1]) / 2: up to 1.5 steps away."""
    codec = ActionCodec()
    values = np.random.default_rng(0).uniform(-1, 1, (1000, 7))
    decoded = codec.decode(codec.encode(values))
    assert decoded.shape == values.shape
    error = np.abs(decoded - values)
    assert np.max(error) <= 1.5 * STEP + 1e-6
    assert 0.9 * STEP < np.mean(decoded - values) < 1.1 * STEP  # the upstream offset is real: +1 step on average


def test_encode_rejects_nan():
    with pytest.raises(ValueError, match="non-finite"):
        ActionCodec().encode(np.array([0.1, np.nan]))


def test_codec_follows_checkpoint_ids():
    ids = TokenIds(image=4100, think_start=4101, think_end=4102, action_start=4103, action_end=4104,
                   action_begin=2000, action_end_id=4047, vocab_size=4105)
    codec = ActionCodec(ids)
    assert codec.encode(np.array([-1.0, 1.0])).tolist() == [4047, 2000]
    assert codec.is_action_token(np.array([1999, 2000, 4047, 4048])).tolist() == [False, True, True, False]
