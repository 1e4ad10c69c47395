"""Runs an evaluation: policy in the main process, episodes in spawned workers, records to the JSONL as they end.

The main process loads the checkpoint once (a load failure stops the run before any worker starts), collects the
observations of all workers that wait for a chunk and answers them with one `predict_batch` call; a baseline
(`eval.baselines`) answers the same batched queries instead. Workers that
step in parallel fall into lockstep, so batches are full most of the time and the policy mostly computes while
the workers wait for it rather than while they render. A worker that dies has its episode recorded as an error
and retried once by a fresh worker; the evaluation goes on. GRPO rollouts (`dtvla_training.grpo.rollout`) run
on the same `WorkerPool`, with their own chunk source, no retries and workers kept between calls.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dtvla_policy.atomic_file import write_json, write_text
from dtvla_policy.protocol import DecodeConfig, Mode
from dtvla_sim_bridge.eval.baselines import NoopPolicy, ReplayPolicy, load_demonstrations
from dtvla_sim_bridge.eval.config import EvalConfig, EvalInputError, PolicyKind, suite_tasks
from dtvla_sim_bridge.eval.manifest import build_manifest, check_resumable, checkpoint_hashes
from dtvla_sim_bridge.eval.records import (
    MAX_ATTEMPTS,
    EpisodeLog,
    pending_jobs,
    read_records,
    summarize,
    summary_markdown,
)
from dtvla_sim_bridge.eval.worker import Job, PolicyQuery, PolicyReply, WorkerSettings, worker_main

BATCH_WAIT_S = 1.0  # longest an observation waits for busy workers to join its batch
POLL_S = 0.2
MAX_STARTUP_DEATHS = 3  # workers dying before taking a job point at the machine, not an episode: give up
MANIFEST_KEYS = frozenset({"config", "path", "checkpoint_sha256"})  # what the resume check reads


@dataclass(frozen=True)
class OutputPaths:
    """Files of one suite's evaluation in --out; several suites can share one directory."""

    episodes: Path
    summary_json: Path
    summary_md: Path
    manifest: Path
    videos: Path

    @classmethod
    def of(cls, out: Path, suite: str) -> OutputPaths:
        return cls(out / f"{suite}.episodes.jsonl", out / f"{suite}.summary.json", out / f"{suite}.summary.md",
                   out / f"{suite}.manifest.json", out / "videos")


class BatchPolicy:
    """The engine in the main process: a list of observations in, one `PolicyReply` each out."""

    def __init__(self, config: EvalConfig) -> None:
        # OpenMP threads that spin-wait between calls steal the cores the workers render on (measured on 2 cores:
        # 230-1000 ms per tiny-model call with spinning, 54 ms without). Effective only if torch is not loaded yet.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch  # lazily: the sim bridge package must import without torch

        # Every core, whatever the number of workers: the workers it answers wait for it (see WorkerPool).
        torch.set_num_threads(os.cpu_count() or 1)

        from dtvla_policy.inference.engine import Observation, PolicyEngine

        torch.manual_seed(config.seed)  # upstream seeds everything with 429
        self._observation = Observation
        self.mode = config.mode
        self.seed = config.seed
        self.calls = 0
        try:
            self.engine = PolicyEngine.from_checkpoint(
                config.checkpoint, device=config.device, dtype=None if config.dtype == "auto" else config.dtype,
                decode=DecodeConfig(max_cot_tokens=config.max_cot_tokens),
            )
        except Exception as exc:  # any loader failure is the same answer for the user: fix the checkpoint
            raise EvalInputError(f"checkpoint {config.checkpoint} could not be loaded: {exc}") from exc
        self._check_instructions(config)

    def _check_instructions(self, config: EvalConfig) -> None:
        """Refuse before any worker starts what every episode of a task would fail on: an instruction the engine
        refuses, or a CoT cap beyond the model's positions after that task's prompt."""
        for info in suite_tasks(config.suite):
            if info.task_id not in config.tasks:
                continue
            try:
                prefix = self.engine.prefix(info.language)
                self.engine.check_positions(len(prefix), Mode.parse(self.mode), self.engine.decode_config)
            except ValueError as exc:
                raise EvalInputError(f"{config.suite} task {info.task_id}: {exc}") from None

    @property
    def decode(self) -> dict[str, Any]:
        """The engine's own decoding settings: what every episode of the run decodes with."""
        return asdict(self.engine.decode_config)

    def describe(self) -> dict[str, Any]:
        """The manifest's record of the policy (the checkpoint's hashes are recorded beside it)."""
        return {"kind": PolicyKind.MODEL.value}

    def __call__(self, queries: list[PolicyQuery]) -> list[PolicyReply]:
        decode = self.engine.decode_config
        if self.mode == Mode.RANDOM:  # a fresh, reproducible random CoT per call (a fixed seed would repeat one CoT)
            decode = replace(decode, seed=self.seed + self.calls)
        self.calls += 1
        try:
            observations = [self._observation(q.agentview, q.wrist, q.instruction) for q in queries]
            predictions = self.engine.predict_batch(observations, self.mode, decode)
        except Exception as exc:  # the episodes waiting on this batch fail; the evaluation goes on
            return [PolicyReply(None, error=repr(exc)) for _ in queries]
        return [
            PolicyReply(p.actions, p.cot, p.timings["total_ms"], p.cot_tokens, p.cot_truncated, len(queries))
            for p in predictions
        ]


