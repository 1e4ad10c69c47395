"""SFT training throughput on this machine: samples/s and tokens/s, one process vs two gloo processes, one run.

Each variant is a real `dtvla-train-sft` run (the module under `python -m` / `torchrun --standalone`) on a
random-init checkpoint of the preset and the synthetic LeRobot dataset at the preset's image size, with the
same per-process micro-batch (data parallel: two processes train a twice larger global batch). Rates come from
the run's metrics.jsonl (global non-pad tokens and samples over wall time), skipping the first `--warmup` steps
(allocator, thread pools, first DeepSpeed step). On a 2-core CPU the two processes share the cores that one
process uses with 2 threads, so `two_proc_vs_one` measures the data-parallel overhead (gloo reduce-scatter and
all-gather of the fp32 gradients and weights), not a speed-up.

Usage: python benchmarks/train_throughput.py --preset {tiny,small} --json [--steps N] [--micro-batch-size N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ZERO2 = Path(__file__).resolve().parents[1] / "config/train/zero2.json"
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run_variant(processes: int, config: Path, output_dir: Path, warmup: int) -> dict:
    """Train once with `processes` processes; global rates over the steps after `warmup`."""
    from dtvla_training.sft.metrics import read_metrics

    module = ["-m", "dtvla_training.sft.train", "--config", str(config), "--output-dir", str(output_dir)]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [sys.executable, *(launcher if processes > 1 else []), *module]
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
        raise RuntimeError(f"{processes}-process training failed (exit {done.returncode})")
    records = [r for r in read_metrics(output_dir) if r["step"] > warmup]
    seconds = sum(r["window_s"] for r in records)
    return {
        "samples_per_s": round(sum(r["samples_per_s"] * r["window_s"] for r in records) / seconds, 3),
        "tokens_per_s": round(sum(r["tokens_per_s"] * r["window_s"] for r in records) / seconds, 1),
        "seconds_per_step": round(seconds / len(records), 3),
        "final_loss": round(records[-1]["loss"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def run(preset: str, steps: int, warmup: int, micro_batch_size: int) -> dict:
    import deepspeed
    import torch

    from dtvla_policy.model.tiny_checkpoint import PRESETS, write_tiny_checkpoint
    from dtvla_training.data.synthetic import write_synthetic_dataset

    spec = PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = write_tiny_checkpoint(root / "checkpoint", preset=preset)
        dataset = write_synthetic_dataset(root / "dataset", image_size=spec.image_size)
        config = root / "sft.yaml"
        config.write_text(yaml.safe_dump({
            "dataset": str(dataset), "init_checkpoint": str(checkpoint), "output_dir": str(root / "unused"),
            "deepspeed": str(ZERO2), "max_steps": steps, "micro_batch_size": micro_batch_size,
            "grad_accum_steps": 1, "warmup_steps": 1, "lr_llm": 1e-4, "lr_vision": 1e-4, "lr_projector": 1e-4,
            "min_lr": 1e-5, "augment": False, "num_workers": 1, "bf16": False, "log_every": 1, "save_every": steps,
            "keep_train_states": 1,
        }))
        variants = {f"{n}_proc": run_variant(n, config, root / f"run_{n}", warmup) for n in (1, 2)}
    one, two = variants["1_proc"], variants["2_proc"]
    return {
        "preset": preset,
        "steps": steps,
        "warmup_steps_skipped": warmup,
        "micro_batch_size_per_process": micro_batch_size,
        "image_size": spec.image_size,
        "samples_per_s": {k: v["samples_per_s"] for k, v in variants.items()},
        "tokens_per_s": {k: v["tokens_per_s"] for k, v in variants.items()},
        "two_proc_vs_one": round(two["samples_per_s"] / one["samples_per_s"], 3),
        "variants": variants,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "deepspeed": deepspeed.__version__, "cpus": os.cpu_count(), "cpu": platform.processor()},
    }


def main(argv: list[str] | None = None) -> int:
    # DeepSpeed's logger (imported by transformers) prints to the stdout it finds at import time: import everything
    # with stdout pointed at stderr, so that stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        from dtvla_policy.model.tiny_checkpoint import PRESETS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per variant; default 12 (tiny), 4 "
                        "(small)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the rates")
    parser.add_argument("--micro-batch-size", type=int, default=2, help="per process")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default prints it indented)")
    args = parser.parse_args(argv)
    steps = args.steps or (12 if args.preset == "tiny" else 4)
    if steps <= args.warmup:
        parser.error(f"--steps {steps} must exceed --warmup {args.warmup}")
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args.preset, steps, args.warmup, args.micro_batch_size)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
