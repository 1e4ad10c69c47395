"""CotDataset on the synthetic dataset: order, chunks against the parquet values, images, task, reasoning."""

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from transformers import AutoTokenizer

from dtvla_policy.model.conventions import ACTION_DIM, CHUNK_STEPS
from dtvla_training.data.lerobot_dataset import AGENTVIEW_KEY, WRIST_KEY, CotDataset, action_array, chunk_indices
from dtvla_training.data.synthetic import SHORT_EPISODE_FRAMES, write_synthetic_dataset
from tests.fixtures.datasets import read_episode

SIZE = 56


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return CotDataset(tiny_dataset, image_size=SIZE)


@pytest.fixture(scope="module")
def parquet(tiny_dataset):
    """episode -> (actions (n, 7), task_index (n,), reasoning [n], agentview PNG bytes [n]) straight from pyarrow."""
    tables = {e: read_episode(tiny_dataset, e) for e in range(4)}
    return {e: (np.array(t.column("action").to_pylist(), dtype=np.float32), t.column("task_index").to_numpy(),
                t.column("reasoning").to_pylist(), [v["bytes"] for v in t.column(AGENTVIEW_KEY).to_pylist()])
            for e, t in tables.items()}


def test_one_sample_per_frame_in_episode_then_frame_order(dataset, parquet):
    order = [(e, t) for e, (actions, *_) in sorted(parquet.items()) for t in range(len(actions))]
    assert len(dataset) == len(order) == 3 * 24 + SHORT_EPISODE_FRAMES
    assert [(dataset[i].episode_index, dataset[i].frame_index) for i in range(len(dataset))] == order
    report = dataset.report
    assert not report.has_problems and report.samples == report.frames_read == len(order)
    assert report.short_episodes == 1 and report.images_scanned


def test_chunks_are_the_next_ten_actions_padded_with_the_last(dataset, parquet):
    for i in range(len(dataset)):
        sample = dataset[i]
        actions = parquet[sample.episode_index][0]
        n, t = len(actions), sample.frame_index
        expected = np.stack([actions[min(t + k, n - 1)] for k in range(CHUNK_STEPS)])
        assert sample.actions.dtype == np.float32 and sample.actions.shape == (CHUNK_STEPS, ACTION_DIM)
        np.testing.assert_array_equal(sample.actions, expected)
    short = parquet[3][0]
    first = next(dataset[i] for i in range(len(dataset)) if dataset[i].episode_index == 3)
    assert len(short) < CHUNK_STEPS
    np.testing.assert_array_equal(first.actions[:len(short)], short)
    np.testing.assert_array_equal(first.actions[len(short):], np.repeat(short[-1:], CHUNK_STEPS - len(short), 0))


def test_chunk_indices_clamp_to_the_episode_end():
    np.testing.assert_array_equal(chunk_indices(3, 8), [3, 4, 5, 6, 7, 7, 7, 7, 7, 7])
    assert chunk_indices(np.arange(5), 5).shape == (5, CHUNK_STEPS)


def test_images_are_rgb_uint8_resized_bicubic(dataset, parquet, tiny_dataset):
    sample = dataset[5]
    stored = Image.open(io.BytesIO(parquet[0][3][5])).convert("RGB")
    assert stored.size == (64, 64)  # the generator's size: the reader resizes
    expected = np.asarray(stored.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    for image in (sample.agentview, sample.wrist):
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(sample.agentview, expected)
    assert not np.array_equal(sample.agentview, sample.wrist)
    wrist_bytes = read_episode(tiny_dataset, 0).column(WRIST_KEY)[5].as_py()["bytes"]
    wrist = Image.open(io.BytesIO(wrist_bytes)).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(sample.wrist, np.asarray(wrist))


def test_task_and_reasoning_text(dataset, parquet, tiny_dataset):
    tasks = {row["task_index"]: row["task"]
             for row in map(json.loads, (tiny_dataset / "meta/tasks.jsonl").read_text().splitlines())}
    for i in (0, 30, len(dataset) - 1):
        sample = dataset[i]
        _, task_index, reasoning, _ = parquet[sample.episode_index]
        assert sample.task == tasks[task_index[sample.frame_index]]
        assert sample.reasoning == reasoning[sample.frame_index] and sample.reasoning.endswith(".")


def test_token_id_reasoning_is_decoded_without_tags_or_padding(tiny_checkpoint, tiny_dataset, dataset, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    root = write_synthetic_dataset(tmp_path / "ids", tokenizer=tokenizer)  # same seed: same texts as tiny_dataset
    ids = read_episode(root, 0).column("reasoning")[0].as_py()
    assert ids[0] == tokenizer.convert_tokens_to_ids("<think>") and ids[-1] == 0  # upstream's storage
    with_ids = CotDataset(root, tokenizer, image_size=SIZE)
    assert len(with_ids) == len(dataset)
    for i in range(0, len(dataset), 7):
        assert with_ids[i].reasoning == dataset[i].reasoning
    with pytest.raises(ValueError, match="token ids.*tokenizer"):
        CotDataset(root, image_size=SIZE)


def test_reasoning_cap_counts_the_same_tokens_for_ids_and_text(tiny_checkpoint, tiny_dataset, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    root = write_synthetic_dataset(tmp_path / "ids", tokenizer=tokenizer)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"])
               for e in range(4) for t in read_episode(tiny_dataset, e).column("reasoning").to_pylist()]
    cap = int(np.median(lengths))
    text, ids = (CotDataset(r, tokenizer, image_size=SIZE, max_reasoning_tokens=cap) for r in (tiny_dataset, root))
    assert text.report.long_reasoning == ids.report.long_reasoning == sum(n > cap for n in lengths) > 0
    assert [text[i].frame_index for i in range(len(text))] == [ids[i].frame_index for i in range(len(ids))]
    assert all(len(tokenizer(text[i].reasoning, add_special_tokens=False)["input_ids"]) <= cap
               for i in range(len(text)))


def test_index_access_and_pickling_for_dataloader_workers(dataset):
    assert dataset[-1].frame_index == dataset[len(dataset) - 1].frame_index
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    copy = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(copy[17].agentview, dataset[17].agentview)


def test_episode_subset(tiny_dataset):
    subset = CotDataset(tiny_dataset, image_size=SIZE, episodes=[1, 3])
    assert len(subset) == 24 + SHORT_EPISODE_FRAMES
    assert {subset[i].episode_index for i in range(len(subset))} == {1, 3}
    with pytest.raises(ValueError, match=r"episodes \[7\] are not in"):
        CotDataset(tiny_dataset, episodes=[1, 7])


def test_action_array_marks_bad_rows_nan():
    column = pa.array([[0.1] * 7, None, [0.2] * 6, [0.3, None, 0.3, 0.3, 0.3, 0.3, 0.3]], pa.list_(pa.float32()))
    actions = action_array(column)
    assert actions.shape == (4, 7) and actions.dtype == np.float32
    assert np.isfinite(actions[0]).all() and np.isnan(actions[1:3]).all()
    assert np.isnan(actions[3, 1]) and np.isfinite(np.delete(actions[3], 1)).all()
    with pytest.raises(ValueError, match="expected a list of 7 floats"):
        action_array(pa.array([1.0, 2.0]))
