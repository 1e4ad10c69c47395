"""Training metrics: a window that sums per-micro-batch statistics, and the JSONL + TensorBoard sink.

One record per `log_every` optimizer steps, written by rank 0 only, after the statistics of all ranks were summed
(so every figure is global). `metrics.jsonl` keeps one JSON object per line; on resume, records past the resumed
step are dropped and TensorBoard purges them too, so both show one consistent curve. A line torn by a kill
mid-append is cut on resume (`atomic_file.cut_torn_tail`, as the eval harness does for its episode log).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from dtvla_policy.atomic_file import cut_torn_tail, write_text
from dtvla_training.sft.objective import STAT_NAMES

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Extra per-micro-batch counters appended after STAT_NAMES by the trainer.
COUNTER_NAMES = ("micro_batches", "tokens", "samples", "reasoning_truncated", "reasoning_dropped", "load_fallbacks")
ALL_STATS = STAT_NAMES + COUNTER_NAMES


class MetricsWindow:
    """Sums of `ALL_STATS` since the last record, and the wall time they took."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(ALL_STATS), dtype=torch.float64)
        self.restart_clock()

    def restart_clock(self) -> None:
        self.started = time.perf_counter()

    def add(self, stats: torch.Tensor) -> None:
        self.sums += stats.detach().to("cpu", torch.float64)

    def summary(self) -> dict[str, float]:
        """Means and rates of the window (the loss is the mean over micro-batches of all ranks)."""
        s = dict(zip(ALL_STATS, self.sums.tolist(), strict=True))
        elapsed = max(time.perf_counter() - self.started, 1e-9)

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        return {
            "loss": ratio(s["loss"], s["micro_batches"]),
            "action_accuracy": ratio(s["action_correct"], s["action_count"]),
            "action_l1": ratio(s["action_l1_sum"], s["action_count"]),
            "token_accuracy": ratio(s["token_correct"], s["token_count"]),
            "tokens_per_s": s["tokens"] / elapsed,
            "samples_per_s": s["samples"] / elapsed,
            "window_s": elapsed,  # wall time the rates were measured over
            "reasoning_truncated": s["reasoning_truncated"],
            "reasoning_dropped": s["reasoning_dropped"],
            "load_fallbacks": s["load_fallbacks"],  # samples the reader replaced by the next frame (decode failed)
        }


class MetricsSink:
    """Appends records to `<output_dir>/metrics.jsonl` and TensorBoard scalars under `<output_dir>/tensorboard`."""

    def __init__(self, output_dir: Path, start_step: int) -> None:
        self.path = output_dir / METRICS_FILE
        if start_step > 0 and self.path.is_file():
            # A run killed mid-append leaves a torn last line: cut it, then keep the records up to the resumed step.
            cut_torn_tail(self.path)
            lines = [line for line, record in _lines_and_records(self.path) if record["step"] <= start_step]
            write_text(self.path, "".join(line + "\n" for line in lines))
        elif start_step == 0:
            write_text(self.path, "")
        self.tensorboard = SummaryWriter(
            str(output_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None
        )

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                self.tensorboard.add_scalar(f"train/{key}", value, step)
        self.tensorboard.flush()

    def close(self) -> None:
        self.tensorboard.close()


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    """The records of a run, in order (for tests, benchmarks and notebooks); a torn last line is left out."""
    return [record for _, record in _lines_and_records(output_dir / METRICS_FILE)]


def _lines_and_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of every line that holds a whole record; others (a torn line, an edit) are logged once."""
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            kept.append((line, record))
        else:
            dropped += 1
    if dropped:
        log.warning("%s: ignored %d line(s) that are not whole metrics records", path, dropped)
    return kept
