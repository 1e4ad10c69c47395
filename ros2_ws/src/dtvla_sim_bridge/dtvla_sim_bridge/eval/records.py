"""The per-episode JSONL log, the resume plan read from it, and the summary (JSON + Markdown) derived from it.

The JSONL is the single source of truth: one line per finished attempt, appended, flushed and fsynced by the one
writer (the main process) as soon as the episode ends. Summaries are recomputed from it, so an interrupted run
and its resumption report exactly the episodes that finished. Rates are over every planned episode (see
`_rate_row`), as the paper reports them (50 trials x tasks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dtvla_policy.atomic_file import cut_torn_tail
from dtvla_sim_bridge.eval.config import PolicyKind
from dtvla_sim_bridge.eval.stats import wilson_interval

MAX_ATTEMPTS = 2  # an episode whose worker died or whose simulator failed is retried once


class EpisodeLog:
    """Append-only JSONL of episode records, safe against a kill mid-write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(path)  # a kill mid-write left a partial line: cut it, so that episode simply runs again
        self._file = path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EpisodeLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of the JSONL (none if it does not exist yet); a torn last line is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # only a torn final line can fail: EpisodeLog writes whole lines
    return records


def attempts_by_pair(records: Iterable[dict[str, Any]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    grouped: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault((int(record["task"]), int(record["init_state"])), []).append(record)
    return grouped


def is_final(attempts: list[dict[str, Any]]) -> bool:
    """An episode is settled once it finished cleanly or used up its attempts."""
    return any(r["status"] == "ok" for r in attempts) or len(attempts) >= MAX_ATTEMPTS


def pending_jobs(records: list[dict[str, Any]], jobs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(task, init state, attempt number) of every job the JSONL does not settle yet, in job order."""
    grouped = attempts_by_pair(records)
    pending = []
    for pair in jobs:
        attempts = grouped.get(pair, [])
        if not is_final(attempts):
            pending.append((*pair, len(attempts) + 1))
    return pending


def final_record(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The clean attempt if there is one, else the last failed one."""
    return next((r for r in attempts if r["status"] == "ok"), attempts[-1])


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _wilson(successes: int, trials: int) -> list[float]:
    return [round(bound, 6) for bound in wilson_interval(successes, trials)]


def _rate_row(planned: int, finals: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and rates of `planned` episodes, of which `finals` (their final records) are settled.

    The headline `success_rate` and `wilson95` are over every planned episode, the paper's basis: an error is a
    failure (a policy whose actions crash the simulator must not score above one that fails cleanly), and a
    pending episode counts as a failure too, so the headline of an incomplete run is a lower bound. The other
    rates are secondary: over the settled episodes, and over the settled episodes that ended without an error.
    """
    successes = sum(r["status"] == "ok" and bool(r["success"]) for r in finals)
    errors = sum(r["status"] != "ok" for r in finals)
    settled = len(finals)
    return {
        "planned": planned,
        "settled": settled,
        "pending": planned - settled,
        "successes": successes,
        "errors": errors,
        "success_rate": _ratio(successes, planned),
        "wilson95": _wilson(successes, planned),
        "success_rate_settled": _ratio(successes, settled),
        "wilson95_settled": _wilson(successes, settled),
        "success_rate_excluding_errors": _ratio(successes, settled - errors),
    }


def summarize(records: list[dict[str, Any]], jobs: list[tuple[int, int]], meta: dict[str, Any]) -> dict[str, Any]:
    """Per-task and whole-suite counts and rates over the run's planned episodes (`jobs`); see `_rate_row`."""
    grouped = attempts_by_pair(records)
    settled = {pair: final_record(grouped[pair]) for pair in jobs if pair in grouped and is_final(grouped[pair])}
    per_task = []
    for task in dict.fromkeys(task for task, _ in jobs):
        finals = [r for (t, _), r in settled.items() if t == task]
        row = _rate_row(sum(t == task for t, _ in jobs), finals)
        row["task"] = task
        row["language"] = finals[0].get("task_language", "") if finals else ""
        per_task.append(row)
    ok = [r for r in settled.values() if r["status"] == "ok"]
    latencies = [ms for r in ok for ms in r.get("policy_latency_ms", [])]
    total = _rate_row(len(jobs), list(settled.values()))
    total["mean_steps"] = sum(r["steps"] for r in ok) / len(ok) if ok else None
    total["mean_policy_latency_ms"] = sum(latencies) / len(latencies) if latencies else None
    return {
        **meta,
        "episodes_planned": len(jobs),
        "episodes_settled": len(settled),
        "complete": len(settled) == len(jobs),
        "tasks": per_task,
        "total": total,
    }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}"


def _interval(bounds: list[float]) -> str:
    return f"{100 * bounds[0]:.1f}-{100 * bounds[1]:.1f}"


def policy_label(policy: str, mode: str | None) -> str:
    """What was evaluated, for headings: `mode full` for a model, `noop baseline` for a baseline."""
    return f"mode {mode}" if policy == PolicyKind.MODEL else f"{policy} baseline"


def summary_markdown(summary: dict[str, Any]) -> str:
    """A Markdown table of the summary: one row per task and a total row; the settled-only columns appear only
    while the run is incomplete, when they differ from the headline."""
    complete = summary["complete"]
    planned, settled = summary["episodes_planned"], summary["episodes_settled"]
    lines = [
        f"# {summary['suite']}: {policy_label(summary['policy'], summary['mode'])}, cap {summary['max_steps']} steps, "
        f"path {summary['path']}",
        "",
        f"Episodes settled: {settled} / {planned}. SR is over every planned episode, errors counted as failures."
        + ("" if complete else f" INCOMPLETE: the {planned - settled} pending episodes count as failures, so SR is"
           " a lower bound; run again with the same --out to resume."),
        "",
    ]
    columns = ["task", "instruction", "planned", "successes", "errors", "SR %", "Wilson 95% CI %",
               "SR % excl. errors"]
    if not complete:
        columns += ["settled", "SR % of settled", "Wilson 95% CI % of settled"]
    aligns = ["---" if column == "instruction" else "---:" for column in columns]
    lines += ["| " + " | ".join(columns) + " |", "|" + "|".join(aligns) + "|"]
    for row in [*summary["tasks"], {**summary["total"], "task": "all", "language": ""}]:
        cells = [row["task"], row["language"], row["planned"], row["successes"], row["errors"],
                 _pct(row["success_rate"]), _interval(row["wilson95"]), _pct(row["success_rate_excluding_errors"])]
        if not complete:
            cells += [row["settled"], _pct(row["success_rate_settled"]), _interval(row["wilson95_settled"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
