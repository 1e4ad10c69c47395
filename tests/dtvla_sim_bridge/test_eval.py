"""`dtvla-eval` end to end on a real LIBERO env and the tiny checkpoint: outputs, resume, bad input, dead workers,
and the same protocol over ROS 2.

Short episodes keep it cheap: libero_spatial task 0, 12-step cap, 128 px cameras, a 2-token CoT cap.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dtvla_policy.protocol import COT_CAP_EVAL, UPSTREAM_EPISODE
from dtvla_policy.ros.sim_params import BRIDGE_NODE, NODE_KEY_PREFIX
from dtvla_sim_bridge.eval.cli import build_config, build_parser, main
from dtvla_sim_bridge.eval.config import EvalInputError
from dtvla_sim_bridge.eval.manifest import build_manifest
from dtvla_sim_bridge.eval.runner import OutputPaths, WorkerPool
from dtvla_sim_bridge.eval.worker import Job, PolicyReply

pytestmark = pytest.mark.sim

SUITE = "libero_spatial"
MAX_STEPS = 12
SIM_YAML = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"


def _args(checkpoint: Path, out: Path, *extra: str, trials: int = 2, workers: int = 2) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--suite", SUITE, "--tasks", "0", "--trials", str(trials),
            "--max-steps", str(MAX_STEPS), "--max-cot-tokens", "2", "--camera-size", "128",
            "--workers", str(workers), "--out", str(out), "--no-progress", *extra]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _changed_sim_yaml(tmp_path: Path, **bridge: object) -> Path:
    """A copy of config/sim.yaml with some sim bridge parameters changed."""
    content = yaml.safe_load(SIM_YAML.read_text())
    content[NODE_KEY_PREFIX + BRIDGE_NODE]["ros__parameters"].update(bridge)
    path = tmp_path / "changed_sim.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def _ros_args(checkpoint: Path, out: Path, params_file: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--suite", SUITE, "--tasks", "0", "--trials", "2", "--max-steps",
            str(MAX_STEPS), "--out", str(out), "--no-progress", "--via-ros", "--params-file", str(params_file),
            *extra]


@pytest.fixture(scope="module")
def full_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> OutputPaths:
    out = tmp_path_factory.mktemp("eval")
    assert main(_args(tiny_checkpoint, out, "--video-episodes", "0:1")) == 0
    return OutputPaths.of(out, SUITE)


def test_outputs_are_consistent(full_run: OutputPaths) -> None:
    records = _lines(full_run.episodes)
    summary = json.loads(full_run.summary_json.read_text())
    assert sorted((r["task"], r["init_state"]) for r in records) == [(0, 0), (0, 1)]
    assert all(r["status"] == "ok" and r["steps"] == MAX_STEPS and not r["success"] for r in records)
    # 12 steps with 10 actions per chunk: two queries, each with its CoT and latency
    assert all(r["chunks"] == 2 and len(r["cots"]) == 2 and len(r["policy_latency_ms"]) == 2 for r in records)
    assert all(r["max_cot_tokens"] == 2 for r in records)  # the cap the engine decoded with
    assert {r["worker"] for r in records} <= {0, 1}
    total = summary["total"]
    assert (total["planned"], total["settled"], total["successes"], total["errors"]) == (len(records), 2, 0, 0)
    assert summary["complete"] and summary["path"] == "in_process" and summary["max_steps"] == MAX_STEPS
    assert total["wilson95"] == pytest.approx([0.0, 0.65762], abs=1e-5)
    assert "| all |  | 2 | 0 | 0 | 0.0 | 0.0-65.8 | 0.0 |" in full_run.summary_md.read_text()


def test_manifest_hashes_match_checkpoint(full_run: OutputPaths, tiny_checkpoint: Path) -> None:
    manifest = json.loads(full_run.manifest.read_text())
    for name in ("model.safetensors", "norm_stats.json"):
        expected = hashlib.sha256((tiny_checkpoint / name).read_bytes()).hexdigest()
        assert manifest["checkpoint_sha256"][name] == expected
    assert manifest["seeds"] == {"global": 429, "env": 0}
    assert manifest["step_caps"] == {"episode": MAX_STEPS, "suite_defaults": {"deepthinkvla": 220, "openvla": 220}}
    assert manifest["config"]["mode"] == "full" and manifest["path"] == "in_process" and manifest["ros"] is None
    assert manifest["decode"]["max_cot_tokens"] == 2 and manifest["decode"]["force_think_start"] is False
    assert manifest["config"]["settle_steps"] == UPSTREAM_EPISODE.settle_steps and manifest["config"]["seed"] == 429
    assert manifest["renderer"]["MUJOCO_GL"] and manifest["packages"]["mujoco"] and manifest["machine"]["cpu_count"]


def test_video_of_the_chosen_episode_reads_back(full_run: OutputPaths) -> None:
    by_init = {r["init_state"]: r for r in _lines(full_run.episodes)}
    assert by_init[0]["video"] is None
    capture = cv2.VideoCapture(by_init[1]["video"])
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (224 + 150, 2 * 224 + 240, 3)  # two views + CoT panel + chunk plot
    capture.release()
    assert frames == MAX_STEPS


def test_resume_runs_only_the_missing_episode(full_run: OutputPaths, tiny_checkpoint: Path, tmp_path: Path) -> None:
    paths = OutputPaths.of(tmp_path, SUITE)
    shutil.copy(full_run.manifest, paths.manifest)
    first = full_run.episodes.read_text().splitlines()[0]
    # Interrupted after one episode, and killed in the middle of writing the second.
    paths.episodes.write_text(first + "\n" + first[: len(first) // 2])
    assert main(_args(tiny_checkpoint, tmp_path, workers=2)) == 0
    records = _lines(paths.episodes)
    assert len(records) == 2 and records[0] == json.loads(first)
    assert {r["init_state"] for r in records} == {0, 1}
    assert len(json.loads(paths.manifest.read_text())["resumptions"]) == 1
    assert main(_args(tiny_checkpoint, tmp_path)) == 0  # nothing left to run
    assert len(_lines(paths.episodes)) == 2


def test_empty_manifest_without_episodes_is_a_fresh_start(tiny_checkpoint: Path, tmp_path: Path) -> None:
    paths = OutputPaths.of(tmp_path, SUITE)
    paths.manifest.write_text("")  # what an in-place write killed before its first byte leaves
    assert main(_args(tiny_checkpoint, tmp_path, trials=1, workers=1)) == 0
    assert json.loads(paths.manifest.read_text())["config"]["trials"] == 1 and len(_lines(paths.episodes)) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_resume_refuses_a_different_protocol(full_run: OutputPaths, tiny_checkpoint: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = full_run.episodes.parent
    assert main(_args(tiny_checkpoint, out, "--mode", "masked")) == 2
    assert "mode: recorded 'full', now 'masked'" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "   \n", '{"config": {"suite": "libero_spat', '["not", "a", "manifest"]'])
def test_unusable_manifest_of_recorded_episodes_is_refused_with_the_fix(tiny_checkpoint: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       content: str) -> None:
    paths = OutputPaths.of(tmp_path, SUITE)
    paths.episodes.write_text(json.dumps({"task": 0, "init_state": 0, "status": "ok"}) + "\n")
    paths.manifest.write_text(content)  # torn by a kill, or edited
    assert main(_args(tiny_checkpoint, tmp_path)) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("dtvla-eval:")]  # LIBERO logs its task order
    assert "Traceback" not in err and line.startswith(f"dtvla-eval: error: {paths.manifest} is")
    assert line.endswith("delete both files to start over, or use another --out")
    assert paths.manifest.read_text() == content  # refused before anything was written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--suite", "libero_spatail"], "Did you mean 'libero_spatial'"),
        (["--tasks", "pick_up_the_black_bowl_between_the_plate_and_the_ramekn"], "Did you mean 'pick_up_the_black"),
        (["--tasks", "10"], "task 10 out of range: libero_spatial has 10 tasks (0..9)"),
        (["--trials", "51"], "--trials 51 exceeds the 50 init states of libero_spatial task 0"),
        (["--first-init-state", "45", "--trials", "6"], "use at most 5 trials"),
        (["--first-init-state", "-1"], "--first-init-state must be >= 0"),
        (["--first-init-state", "40", "--video-episodes", "0:1"], "init states 40..41"),
        (["--video-episodes", "0:7"], "not in this run"),
        (["--max-steps", "12", "--long-horizon-520"], "contradict"),
        (["--params-file", str(SIM_YAML)], "use it with --via-ros"),
    ],
)
def test_bad_input_is_explained(tiny_checkpoint: Path, tmp_path: Path, change: list[str], message: str) -> None:
    args = build_parser().parse_args(_args(tiny_checkpoint, tmp_path) + change)
    with pytest.raises(EvalInputError) as error:
        build_config(args)
    assert message in str(error.value)


def test_held_out_init_states_are_the_run_s_episodes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = _args(tiny_checkpoint, tmp_path, "--first-init-state", "40", "--tasks", "0", "3", trials=10)
    config = build_config(build_parser().parse_args(args))
    assert config.jobs == [(task, init) for task in (0, 3) for init in range(40, 50)]


def test_unloadable_checkpoint_fails_before_any_output(tiny_checkpoint: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(_args(broken, tmp_path / "out")) == 2
    assert f"checkpoint {broken} could not be loaded" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cot_cap_beyond_the_model_positions_fails_before_any_output(tiny_checkpoint: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(tiny_checkpoint, tmp_path / "out", "--max-cot-tokens", "100000")) == 2
    error = capsys.readouterr().err
    assert "libero_spatial task 0: max_cot_tokens=100000 exceeds" in error and "use at most" in error
    assert not (tmp_path / "out").exists()


def test_dead_worker_is_recorded_and_retried_once(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = build_config(build_parser().parse_args(_args(tiny_checkpoint, tmp_path, trials=1, workers=1)))
    calls: list[int] = []

    def policy(items: list) -> list[PolicyReply]:
        """The first query kills the worker that asked (as a segfault would); later ones hold still."""
        calls.append(len(items))
        if len(calls) == 1:
            for worker in pool.workers.values():
                worker.process.kill()
        return [PolicyReply(np.tile([0.0] * 6 + [-1.0], (10, 1))) for _ in items]

    pool = WorkerPool.for_eval(config, policy, tmp_path / "videos")
    records: list[dict] = []
    pool.run([Job(0, 0, 1)], lambda record, job: records.append(record))
    assert [(r["status"], r["attempt"]) for r in records] == [("error", 1), ("ok", 2)]
    assert "died" in records[0]["error"] and records[1]["steps"] == MAX_STEPS


def test_via_ros_takes_unset_settings_from_the_parameter_file_and_records_them(tiny_checkpoint: Path,
                                                                               tmp_path: Path) -> None:
    params_file = _changed_sim_yaml(tmp_path, settle_steps=5, camera_size=128)
    config = build_config(build_parser().parse_args(_ros_args(tiny_checkpoint, tmp_path / "out", params_file)))
    assert (config.settle_steps, config.camera_size, config.max_cot_tokens, config.seed) == (5, 128, COT_CAP_EVAL,
                                                                                             None)
    manifest = build_manifest(config, {}, {"max_cot_tokens": config.max_cot_tokens})
    assert (manifest["config"]["settle_steps"], manifest["config"]["camera_size"]) == (5, 128)
    assert manifest["seeds"] == {"global": None, "env": 0}
    assert manifest["ros"]["params_file"] == manifest["config"]["params_file"] == str(params_file)
    bridge = manifest["ros"]["nodes"]["dtvla_sim_bridge"]
    assert (bridge["settle_steps"], bridge["max_steps"]) == (5, MAX_STEPS) and "task_id" not in bridge


@pytest.mark.parametrize(
    ("bridge", "extra", "message"),
    [
        ({"camera_size": 128}, ["--camera-size", "256"], "dtvla_sim_bridge.camera_size = 128 from"),
        ({"execute_steps": 5}, ["--replan-steps", "10"], "dtvla_sim_bridge.execute_steps = 5 from"),
        ({}, ["--device", "cuda"], "dtvla_policy.device = 'cpu' from"),
        ({}, ["--seed", "7"], "the policy node seeds nothing"),
        ({}, ["--mode", "random"], "--via-ros supports modes full, masked"),
        ({}, ["--workers", "2"], "one episode at a time"),
        ({}, ["--video-episodes", "0:1"], "records no videos"),
    ],
)
def test_via_ros_refuses_what_it_would_silently_ignore(tiny_checkpoint: Path, tmp_path: Path, bridge: dict,
                                                      extra: list[str], message: str) -> None:
    args = _ros_args(tiny_checkpoint, tmp_path / "out", _changed_sim_yaml(tmp_path, **bridge), *extra)
    with pytest.raises(EvalInputError) as error:
        build_config(build_parser().parse_args(args))
    assert message in str(error.value)


@pytest.mark.ros
def test_via_ros_records_the_protocol_it_ran(tiny_checkpoint: Path, tmp_path: Path) -> None:
    params_file = _changed_sim_yaml(tmp_path, settle_steps=5)
    assert main(_ros_args(tiny_checkpoint, tmp_path, params_file, "--max-cot-tokens", "2")) == 0
    paths = OutputPaths.of(tmp_path, SUITE)
    records = _lines(paths.episodes)
    assert [(r["init_state"], r["status"], r["steps"], r["chunks"], r["max_cot_tokens"]) for r in records] == [
        (0, "ok", MAX_STEPS, 2, 2), (1, "ok", MAX_STEPS, 2, 2)]
    assert [len(r["cots"]) for r in records] == [2, 2]  # one dtvla-sim call: each episode gets its own chunks' CoTs
    summary = json.loads(paths.summary_json.read_text())
    assert summary["path"] == "ros" and summary["total"]["planned"] == summary["total"]["settled"] == 2
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["path"] == "ros" and manifest["config"]["settle_steps"] == 5
    assert manifest["decode"] == {"max_cot_tokens": 2}
    assert manifest["ros"]["nodes"]["dtvla_sim_bridge"]["settle_steps"] == 5
