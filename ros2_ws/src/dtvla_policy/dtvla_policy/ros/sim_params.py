"""What a `dtvla-sim` run passes to its two nodes: the ROS parameter file with the launcher's overrides applied.

`dtvla-sim` reports these settings in its summary and `dtvla-eval --via-ros` checks and records them, so neither
assumes what config/sim.yaml contains. Protocol settings that the file leaves out are passed as overrides with
`dtvla_policy.protocol`'s values, so what runs never rests on a node's built-in default. No rclpy and no torch:
the evaluation harness imports this before any node starts.
"""

from __future__ import annotations

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


def default_params_file() -> Path:
    """config/sim.yaml from dtvla_policy's share (installed), else from the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return Path(get_package_share_directory("dtvla_policy")) / "config" / "sim.yaml"
    except (ImportError, LookupError, OSError, PackageNotFoundError):
        return Path(__file__).resolve().parents[5] / "config" / "sim.yaml"


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
    """{node name: {parameter: value}} of a ROS 2 parameter file (plain node-name sections only)."""
    if not params_file.is_file():
        raise FileNotFoundError(f"parameter file {params_file} not found")
    content = yaml.safe_load(params_file.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{params_file} is not a ROS 2 parameter file (expected `node: {{ros__parameters: ...}}`)")
    return {node: _flatten(section.get("ros__parameters") or {})
            for node, section in content.items() if isinstance(section, dict)}


@dataclass(frozen=True)
class SimSettings:
    """The parameter file's values per node and the overrides the launcher passes on top (`-p node:name:=value`)."""

    params_file: Path
    from_file: dict[str, dict[str, Any]]
    overrides: dict[str, dict[str, Any]]

    @classmethod
    def resolve(cls, params_file: Path, **options: Any) -> SimSettings:
        """The settings of a `dtvla-sim` run with `params_file` and these options (see `with_options`)."""
        return cls(params_file, read_node_parameters(params_file), {}).with_options(**options)

    def with_options(self, *, checkpoint: Path | None = None, mode: str | None = None,
                     max_cot_tokens: int | None = None, suite: str | None = None, task: int | None = None,
                     init_state: int | None = None, episodes: int | None = None,
                     max_steps: int | None = None) -> SimSettings:
        """These settings with `dtvla-sim`'s options on top; None (and max_steps 0) keeps the current value."""
        given = {
            POLICY_NODE: {"checkpoint": str(checkpoint) if checkpoint else None, "mode": mode,
                          "max_cot_tokens": max_cot_tokens},
            BRIDGE_NODE: {"suite": suite, "task_id": task, "init_state_index": init_state, "num_episodes": episodes,
                          "max_steps": max_steps or None},
        }
        overrides = {}
        for node, defaults in PROTOCOL_DEFAULTS.items():
            missing = {name: value for name, value in defaults.items() if name not in self.from_file.get(node, {})}
            overrides[node] = (missing | self.overrides.get(node, {})
                               | {name: value for name, value in given[node].items() if value is not None})
        return replace(self, overrides=overrides)

    def parameters(self, node: str) -> dict[str, Any]:
        """What `node` runs with: the file's section, then the overrides."""
        return self.from_file.get(node, {}) | self.overrides[node]

    def as_dict(self) -> dict[str, Any]:
        return {"params_file": str(self.params_file), **{node: self.parameters(node) for node in self.overrides}}
