"""Reader of CoT-annotated robot data in the LeRobot v2.1 layout, from a local directory (no hub).

Yields what upstream `src/dt_datasets/dataset.py` takes from its vendored LeRobot: per frame the agentview and wrist
images, the 10-step future action chunk (delta indices 0..9, the episode's last action repeated past its end), the
task string and the reasoning. The layout read:

    meta/info.json                          fps, features (dtype, shape), data_path template, chunks_size
    meta/episodes.jsonl                     {"episode_index", "tasks", "length"} per line
    meta/tasks.jsonl                        {"task_index", "task"} per line
    data/chunk-000/episode_000000.parquet   one file per episode (path from info.json's data_path)

Bad data is dealt with while the index is built, before training starts (see `CotDataset`), and counted in a
`DataReport`; `__getitem__` then only returns usable frames.
"""

from __future__ import annotations

import io
import json
import logging
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from dtvla_policy.lerobot_layout import (
    ACTION_KEY,
    AGENTVIEW_KEY,
    CAMERA_KEYS,
    EPISODE_INDEX_KEY,
    EPISODES_FILE,
    FRAME_INDEX_KEY,
    INFO_FILE,
    NORM_STATS_PATH,
    REASONING_KEY,
    TASK_INDEX_KEY,
    TASKS_FILE,
    WRIST_KEY,
    episode_file,
)
from dtvla_policy.model.conventions import (
    ACTION_DIM,
    CHUNK_STEPS,
    DEFAULT_IMAGE_SIZE,
    SPECIAL_TOKEN_TEXT,
    TokenIds,
)
from dtvla_training.data.augmentation import AugmentConfig, augment_agentview
from dtvla_training.data.sample import Sample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

INDEX_COLUMNS = (ACTION_KEY, TASK_INDEX_KEY, EPISODE_INDEX_KEY, FRAME_INDEX_KEY, REASONING_KEY)

REASONING_PAD_ID = TokenIds().pad  # upstream pads the stored reasoning ids with Gemma's <pad>
THINK_TAGS = (SPECIAL_TOKEN_TEXT["think_start"], SPECIAL_TOKEN_TEXT["think_end"])

# Row groups kept decoded-from-parquet (image bytes, not pixels) per process: consecutive indices of one episode
# usually share a row group, so sequential reads (evaluation, benchmarks) do not re-read the file for every frame.
CACHED_ROW_GROUPS = 4
MAX_EXAMPLES = 5  # problems quoted verbatim in the report; the rest are only counted

# What PIL raises on garbage bytes, depending on the format and where the data breaks.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


class _CorruptFile(Exception):
    """An episode file that cannot be used at all."""


class _UnreadableRow(Exception):
    """A frame whose data failed to load in __getitem__ although the index accepted it."""


