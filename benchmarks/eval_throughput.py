"""Evaluation throughput: steady-state episodes/hour of `dtvla-eval`'s worker pool with 1 and 2 workers.

Tiny random-init checkpoint, libero_spatial task 0, 256 px cameras, a short step cap (the untrained policy never
succeeds, so every episode runs the whole cap). Each repetition runs the real pool (`BatchPolicy` + `WorkerPool`,
as `dtvla-eval` does) and timestamps every episode record as it arrives. Start-up (policy load; then spawning the
workers, building their envs and their first episode) is reported apart from the steady state: the episodes that
end after every worker has finished its first one, over the time since. Both worker counts get the thread budget
`dtvla-eval` gives them: llvmpipe render threads adding up to the cores (`EvalConfig.render_threads`) and every
core for torch in the policy process. 1- and 2-worker repetitions alternate, so load changes on a shared machine
hit both; medians and their ratio are reported. `cores_used` (CPU seconds per wall second of the whole run) shows
how much of the machine one worker already occupies, which bounds what a second one can add.

Usage: python benchmarks/eval_throughput.py --json [--repeats 3] [--episodes-per-worker 5] [--max-steps 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_report import emit, machine

from dtvla_sim_bridge.eval.config import EvalConfig
from dtvla_sim_bridge.eval.runner import BatchPolicy, WorkerPool
from dtvla_sim_bridge.eval.worker import Job

SUITE = "libero_spatial"
WORKER_COUNTS = (1, 2)


def bench_config(checkpoint: Path, out: Path, workers: int, args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(checkpoint=checkpoint, suite=SUITE, tasks=(0,), trials=workers * args.episodes_per_worker,
                      max_steps=args.max_steps, out=out, workers=workers, max_cot_tokens=args.max_cot_tokens)


def _cpu_seconds() -> float:
    """CPU time of this process (the policy) and of its finished children (the workers, joined by `run`)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pool(config: EvalConfig, policy: BatchPolicy, videos: Path) -> dict[str, Any]:
    """One pool run over `config.jobs`; start-up and steady-state figures from the records' arrival times."""
    arrivals: list[tuple[float, dict[str, Any]]] = []
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    pool = WorkerPool.for_eval(config, policy, videos)
    pool.run([Job(task, init, 1) for task, init in config.jobs],
             lambda record, job: arrivals.append((time.perf_counter() - start, record)))
    cores_used = (_cpu_seconds() - cpu_before) / (time.perf_counter() - start)
    first: dict[int, float] = {}
    for t, record in arrivals:
        first.setdefault(record["worker"], t)
    warm = max(first.values())  # every worker has built its env and finished one episode
    steady = [(t, r) for t, r in arrivals if t > warm]
    window = arrivals[-1][0] - warm
    latencies = [ms for _, r in steady for ms in r["policy_latency_ms"]]
    batches = [size for _, r in steady for size in r["batch_sizes"]]
    return {
        "episodes": len(arrivals),
        "errors": sum(r["status"] != "ok" for _, r in arrivals),
        "startup_s": round(warm, 1),
        "steady_episodes": len(steady),
        "steady_window_s": round(window, 1),
        "steady_episodes_per_hour": round(3600 * len(steady) / window, 1) if steady else None,
        "steady_episode_wall_s_median": round(statistics.median(r["wall_s"] for _, r in steady), 2) if steady else None,
        "policy_latency_ms_median": round(statistics.median(latencies), 1) if latencies else None,
        "mean_batch_size": round(statistics.fmean(batches), 2) if batches else None,
        "total_s": round(arrivals[-1][0], 1),
        "cores_used": round(cores_used, 2),  # CPU seconds of the policy process and its workers per wall second
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count (alternating)")
    parser.add_argument("--episodes-per-worker", type=int, default=5, help="first one is start-up")
    parser.add_argument("--max-steps", type=int, default=30, help="episode step cap")
    parser.add_argument("--max-cot-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dtvla-eval: must precede the torch import
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dtvla-eval-bench-") as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny")
        configs = {workers: bench_config(checkpoint, Path(tmp), workers, args) for workers in WORKER_COUNTS}
        start = time.perf_counter()
        policy = BatchPolicy(configs[1])
        policy_load_s = time.perf_counter() - start
        runs: dict[int, list[dict[str, Any]]] = {workers: [] for workers in WORKER_COUNTS}
        for _ in range(args.repeats):
            for workers in WORKER_COUNTS:
                runs[workers].append(run_pool(configs[workers], policy, Path(tmp) / "videos"))
    import torch  # loaded by BatchPolicy

    def median(workers: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[workers])

    rates = {workers: median(workers, "steady_episodes_per_hour") for workers in WORKER_COUNTS}
    result = {
        "steady_episodes_per_hour_1": rates[1],
        "steady_episodes_per_hour_2": rates[2],
        "speedup_2_vs_1": round(rates[2] / rates[1], 2),
        "startup_s_median": {str(w): median(w, "startup_s") for w in WORKER_COUNTS},
        "policy_load_s": round(policy_load_s, 1),
        "runs": {str(w): runs[w] for w in WORKER_COUNTS},
        "threads": {str(w): {"llvmpipe_per_worker": configs[w].render_threads, "torch": torch.get_num_threads()}
                    for w in WORKER_COUNTS},
        "protocol": {"suite": SUITE, "task": 0, "episodes_per_worker": args.episodes_per_worker,
                     "max_steps": args.max_steps, "camera_size": configs[1].camera_size,
                     "settle_steps": configs[1].settle_steps, "max_cot_tokens": args.max_cot_tokens,
                     "repeats": args.repeats},
        "machine": machine(load_before),
    }
    emit(result, ("steady_episodes_per_hour_1", "steady_episodes_per_hour_2", "speedup_2_vs_1"), args.json)


if __name__ == "__main__":
    main()
