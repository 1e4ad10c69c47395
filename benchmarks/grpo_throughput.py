"""GRPO throughput: trajectories/hour, env steps/s and the rollout share of `dtvla-train-grpo` with 1 and 2 env workers.

Tiny random-init checkpoint, libero_spatial task 0, 256 px cameras, a short step cap (the untrained policy never
succeeds, so every episode runs the whole cap) and no dynamic filtering (it would reject every group). Each
repetition runs the real trainer in this process (`GrpoTrainer`: the worker pool, batched sampling on the live
weights, the recompute pass and the DeepSpeed update) for a few iterations and reads its metrics records. The first
iteration holds the start-up (spawning the workers and building their envs) and is reported apart; the steady
figures are over the later ones:
  trajectories_per_hour  3600 x trajectories / (rollout_s + learner_s)
  env_steps_per_s        env steps / rollout_s (settle steps not counted)
  rollout_share          rollout_s / (rollout_s + learner_s)
Both worker counts get the thread budget the trainer gives them: llvmpipe render threads adding up to the cores
(cores // env_workers per worker, as `dtvla-eval`) and torch's default threads in the learner. 1- and 2-worker
repetitions alternate, so load changes on a shared machine hit both; medians and their ratio are reported.

Usage: python benchmarks/grpo_throughput.py --json [--repeats 1] [--iterations 3] [--max-steps 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_report import emit, machine

SUITE = "libero_spatial"
WORKER_COUNTS = (1, 2)


def run_trainer(checkpoint: Path, out: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One short GRPO run; start-up and steady-state figures from its metrics records."""
    from dtvla_training.grpo.config import GrpoConfig
    from dtvla_training.grpo.train import train

    config = GrpoConfig(
        init_checkpoint=checkpoint, output_dir=out, suite=SUITE, tasks="0", init_states="0-9",
        prompts_per_iteration=args.prompts, group_size=args.group_size, max_steps=args.max_steps,
        max_cot_tokens=args.max_cot_tokens, env_workers=workers, filter_groups=False,
        mini_batch_size=args.prompts * args.group_size, max_iterations=args.iterations, bf16=False,
        deepspeed=Path(__file__).resolve().parents[1] / "config/train/zero2.json", save_every=10_000,
        keep_train_states=1,
    )
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON's
        records = train(config).records
    steady = records[1:]
    rollout = sum(r["rollout_s"] for r in steady)
    learner = sum(r["learner_s"] for r in steady)
    return {
        "startup_iteration_s": round(records[0]["rollout_s"] + records[0]["learner_s"], 1),
        "steady_iterations": len(steady),
        "trajectories_per_hour": round(3600 * sum(r["trajectories"] for r in steady) / (rollout + learner), 1),
        "env_steps_per_s": round(sum(r["env_steps"] for r in steady) / rollout, 2),
        "rollout_share": round(rollout / (rollout + learner), 3),
        "rollout_s": round(rollout, 1),
        "learner_s": round(learner, 1),
        "policy_s": round(sum(r["policy_s"] for r in steady), 1),  # sampling: the learner's part of the rollouts
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count (alternating)")
    parser.add_argument("--iterations", type=int, default=3, help="per run; the first one is start-up")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per iteration")
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=30, help="episode step cap")
    parser.add_argument("--max-cot-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.iterations < 2:
        parser.error("--iterations must be >= 2: the first one is start-up")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as for dtvla-eval: must precede the torch import
    os.environ.setdefault("MUJOCO_GL", "egl")
    import logging

    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    logging.getLogger("dtvla_policy.inference.engine").setLevel(logging.ERROR)  # every tiny CoT hits the cap
    load_before = os.getloadavg()
    runs: dict[int, list[dict[str, Any]]] = {workers: [] for workers in WORKER_COUNTS}
    with tempfile.TemporaryDirectory(prefix="dtvla-grpo-bench-") as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        for repeat in range(args.repeats):
            for workers in WORKER_COUNTS:
                out = Path(tmp) / f"run_{workers}_{repeat}"
                runs[workers].append(run_trainer(checkpoint, out, workers, args))
    import torch

    def median(workers: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[workers])

    rates = {workers: median(workers, "trajectories_per_hour") for workers in WORKER_COUNTS}
    result = {
        "trajectories_per_hour": {str(w): rates[w] for w in WORKER_COUNTS},
        "env_steps_per_s": {str(w): median(w, "env_steps_per_s") for w in WORKER_COUNTS},
        "rollout_share": {str(w): median(w, "rollout_share") for w in WORKER_COUNTS},
        "speedup_2_vs_1": round(rates[2] / rates[1], 2),
        "runs": {str(w): runs[w] for w in WORKER_COUNTS},
        "threads": {str(w): {"llvmpipe_per_worker": max(1, (os.cpu_count() or 1) // w),
                             "torch": torch.get_num_threads()} for w in WORKER_COUNTS},
        "protocol": {"suite": SUITE, "task": 0, "prompts": args.prompts, "group_size": args.group_size,
                     "max_steps": args.max_steps, "camera_size": 256, "settle_steps": 10,
                     "max_cot_tokens": args.max_cot_tokens, "iterations": args.iterations, "repeats": args.repeats,
                     "checkpoint": "tiny (random init)"},
        "machine": machine(load_before),
    }
    emit(result, ("trajectories_per_hour", "env_steps_per_s", "rollout_share", "speedup_2_vs_1"), args.json)


if __name__ == "__main__":
    main()
