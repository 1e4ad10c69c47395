"""Agentview augmentation: upstream's operations, reproducible per (seed, epoch, index), agentview only."""

import pickle

import numpy as np
import pytest

from dtvla_training.data.augmentation import AugmentConfig, augment_agentview
from dtvla_training.data.lerobot_dataset import CotDataset

SIZE = 48


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_same_seed_epoch_and_index_give_the_same_image():
    config = AugmentConfig(seed=3)
    first = augment_agentview(image(), config, config.rng(epoch=1, index=5))
    np.testing.assert_array_equal(first, augment_agentview(image(), config, config.rng(epoch=1, index=5)))
    for other in (config.rng(epoch=2, index=5), config.rng(epoch=1, index=6), AugmentConfig(seed=4).rng(1, 5)):
        assert not np.array_equal(first, augment_agentview(image(), config, other))
    assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8


def test_zero_strength_is_the_identity():
    config = AugmentConfig(crop_area=1.0, max_rotation_deg=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    np.testing.assert_array_equal(augment_agentview(image(), config, config.rng(0, 0)), image())


def test_brightness_alone_scales_pixel_values():
    config = AugmentConfig(crop_area=1.0, max_rotation_deg=0.0, contrast=0.0, saturation=0.0)
    flat = np.full((SIZE, SIZE, 3), 100, np.uint8)
    values = {int(augment_agentview(flat, config, config.rng(0, i))[0, 0, 0]) for i in range(50)}
    assert min(values) >= 80 and max(values) <= 120 and len(values) > 10  # factor in [0.8, 1.2]


def test_rotation_and_crop_move_content_within_bounds():
    config = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0)
    out = augment_agentview(np.full((SIZE, SIZE, 3), 255, np.uint8), config, config.rng(0, 1))
    # a white frame stays white in the middle; only corners can turn black (rotation fill), at most a sliver
    assert (out[SIZE // 4: -SIZE // 4, SIZE // 4: -SIZE // 4] == 255).all()
    assert (out < 255).mean() < 0.05


@pytest.mark.parametrize("kwargs", [{"crop_area": 0.0}, {"crop_area": 1.5}, {"max_rotation_deg": -1},
                                    {"contrast": 1.5}, {"seed": -1}])
def test_invalid_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_dataset_augments_agentview_only_and_resumes_identically(tiny_dataset):
    plain = CotDataset(tiny_dataset, image_size=SIZE)
    augmented = CotDataset(tiny_dataset, image_size=SIZE, augment=AugmentConfig(seed=7))
    resumed = pickle.loads(pickle.dumps(CotDataset(tiny_dataset, image_size=SIZE, augment=AugmentConfig(seed=7))))
    for i in (0, 11, 40):
        a, p, r = augmented[i], plain[i], resumed[i]
        assert not np.array_equal(a.agentview, p.agentview)
        np.testing.assert_array_equal(a.wrist, p.wrist)
        np.testing.assert_array_equal(a.actions, p.actions)
        assert (a.reasoning, a.task) == (p.reasoning, p.task)
        np.testing.assert_array_equal(a.agentview, r.agentview)
    before = augmented[11].agentview
    augmented.set_epoch(1)
    assert not np.array_equal(augmented[11].agentview, before)
    augmented.set_epoch(0)
    np.testing.assert_array_equal(augmented[11].agentview, before)
