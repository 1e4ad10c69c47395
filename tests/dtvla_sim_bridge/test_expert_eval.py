"""`dtvla-expert-eval` bookkeeping without a simulator: resume plan, settings check, summary, bad input."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from dtvla_sim_bridge.eval.expert_eval import ExpertRun, main, pending_jobs, summarize

RUN = ExpertRun(suite="libero_spatial", max_steps=220, object_jitter_m=0.0, env_seed=0, settle_steps=10)


def record(task: int, init: int, success: bool, run: ExpertRun = RUN) -> dict:
    return {**asdict(run), "task": task, "init_state": init, "success": success,
            "outcome": "success" if success else "timeout", "steps": 80}


def test_resume_skips_recorded_episodes() -> None:
    jobs = [(0, 0), (0, 1), (1, 0)]
    assert pending_jobs(RUN, jobs, [record(0, 1, True)]) == [(0, 0), (1, 0)]


def test_resume_refuses_records_of_other_settings() -> None:
    other = ExpertRun(suite="libero_spatial", max_steps=220, object_jitter_m=0.03, env_seed=0, settle_steps=10)
    with pytest.raises(ValueError, match="object_jitter_m"):
        pending_jobs(RUN, [(0, 0)], [record(0, 0, True, other)])


def test_summary_per_task_with_failed_init_states() -> None:
    jobs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    summary = summarize(RUN, jobs, [record(0, 0, True), record(0, 1, False), record(1, 0, True)])
    assert summary["tasks"]["0"]["successes"] == 1 and summary["tasks"]["0"]["failed_init_states"] == [1]
    assert (summary["tasks"]["1"]["episodes"], summary["tasks"]["1"]["planned"]) == (1, 2)
    assert summary["total"]["successes"] == 2 and summary["total"]["success_rate"] == round(2 / 3, 4)
    assert not summary["complete"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "libero_spatal"], "Did you mean 'libero_spatial'"),
        (["--suite", "libero_spatial", "--tasks", "0-10"], "--tasks"),
        (["--suite", "libero_spatial", "--init-states", "50"], "--init-states"),
        (["--suite", "libero_spatial", "--object-jitter-m", "-1"], "object_jitter_m"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert main([*args, "--out", str(tmp_path / "x.jsonl")]) == 2
    assert message in capsys.readouterr().err
