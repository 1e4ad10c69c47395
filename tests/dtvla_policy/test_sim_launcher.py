"""`dtvla-sim` end to end: policy node + LIBERO sim bridge as processes over Fast DDS, one short episode."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dtvla_policy.protocol import NODE_MODES, UPSTREAM_EPISODE
from dtvla_policy.ros.sim_launcher import DEMO_EVAL_FILE, build_parser, demo_banner

pytestmark = [pytest.mark.ros, pytest.mark.sim]
SIM_YAML = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"  # the shipped parameter file


def dtvla_sim(*options: str, env: dict | None = None) -> subprocess.Popen:
    """`dtvla-sim` on the shipped parameter file; JSON summary on stdout."""
    return subprocess.Popen([sys.executable, "-m", "dtvla_policy.ros.sim_launcher", "--params-file", str(SIM_YAML),
                             "--timeout", "600", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(process: subprocess.Popen) -> tuple[int, dict, str]:
    """(exit code, summary, stderr) of a dtvla-sim run."""
    out, err = process.communicate(timeout=900)
    assert out.strip(), err
    return process.returncode, json.loads(out), err


def test_modes_come_from_the_protocol_and_the_cot_cap_from_the_parameter_file(capsys):
    parser = build_parser()
    assert parser.parse_args([]).max_cot_tokens is None and parser.parse_args([]).mode is None
    for mode in NODE_MODES:
        assert parser.parse_args(["--mode", mode]).mode == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "random"])
    assert "invalid choice: 'random'" in capsys.readouterr().err


def test_one_episode_without_a_checkpoint_uses_the_tiny_one_and_reports_json(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    code, summary, err = finish(dtvla_sim("--max-steps", "20", "--max-cot-tokens", "2",
                                          "--log-dir", str(tmp_path / "logs"), env=env))
    assert code == 0, err
    assert "UNTRAINED" in err
    assert summary["untrained_checkpoint"] is True
    assert summary["exit_codes"] == {"policy": 0, "bridge": 0}
    (episode,) = summary["episodes"]
    assert episode["state"] in ("timeout", "success") and episode["steps"] == 20 or episode["state"] == "success"
    assert episode["chunks_received"] >= 2 and episode["chunks_rejected"] == 0
    assert summary["chunks"] >= 2 and summary["mean_policy_latency_ms"] > 0
    assert (tmp_path / "cache" / "dtvla" / "tiny-checkpoint" / "norm_stats.json").is_file()
    assert (tmp_path / "logs" / "policy.log").is_file() and (tmp_path / "logs" / "bridge.log").is_file()
    # The settings the nodes ran with: the parameter file's, and the options given on top.
    settings = summary["settings"]
    assert settings["dtvla_policy"]["max_cot_tokens"] == 2 and settings["dtvla_sim_bridge"]["max_steps"] == 20
    assert settings["dtvla_sim_bridge"]["settle_steps"] == UPSTREAM_EPISODE.settle_steps
    assert settings["dtvla_policy"]["checkpoint"] == summary["checkpoint"] and summary["mode"] == "full"
    assert settings["dtvla_sim_bridge"]["num_episodes"] == 1  # the parameter file's: no second default here


def test_two_namespaced_pairs_share_a_domain_without_crosstalk(tiny_checkpoint, tmp_path):
    """robot1 and robot2 at once with the shipped parameter file: each policy sees only its own bridge (its task,
    its requests on its own sim clock) and each bridge gets only its own policy's chunks."""
    runs = {ns: dtvla_sim("--checkpoint", str(tiny_checkpoint), "--namespace", ns, "--task-id", str(task),
                          "--max-steps", "4", "--max-cot-tokens", "2", "--log-dir", str(tmp_path / ns))
            for ns, task in (("robot1", 0), ("robot2", 1))}
    results = {ns: finish(process) for ns, process in runs.items()}
    languages = set()
    for ns, (code, summary, err) in results.items():
        assert code == 0, err
        assert summary["namespace"] == f"/{ns}" and summary["exit_codes"] == {"policy": 0, "bridge": 0}
        (episode,) = summary["episodes"]
        assert episode["steps"] == 4 and episode["chunks_rejected"] == 0 and episode["misses"] == 0
        assert episode["chunks_stale"] == 0  # a chunk of the other robot's policy would answer a stamp not asked
        assert summary["chunks"] == episode["chunks_received"] >= 1  # the watcher sees its own robot's chunks only
        assert summary["mean_policy_latency_ms"] is not None  # its own policy's diagnostics, found by name
        policy_log = (tmp_path / ns / "policy.log").read_text()
        tasks = [line.split("task: ", 1)[1] for line in policy_log.splitlines() if "]: task: " in line]
        assert len(set(tasks)) == 1, policy_log  # the other bridge's instruction never reached it
        assert f"[{ns}.dtvla_policy]" in policy_log
        assert "ahead of the node clock" not in policy_log and "s old (limit" not in policy_log  # its own sim clock
        languages |= set(tasks)
    assert len(languages) == 2


def test_a_policy_that_dies_stops_the_bridge_and_fails_the_run(tmp_path):
    """As sim.launch.py's OnProcessExit -> Shutdown: a missing checkpoint kills the policy at start (one FATAL
    line, no traceback), dtvla-sim stops the bridge and exits 1 with both exit codes."""
    code, summary, err = finish(dtvla_sim("--checkpoint", str(tmp_path / "absent"), "--namespace", "robot3",
                                          "--log-dir", str(tmp_path / "logs")))
    assert code == 1
    assert summary["error"] == "policy node exited early with code 1"
    assert summary["exit_codes"]["policy"] == 1 and summary["exit_codes"]["bridge"] == 0, err
    assert summary["episodes"] == []
    log = (tmp_path / "logs" / "policy.log").read_text()
    problems = [line for line in log.splitlines() if "FATAL" in line or "ERROR" in line or "Traceback" in line]
    assert len(problems) == 1 and "does not exist" in problems[0], log


def test_a_demo_checkpoint_is_announced_with_its_results_and_others_are_not(tmp_path):
    assert demo_banner(tmp_path) is None  # no demo_eval.json: an ordinary checkpoint, nothing to announce
    runs = {"full-fixed": {"successes": 7, "planned": 10, "wilson95": [0.397, 0.892]},
            "replay-fixed": {"successes": 5, "planned": 10, "wilson95": [0.237, 0.763]}}
    (tmp_path / DEMO_EVAL_FILE).write_text(json.dumps({"runs": runs, "tasks": []}))
    banner = demo_banner(tmp_path)
    assert "DEMO policy" in banner and "not" in banner and "2.9B" in banner
    assert re.search(r"full-fixed\s+7/10 .*40-89%", banner) and re.search(r"replay-fixed\s+5/10 .*24-76%", banner)
    (tmp_path / DEMO_EVAL_FILE).write_text("{")
    assert "unreadable" in demo_banner(tmp_path)  # announced as a demo still, without numbers
