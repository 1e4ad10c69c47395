"""Training metrics: a window that sums per-micro-batch statistics, and the JSONL + TensorBoard sink.

One record per `log_every` optimizer steps, written by rank 0 only, after the statistics of all ranks were summed
(so every figure is global). `metrics.jsonl` keeps one JSON object per line; on resume, records past the resumed
step are dropped and TensorBoard purges them too, so both show one consistent curve.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from dtvla_training.sft.objective import STAT_NAMES

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Extra per-micro-batch counters appended after STAT_NAMES by the trainer.
COUNTER_NAMES = ("micro_batches", "tokens", "samples", "reasoning_truncated", "reasoning_dropped")
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
        }


class MetricsSink:
    """Appends records to `<output_dir>/metrics.jsonl` and TensorBoard scalars under `<output_dir>/tensorboard`."""

    def __init__(self, output_dir: Path, start_step: int) -> None:
        self.path = output_dir / METRICS_FILE
        if start_step > 0 and self.path.is_file():
            lines = [line for line in self.path.read_text().splitlines() if line]
            self.path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= start_step))
        elif start_step == 0:
            self.path.write_text("")
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
    """The records of a run, in order (for tests, benchmarks and notebooks)."""
    path = output_dir / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line]
