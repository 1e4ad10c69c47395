"""One table of several `dtvla-eval` runs, per task: a model's success rate beside the floors on the same episodes.

A LIBERO success rate means little alone (blind replay of one demonstration scores about 50% on libero_spatial), so
the demo checkpoint reports its full and masked runs next to the `replay` and `noop` baselines. Input: a directory
whose subdirectories are `dtvla-eval --out` directories (the subdirectory name labels the run); output: JSON and a
Markdown table, both recomputed from the runs' summaries (rates over every planned episode, as dtvla-eval reports).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dtvla_policy.atomic_file import write_json, write_text

SUMMARY_GLOB = "*.summary.json"  # dtvla-eval writes <suite>.summary.json


def collect_runs(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """Run label -> its summary, for every subdirectory holding exactly one summary."""
    runs = {}
    for run in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
        summaries = list(run.glob(SUMMARY_GLOB))
        if len(summaries) > 1:
            raise ValueError(f"{run} holds {len(summaries)} summaries; one suite per run directory")
        if summaries:
            runs[run.name] = json.loads(summaries[0].read_text(encoding="utf-8"))
    if not runs:
        raise ValueError(f"no dtvla-eval summaries under {eval_dir}")
    return runs


def _rate(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("planned", "successes", "errors", "success_rate", "wilson95")}


def build_report(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per run: what ran and its total; per task: each run's rate (same init states in every run, or refused)."""
    plans = {label: [(t["task"], t["planned"]) for t in s["tasks"]] for label, s in runs.items()}
    if len({json.dumps(p) for p in plans.values()}) > 1:
        raise ValueError(f"the runs planned different episodes, so their rates do not compare: {plans}")
    report: dict[str, Any] = {"runs": {}, "tasks": []}
    for label, summary in runs.items():
        report["runs"][label] = {
            "policy": summary.get("policy"), "mode": summary.get("mode"), "checkpoint": summary.get("checkpoint"),
            "object_jitter_m": summary.get("object_jitter_m"), "complete": summary["complete"],
            **_rate(summary["total"]),
        }
    first = next(iter(runs.values()))
    for index, task in enumerate(first["tasks"]):
        row = {"task": task["task"], "language": task["language"]}
        row.update({label: _rate(summary["tasks"][index]) for label, summary in runs.items()})
        report["tasks"].append(row)
    return report


def _cell(rate: dict[str, Any]) -> str:
    return f"{rate['successes']}/{rate['planned']}"


def report_markdown(report: dict[str, Any]) -> str:
    labels = list(report["runs"])
    lines = ["# Demo checkpoint: held-out init states, every run on the same episodes", "",
             "| run | policy | SR % | Wilson 95% CI % | successes | errors | complete |",
             "|---|---|---:|---:|---:|---:|---|"]
    for label, run in report["runs"].items():
        low, high = run["wilson95"]
        lines.append(f"| {label} | {run['policy']} {run['mode'] or ''} | {100 * run['success_rate']:.1f} | "
                     f"{100 * low:.1f}-{100 * high:.1f} | {_cell(run)} | {run['errors']} | {run['complete']} |")
    lines += ["", "| task | instruction | " + " | ".join(labels) + " |", "|---:|---|" + "---:|" * len(labels)]
    for row in report["tasks"]:
        lines.append(f"| {row['task']} | {row['language']} | " + " | ".join(_cell(row[label]) for label in labels)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dtvla_training.demos.eval_report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_dir", type=Path, help="directory of dtvla-eval --out directories")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write; the Markdown goes beside it (.md)")
    args = parser.parse_args(argv)
    try:
        report = build_report(collect_runs(args.eval_dir))
    except (OSError, ValueError, KeyError) as exc:
        print(f"eval_report: error: {exc}", file=sys.stderr)
        return 2
    write_json(args.out, report)
    write_text(args.out.with_suffix(".md"), report_markdown(report))
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
