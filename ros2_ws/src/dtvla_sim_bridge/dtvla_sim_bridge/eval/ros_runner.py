"""The same protocol through the deployed stack: the policy node and the sim bridge, started by `dtvla-sim`.

Each run of consecutive pending init states of one task is one `dtvla-sim` call (nodes started once, N episodes,
lockstep), with the parameter file `EvalConfig` checked (settle steps, camera size, env seed, actions per chunk,
reset kind, CoT cap: config/sim.yaml by default). A call whose reported settings differ from the checked ones
(the file changed meanwhile) settles its episodes as errors. The records of a call are written when it ends: an
interrupted call's episodes run again on resume. Each episode's CoTs are those the launcher attributed to it (empty
if it could not); the policy latency is the call's mean.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from dtvla_policy.ros.sim_params import POLICY_NODE
from dtvla_sim_bridge.eval.config import EvalConfig, suite_tasks
from dtvla_sim_bridge.eval.worker import Job

FINISHED_OK = ("success", "timeout")  # the other bridge outcomes (failed, aborted) are errors of the machine


class RosEpisodes:
    """Runs jobs over ROS 2, one launcher call per block of consecutive init states."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.settings = config.ros_settings()
        self.logs = config.out / "ros-logs"
        self.languages = {info.task_id: info.language for info in suite_tasks(config.suite)}

    @property
    def decode(self) -> dict[str, Any]:
        """The decoding settings dtvla-sim passes to the policy node."""
        return {"max_cot_tokens": self.settings.parameters(POLICY_NODE)["max_cot_tokens"]}

    def run(self, jobs: list[Job], on_record: Callable[[dict[str, Any]], None]) -> None:
        todo = list(jobs)
        while todo:
            retries = []
            for block in self._blocks(todo):
                for record, job in zip(self._run_block(block), block, strict=True):
                    on_record(record)
                    if record["status"] == "error" and job.attempt == 1:
                        retries.append(Job(job.task, job.init_state, 2))
            todo = retries

    @staticmethod
    def _blocks(jobs: list[Job]) -> list[list[Job]]:
        """Split into runs of the same task and attempt with consecutive init states."""
        blocks: list[list[Job]] = []
        for job in jobs:
            last = blocks[-1][-1] if blocks else None
            if last and (last.task, last.attempt, last.init_state + 1) == (job.task, job.attempt, job.init_state):
                blocks[-1].append(job)
            else:
                blocks.append([job])
        return blocks

    def _run_block(self, block: list[Job]) -> list[dict[str, Any]]:
        config, first = self.config, block[0]
        log_dir = self.logs / f"task{first.task}-init{first.init_state}-attempt{first.attempt}"
        options = {"checkpoint": config.checkpoint, "mode": config.mode, "max_cot_tokens": config.max_cot_tokens,
                   "suite": config.suite, "task_id": first.task, "init_state": first.init_state,
                   "episodes": len(block), "max_steps": config.max_steps}
        expected = self.settings.with_options(**options).as_dict()  # from the file as read when checked
        command = [sys.executable, "-m", "dtvla_policy.ros.sim_launcher", "--params-file",
                   str(self.settings.params_file), "--log-dir", str(log_dir)]
        for name, value in options.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        start = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        try:
            summary = json.loads(result.stdout[result.stdout.index("{"):])
        except ValueError:
            summary = {"episodes": [], "error": f"dtvla-sim exited {result.returncode} without a summary"}
        if summary.get("settings") not in (None, expected):
            summary = {"episodes": [], "error": f"dtvla-sim ran with {summary['settings']}, not the checked "
                       f"{expected} (did {self.settings.params_file} change during the evaluation?)"}
        by_init = {int(e["init_state"]): e for e in summary.get("episodes", []) if e.get("init_state") is not None}
        wall = round((time.monotonic() - start) / len(block), 2)
        latency = summary.get("mean_policy_latency_ms")
        records = []
        for job in block:
            episode = by_init.get(job.init_state, {})
            state = episode.get("state", "missing")
            ok = state in FINISHED_OK
            records.append({
                "suite": config.suite, "task": job.task, "task_language": self.languages[job.task],
                "init_state": job.init_state, "attempt": job.attempt, "status": "ok" if ok else "error",
                "success": state == "success",
                "steps": int(episode.get("steps") or 0), "chunks": int(episode.get("chunks_received") or 0),
                "cots": episode.get("cots") or [], "policy_latency_ms": [latency] if latency is not None else [],
                "error": "" if ok else f"bridge outcome {state!r}; {summary.get('error', '')} (logs: {log_dir})",
                "ros": {"chunks_rejected": episode.get("chunks_rejected"), "misses": episode.get("misses")},
                "video": None, "wall_s": wall, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
        return records