@dataclass(frozen=True)
class EpisodeMeta:
    """One line of meta/episodes.jsonl."""

    index: int
    length: int  # as listed; the parquet file is authoritative
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class DatasetMeta:
    """The meta/ files of a LeRobot v2.x dataset, validated."""

    root: Path
    info: dict[str, Any]
    episodes: tuple[EpisodeMeta, ...]  # sorted by index
    tasks: dict[int, str]  # task_index -> task string as stored

    @classmethod
    def load(cls, root: str | Path) -> DatasetMeta:
        """Read and check meta/; raises FileNotFoundError or ValueError naming the file and what to do."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(
                f"dataset directory {root} does not exist; pass a local LeRobot v2.1 dataset directory "
                f"({INFO_FILE}, {EPISODES_FILE}, {TASKS_FILE}, data/)"
            )
        for rel in (INFO_FILE, EPISODES_FILE, TASKS_FILE):
            if not (root / rel).is_file():
                raise FileNotFoundError(
                    f"{root} has no {rel}: not a LeRobot v2.1 dataset; download or convert the dataset into a "
                    "local directory with meta/ and data/"
                )
        info = _read_json(root / INFO_FILE)
        version = str(info.get("codebase_version", "v2.1"))
        if not version.startswith("v2."):
            raise ValueError(
                f"{root / INFO_FILE}: codebase_version {version!r}; this reader reads the LeRobot v2.x layout "
                "(one parquet file per episode, meta/episodes.jsonl)"
            )
        for key in ("data_path", "features"):
            if key not in info:
                raise ValueError(f"{root / INFO_FILE} has no {key!r}; found keys {sorted(info)}")
        if not isinstance(info["data_path"], str) or not isinstance(info["features"], dict):
            raise ValueError(f"{root / INFO_FILE}: 'data_path' must be a string and 'features' an object, got "
                             f"{type(info['data_path']).__name__} and {type(info['features']).__name__}")
        if not all(isinstance(feature, dict) for feature in info["features"].values()):
            raise ValueError(f"{root / INFO_FILE}: every entry of 'features' must be an object (dtype, shape, ...)")
        _check_features(root, info)
        tasks: dict[int, str] = {}
        for _, row in _read_jsonl(root / TASKS_FILE, ("task_index", "task")):
            tasks[int(row["task_index"])] = str(row["task"])
        episodes: dict[int, EpisodeMeta] = {}
        for line, row in _read_jsonl(root / EPISODES_FILE, ("episode_index",)):
            index = int(row["episode_index"])
            if index in episodes:
                raise ValueError(f"{root / EPISODES_FILE}:{line}: episode_index {index} is listed twice")
            episodes[index] = EpisodeMeta(index, int(row.get("length", 0)), tuple(row.get("tasks", ())))
        meta = cls(root=root, info=info, episodes=tuple(episodes[k] for k in sorted(episodes)), tasks=tasks)
        meta.episode_path(0)  # a broken data_path template fails here, not in the middle of indexing
        return meta

    @property
    def fps(self) -> float:
        return float(self.info.get("fps", 0.0))

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def norm_stats_path(self) -> Path:
        """Where `dtvla-norm-stats` writes by default; the trainer copies it into each checkpoint."""
        return self.root / NORM_STATS_PATH

    def episode_path(self, episode_index: int) -> Path:
        """The parquet file of one episode, from info.json's data_path template and chunks_size."""
        return episode_file(self.root, self.info, episode_index)

    def image_hw(self, key: str) -> tuple[int, int] | None:
        """(height, width) a camera feature declares, or None when info.json does not say."""
        feature = self.features.get(key, {})
        shape, names = feature.get("shape"), feature.get("names")
        if not shape or len(shape) != 3:
            return None
        if isinstance(names, list) and "height" in names and "width" in names:
            return int(shape[names.index("height")]), int(shape[names.index("width")])
        return int(shape[0]), int(shape[1])  # LeRobot's default order is (height, width, channel)


