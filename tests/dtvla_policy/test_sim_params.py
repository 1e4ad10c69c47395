"""config/sim.yaml against dtvla_policy.protocol, and the settings dtvla-sim derives from a parameter file."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from dtvla_policy.protocol import COT_CAP_EVAL, NODE_MODES, UPSTREAM_EPISODE, EpisodeProtocol
from dtvla_policy.ros.sim_params import (
    BRIDGE_EPISODE_PARAMETERS,
    BRIDGE_NODE,
    NODE_KEY_PREFIX,
    POLICY_NODE,
    SimSettings,
    parse_options,
    read_node_parameters,
)

SIM_YAML = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"


def _sections() -> dict[str, dict]:
    raw = yaml.safe_load(SIM_YAML.read_text())
    return {node: raw[NODE_KEY_PREFIX + node]["ros__parameters"] for node in (POLICY_NODE, BRIDGE_NODE)}


def test_every_episode_protocol_field_but_the_global_seed_is_a_bridge_parameter() -> None:
    assert set(BRIDGE_EPISODE_PARAMETERS.values()) == {f.name for f in fields(EpisodeProtocol)} - {"seed"}


@pytest.mark.parametrize(("parameter", "field"), sorted(BRIDGE_EPISODE_PARAMETERS.items()))
def test_sim_yaml_sets_the_protocol_value(parameter: str, field: str) -> None:
    assert _sections()[BRIDGE_NODE][parameter] == getattr(UPSTREAM_EPISODE, field)


def test_sim_yaml_policy_node_runs_the_evaluated_cot_cap_and_a_node_mode() -> None:
    policy = _sections()[POLICY_NODE]
    assert policy["max_cot_tokens"] == COT_CAP_EVAL
    assert policy["mode"] in NODE_MODES


def test_nested_parameters_get_their_ros_names() -> None:
    policy = read_node_parameters(SIM_YAML)[POLICY_NODE]
    assert policy["replan.trigger"] == "request" and policy["staleness.max_camera_skew_s"] == 0.05
    assert "replan" not in policy


def test_options_override_the_file_and_missing_protocol_values_are_passed_explicitly(tmp_path: Path) -> None:
    sections = _sections()
    del sections[BRIDGE_NODE]["settle_steps"], sections[POLICY_NODE]["max_cot_tokens"]
    sections[BRIDGE_NODE]["camera_size"] = 128
    params_file = tmp_path / "sim.yaml"
    params_file.write_text(yaml.safe_dump({node: {"ros__parameters": values} for node, values in sections.items()}))
    settings = SimSettings.resolve(params_file, mode="masked", task_id=3, max_steps=None)
    assert settings.overrides == {
        POLICY_NODE: {"max_cot_tokens": COT_CAP_EVAL, "mode": "masked"},
        BRIDGE_NODE: {"settle_steps": UPSTREAM_EPISODE.settle_steps, "task_id": 3},  # max_steps None: the file's
    }
    bridge = settings.parameters(BRIDGE_NODE)
    assert (bridge["camera_size"], bridge["max_steps"], bridge["task_id"]) == (128, 0, 3)
    assert settings.as_dict()["params_file"] == str(params_file)


def test_missing_or_malformed_parameter_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        SimSettings.resolve(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="not a ROS 2 parameter file"):
        read_node_parameters(tmp_path / "list.yaml")


def test_options_stack_on_the_file_as_first_read(tmp_path: Path) -> None:
    """dtvla-eval checks a snapshot and compares each dtvla-sim call's report with it: a later edit shows."""
    params_file = tmp_path / "sim.yaml"
    params_file.write_text(SIM_YAML.read_text())
    checked = SimSettings.resolve(params_file, mode="masked", max_steps=12)
    params_file.write_text(SIM_YAML.read_text().replace("settle_steps: 10", "settle_steps: 5"))
    call = checked.with_options(task_id=2, episodes=3)
    assert call.overrides == {POLICY_NODE: {"mode": "masked"},
                              BRIDGE_NODE: {"max_steps": 12, "task_id": 2, "num_episodes": 3}}
    assert call.parameters(BRIDGE_NODE)["settle_steps"] == UPSTREAM_EPISODE.settle_steps
    reported = SimSettings.resolve(params_file, mode="masked", max_steps=12, task_id=2, episodes=3)
    assert reported.parameters(BRIDGE_NODE)["settle_steps"] == 5 and reported.as_dict() != call.as_dict()


def test_sim_yaml_sections_match_their_node_under_any_namespace() -> None:
    """`/**/node:` keys: under `__ns:=/robot1` a plain `node:` key would no longer apply (issue 10)."""
    assert set(yaml.safe_load(SIM_YAML.read_text())) == {NODE_KEY_PREFIX + POLICY_NODE, NODE_KEY_PREFIX + BRIDGE_NODE}
    assert set(read_node_parameters(SIM_YAML)) == {POLICY_NODE, BRIDGE_NODE}


def test_sim_yaml_use_sim_time_agrees_with_its_clock_mode() -> None:
    sections = _sections()
    assert sections[POLICY_NODE]["use_sim_time"] == (sections[BRIDGE_NODE]["clock_mode"] == "lockstep")


@pytest.mark.parametrize(("options", "use_sim_time"), [
    ({}, True),  # the file's
    ({"clock_mode": "realtime"}, False),  # follows a given clock mode
    ({"clock_mode": "lockstep"}, True),
    ({"clock_mode": "realtime", "use_sim_time": True}, True),  # an explicit value wins
])
def test_use_sim_time_follows_a_given_clock_mode(options: dict, use_sim_time: bool) -> None:
    assert SimSettings.resolve(SIM_YAML, **options).parameters(POLICY_NODE)["use_sim_time"] is use_sim_time


def test_launch_argument_text_is_parsed_by_the_options_types_and_empty_keeps_the_file() -> None:
    assert parse_options({"task_id": "3", "use_sim_time": "false", "device": "cuda", "suite": ""}) == {
        "task_id": 3, "use_sim_time": False, "device": "cuda"}
    with pytest.raises(ValueError, match="task_id:='three'"):
        parse_options({"task_id": "three"})
    with pytest.raises(ValueError, match="true or false"):
        parse_options({"use_sim_time": "maybe"})
    with pytest.raises(TypeError, match="unknown run options"):
        SimSettings.resolve(SIM_YAML, task=3)
