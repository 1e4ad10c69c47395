"""launch/sim.launch.py names only things that exist: executables, the parameter file, parameters, remapped topics.

The ROS `launch` package cannot be installed here, so the file is read with `ast` instead of executed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from dataclasses import fields
from importlib.metadata import distribution
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory

from dtvla_policy.ros import contract
from dtvla_policy.ros.policy_node import PARAMETERS as POLICY_PARAMETERS
from dtvla_sim_bridge.ros.sim_bridge_node import BridgeConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "sim.launch.py"
DECLARED = {"dtvla_policy": set(POLICY_PARAMETERS), "dtvla_sim_bridge": {f.name for f in fields(BridgeConfig)}}
STANDARD = {"use_sim_time"}


def launch_nodes() -> list[dict]:
    """Keyword arguments of every `Node(...)` call, string constants and dict keys resolved."""
    nodes = []
    for call in ast.walk(ast.parse(LAUNCH_FILE.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node":
            kwargs = {kw.arg: kw.value for kw in call.keywords}
            inline = [k.value for d in kwargs["parameters"].elts if isinstance(d, ast.Dict) for k in d.keys]
            remaps = [pair.elts[0].value for pair in kwargs.get("remappings", ast.List(elts=[])).elts]
            nodes.append({"package": kwargs["package"].value, "executable": kwargs["executable"].value,
                          "name": kwargs["name"].value, "inline_parameters": inline, "remapped": remaps})
    return nodes


def flatten(params: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in params.items():
        if isinstance(value, dict):
            names |= flatten(value, f"{prefix}{key}.")
        else:
            names.add(f"{prefix}{key}")
    return names


def test_launch_starts_both_nodes_by_installed_executables():
    nodes = launch_nodes()
    assert {n["name"] for n in nodes} == {"dtvla_policy", "dtvla_sim_bridge"}
    for node in nodes:
        scripts = {ep.name for ep in distribution(node["package"]).entry_points if ep.group == "console_scripts"}
        assert node["executable"] in scripts, f"{node['package']} has no executable {node['executable']}"


def test_parameter_file_and_launch_file_are_installed_in_the_share():
    share = Path(get_package_share_directory("dtvla_policy"))
    assert (share / "config" / "sim.yaml").read_text() == (ROOT / "config" / "sim.yaml").read_text()
    assert (share / "launch" / "sim.launch.py").is_file()
    assert 'FindPackageShare("dtvla_policy"), "config", "sim.yaml"' in LAUNCH_FILE.read_text()


def test_every_configured_parameter_is_declared_by_its_node():
    config = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    assert set(config) == set(DECLARED)
    for node, section in config.items():
        unknown = flatten(section["ros__parameters"]) - DECLARED[node] - STANDARD
        assert not unknown, f"config/sim.yaml sets parameters {node} does not declare: {unknown}"
    for node in launch_nodes():
        unknown = set(node["inline_parameters"]) - DECLARED[node["name"]]
        assert not unknown, f"sim.launch.py sets undeclared parameters of {node['name']}: {unknown}"


def test_remappings_name_topics_of_the_contract():
    topics = {contract.AGENTVIEW_TOPIC, contract.WRIST_TOPIC}
    for node in launch_nodes():
        assert node["remapped"] and set(node["remapped"]) <= topics


def test_colcon_build_installs_what_ros2_launch_needs(tmp_path):
    """`ros2 launch dtvla_policy sim.launch.py` finds executables in lib/<pkg> and files in share/<pkg>."""
    workspace = tmp_path / "ws"
    shutil.copytree(ROOT / "ros2_ws", workspace / "ros2_ws", ignore=shutil.ignore_patterns("build", "install", "log",
                                                                                          "*.egg-info", "__pycache__"))
    for folder in ("launch", "config"):
        shutil.copytree(ROOT / folder, workspace / folder)
    result = subprocess.run(["colcon", "build", "--base-paths", "src"], cwd=workspace / "ros2_ws",
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    install = workspace / "ros2_ws" / "install"
    share = install / "dtvla_policy" / "share" / "dtvla_policy"
    assert (share / "launch" / "sim.launch.py").is_file() and (share / "config" / "sim.yaml").is_file()
    for node in launch_nodes():
        assert (install / node["package"] / "lib" / node["package"] / node["executable"]).is_file()
    index = install / "dtvla_sim_bridge" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "dtvla_sim_bridge").is_file()
