"""The committed demo checkpoint (`assets/demo_checkpoint`, the default of `make sim`): it loads through the node's
loader, it fits the 25 MB budget, dtvla-sim announces it with its measured results, and one `dtvla-eval` episode
with it runs on the task `make sim` shows. Success is not asserted: it is measured in `demo_eval.md` beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dtvla_policy.inference import PolicyEngine
from dtvla_policy.ros.sim_launcher import DEMO_EVAL_FILE, demo_banner
from dtvla_sim_bridge.eval.cli import main as dtvla_eval

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo_checkpoint"
BUDGET_MB = 25
pytestmark = pytest.mark.skipif(not (DEMO / "config.json").is_file(), reason="no committed demo checkpoint")


def make_sim_defaults() -> dict[str, str]:
    """`--suite`, `--task-id`, `--init-state` of the Makefile's DEMO_SIM_ARGS (what `make sim` runs)."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("DEMO_SIM_ARGS"))
    return dict(re.findall(r"--([a-z-]+) (\S+)", line))


def test_it_fits_the_budget_and_loads_as_the_node_loads_it():
    size = sum(f.stat().st_size for f in DEMO.iterdir() if f.is_file())
    assert size < BUDGET_MB * 1_000_000
    engine = PolicyEngine.from_checkpoint(DEMO, device="cpu")
    assert engine.ids.vocab_size < 10_000  # the compact vocabulary: every id is read from its config
    grey = np.full((128, 128, 3), 128, dtype=np.uint8)
    prediction = engine.predict(grey, grey, "pick up the black bowl on the plate", mode="masked")
    assert prediction.actions.shape == (10, 7) and np.isfinite(prediction.actions).all()


def test_dtvla_sim_announces_it_with_its_evaluation():
    runs = json.loads((DEMO / DEMO_EVAL_FILE).read_text())["runs"]
    banner = demo_banner(DEMO)
    assert banner is not None and "DEMO policy" in banner
    for label, run in runs.items():
        assert re.search(rf"{re.escape(label)}\s+{run['successes']}/{run['planned']}", banner)


def test_one_dtvla_eval_episode_with_it_runs(tmp_path):
    sim = make_sim_defaults()
    out = tmp_path / "eval"
    code = dtvla_eval(["--checkpoint", str(DEMO), "--suite", sim["suite"], "--tasks", sim["task-id"],
                       "--first-init-state", sim["init-state"], "--trials", "1", "--max-steps", "20",
                       "--camera-size", "128", "--workers", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    (summary_path,) = out.glob("*.summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["complete"] and summary["total"]["planned"] == 1 and summary["total"]["errors"] == 0
