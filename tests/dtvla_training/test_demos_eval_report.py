"""The demo checkpoint's report: runs side by side per task, on the same planned episodes or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtvla_sim_bridge.eval.records import summarize
from dtvla_training.demos.eval_report import main

JOBS = [(task, init) for task in (0, 4) for init in (40, 41)]


def write_run(root: Path, label: str, policy: str, successes: set[tuple[int, int]], jobs=JOBS) -> None:
    records = [{"task": t, "init_state": i, "status": "ok", "success": (t, i) in successes, "steps": 100,
                "task_language": f"task {t}"} for t, i in jobs]
    summary = summarize(records, jobs, {"suite": "libero_spatial", "policy": policy, "mode": None})
    (root / label).mkdir(parents=True)
    (root / label / "libero_spatial.summary.json").write_text(json.dumps(summary))


def test_runs_are_tabulated_per_task_beside_each_other(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path, "full-fixed", "model", {(0, 40), (0, 41), (4, 40)})
    write_run(tmp_path, "replay-fixed", "replay", {(0, 40)})
    out = tmp_path / "demo_eval.json"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["runs"]["full-fixed"]["success_rate"] == 0.75
    assert report["runs"]["replay-fixed"]["successes"] == 1
    task4 = next(row for row in report["tasks"] if row["task"] == 4)
    assert (task4["full-fixed"]["successes"], task4["replay-fixed"]["successes"]) == (1, 0)
    markdown = out.with_suffix(".md").read_text()
    assert "| 4 | task 4 | 1/2 | 0/2 |" in markdown
    assert markdown in capsys.readouterr().out


def test_runs_over_different_episodes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path, "full-fixed", "model", set())
    write_run(tmp_path, "noop-fixed", "noop", set(), jobs=JOBS[:3])
    assert main([str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "planned different episodes" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