ChunkSource = BatchPolicy | NoopPolicy | ReplayPolicy


def in_process_policy(config: EvalConfig) -> ChunkSource:
    """What answers the workers' chunk requests: the checkpoint's engine or a baseline (`eval.baselines`)."""
    if config.policy == PolicyKind.NOOP:
        return NoopPolicy()
    if config.policy == PolicyKind.REPLAY:
        instructions = {info.task_id: info.language for info in suite_tasks(config.suite)
                        if info.task_id in config.tasks}
        try:
            return ReplayPolicy(config.replay_dataset, load_demonstrations(config.replay_dataset, instructions))
        except (OSError, ValueError) as exc:
            raise EvalInputError(str(exc)) from None
    return BatchPolicy(config)


@dataclass
class _Worker:
    worker_id: int
    process: mp.process.BaseProcess
    conn: Connection  # the main process's end of the worker's pipe
    state: str = "starting"  # starting -> idle -> busy (resetting/stepping) <-> waiting (for a chunk)
    job: Job | None = None
    task: int | None = None


OnRecord = Callable[[dict[str, Any], Job], None]  # an attempt's record, and the job it ran


class WorkerPool:
    """Spawned episode workers, the job queue and the batching loop.

    `max_attempts`: runs per job, the retries of errors included. Workers outlive a `run` call made with
    `keep_workers=True` (their envs stay built for the next call); `close` stops them. `name` prefixes messages and
    the workers' process names.
    """

    def __init__(self, settings: WorkerSettings, workers: int, policy: Callable[[list[PolicyQuery]], list[PolicyReply]],
                 max_attempts: int = MAX_ATTEMPTS, name: str = "dtvla-eval") -> None:
        self.settings = settings
        self.name = name
        self.max_workers = workers
        self.policy = policy
        self.max_attempts = max_attempts
        self.context = mp.get_context("spawn")  # fork would copy torch threads and GL state into the children
        self.workers: dict[int, _Worker] = {}
        self.next_id = 0
        self.startup_deaths = 0
        self.waiting: dict[int, PolicyQuery] = {}
        self.waiting_since = 0.0

    @classmethod
    def for_eval(cls, config: EvalConfig, policy: Callable[[list[PolicyQuery]], list[PolicyReply]],
                 videos: Path) -> WorkerPool:
        settings = WorkerSettings(suite=config.suite, max_steps=config.max_steps, protocol=config.protocol,
                                  video_dir=str(videos), render_threads=config.render_threads)
        return cls(settings, config.workers, policy)

    def _spawn(self) -> None:
        conn, child_conn = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(self.next_id, self.settings, child_conn),
                                       name=f"{self.name}-worker-{self.next_id}", daemon=True)
        process.start()
        child_conn.close()  # only the child holds its end: a dead child then reads as EOF here
        self.workers[self.next_id] = _Worker(self.next_id, process, conn)
        self.next_id += 1

    def _send(self, worker: _Worker, message: object) -> None:
        """Send, ignoring a dead worker's closed pipe: `_bury_dead` settles its episode."""
        with contextlib.suppress(OSError):
            worker.conn.send(message)

    def run(self, jobs: list[Job], on_record: OnRecord, keep_workers: bool = False) -> None:
        """Run every job (and the retries of those that error, up to `max_attempts` runs), handing each record and
        its job to `on_record` as it ends. With `keep_workers` the workers wait for the next call unless this one
        failed."""
        todo = deque(jobs)
        unsettled = len(jobs)
        for _ in range(min(self.max_workers, len(jobs)) - len(self.workers)):
            self._spawn()

        def settle(record: dict[str, Any], job: Job) -> None:
            nonlocal unsettled
            on_record(record, job)
            if record["status"] == "error" and job.attempt < self.max_attempts:
                todo.append(replace(job, attempt=job.attempt + 1))
            else:
                unsettled -= 1

        finished = False
        try:
            while unsettled:
                self._receive(settle)
                self._bury_dead(settle, todo)
                self._assign(todo)
                self._answer()
            finished = True
        finally:
            if not (finished and keep_workers):
                self.close()

    def _receive(self, settle: Callable[[dict[str, Any], Job], None]) -> None:
        by_conn = {w.conn: w for w in self.workers.values()}
        # With observations waiting, wake up at their batch deadline, not up to POLL_S after it.
        timeout = max(0.0, self.waiting_since + BATCH_WAIT_S - time.monotonic()) if self.waiting else POLL_S
        for conn in wait(list(by_conn), timeout=timeout):
            try:
                while conn.poll():
                    self._handle(conn.recv(), settle)
            except (EOFError, OSError):
                by_conn[conn].process.join(timeout=5)  # EOF: the worker is gone; _bury_dead sees it dead

    def _handle(self, message: tuple, settle: Callable[[dict[str, Any], Job], None]) -> None:
        kind, worker_id, *payload = message
        worker = self.workers.get(worker_id)
        if worker is None:
            return  # a worker already buried: its job was settled as an error then
        if kind == "ready":
            worker.state = "idle"
        elif kind == "observation":
            if not self.waiting:
                self.waiting_since = time.monotonic()
            self.waiting[worker_id] = payload[0]
            worker.state = "waiting"
        elif kind == "result" and worker.job is not None:
            job, worker.job, worker.state = worker.job, None, "idle"
            settle(payload[0], job)

    def _bury_dead(self, settle: Callable[[dict[str, Any], Job], None], todo: deque[Job]) -> None:
        for worker in [w for w in self.workers.values() if not w.process.is_alive()]:
            del self.workers[worker.worker_id]
            worker.conn.close()
            self.waiting.pop(worker.worker_id, None)
            code = worker.process.exitcode
            if worker.job is None:
                self.startup_deaths += 1
                if self.startup_deaths >= MAX_STARTUP_DEATHS:
                    raise RuntimeError(f"{self.startup_deaths} {self.name} workers died before running an episode "
                                       f"(last exit code {code}); see the log above")
            else:
                job = worker.job
                print(f"{self.name}: worker {worker.worker_id} died (exit code {code}) during task {job.task} "
                      f"init {job.init_state}; recorded as an error", file=sys.stderr)
                settle({"suite": self.settings.suite, "task": job.task, "init_state": job.init_state,
                        "attempt": job.attempt, "worker": worker.worker_id, "status": "error", "success": False,
                        "steps": 0, "chunks": 0, "cots": [], "policy_latency_ms": [], "video": None,
                        "error": f"worker process died with exit code {code}",
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, job)
            if todo:  # includes the retry of the dead worker's episode
                self._spawn()

    def _assign(self, todo: deque[Job]) -> None:
        for worker in self.workers.values():
            if worker.state != "idle" or not todo:
                continue
            # Prefer the worker's current task: a new task costs a new env (~4-9 s).
            job = next((j for j in todo if j.task == worker.task), todo[0])
            todo.remove(job)
            worker.job, worker.task, worker.state = job, job.task, "busy"
            self._send(worker, job)

    def _answer(self) -> None:
        if not self.waiting:
            return
        stepping = any(w.state == "busy" for w in self.workers.values())
        if stepping and time.monotonic() - self.waiting_since < BATCH_WAIT_S:
            return
        ids = list(self.waiting)
        replies = self.policy([self.waiting[i] for i in ids])
        self.waiting.clear()
        for worker_id, reply in zip(ids, replies, strict=True):
            self.workers[worker_id].state = "busy"
            self._send(self.workers[worker_id], reply)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones (an unrecorded episode) terminated."""
        for worker in self.workers.values():
            if worker.job is not None:  # interrupted mid-episode: unrecorded, so it runs again on resume
                worker.process.terminate()
            elif worker.process.is_alive():
                self._send(worker, None)
        deadline = time.monotonic() + 30
        for worker in self.workers.values():
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=10)
            worker.conn.close()
        self.workers.clear()


def _read_manifest(paths: OutputPaths) -> dict[str, Any] | None:
    """The manifest of the run already in --out, or None for a fresh directory; EvalInputError if unusable.

    Called before the policy loads, so an unusable manifest costs no model load. An empty manifest with no episode
    recorded (left by a version that wrote it in place) holds nothing to protect and is treated as absent.
    """
    if not paths.manifest.exists():
        return None
    try:
        text = paths.manifest.read_text(encoding="utf-8")
        if not text.strip() and not read_records(paths.episodes):
            return None
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _unusable_manifest(paths, f"is not valid JSON ({'empty' if not text.strip() else exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _unusable_manifest(paths, f"cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or not MANIFEST_KEYS <= manifest.keys() or not isinstance(
            manifest["config"], dict):
        raise _unusable_manifest(paths, f"is not an evaluation manifest (a JSON object with "
                                        f"{', '.join(sorted(MANIFEST_KEYS))})")
    return manifest


def _unusable_manifest(paths: OutputPaths, problem: str) -> EvalInputError:
    return EvalInputError(
        f"{paths.manifest} {problem}, so the episodes recorded in {paths.episodes.name} cannot be checked against "
        "this run's settings; restore the manifest, or delete both files to start over, or use another --out"
    )


def _write_manifest(config: EvalConfig, paths: OutputPaths, previous: dict[str, Any] | None,
                    hashes: dict[str, str], decode: dict[str, Any] | None, policy: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest on a first run; on a resumption check it matches and log the resumption in it."""
    manifest = build_manifest(config, hashes, decode, policy)
    if previous is not None:
        check_resumable(previous, manifest, paths.manifest)
        previous.setdefault("resumptions", []).append(
            {key: manifest[key] for key in ("created", "machine", "packages")}
            | {"trials": config.trials, "tasks": list(config.tasks), "workers": config.workers}
        )
        manifest = previous
    write_json(paths.manifest, manifest, sort_keys=True)
    return manifest


def write_summary(config: EvalConfig, paths: OutputPaths) -> dict[str, Any]:
    """Recompute the summary from the JSONL and write it as JSON and Markdown."""
    meta = {"suite": config.suite, "policy": config.policy, "mode": config.mode, "max_steps": config.max_steps,
            "checkpoint": str(config.checkpoint) if config.checkpoint else None,
            "object_jitter_m": config.object_jitter_m, "path": "ros" if config.via_ros else "in_process",
            "trials": config.trials, "first_init_state": config.first_init_state, "tasks_run": list(config.tasks)}
    summary = summarize(read_records(paths.episodes), config.jobs, meta)
    write_json(paths.summary_json, summary)
    write_text(paths.summary_md, summary_markdown(summary))
    return summary


def evaluate(config: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the evaluation `config` describes and return its summary."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    paths = OutputPaths.of(config.out, config.suite)
    previous = _read_manifest(paths)
    hashes = checkpoint_hashes(config.checkpoint) if config.checkpoint else {}
    if config.via_ros:
        from dtvla_sim_bridge.eval.ros_runner import RosEpisodes

        episodes = RosEpisodes(config)
        run_jobs: Callable = episodes.run
        decode, described = episodes.decode, {"kind": PolicyKind.MODEL.value}
    else:
        policy = in_process_policy(config)
        run_jobs = WorkerPool.for_eval(config, policy, paths.videos).run
        decode, described = policy.decode, policy.describe()
    _write_manifest(config, paths, previous, hashes, decode, described)
    records = read_records(paths.episodes)
    videos = set(config.video_episodes)
    jobs = [Job(task, init, attempt, (task, init) in videos) for task, init, attempt in
            pending_jobs(records, config.jobs)]
    done = summarize(records, config.jobs, {})["total"]
    counts = {"settled": done["settled"], "success": done["successes"]}
    if len(jobs) < len(config.jobs):
        print(f"dtvla-eval: resuming: {len(config.jobs) - len(jobs)} of {len(config.jobs)} episodes already "
              f"settled in {paths.episodes}", file=sys.stderr)
    with EpisodeLog(paths.episodes) as log, tqdm(total=len(jobs), unit="episode", desc=config.suite,
                                                 file=sys.stderr, disable=not progress) as bar:
        def on_record(record: dict[str, Any], job: Job | None = None) -> None:
            log.append(record | {"max_cot_tokens": decode["max_cot_tokens"] if decode else None})  # its CoT cap
            if record["status"] == "ok" or record["attempt"] >= MAX_ATTEMPTS:  # settled: errors count as failures
                bar.update(1)
                counts["settled"] += 1
                counts["success"] += int(record["status"] == "ok" and record["success"])
            bar.set_postfix(success=f"{counts['success']}/{counts['settled']}",
                            rate=f"{100 * counts['success'] / max(counts['settled'], 1):.1f}%")

        if jobs:
            run_jobs(jobs, on_record)
    return write_summary(config, paths)
