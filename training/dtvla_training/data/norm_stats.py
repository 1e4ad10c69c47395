"""`dtvla-norm-stats DATASET [--out PATH] [--outlier-iqr-multiple K]`: per-dimension action statistics, written as
meta/norm_stats.json.

The file is what `QuantileNormalizer.from_json` reads: {"action": {"q01", "q99", "mean", "std", "min", "max",
"count", "outliers", "outlier_iqr_multiple"}}, the openpi-style layout upstream's `src/dt_datasets/normalize.py`
loads; the trainer copies it into each checkpoint. Quantiles are exact (numpy, linear interpolation) over every frame
whose 7 values are finite and that is not an outlier; openpi approximates them with histograms, so figures can differ
in the last digits from a file openpi wrote.

Outliers: a frame with a value beyond median +- K x IQR in any dimension (K = 10 by default) is left out of every
statistic and counted in "outliers". One corrupt frame (say 1e30) in a small dataset otherwise moves q99 by orders of
magnitude and squashes every real action into one bin. A dimension whose middle half is a single value (a gripper
that is mostly closed) uses its q01-q99 range instead of the IQR; a dimension that is constant even there is not
checked. K = 0 keeps every finite frame (openpi's behaviour).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dtvla_policy.atomic_file import write_json
from dtvla_policy.model.conventions import ACTION_DIM
from dtvla_training.data.lerobot_dataset import ACTION_KEY, MAX_EXAMPLES, DatasetMeta, action_array

log = logging.getLogger(__name__)

QUANTILES = {"q01": 0.01, "q99": 0.99}
OUTLIER_IQR_MULTIPLE = 10.0  # far enough out that no real action of a LIBERO-like dataset is touched


def check_outlier_iqr_multiple(multiple: float) -> None:
    """ValueError unless `multiple` is a valid K (>= 0; NaN is not)."""
    if not multiple >= 0:
        raise ValueError(f"outlier_iqr_multiple must be >= 0 (0 keeps every frame), got {multiple}")


def outlier_frames(actions: np.ndarray, multiple: float) -> np.ndarray:
    """(n,) bool: frames with a value beyond median +- `multiple` x the robust range of its dimension.

    actions: (n, 7) finite float64. The robust range is the IQR, or the q01-q99 range where the IQR is 0; a
    dimension where both are 0 is not checked. `multiple` 0 marks nothing.
    """
    if multiple == 0 or not len(actions):
        return np.zeros(len(actions), dtype=bool)
    q01, q25, median, q75, q99 = np.quantile(actions, [0.01, 0.25, 0.5, 0.75, 0.99], axis=0)
    spread = np.where(q75 > q25, q75 - q25, q99 - q01)
    checked = spread > 0
    far = np.abs(actions - median) > multiple * spread
    return (far & checked).any(axis=1)


def compute_norm_stats(
    root: str | Path, outlier_iqr_multiple: float = OUTLIER_IQR_MULTIPLE
) -> dict[str, dict[str, list[float] | int | float]]:
    """Action stats over all frames of all listed episodes; frames with a non-finite or missing value, and outliers
    (see the module docstring), are left out.

    Unreadable episode files are skipped and reported in one warning, outliers in another; no usable frame at all
    is a ValueError.
    """
    check_outlier_iqr_multiple(outlier_iqr_multiple)
    meta = DatasetMeta.load(root)
    parts: list[np.ndarray] = []
    where: list[tuple[int, np.ndarray]] = []  # (episode, frame indices) of the kept finite frames
    bad_files: list[str] = []
    bad_frames = 0
    for episode in meta.episodes:
        path = meta.episode_path(episode.index)
        try:
            actions = action_array(pq.read_table(path, columns=[ACTION_KEY]).column(ACTION_KEY))
        except (OSError, KeyError, ValueError, pa.ArrowException) as err:  # missing, corrupt or mistyped
            bad_files.append(f"episode {episode.index} ({err})")
            continue
        finite = np.isfinite(actions).all(axis=1)
        bad_frames += int((~finite).sum())
        parts.append(actions[finite])
        where.append((episode.index, np.flatnonzero(finite)))
    if bad_files or bad_frames:
        log.warning("norm stats of %s: skipped %d unreadable episode files and %d frames with non-finite actions%s",
                    meta.root, len(bad_files), bad_frames,
                    f"; e.g. {'; '.join(bad_files[:MAX_EXAMPLES])}" if bad_files else "")
    actions = np.concatenate(parts or [np.zeros((0, ACTION_DIM))]).astype(np.float64)
    if not len(actions):
        raise ValueError(f"dataset {meta.root} has no frame with finite actions to compute norm stats from")
    outliers = outlier_frames(actions, outlier_iqr_multiple)
    if outliers.any():
        frames = [f"episode {e} frame {f}" for e, fs in where for f in fs]
        examples = [frames[i] for i in np.flatnonzero(outliers)[:MAX_EXAMPLES]]
        log.warning("norm stats of %s: left out %d outlier frame(s) beyond median +- %g x IQR; e.g. %s",
                    meta.root, int(outliers.sum()), outlier_iqr_multiple, "; ".join(examples))
        actions = actions[~outliers]
    stats: dict[str, list[float] | int | float] = {
        name: np.quantile(actions, q, axis=0).tolist() for name, q in QUANTILES.items()
    }
    stats.update(mean=actions.mean(axis=0).tolist(), std=actions.std(axis=0).tolist(),
                 min=actions.min(axis=0).tolist(), max=actions.max(axis=0).tolist(), count=len(actions),
                 outliers=int(outliers.sum()), outlier_iqr_multiple=float(outlier_iqr_multiple))
    constant = [d for d in range(ACTION_DIM) if stats["q01"][d] == stats["q99"][d]]
    if constant:
        log.warning("norm stats of %s: q01 == q99 in action dimension(s) %s; they normalise to a constant",
                    meta.root, constant)
    return {"action": stats}


def write_norm_stats(stats: dict, path: str | Path) -> Path:
    """Write `stats` as JSON atomically (temp file + os.replace), so a reader never sees half a file."""
    return write_json(path, stats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dtvla-norm-stats", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="local LeRobot v2.1 dataset directory")
    parser.add_argument("--out", help="output file (default: DATASET/meta/norm_stats.json)")
    parser.add_argument("--outlier-iqr-multiple", type=float, default=OUTLIER_IQR_MULTIPLE, metavar="K",
                        help="leave out frames beyond median +- K x IQR in any dimension; 0 keeps all "
                        f"(default: {OUTLIER_IQR_MULTIPLE:g})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="dtvla-norm-stats: %(levelname)s: %(message)s")
    try:
        stats = compute_norm_stats(args.dataset, args.outlier_iqr_multiple)
        out = write_norm_stats(stats, args.out or DatasetMeta.load(args.dataset).norm_stats_path)
    except (OSError, ValueError) as err:  # a bad dataset or an unwritable --out: one line, no traceback
        print(f"dtvla-norm-stats: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    action = stats["action"]
    print(f"wrote {out} ({action['count']} frames, {action['outliers']} outliers left out)")
    for name in ("q01", "q99"):
        print(f"  {name}: {np.round(action[name], 4).tolist()}")


if __name__ == "__main__":
    main()
