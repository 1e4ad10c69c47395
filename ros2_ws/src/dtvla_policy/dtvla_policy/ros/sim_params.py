"""What a sim run passes to its two nodes: the ROS parameter file with the run's options applied on top.

The two front ends, `dtvla-sim` (options `--task-id 3`) and launch/sim.launch.py (arguments `task_id:=3`), set
the same `RUN_OPTIONS` through `SimSettings`; an option left out keeps the parameter file's value, so
config/sim.yaml (and `dtvla_policy.protocol`) hold the only defaults. `dtvla-sim` reports these settings in its
summary and `dtvla-eval --via-ros` checks and records them, so neither assumes what config/sim.yaml contains.
Protocol settings that the file leaves out are passed as overrides with `dtvla_policy.protocol`'s values, so what
runs never rests on a node's built-in default. No rclpy and no torch: the evaluation harness and the launch file
import this before any node starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from dtvla_policy.protocol import COT_CAP_EVAL, UPSTREAM_EPISODE

POLICY_NODE = "dtvla_policy"
BRIDGE_NODE = "dtvla_sim_bridge"
# sim bridge parameter -> the EpisodeProtocol field it sets
BRIDGE_EPISODE_PARAMETERS = {
    "settle_steps": "settle_steps",
    "camera_size": "camera_size",
    "seed": "env_seed",
    "execute_steps": "execute_steps",
    "hard_reset": "hard_reset",
    "object_jitter_m": "object_jitter_m",
}
PROTOCOL_DEFAULTS = {
    POLICY_NODE: {"max_cot_tokens": COT_CAP_EVAL},
    BRIDGE_NODE: {param: getattr(UPSTREAM_EPISODE, name) for param, name in BRIDGE_EPISODE_PARAMETERS.items()},
}


NODE_KEY_PREFIX = "/**/"  # sim.yaml's section keys (`/**/dtvla_policy:`) match the node under any namespace


def parse_bool(text: str) -> bool:
    """`true`/`false` as ROS and launch write them (YAML spellings)."""
    value = yaml.safe_load(text)
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {text!r}")
    return value


@dataclass(frozen=True)
class RunOption:
    """One per-run setting of both front ends: the node parameter it sets and how to read it from text."""

    node: str
    parameter: str
    parse: Callable[[str], Any]
    help: str


# option name (dtvla-sim `--task-id`, launch `task_id:=`) -> the parameter it sets; a changed name breaks both
RUN_OPTIONS: dict[str, RunOption] = {
    "checkpoint": RunOption(POLICY_NODE, "checkpoint", str, "checkpoint directory"),
    "mode": RunOption(POLICY_NODE, "mode", str, "full (CoT, then actions) | masked (empty CoT, one pass)"),
    "device": RunOption(POLICY_NODE, "device", str, "torch device of the policy: cpu, cuda, cuda:1 ..."),
    "dtype": RunOption(POLICY_NODE, "dtype", str, "auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16"),
    "max_cot_tokens": RunOption(POLICY_NODE, "max_cot_tokens", int,
                                f"CoT cap (the evaluated one: {COT_CAP_EVAL}; lower is a decoding deviation)"),
    "use_sim_time": RunOption(POLICY_NODE, "use_sim_time", parse_bool,
                              "policy on the bridge's sim clock; a given clock_mode sets it: lockstep true, "
                              "realtime false"),
    "suite": RunOption(BRIDGE_NODE, "suite", str, "LIBERO suite: libero_spatial | libero_object | libero_goal | "
                                                  "libero_10 | libero_90"),
    "task_id": RunOption(BRIDGE_NODE, "task_id", int, "task index within the suite"),
    "init_state": RunOption(BRIDGE_NODE, "init_state_index", int, "init state of the first episode"),
    "episodes": RunOption(BRIDGE_NODE, "num_episodes", int,
                          "episodes to run before the bridge exits; 0: until stopped"),
    "max_steps": RunOption(BRIDGE_NODE, "max_steps", int, "episode step cap; 0: the suite's"),
    "clock_mode": RunOption(BRIDGE_NODE, "clock_mode", str, "lockstep (the sim waits for each chunk; CPU) | "
                                                            "realtime (20 Hz wall clock; GPU)"),
}


def parse_options(texts: dict[str, str]) -> dict[str, Any]:
    """Launch arguments (text) -> `SimSettings.with_options` keywords; '' (the arguments' default) is left out."""
    options = {}
    for name, text in texts.items():
        if text != "":
            try:
                options[name] = RUN_OPTIONS[name].parse(text)
            except ValueError as exc:
                raise ValueError(f"{name}:={text!r}: {exc}") from None
    return options


def config_file(name: str) -> Path:
    """config/`name` from dtvla_policy's share (installed), else from the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return Path(get_package_share_directory("dtvla_policy")) / "config" / name
    except (ImportError, LookupError, OSError, PackageNotFoundError):
        return Path(__file__).resolve().parents[5] / "config" / name


def default_params_file() -> Path:
    """config/sim.yaml, installed or in the source tree."""
    return config_file("sim.yaml")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML maps to ROS parameter names (`replan: {trigger: x}` -> `replan.trigger`)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_node_parameters(params_file: Path) -> dict[str, dict[str, Any]]:
    """{node name: {parameter: value}} of a ROS 2 parameter file (`node:` or `/**/node:` sections)."""
    if not params_file.is_file():
        raise FileNotFoundError(f"parameter file {params_file} not found")
    content = yaml.safe_load(params_file.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{params_file} is not a ROS 2 parameter file (expected `node: {{ros__parameters: ...}}`)")
    return {node.removeprefix(NODE_KEY_PREFIX): _flatten(section.get("ros__parameters") or {})
            for node, section in content.items() if isinstance(section, dict)}


@dataclass(frozen=True)
class SimSettings:
    """The parameter file's values per node and the overrides the front end passes on top."""

    params_file: Path
    from_file: dict[str, dict[str, Any]]
    overrides: dict[str, dict[str, Any]]

    @classmethod
    def resolve(cls, params_file: Path, **options: Any) -> SimSettings:
        """The settings of a run with `params_file` and these options (see `with_options`)."""
        return cls(params_file, read_node_parameters(params_file), {}).with_options(**options)

    def with_options(self, **options: Any) -> SimSettings:
        """These settings with `RUN_OPTIONS` on top; None keeps the current value. Without its own value,
        use_sim_time follows a given clock_mode (lockstep stamps are sim time, realtime ones wall time)."""
        unknown = set(options) - set(RUN_OPTIONS)
        if unknown:
            raise TypeError(f"unknown run options {sorted(unknown)}; known: {sorted(RUN_OPTIONS)}")
        if options.get("use_sim_time") is None and options.get("clock_mode") is not None:
            options["use_sim_time"] = options["clock_mode"] == "lockstep"
        given: dict[str, dict[str, Any]] = {node: {} for node in PROTOCOL_DEFAULTS}
        for name, value in options.items():
            if value is not None:
                option = RUN_OPTIONS[name]
                given[option.node][option.parameter] = str(value) if isinstance(value, Path) else value
        overrides = {}
        for node, defaults in PROTOCOL_DEFAULTS.items():
            missing = {name: value for name, value in defaults.items() if name not in self.from_file.get(node, {})}
            overrides[node] = missing | self.overrides.get(node, {}) | given[node]
        return replace(self, overrides=overrides)

    def parameters(self, node: str) -> dict[str, Any]:
        """What `node` runs with: the file's section, then the overrides."""
        return self.from_file.get(node, {}) | self.overrides[node]

    def as_dict(self) -> dict[str, Any]:
        return {"params_file": str(self.params_file), **{node: self.parameters(node) for node in self.overrides}}
