"""`dtvla-norm-stats DATASET [--out PATH]`: per-dimension action statistics, written as meta/norm_stats.json.

The file is what `QuantileNormalizer.from_json` reads: {"action": {"q01", "q99", "mean", "std", "min", "max",
"count"}}, the openpi-style layout upstream's `src/dt_datasets/normalize.py` loads; the trainer copies it into each
checkpoint. Quantiles are exact (numpy, linear interpolation) over every frame whose 7 values are finite; openpi
approximates them with histograms, so figures can differ in the last digits from a file openpi wrote.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dtvla_policy.model.conventions import ACTION_DIM
from dtvla_training.data.lerobot_dataset import ACTION_KEY, MAX_EXAMPLES, DatasetMeta, action_array

log = logging.getLogger(__name__)

QUANTILES = {"q01": 0.01, "q99": 0.99}


def compute_norm_stats(root: str | Path) -> dict[str, dict[str, list[float] | int]]:
    """Action stats over all frames of all listed episodes; frames with a non-finite or missing value are left out.

    Unreadable episode files are skipped and reported in one warning; no usable frame at all is a ValueError.
    """
    meta = DatasetMeta.load(root)
    parts: list[np.ndarray] = []
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
    if bad_files or bad_frames:
        log.warning("norm stats of %s: skipped %d unreadable episode files and %d frames with non-finite actions%s",
                    meta.root, len(bad_files), bad_frames,
                    f"; e.g. {'; '.join(bad_files[:MAX_EXAMPLES])}" if bad_files else "")
    actions = np.concatenate(parts or [np.zeros((0, ACTION_DIM))]).astype(np.float64)
    if not len(actions):
        raise ValueError(f"dataset {meta.root} has no frame with finite actions to compute norm stats from")
    stats: dict[str, list[float] | int] = {
        name: np.quantile(actions, q, axis=0).tolist() for name, q in QUANTILES.items()
    }
    stats.update(mean=actions.mean(axis=0).tolist(), std=actions.std(axis=0).tolist(),
                 min=actions.min(axis=0).tolist(), max=actions.max(axis=0).tolist(), count=len(actions))
    return {"action": stats}


def write_norm_stats(stats: dict, path: str | Path) -> Path:
    """Write `stats` as JSON atomically (temp file + os.replace), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(stats, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would survive the rename
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="local LeRobot v2.1 dataset directory")
    parser.add_argument("--out", help="output file (default: DATASET/meta/norm_stats.json)")
    args = parser.parse_args(argv)
    stats = compute_norm_stats(args.dataset)
    out = write_norm_stats(stats, args.out or DatasetMeta.load(args.dataset).norm_stats_path)
    action = stats["action"]
    print(f"wrote {out} ({action['count']} frames)")
    for name in ("q01", "q99"):
        print(f"  {name}: {np.round(action[name], 4).tolist()}")


if __name__ == "__main__":
    main()
