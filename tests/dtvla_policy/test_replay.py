"""`dtvla-replay` on a recorded sim episode: the recording's checkpoint reproduces every chunk exactly (greedy), and a
differently initialised checkpoint reports its differences; JSON and a self-contained HTML report."""

from __future__ import annotations

import json
import re
import sys

import pytest

from dtvla_policy.model.conventions import COMMAND_NAMES
from dtvla_policy.model.tiny_checkpoint import write_tiny_checkpoint
from dtvla_policy.recording.replay_cli import main
from dtvla_policy.recording.trace import BagTrace
from tests.fixtures.recording import COT_CAP

pytestmark = [pytest.mark.ros, pytest.mark.sim]


def run(capsys, *args: str) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_recorded_checkpoint_reproduces_every_recorded_chunk_exactly(recorded_sim_run, tmp_path, capsys):
    report = run(capsys, str(recorded_sim_run.bag), "--checkpoint", str(recorded_sim_run.checkpoint),
                 "--out", str(tmp_path / "same"))
    chunks = report["chunks"]
    assert len(chunks) == recorded_sim_run.summary["chunks"] == report["summary"]["chunks"] >= 2
    assert report["greedy"] and report["summary"]["identical_chunks"] == len(chunks)
    for chunk in chunks:
        # the node's settings, read from its recorded diagnostics
        assert (chunk["mode"], chunk["max_cot_tokens"]) == ("full", COT_CAP)
        assert chunk["replayed"] == chunk["recorded"] and chunk["gripper_flips"] == 0 and chunk["cot_diff"] == []
        assert set(chunk["action_l2"]) == set(COMMAND_NAMES) and max(chunk["action_max_abs"].values()) == 0.0
    assert json.loads((tmp_path / "same" / "replay.json").read_text()) == report
    html = (tmp_path / "same" / "replay.html").read_text()
    assert html.count("<section>") == len(chunks) and html.count("data:image/png;base64,") == 2 * len(chunks)
    assert not re.search(r"""(src|href)=['"](?!data:)""", html)  # self-contained: nothing fetched


def test_a_different_checkpoint_reports_differences(recorded_sim_run, tmp_path, capsys):
    other = write_tiny_checkpoint(tmp_path / "other", seed=1)
    report = run(capsys, str(recorded_sim_run.bag), "--checkpoint", str(other), "--mode", "masked")
    assert report["summary"]["identical_actions"] == 0 and report["summary"]["max_action_abs"] > 0
    for chunk in report["chunks"]:
        assert chunk["mode"] == "masked" and chunk["replayed"]["cot"] == ""
        assert not chunk["identical"] and max(chunk["action_l2"].values()) > 0
        flips = sum((a[6] > 0) != (b[6] > 0) for a, b in zip(chunk["recorded"]["actions"],
                                                              chunk["replayed"]["actions"], strict=True))
        assert chunk["gripper_flips"] == flips
        if chunk["recorded"]["cot"]:
            assert chunk["cot_diff"] and chunk["cot_similarity"] < 1


def test_the_trace_reader_needs_no_rclpy(recorded_sim_run):
    """Replay and bag -> dataset are library code: reading a bag must not import rclpy (checked in a fresh
    interpreter, since this one has it loaded)."""
    import subprocess

    code = (f"import sys; from dtvla_policy.recording.trace import BagTrace; "
            f"BagTrace.read({str(recorded_sim_run.bag)!r}).chunk_records(); assert 'rclpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert BagTrace.read(recorded_sim_run.bag).lockstep


def test_bad_input_exits_2(recorded_sim_run, tmp_path, capsys):
    assert main([str(tmp_path), "--checkpoint", str(recorded_sim_run.checkpoint)]) == 2
    assert "not a rosbag2 directory" in capsys.readouterr().err
    assert main([str(recorded_sim_run.bag), "--checkpoint", str(recorded_sim_run.checkpoint),
                 "--namespace", "robot9"]) == 2
    assert "no action chunks on /robot9/dtvla_policy/action_chunk" in capsys.readouterr().err
    assert main([str(recorded_sim_run.bag), "--checkpoint", str(tmp_path / "none")]) == 2
