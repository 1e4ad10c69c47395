"""Writing the annotated dataset: the input's episode files with a text `reasoning` column, its meta/ files, and
fresh norm stats.

Kept deliberately small (a LeRobot writer proper is `dtvla_training.data.lerobot_writer`'s job): each episode table
is copied with pyarrow, its `reasoning` column added or replaced, in the input's parquet path and row-group size.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dtvla_training.data.lerobot_dataset import INFO_FILE, NORM_STATS_PATH, REASONING_KEY, DatasetMeta
from dtvla_training.data.norm_stats import compute_norm_stats, write_norm_stats

REASONING_FEATURE = {"dtype": "string", "shape": [1], "names": None}


def with_reasoning(table: pa.Table, texts: Sequence[str | None]) -> pa.Table:
    """`table` with its `reasoning` column (text, or token ids) replaced by `texts` (None: a null, skipped by the
    reader), or with that column appended."""
    if len(texts) != table.num_rows:
        raise ValueError(f"{len(texts)} reasoning texts for a table of {table.num_rows} rows")
    column = pa.array(texts, type=pa.string())
    if REASONING_KEY in table.column_names:
        return table.set_column(table.column_names.index(REASONING_KEY), REASONING_KEY, column)
    return table.append_column(REASONING_KEY, column)


def write_episode(meta: DatasetMeta, out_root: Path, episode_index: int, table: pa.Table) -> Path:
    """Write `table` where the input keeps this episode, relative to `out_root`, with the input's row groups."""
    source = meta.episode_path(episode_index)
    path = out_root / source.relative_to(meta.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetFile(source) as parquet:
        rows_per_group = parquet.metadata.row_group(0).num_rows if parquet.num_row_groups else None
    pq.write_table(table, path, row_group_size=rows_per_group or None)
    return path


def write_meta(meta: DatasetMeta, out_root: Path, outlier_iqr_multiple: float) -> None:
    """Copy meta/ (info.json's reasoning feature set to text), then compute meta/norm_stats.json from the output
    (`outlier_iqr_multiple` as `dtvla-norm-stats --outlier-iqr-multiple`)."""
    shutil.copytree(meta.root / "meta", out_root / "meta", dirs_exist_ok=True)
    info = dict(meta.info)
    info["features"] = {**meta.features, REASONING_KEY: REASONING_FEATURE}
    (out_root / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_norm_stats(compute_norm_stats(out_root, outlier_iqr_multiple), out_root / NORM_STATS_PATH)
