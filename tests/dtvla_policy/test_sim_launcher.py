"""`dtvla-sim` end to end: policy node + LIBERO sim bridge as processes over Fast DDS, one short episode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]


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
