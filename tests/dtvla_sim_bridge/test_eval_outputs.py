"""Eval harness pieces that need no simulator: Wilson interval, JSONL resume bookkeeping, summary, mp4 writer."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtvla_policy.protocol import UPSTREAM_DECODE
from dtvla_sim_bridge.eval.config import EvalConfig, EvalInputError
from dtvla_sim_bridge.eval.manifest import build_manifest, check_resumable
from dtvla_sim_bridge.eval.records import EpisodeLog, pending_jobs, read_records, summarize, summary_markdown
from dtvla_sim_bridge.eval.stats import wilson_interval
from dtvla_sim_bridge.eval.video import write_mp4


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # standard Wilson score values, z = 1.96
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (485, 500, 0.9511, 0.9817),  # a paper-sized suite at 97.0%
    ],
)
def test_wilson_interval_known_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize(("successes", "trials"), [(3, 2), (-1, 4), (0, -1)])
def test_wilson_interval_rejects_impossible_counts(successes: int, trials: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(successes, trials)


def _record(task: int, init: int, status: str = "ok", success: bool = False, attempt: int = 1) -> dict:
    return {"task": task, "init_state": init, "status": status, "success": success, "attempt": attempt,
            "steps": 12, "policy_latency_ms": [10.0], "task_language": f"task {task}"}


def test_pending_jobs_skip_settled_and_retry_an_error_once() -> None:
    jobs = [(0, 0), (0, 1), (0, 2), (1, 0)]
    records = [_record(0, 0), _record(0, 1, "error"), _record(0, 2, "error"), _record(0, 2, "error", attempt=2)]
    assert pending_jobs(records, jobs) == [(0, 1, 2), (1, 0, 1)]


META = {"suite": "libero_spatial", "policy": "model", "mode": "full", "max_steps": 12, "path": "in_process"}


def test_summary_rate_is_over_every_planned_episode_with_errors_as_failures() -> None:
    jobs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    records = [_record(0, 0, success=True), _record(0, 1, "error"), _record(0, 1, "error", attempt=2),
               _record(1, 0, "error"), _record(1, 0, success=True, attempt=2), _record(1, 1)]
    summary = summarize(records, jobs, META)
    total = summary["total"]
    assert summary["complete"] and (total["planned"], total["settled"], total["pending"]) == (4, 4, 0)
    assert (total["successes"], total["errors"]) == (2, 1)
    assert total["success_rate"] == 0.5 and total["wilson95"] == pytest.approx(wilson_interval(2, 4), abs=1e-6)
    assert total["success_rate_excluding_errors"] == pytest.approx(2 / 3)
    assert [(t["planned"], t["successes"], t["errors"], t["success_rate"], t["success_rate_excluding_errors"])
            for t in summary["tasks"]] == [(2, 1, 1, 0.5, 1.0), (2, 1, 0, 0.5, 0.5)]
    table = summary_markdown(summary)
    assert "| all |  | 4 | 2 | 1 | 50.0 | 15.0-85.0 | 66.7 |" in table
    assert "INCOMPLETE" not in table and "of settled" not in table


def test_an_erroring_policy_scores_no_higher_than_one_that_fails_cleanly() -> None:
    jobs = [(0, 0), (0, 1), (0, 2)]
    crashing = [_record(0, 0, success=True), *(_record(0, i, "error", attempt=a) for i in (1, 2) for a in (1, 2))]
    failing = [_record(0, 0, success=True), _record(0, 1), _record(0, 2)]
    crashed, failed = summarize(crashing, jobs, META)["total"], summarize(failing, jobs, META)["total"]
    assert crashed["success_rate"] == failed["success_rate"] == pytest.approx(1 / 3)
    assert crashed["wilson95"] == failed["wilson95"]
    assert (crashed["errors"], crashed["success_rate_excluding_errors"]) == (2, 1.0)


def test_incomplete_summary_is_flagged_with_a_lower_bound_and_the_settled_rate() -> None:
    jobs = [(0, 0), (0, 1), (0, 2), (1, 0)]
    records = [_record(0, 0, success=True), _record(0, 1, "error"), _record(0, 2)]  # (0, 1) awaits its retry
    summary = summarize(records, jobs, META)
    total = summary["total"]
    assert (summary["complete"], summary["episodes_settled"]) == (False, 2)
    assert (total["planned"], total["settled"], total["pending"], total["errors"]) == (4, 2, 2, 0)
    assert total["success_rate"] == 0.25  # pending episodes count as failures: a lower bound
    assert total["success_rate_settled"] == 0.5
    assert total["wilson95_settled"] == pytest.approx(wilson_interval(1, 2), abs=1e-6)
    assert [(t["planned"], t["settled"], t["success_rate"], t["success_rate_settled"]) for t in summary["tasks"]] == [
        (3, 2, pytest.approx(1 / 3), 0.5), (1, 0, 0.0, None)]
    table = summary_markdown(summary)
    assert "INCOMPLETE: the 2 pending episodes count as failures" in table
    assert "| all |  | 4 | 1 | 0 | 25.0 | 4.6-69.9 | 50.0 | 2 | 50.0 | 9.5-90.5 |" in table


def test_episode_log_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_record(0, 0)) + "\n" + '{"task": 0, "init_st')  # killed mid-write
    assert len(read_records(path)) == 1
    with EpisodeLog(path) as log:
        log.append(_record(0, 1))
    assert [r["init_state"] for r in read_records(path)] == [0, 1]
    assert path.read_text().count("\n") == 2


def test_video_writer_output_reads_back(tmp_path: Path) -> None:
    frames = [np.full((64, 96, 3), (10 * i, 0, 255 - 10 * i), dtype=np.uint8) for i in range(12)]
    path = write_mp4(tmp_path / "videos" / "episode.mp4", frames)
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame[:, :, ::-1])
    capture.release()
    assert len(read) == len(frames) and read[0].shape == (64, 96, 3)
    assert np.abs(read[5].astype(int) - frames[5]).mean() < 8  # lossy codec, same picture


def test_video_writer_rejects_mixed_frame_sizes(tmp_path: Path) -> None:
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_mp4(tmp_path / "bad.mp4", frames)


def test_eval_harness_and_sim_settings_import_without_torch_or_rclpy() -> None:
    """The sim bridge package stays usable without torch; the harness reads sim.yaml without rclpy."""
    code = ("import sys, dtvla_sim_bridge.eval.cli, dtvla_sim_bridge.eval.manifest, dtvla_sim_bridge.eval.ros_runner; "
            "print(sorted({'torch', 'rclpy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_resume_refuses_a_different_decoder(tmp_path: Path) -> None:
    config = EvalConfig(checkpoint=tmp_path, suite="libero_spatial", tasks=(0,), trials=1, max_steps=12, out=tmp_path)
    decode = asdict(UPSTREAM_DECODE)
    recorded = build_manifest(config, {}, decode)
    check_resumable(recorded, build_manifest(config, {}, dict(decode)), tmp_path / "m.json")  # same: resumes
    with pytest.raises(EvalInputError, match="decode: recorded"):
        check_resumable(recorded, build_manifest(config, {}, decode | {"force_think_start": True}), tmp_path)
    del recorded["decode"]  # written before the decoding was recorded
    with pytest.raises(EvalInputError, match="decode: recorded None"):
        check_resumable(recorded, build_manifest(config, {}, decode), tmp_path)


def test_object_jitter_is_part_of_the_protocol_a_resume_must_match(tmp_path: Path) -> None:
    config = EvalConfig(checkpoint=tmp_path, suite="libero_spatial", tasks=(0,), trials=1, max_steps=12, out=tmp_path,
                        object_jitter_m=0.03)
    assert config.protocol.object_jitter_m == 0.03
    decode = asdict(UPSTREAM_DECODE)
    recorded = build_manifest(config, {}, decode)
    assert recorded["config"]["object_jitter_m"] == 0.03
    with pytest.raises(EvalInputError, match="object_jitter_m"):
        check_resumable(recorded, build_manifest(replace(config, object_jitter_m=0.0), {}, decode), tmp_path)
    with pytest.raises(EvalInputError, match="object_jitter_m"):
        replace(config, object_jitter_m=-0.01)
