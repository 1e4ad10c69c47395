"""`dtvla-expert-eval`: the scripted expert's success per task on LIBERO's init states, without cameras.

Each episode runs through the one episode loop (`EpisodeLoop`: reset, 10 settle steps, the suite's step cap) with the
expert answering one action at a time from privileged state (`sim.expert`). Records are appended to a JSONL file as
episodes finish (the same `EpisodeLog` as `dtvla-eval`); a rerun with the same settings skips the episodes already in
it, so an interrupted run resumes. The summary (per task: episodes, successes, rate, Wilson 95% interval) is
recomputed from the JSONL and written atomically beside it as `<out stem>.summary.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dtvla_policy.atomic_file import write_json
from dtvla_policy.protocol import UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_sim_bridge.eval.records import EpisodeLog, read_records
from dtvla_sim_bridge.eval.stats import wilson_interval
from dtvla_sim_bridge.sim.episode import Outcome
from dtvla_sim_bridge.sim.expert_session import ExpertSession
from dtvla_sim_bridge.sim.libero_env import LiberoSim
from dtvla_sim_bridge.sim.suites import INIT_STATES, get_suite, parse_index_ranges


@dataclass(frozen=True)
class ExpertRun:
    """What every episode of one results file shares; a resumed run must match it."""

    suite: str
    max_steps: int
    object_jitter_m: float
    env_seed: int
    settle_steps: int

    @property
    def protocol(self) -> EpisodeProtocol:
        return EpisodeProtocol(settle_steps=self.settle_steps, env_seed=self.env_seed,
                               object_jitter_m=self.object_jitter_m)


class ExpertRunner:
    """One process's simulator, loop and expert, rebuilt when a job of another task arrives."""

    def __init__(self, run: ExpertRun) -> None:
        self.run = run
        self.session = ExpertSession(
            lambda task: LiberoSim.for_protocol(run.suite, task, run.protocol, run.max_steps, cameras=False),
            run.protocol)

    def episode(self, task: int, init_state: int) -> dict[str, Any]:
        start = time.monotonic()
        record: dict[str, Any] = {**asdict(self.run), "task": task, "init_state": init_state, "success": False,
                                  "outcome": "error", "steps": 0, "last_phase": "", "error": ""}
        try:
            loop, expert = self.session.for_task(task)
            episode = loop.run(init_state, lambda frame, _: expert.act(frame)[None])
            record.update(success=episode.outcome is Outcome.SUCCESS, outcome=str(episode.outcome),
                          steps=episode.steps, last_phase=expert.phase, error=episode.error)
        except Exception as exc:  # recorded, never fatal: one bad episode must not stop a 500-episode run
            record["error"] = repr(exc)
            self.session.close()
        record["wall_s"] = round(time.monotonic() - start, 2)
        return record

_RUNNER: ExpertRunner | None = None  # one per worker process


def _init_worker(run: ExpertRun) -> None:
    global _RUNNER
    os.environ.setdefault("MUJOCO_GL", "egl")
    _RUNNER = ExpertRunner(run)


def _run_job(job: tuple[int, int]) -> dict[str, Any]:
    return _RUNNER.episode(*job)


def pending_jobs(run: ExpertRun, jobs: list[tuple[int, int]], records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The jobs without a record yet; ValueError if the file holds records of other settings."""
    expected = asdict(run)
    for record in records:
        clashes = {k: record.get(k) for k, v in expected.items() if record.get(k) != v}
        if clashes:
            raise ValueError(f"the results file holds episodes run with {clashes}, this run uses "
                             f"{ {k: expected[k] for k in clashes} }; choose another --out or the same settings")
    done = {(r["task"], r["init_state"]) for r in records}
    return [job for job in jobs if job not in done]


def summarize(run: ExpertRun, jobs: list[tuple[int, int]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task and total success over the planned episodes that have a record."""
    planned = set(jobs)
    final = {(r["task"], r["init_state"]): r for r in records if (r["task"], r["init_state"]) in planned}
    tasks: dict[str, dict[str, Any]] = {}
    for task in sorted({t for t, _ in jobs}):
        rows = [r for (t, _), r in sorted(final.items()) if t == task]
        tasks[str(task)] = _rates(rows, sum(1 for t, _ in jobs if t == task))
        tasks[str(task)]["failed_init_states"] = [r["init_state"] for r in rows if not r["success"]]
    return {**asdict(run), "tasks": tasks, "total": _rates(list(final.values()), len(jobs)),
            "complete": len(final) == len(jobs)}


def _rates(rows: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    successes = sum(bool(r["success"]) for r in rows)
    return {"planned": planned, "episodes": len(rows), "successes": successes,
            "errors": sum(r["outcome"] == "error" for r in rows),
            "success_rate": round(successes / len(rows), 4) if rows else None,
            "wilson95": [round(v, 4) for v in wilson_interval(successes, len(rows))] if rows else None}


def summary_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.summary.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtvla-expert-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, help="libero_spatial or libero_object (one On/In goal per task)")
    parser.add_argument("--tasks", default=None, help="task ids, e.g. 0-9 or 0,3,5 (default: every task)")
    parser.add_argument("--init-states", default=f"0-{INIT_STATES - 1}", help="init state ids (default: 0-49)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode step cap (default: the suite's)")
    parser.add_argument("--object-jitter-m", type=float, default=UPSTREAM_EPISODE.object_jitter_m,
                        help="displace every movable object by up to this many metres in x and y (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="episode worker processes (one LIBERO env each)")
    parser.add_argument("--out", required=True, help="episode records, JSONL (appended; reruns resume)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = get_suite(args.suite)
        tasks = parse_index_ranges(args.tasks or f"0-{spec.num_tasks - 1}", spec.num_tasks, "--tasks")
        inits = parse_index_ranges(args.init_states, INIT_STATES, "--init-states")
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        run = ExpertRun(suite=spec.name, max_steps=args.max_steps or spec.max_steps,
                        object_jitter_m=args.object_jitter_m, env_seed=UPSTREAM_EPISODE.env_seed,
                        settle_steps=UPSTREAM_EPISODE.settle_steps)
        run.protocol  # noqa: B018 (validates the jitter)
        out = Path(args.out).expanduser().resolve()
        jobs = [(task, init) for task in tasks for init in inits]
        todo = pending_jobs(run, jobs, read_records(out))
    except ValueError as exc:
        print(f"dtvla-expert-eval: error: {exc}", file=sys.stderr)
        return 2
    print(f"dtvla-expert-eval: {len(todo)} of {len(jobs)} episodes to run, results in {out}", file=sys.stderr)
    with EpisodeLog(out) as log, mp.get_context("spawn").Pool(args.workers, _init_worker, (run,)) as pool:
        for record in pool.imap_unordered(_run_job, todo):
            log.append(record)
            print(f"task {record['task']} init {record['init_state']}: {record['outcome']} after {record['steps']} "
                  f"steps ({record['last_phase']}) {record['error']}", file=sys.stderr, flush=True)
    summary = summarize(run, jobs, read_records(out))
    write_json(summary_path(out), summary)
    print(json.dumps({"summary": str(summary_path(out)), "total": summary["total"]}))
    return 0 if summary["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
