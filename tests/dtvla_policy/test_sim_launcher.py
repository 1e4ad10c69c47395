"""`dtvla-sim` end to end: policy node + LIBERO sim bridge as processes over Fast DDS, one short episode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dtvla_policy.protocol import NODE_MODES, UPSTREAM_EPISODE
from dtvla_policy.ros.sim_launcher import build_parser

pytestmark = [pytest.mark.ros, pytest.mark.sim]


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
    result = subprocess.run(
        [sys.executable, "-m", "dtvla_policy.ros.sim_launcher", "--episodes", "1", "--max-steps", "20",
         "--max-cot-tokens", "2", "--log-dir", str(tmp_path / "logs"), "--timeout", "600"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UNTRAINED" in result.stderr
    summary = json.loads(result.stdout)
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