@dataclass
class DataReport:
    """What building the index skipped or fixed.

    Each skipped frame is counted once, under its first reason, so
    frames_read == samples + bad_rows + bad_images + nan_actions + long_reasoning.
    """

    episodes_listed: int = 0
    episodes_used: int = 0
    frames_read: int = 0
    samples: int = 0
    missing_files: int = 0  # episodes skipped: parquet file absent
    corrupt_files: int = 0  # episodes skipped: unreadable parquet, column missing or mistyped, broken frame_index
    bad_rows: int = 0  # frames skipped: null or unknown task_index, null reasoning
    bad_images: int = 0  # frames skipped: an image null or undecodable
    nan_actions: int = 0  # frames skipped: their chunk holds a missing or non-finite action
    long_reasoning: int = 0  # frames skipped: reasoning longer than max_reasoning_tokens (not truncated)
    resized_images: int = 0  # images whose stored size differs from info.json (resized to image_size like all)
    short_episodes: int = 0  # episodes shorter than a chunk: kept, chunks padded with the last action
    load_fallbacks: int = 0  # __getitem__ reads that failed and returned the next frame (this process only;
    # the trainer sums Sample.fallbacks over all workers and ranks into its data_report.json)
    images_scanned: bool = False  # whether bad_images / resized_images come from a scan of every image
    examples: list[str] = field(default_factory=list)  # the first problems, with episode and file

    PROBLEM_FIELDS = ("missing_files", "corrupt_files", "bad_rows", "bad_images", "nan_actions", "long_reasoning",
                      "resized_images", "load_fallbacks")

    @property
    def has_problems(self) -> bool:
        return any(getattr(self, name) for name in self.PROBLEM_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the trainer's metrics log."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        counts = ", ".join(f"{name}={getattr(self, name)}" for name in (*self.PROBLEM_FIELDS, "short_episodes")
                           if getattr(self, name))
        text = (f"{self.samples} samples from {self.episodes_used}/{self.episodes_listed} episodes "
                f"({self.frames_read} frames read)")
        if counts:
            text += f"; {counts}"
        if not self.images_scanned:
            text += "; images not scanned"
        if self.examples:
            text += "; e.g. " + "; ".join(self.examples)
        return text

    def note(self, message: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(message)


@dataclass(frozen=True)
class _Episode:
    """The index of one usable episode: everything but the images and the reasoning, which stay on disk."""

    index: int
    path: Path
    actions: np.ndarray  # (n, 7) float32 raw actions in frame order
    task_index: np.ndarray  # (n,) int64 in frame order
    file_rows: np.ndarray  # (n,) row of each frame in the file
    group_starts: np.ndarray  # first file row of each parquet row group


class CotDataset:
    """Map-style dataset of `Sample`s: one per usable frame, episodes in index order, frames in time order.

    Map-style so a DistributedSampler can shard it and a run can resume from a sample position. Bad input is
    decided while the index is built (in __init__), counted in `report` and summarised in ONE warning:

    - parquet file missing, unreadable, a column missing or mistyped, frame_index not 0..n-1, or episode_index not
      the listed one: the episode is skipped;
    - task_index null or not in tasks.jsonl, reasoning null: the frame is skipped;
    - an image null or undecodable (header and CRC checked when `scan_images`): the frame is skipped; its action
      still serves the chunks of earlier frames;
    - an action null, not 7 long or non-finite: every frame whose chunk contains it is skipped;
    - reasoning longer than `max_reasoning_tokens` (tags and padding not counted): the frame is skipped, not
      truncated, since a cut thought would teach the model to close `</think>` mid-sentence;
    - an image of another size than info.json declares: resized to `image_size` like every image, and counted;
    - an episode shorter than a chunk: kept, its chunks padded by repeating its last action.

    No usable frame at all raises ValueError. A read that still fails in __getitem__ (the files changed, or damage
    the scan cannot see, or `scan_images=False`) returns the next usable frame and counts `load_fallbacks`.
    `report` (a DataReport) is for the trainer's log; call `set_epoch` each epoch when augmenting.
    """

    def __init__(
        self,
        root: str | Path,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        augment: AugmentConfig | None = None,
        max_reasoning_tokens: int | None = None,
        episodes: Sequence[int] | None = None,
        scan_images: bool = True,
    ) -> None:
        """Index the dataset at `root`.

        tokenizer: the model's tokenizer; needed when reasoning is stored as token ids or `max_reasoning_tokens`
            is set (text reasoning is then tokenized once, while indexing, to count its tokens).
        image_size: both cameras are resized (PIL bicubic) to image_size x image_size on load.
        augment: upstream's agentview augmentation, or None for none (evaluation).
        episodes: episode indices to use (default: all listed in meta/episodes.jsonl).
        scan_images: check every image's header and checksum while indexing (reads all image bytes once) so that
            bad images are skipped up front; False trades that for a faster start.
        """
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if max_reasoning_tokens is not None and max_reasoning_tokens < 0:
            raise ValueError(f"max_reasoning_tokens must be >= 0 or None, got {max_reasoning_tokens}")
        if max_reasoning_tokens is not None and tokenizer is None:
            raise ValueError("max_reasoning_tokens counts tokens: pass the model's tokenizer too")
        self.meta = DatasetMeta.load(root)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.augment = augment
        self.max_reasoning_tokens = max_reasoning_tokens
        self.scan_images = scan_images
        self.epoch = 0
        self.report = DataReport(images_scanned=scan_images)
        self._uncounted_ids = np.array(
            [REASONING_PAD_ID, *(tokenizer.convert_tokens_to_ids(list(THINK_TAGS)) if tokenizer else ())]
        )
        self._cache: OrderedDict[tuple[Path, int], pa.Table] = OrderedDict()
        self._episodes: list[_Episode] = []
        sample_episode: list[np.ndarray] = []
        sample_frame: list[np.ndarray] = []
        for meta in self._selected(episodes):
            self.report.episodes_listed += 1
            indexed = self._index_episode(meta)
            if indexed is None:
                continue
            episode, usable = indexed
            frames = np.flatnonzero(usable)
            if not len(frames):
                continue
            self._episodes.append(episode)
            sample_episode.append(np.full(len(frames), len(self._episodes) - 1, dtype=np.int32))
            sample_frame.append(frames.astype(np.int32))
        self._sample_episode = np.concatenate(sample_episode) if sample_episode else np.zeros(0, np.int32)
        self._sample_frame = np.concatenate(sample_frame) if sample_frame else np.zeros(0, np.int32)
        self.report.episodes_used = len(self._episodes)
        self.report.samples = len(self._sample_frame)
        if not self.report.samples:
            raise ValueError(f"dataset {self.meta.root} has no usable frames: {self.report.summary()}")
        if self.report.has_problems:
            log.warning("dataset %s: %s", self.meta.root, self.report.summary())
        else:
            log.info("dataset %s: %s", self.meta.root, self.report.summary())

    def __len__(self) -> int:
        return len(self._sample_frame)

    def __getitem__(self, index: int) -> Sample:
        """The sample at `index`; augmentation draws depend only on (augment.seed, epoch, index)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        index %= n
        for attempt in range(n):
            try:
                sample = self._load(index, (index + attempt) % n)
                return replace(sample, fallbacks=attempt) if attempt else sample
            except _UnreadableRow as err:
                self.report.load_fallbacks += 1
                if self.report.load_fallbacks == 1:
                    log.warning("dataset %s: %s; returning the next frame instead (further failures are only "
                                "counted in report.load_fallbacks)", self.meta.root, err)
        raise ValueError(f"dataset {self.meta.root}: no frame could be read ({n} tried)")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch` (call it where the sampler's set_epoch is called)."""
        self.epoch = epoch

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # each DataLoader worker reads its own row groups
        return state

    # --- index building ------------------------------------------------------------------------------------
    def _selected(self, episodes: Sequence[int] | None) -> tuple[EpisodeMeta, ...]:
        if episodes is None:
            return self.meta.episodes
        wanted = {int(e) for e in episodes}
        listed = {e.index for e in self.meta.episodes}
        unknown = sorted(wanted - listed)
        if unknown:
            raise ValueError(
                f"episodes {unknown[:10]} are not in {self.meta.root / EPISODES_FILE}, which lists "
                f"{len(listed)} episodes ({min(listed, default=None)}..{max(listed, default=None)})"
            )
        return tuple(e for e in self.meta.episodes if e.index in wanted)

    def _index_episode(self, meta: EpisodeMeta) -> tuple[_Episode, np.ndarray] | None:
        """The episode and its per-frame usable mask, or None (counted) when the file cannot be used."""
        path = self.meta.episode_path(meta.index)
        where = f"episode {meta.index} ({path.relative_to(self.meta.root)})"
        if not path.is_file():
            self.report.missing_files += 1
            self.report.note(f"{where}: file missing")
            return None
        try:
            table, group_starts = self._read_index_columns(path)
            return self._index_frames(meta, path, table, group_starts, where)
        except _CorruptFile as err:
            self.report.corrupt_files += 1
            self.report.note(f"{where}: {err}")
            return None

    def _read_index_columns(self, path: Path) -> tuple[pa.Table, np.ndarray]:
        columns = list(INDEX_COLUMNS) + (list(CAMERA_KEYS) if self.scan_images else [])
        try:
            with pq.ParquetFile(path) as parquet:
                missing = [c for c in (*INDEX_COLUMNS, *CAMERA_KEYS) if c not in parquet.schema_arrow.names]
                if missing:
                    raise _CorruptFile(f"no column(s) {missing}")
                for key in CAMERA_KEYS:
                    _check_image_type(parquet.schema_arrow.field(key).type)
                group_rows = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
                table = parquet.read(columns=columns)
        except (OSError, pa.ArrowException) as err:
            raise _CorruptFile(f"unreadable parquet ({err})") from err
        return table, np.concatenate([[0], np.cumsum(group_rows)[:-1]]).astype(np.int64)

    def _index_frames(
        self, meta: EpisodeMeta, path: Path, table: pa.Table, group_starts: np.ndarray, where: str
    ) -> tuple[_Episode, np.ndarray]:
        n = table.num_rows
        frame_index = _int_column(table, "frame_index")
        episode_index = _int_column(table, "episode_index")
        if n == 0 or frame_index is None or not np.array_equal(np.sort(frame_index), np.arange(n)):
            raise _CorruptFile(f"frame_index is not 0..{n - 1} (null, duplicate or missing frames)")
        if episode_index is None or np.any(episode_index != meta.index):
            raise _CorruptFile(f"episode_index column is not {meta.index} on every row")
        order = np.argsort(frame_index, kind="stable")  # file row of each frame
        try:
            actions = action_array(table.column(ACTION_KEY))[order]
            task_index = pc.fill_null(table.column("task_index"), -1).to_numpy()[order].astype(np.int64)
        except (ValueError, pa.ArrowException) as err:  # ArrowInvalid/ArrowTypeError: a mistyped column
            raise _CorruptFile(str(err)) from err
        has_reasoning, reasoning_tokens = self._reasoning_lengths(table.column(REASONING_KEY))
        row_ok = np.isin(task_index, list(self.meta.tasks)) & has_reasoning[order]
        image_ok = np.ones(n, dtype=bool)
        if self.scan_images:
            for key in CAMERA_KEYS:
                image_ok &= self._scan_images(table.column(key), self.meta.image_hw(key))[order]
        chunk_ok = np.isfinite(actions).all(axis=1)[chunk_indices(np.arange(n), n)].all(axis=1)
        length_ok = np.ones(n, dtype=bool)
        if self.max_reasoning_tokens is not None:
            length_ok = reasoning_tokens[order] <= self.max_reasoning_tokens

        reasons = (("bad_rows", row_ok, "null or unknown task_index, or null reasoning"),
                   ("bad_images", image_ok, "image missing or undecodable"),
                   ("nan_actions", chunk_ok, "chunk holds a missing or non-finite action"),
                   ("long_reasoning", length_ok, f"reasoning over {self.max_reasoning_tokens} tokens"))
        usable = np.ones(n, dtype=bool)
        for name, ok, why in reasons:  # each skipped frame counted once, under its first reason
            skipped = usable & ~ok
            if skipped.any():
                setattr(self.report, name, getattr(self.report, name) + int(skipped.sum()))
                self.report.note(f"{where}: {int(skipped.sum())} frame(s) skipped from frame "
                                 f"{int(np.flatnonzero(skipped)[0])}, {why}")
            usable &= ok
        self.report.frames_read += n
        self.report.short_episodes += int(n < CHUNK_STEPS)
        episode = _Episode(meta.index, path, actions, task_index, order.astype(np.int64), group_starts)
        return episode, usable

    def _reasoning_lengths(self, column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """(present, tokens) per file row; tokens excludes padding and the think tags, 0 when nothing caps it."""
        column = column.combine_chunks()
        present = ~column.is_null().to_numpy(zero_copy_only=False)
        tokens = np.zeros(len(column), dtype=np.int64)
        kind = _reasoning_kind(column.type)
        if kind == "ids" and self.tokenizer is None:
            raise ValueError(
                f"dataset {self.meta.root} stores reasoning as token ids ({column.type}); pass the model's "
                "tokenizer (CotDataset(root, tokenizer=...)) to decode it"
            )
        if self.max_reasoning_tokens is None:
            return present, tokens
        if kind == "ids":
            values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
            parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            counted = ~np.isin(values, self._uncounted_ids)
            return present, np.bincount(parents[counted], minlength=len(column))
        texts = [None if t is None else strip_think_tags(t) for t in column.to_pylist()]
        unique = sorted({t for t in texts if t is not None})
        counts = dict(zip(unique, map(len, self.tokenizer(unique, add_special_tokens=False)["input_ids"]),
                          strict=True)) if unique else {}
        return present, np.array([0 if t is None else counts[t] for t in texts], dtype=np.int64)

    def _scan_images(self, column: pa.ChunkedArray, expected_hw: tuple[int, int] | None) -> np.ndarray:
        """Per file row: the image parses and its checksums hold. Counts images of another size than declared."""
        ok = np.zeros(len(column), dtype=bool)
        for row, data in enumerate(_image_bytes(column)):
            if data is None:
                continue
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                    image.verify()  # PNG: chunk CRCs, without decoding pixels
            except IMAGE_ERRORS:
                continue
            ok[row] = True
            if expected_hw is not None and (height, width) != expected_hw:
                self.report.resized_images += 1
        return ok

    # --- loading -------------------------------------------------------------------------------------------
    def _load(self, index: int, position: int) -> Sample:
        """Sample `position`, augmented with the draws of `index` (they differ only after a fallback)."""
        episode = self._episodes[self._sample_episode[position]]
        frame = int(self._sample_frame[position])
        where = f"episode {episode.index} frame {frame}"
        row = self._read_row(episode, frame, where)
        agentview = self._decode_image(row[AGENTVIEW_KEY], f"{where} {AGENTVIEW_KEY}")
        wrist = self._decode_image(row[WRIST_KEY], f"{where} {WRIST_KEY}")
        if self.augment is not None:
            agentview = augment_agentview(agentview, self.augment, self.augment.rng(self.epoch, index))
        return Sample(
            agentview=agentview,
            wrist=wrist,
            actions=episode.actions[chunk_indices(frame, len(episode.actions))],
            task=self.meta.tasks[int(episode.task_index[frame])],
            reasoning=self._reasoning_text(row[REASONING_KEY]),
            episode_index=episode.index,
            frame_index=frame,
        )

    def _read_row(self, episode: _Episode, frame: int, where: str) -> dict[str, Any]:
        file_row = int(episode.file_rows[frame])
        group = int(np.searchsorted(episode.group_starts, file_row, side="right")) - 1
        key = (episode.path, group)
        table = self._cache.get(key)
        if table is None:
            try:
                with pq.ParquetFile(episode.path) as parquet:
                    table = parquet.read_row_group(group, columns=[*CAMERA_KEYS, REASONING_KEY])
            except (OSError, pa.ArrowException) as err:
                raise _UnreadableRow(f"{where}: cannot read row group {group} of {episode.path} ({err})") from err
            self._cache[key] = table
            if len(self._cache) > CACHED_ROW_GROUPS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        offset = file_row - int(episode.group_starts[group])
        return {name: table.column(name)[offset].as_py() for name in table.column_names}

    def _decode_image(self, value: dict | bytes | None, where: str) -> np.ndarray:
        """(S, S, 3) uint8 RGB at `image_size` from a LeRobot image struct {"bytes", "path"} (or raw bytes)."""
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            raise _UnreadableRow(f"{where}: no image bytes")
        try:
            with Image.open(io.BytesIO(data)) as image:
                rgb = image.convert("RGB")
        except IMAGE_ERRORS as err:
            raise _UnreadableRow(f"{where}: undecodable image ({err})") from err
        if rgb.size != (self.image_size, self.image_size):
            rgb = rgb.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8)

    def _reasoning_text(self, value: str | list[int]) -> str:
        if isinstance(value, str):
            return strip_think_tags(value)
        ids = [int(t) for t in value if t is not None and t != REASONING_PAD_ID]
        return strip_think_tags(self.tokenizer.decode(ids, skip_special_tokens=True))


def chunk_indices(frame: int | np.ndarray, length: int) -> np.ndarray:
    """Frame indices of the chunk(s) starting at `frame`: t..t+9, clamped to the episode's last frame (upstream
    pads by repeating the last action). (10,) for an int, (n, 10) for an (n,) array."""
    return np.minimum(np.asarray(frame)[..., None] + np.arange(CHUNK_STEPS), length - 1)


def action_array(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(n, 7) float32 actions from the `action` list column; a null row, a null value or a row not 7 long is NaN."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):
        raise ValueError(f"the action column has type {column.type}; expected a list of {ACTION_DIM} floats")
    n = len(column)
    lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy()
    if np.all(lengths == ACTION_DIM):
        flat = pc.list_flatten(column).cast(pa.float64()).to_numpy(zero_copy_only=False)  # null values -> NaN
        return flat.reshape(n, ACTION_DIM).astype(np.float32)
    actions = np.full((n, ACTION_DIM), np.nan, dtype=np.float32)
    for row, value in enumerate(column.to_pylist()):
        if value is not None and len(value) == ACTION_DIM:
            actions[row] = [np.nan if v is None else v for v in value]
    return actions


def strip_think_tags(text: str) -> str:
    """The reasoning without `<think>`/`</think>` (upstream's decoded ids carry them) and outer whitespace."""
    for tag in THINK_TAGS:
        text = text.replace(tag, "")
    return text.strip()


def _reasoning_kind(type_: pa.DataType) -> str:
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "text"
    if ((pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_))
            and pa.types.is_integer(type_.value_type)):
        return "ids"
    raise _CorruptFile(f"reasoning column has type {type_}; expected a string or a list of token ids")


def _check_image_type(type_: pa.DataType) -> None:
    """LeRobot's image feature is a struct {"bytes", "path"}; plain binary columns are accepted too."""
    if pa.types.is_struct(type_) and type_.get_field_index("bytes") >= 0:
        return
    if not (pa.types.is_binary(type_) or pa.types.is_large_binary(type_)):
        raise _CorruptFile(f"image column has type {type_}; expected a struct {{bytes, path}} or binary")


def _image_bytes(column: pa.ChunkedArray) -> list[bytes | None]:
    """Encoded image per row of an image column (type checked by `_check_image_type`)."""
    if pa.types.is_struct(column.type):
        return [None if v is None else v["bytes"] for v in column.to_pylist()]
    return column.to_pylist()


def _int_column(table: pa.Table, name: str) -> np.ndarray | None:
    """The column as int64, or None when it has nulls or is not integer."""
    column = table.column(name)
    if column.null_count or not pa.types.is_integer(column.type):
        return None
    return column.to_numpy().astype(np.int64)


def _check_features(root: Path, info: dict[str, Any]) -> None:
    features = info["features"]
    for key in CAMERA_KEYS:
        feature = features.get(key)
        if feature is None:
            raise ValueError(
                f"{root / INFO_FILE} has no feature {key!r}; DeepThinkVLA reads the agentview {AGENTVIEW_KEY!r} "
                f"and wrist {WRIST_KEY!r} cameras (features found: {sorted(features)})"
            )
        if feature.get("dtype") == "video":
            raise ValueError(
                f"{root}: camera {key!r} is stored as video (dtype 'video', files {info.get('video_path')!r}). "
                "This reader only reads images embedded in the parquet files (dtype 'image'), as in upstream's "
                "LIBERO CoT dataset. Convert the dataset first: decode every video frame to PNG, store it in the "
                "parquet column as an image struct {'bytes', 'path'} and set the feature's dtype to 'image' "
                "(with LeRobot: re-create the dataset with use_videos=False)."
            )
        if feature.get("dtype") != "image":
            raise ValueError(f"{root / INFO_FILE}: feature {key!r} has dtype {feature.get('dtype')!r}, "
                             "expected 'image'")
    action = features.get(ACTION_KEY)
    if action is None:
        raise ValueError(f"{root / INFO_FILE} has no {ACTION_KEY!r} feature (features found: {sorted(features)})")
    if action.get("shape") is not None and list(action["shape"]) != [ACTION_DIM]:
        raise ValueError(
            f"{root / INFO_FILE}: {ACTION_KEY!r} has shape {action['shape']}, expected [{ACTION_DIM}] "
            "(eef dx, dy, dz, drx, dry, drz, gripper)"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a {type(value).__name__}, expected a JSON object")
    return value


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line; a bad line is a ValueError naming it."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}:{number} lacks {missing}: {line[:200]}")
        rows.append((number, row))
    return rows
