"""Episode workers: one process, one `LiberoSim`, episodes run as the upstream eval runs them. No torch here.

A worker receives a `Job` and runs it through the shared episode loop (`dtvla_sim_bridge.sim.episode`, upstream's
`run_libero_eval.py` `run_episode`): each time the loop asks for a chunk, the observation goes to the main process,
which batches it with the other workers' and answers with a `PolicyReply`. The worker sends back the episode record.
"""

from __future__ import annotations

import os
import random
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from dtvla_policy.protocol import EpisodeProtocol
from dtvla_sim_bridge.sim import EpisodeLoop, Frame, LiberoSim, Outcome, SimulationError, StepResult


@dataclass(frozen=True)
class WorkerSettings:
    """What every episode of a run shares."""

    suite: str
    max_steps: int
    protocol: EpisodeProtocol  # settle steps, camera size, seeds, actions per chunk, reset kind
    video_dir: str
    render_threads: int | None = None  # Mesa llvmpipe threads per worker; None: Mesa's default (one per core)


@dataclass(frozen=True)
class Job:
    task: int
    init_state: int
    attempt: int  # 1, or 2 for the one retry after an error
    video: bool = False
    rollout: int = 0  # GRPO: the rollout's number in its iteration (a group runs one init state several times)


@dataclass(frozen=True)
class PolicyQuery:
    """One chunk request: what the policy sees, and where in which episode it is asked (for the baselines)."""

    agentview: np.ndarray  # (H, W, 3) uint8, rotated as the policy sees it
    wrist: np.ndarray
    instruction: str  # the task's language, as LIBERO gives it
    task: int  # LIBERO task id in the suite
    step: int  # policy steps since the reset (settle steps excluded): the step the chunk starts at
    job: Job | None = None  # the episode asking (None outside a worker pool)


@dataclass(frozen=True)
class PolicyReply:
    """One chunk for one observation, or why the policy could not give it."""

    actions: np.ndarray | None  # (10, 7) float, unnormalised; gripper raw (LiberoSim binarises it)
    cot: str = ""
    latency_ms: float = 0.0  # the batched predict call this observation was part of
    cot_tokens: int = 0
    cot_truncated: bool = False
    batch_size: int = 1
    error: str = ""


@dataclass
class EpisodeTrace:
    """What an episode collects while it runs."""

    cots: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    cot_tokens: list[int] = field(default_factory=list)
    truncated: int = 0
    frames: list[np.ndarray] = field(default_factory=list)
    last_reply: PolicyReply | None = None  # the chunk being executed, for the video

    def add(self, reply: PolicyReply) -> None:
        self.cots.append(reply.cot)
        self.latencies_ms.append(round(reply.latency_ms, 2))
        self.batch_sizes.append(reply.batch_size)
        self.cot_tokens.append(reply.cot_tokens)
        self.truncated += int(reply.cot_truncated)
        self.last_reply = reply


AskPolicy = Callable[[PolicyQuery], PolicyReply]


def run_episode(loop: EpisodeLoop, job: Job, ask: AskPolicy) -> tuple[dict[str, Any], EpisodeTrace]:
    """One episode through the shared loop. A policy or simulator failure raises: the record becomes an error."""
    trace = EpisodeTrace()

    def ask_chunk(frame: Frame, instruction: str) -> np.ndarray:
        reply = ask(PolicyQuery(np.asarray(frame.agentview), np.asarray(frame.wrist), instruction, job.task,
                                frame.step, job))
        if reply.error or reply.actions is None:
            raise RuntimeError(f"policy failed: {reply.error}")
        trace.add(reply)
        return reply.actions

    def record_frame(result: StepResult) -> None:
        trace.frames.append(_video_frame(loop.sim, job, result.frame, trace.last_reply))

    episode = loop.run(job.init_state, ask_chunk, record_frame if job.video else None)
    if episode.outcome is Outcome.FAILED:
        raise SimulationError(episode.error)
    return {"success": episode.outcome is Outcome.SUCCESS, "steps": episode.steps}, trace


def _video_frame(sim: LiberoSim, job: Job, frame: Frame, reply: PolicyReply) -> np.ndarray:
    from dtvla_policy.inference.reasoning_view import render_reasoning_view  # PIL only, no torch

    caption = f"{sim.suite} task {job.task} init {job.init_state} step {frame.step}: {sim.task_language}"
    return render_reasoning_view(frame.agentview, frame.wrist, reply.cot, reply.actions, caption)


class EpisodeRunner:
    """Keeps one simulator per process and turns jobs into JSONL records, errors included."""

    def __init__(self, settings: WorkerSettings, ask: AskPolicy, worker_id: int = 0) -> None:
        self.settings = settings
        self.ask = ask
        self.worker_id = worker_id
        self.loop: EpisodeLoop | None = None

    def _loop_for(self, task: int) -> EpisodeLoop:
        if self.loop is not None and self.loop.sim.task_id != task:
            self.close()  # one render context per process: free it before building the next task's env
        if self.loop is None:
            s = self.settings
            self.loop = EpisodeLoop(LiberoSim.for_protocol(s.suite, task, s.protocol, s.max_steps), s.protocol)
        return self.loop

    def run(self, job: Job) -> dict[str, Any]:
        start = time.monotonic()
        record: dict[str, Any] = {
            "suite": self.settings.suite, "task": job.task, "init_state": job.init_state, "attempt": job.attempt,
            "worker": self.worker_id, "success": False, "steps": 0, "error": "", "video": None,
        }
        trace = EpisodeTrace()
        try:
            loop = self._loop_for(job.task)
            record["task_language"] = loop.sim.task_language
            outcome, trace = run_episode(loop, job, self.ask)
            record.update(outcome, status="ok")
            if job.video and trace.frames:
                from dtvla_sim_bridge.eval.video import write_mp4

                path = Path(self.settings.video_dir) / f"{self.settings.suite}_task{job.task}_init{job.init_state}.mp4"
                record["video"] = str(write_mp4(path, trace.frames))
        except Exception as exc:  # any failure settles this attempt as an error; a failed simulator is rebuilt
            record.update(status="error", error=f"{exc!r}\n{traceback.format_exc(limit=5)}")
        record.update(
            chunks=len(trace.cots), cots=trace.cots, cot_tokens=trace.cot_tokens, cot_truncated=trace.truncated,
            policy_latency_ms=trace.latencies_ms, batch_sizes=trace.batch_sizes,
            wall_s=round(time.monotonic() - start, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return record

    def close(self) -> None:
        if self.loop is not None:
            self.loop.sim.close()
            self.loop = None


def worker_main(worker_id: int, settings: WorkerSettings, conn: Connection) -> None:
    """Process entry point: jobs and policy replies arrive on `conn`; observations and records leave on it.

    A pipe per worker, not one shared queue: a worker killed while holding a shared queue's lock would silence
    every other worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops the workers
    os.environ.setdefault("MUJOCO_GL", "egl")
    if settings.render_threads:
        os.environ.setdefault("LP_NUM_THREADS", str(settings.render_threads))
    random.seed(settings.protocol.seed)
    np.random.seed(settings.protocol.seed)

    def ask(query: PolicyQuery) -> PolicyReply:
        conn.send(("observation", worker_id, query))
        return conn.recv()

    runner = EpisodeRunner(settings, ask, worker_id)
    conn.send(("ready", worker_id))
    try:
        while (job := conn.recv()) is not None:
            conn.send(("result", worker_id, runner.run(job)))
    finally:
        runner.close()
