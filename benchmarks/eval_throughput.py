"""Evaluation throughput: episodes/hour of `dtvla-eval` with 1 and 2 workers on the same short protocol.

Tiny random-init checkpoint, libero_spatial task 0, 256 px cameras, a short step cap so the policy never succeeds
and every episode runs the full cap. Each measurement is one whole `evaluate` call, so worker start-up (env
creation) and policy loading are included, as a user would see them.

Usage: python benchmarks/eval_throughput.py --json [--trials 4] [--max-steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from dtvla_sim_bridge.eval.config import EvalConfig
from dtvla_sim_bridge.eval.runner import evaluate

SUITE = "libero_spatial"


def episodes_per_hour(checkpoint: Path, out: Path, workers: int, args: argparse.Namespace) -> dict:
    config = EvalConfig(checkpoint=checkpoint, suite=SUITE, tasks=(0,), trials=args.trials, max_steps=args.max_steps,
                        out=out, workers=workers, max_cot_tokens=args.max_cot_tokens)
    start = time.perf_counter()
    summary = evaluate(config, progress=False)
    wall = time.perf_counter() - start
    episodes = summary["total"]["episodes"]
    return {"episodes": episodes, "errors": summary["total"]["errors"], "wall_s": round(wall, 1),
            "episodes_per_hour": round(3600 * episodes / wall, 1),
            "mean_policy_latency_ms": round(summary["total"]["mean_policy_latency_ms"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="episodes per measurement")
    parser.add_argument("--max-steps", type=int, default=30, help="episode step cap")
    parser.add_argument("--max-cot-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dtvla-eval: must precede the torch import
    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="dtvla-eval-bench-") as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        runs = {workers: episodes_per_hour(checkpoint, Path(tmp) / f"w{workers}", workers, args) for workers in (1, 2)}
    result = {
        "episodes_per_hour_1": runs[1]["episodes_per_hour"],
        "episodes_per_hour_2": runs[2]["episodes_per_hour"],
        "speedup": round(runs[2]["episodes_per_hour"] / runs[1]["episodes_per_hour"], 2),
        "runs": {str(k): v for k, v in runs.items()},
        "protocol": {"suite": SUITE, "task": 0, "trials": args.trials, "max_steps": args.max_steps,
                     "camera_size": 256, "settle_steps": 10, "max_cot_tokens": args.max_cot_tokens},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in ("episodes_per_hour_1", "episodes_per_hour_2", "speedup"):
            print(f"{key}: {result[key]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
