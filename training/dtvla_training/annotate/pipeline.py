"""`annotate_dataset`: the whole engine on one dataset, as a library call (the CLI is `cli.py`).

Per episode, in index order: read it, find its key frames and segments, annotate every frame, check every
annotation, and write the episode with its `reasoning` column. Frames failing a check get a NULL reasoning, never
their text: `CotDataset` skips such frames (counted as `bad_rows` in the trainer's data report) while their actions
still complete the chunks of the frames before them, so one bad sentence costs one frame, not the episode, and no
failing text is ever trained on. Everything is written into a new directory that appears only when complete.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dtvla_policy.atomic_directory import new_directory
from dtvla_training.annotate.annotator import Annotator
from dtvla_training.annotate.checks import CheckConfig, check_episode
from dtvla_training.annotate.dataset_writer import with_reasoning, write_episode, write_meta
from dtvla_training.annotate.episode_data import read_episode
from dtvla_training.annotate.key_frames import KeyFrameConfig, segment_episode
from dtvla_training.annotate.report import AnnotationReport, ReviewPolicy
from dtvla_training.data.lerobot_dataset import DatasetMeta
from dtvla_training.data.norm_stats import OUTLIER_IQR_MULTIPLE, check_outlier_iqr_multiple

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateConfig:
    dataset: Path  # input LeRobot v2.1 dataset
    out: Path  # output directory; must not exist or be empty
    key_frames: KeyFrameConfig = field(default_factory=KeyFrameConfig)
    checks: CheckConfig = field(default_factory=CheckConfig)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    outlier_iqr_multiple: float = OUTLIER_IQR_MULTIPLE  # of the norm stats written beside the data (0 keeps all)

    def __post_init__(self) -> None:
        check_outlier_iqr_multiple(self.outlier_iqr_multiple)  # before the whole dataset is annotated, not after


def annotate_dataset(config: AnnotateConfig, annotator: Annotator) -> AnnotationReport:
    """Write the annotated copy of `config.dataset` to `config.out` and return its report (also written there)."""
    meta = DatasetMeta.load(config.dataset)
    out = Path(config.out).expanduser().resolve()
    if out == meta.root:
        raise ValueError(f"output {out} is the input dataset; the engine writes a new directory")
    report = AnnotationReport(settings=_settings(config, meta, annotator), review=config.review)
    with new_directory(out) as tmp:
        for listed in meta.episodes:
            episode = read_episode(meta, listed)
            try:
                segmentation = segment_episode(episode.actions, config.key_frames)
            except ValueError as err:
                raise ValueError(f"episode {episode.index}: {err}") from err
            annotations = annotator.annotate(episode, segmentation)
            failures, lengths = check_episode(annotations, config.checks)
            texts = [None if failed else a.text for a, failed in zip(annotations, failures, strict=True)]
            write_episode(meta, tmp, episode.index, with_reasoning(episode.table, texts))
            report.add_episode(episode.index, segmentation, annotations, failures, lengths)
            log.info("episode %d: %d frames, %d key frames, %d failing", episode.index, episode.length,
                     len(segmentation.key_frames), sum(map(bool, failures)))
        report.annotator_stats = annotator.stats()
        write_meta(meta, tmp, config.outlier_iqr_multiple)
        report.write(tmp)
    return report


def _settings(config: AnnotateConfig, meta: DatasetMeta, annotator: Annotator) -> dict:
    return {
        "dataset": str(meta.root),
        "annotator": annotator.label,
        "key_frames": asdict(config.key_frames),
        "max_length": config.checks.max_length,
        "length_unit": config.checks.counter.unit,
        "verbs": list(config.checks.verbs),
        "review": asdict(config.review),
        "outlier_iqr_multiple": config.outlier_iqr_multiple,
    }
