"""launch/sim.launch.py: what a ROS 2 user drives, checked without `launch` (which cannot be installed here).

The file is read with `ast` instead of executed: its arguments against the run options and the parameters the
nodes declare, its nodes against the installed executables and the topic contract, its shutdown handlers.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from dataclasses import fields
from importlib.metadata import distribution
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

from dtvla_policy.ros import contract
from dtvla_policy.ros.policy_node import PARAMETERS as POLICY_PARAMETERS
from dtvla_policy.ros.sim_launcher import build_parser
from dtvla_policy.ros.sim_params import RUN_OPTIONS, SimSettings, read_node_parameters
from dtvla_sim_bridge.ros.sim_bridge_node import BridgeConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "sim.launch.py"
SIM_YAML = ROOT / "config" / "sim.yaml"
DECLARED = {"dtvla_policy": set(POLICY_PARAMETERS), "dtvla_sim_bridge": {f.name for f in fields(BridgeConfig)}}
STANDARD = {"use_sim_time"}  # declared by every rclpy node
LAUNCH_ONLY = {"params_file", "namespace", "agentview_topic", "wrist_topic"}  # not node parameters
TREE = ast.parse(LAUNCH_FILE.read_text())


def calls(node: ast.AST, name: str) -> list[ast.Call]:
    return [c for c in ast.walk(node) if isinstance(c, ast.Call) and getattr(c.func, "id", None) == name]


def function(name: str) -> ast.FunctionDef:
    return next(f for f in ast.walk(TREE) if isinstance(f, ast.FunctionDef) and f.name == name)


def assigned(scope: ast.AST, name: str) -> ast.expr:
    """The value assigned to `name` directly in `scope`'s body."""
    return next(s.value for s in scope.body if isinstance(s, ast.Assign) and getattr(s.targets[0], "id", "") == name)


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords}


def arguments() -> dict[str, dict[str, ast.expr]]:
    """name -> keyword arguments of every DeclareLaunchArgument."""
    return {c.args[0].value: keywords(c) for c in calls(TREE, "DeclareLaunchArgument")}


def launch_nodes() -> dict[str, dict]:
    """variable -> keyword arguments of every `Node(...)` in bring_up, names and packages as text."""
    nodes = {}
    for statement in ast.walk(function("bring_up")):
        if isinstance(statement, ast.Assign) and calls(statement.value, "Node"):
            kwargs = keywords(statement.value)
            texts = {key: kwargs[key].value for key in ("package", "executable", "name")}
            nodes[statement.targets[0].id] = kwargs | texts
    return nodes


def test_launch_starts_both_nodes_by_installed_executables():
    nodes = launch_nodes().values()
    assert {n["name"] for n in nodes} == {"dtvla_policy", "dtvla_sim_bridge"}
    for node in nodes:
        scripts = {ep.name for ep in distribution(node["package"]).entry_points if ep.group == "console_scripts"}
        assert node["executable"] in scripts, f"{node['package']} has no executable {node['executable']}"


def test_parameter_file_and_launch_file_are_installed_in_the_share():
    share = Path(get_package_share_directory("dtvla_policy"))
    for name in ("sim.yaml", "foxglove_layout.json"):
        assert (share / "config" / name).read_text() == (ROOT / "config" / name).read_text(), name
    assert (share / "launch" / "sim.launch.py").is_file()
    assert 'FindPackageShare("dtvla_policy"), "config", "sim.yaml"' in LAUNCH_FILE.read_text()


def test_every_configured_parameter_is_declared_by_its_node():
    config = read_node_parameters(SIM_YAML)
    assert set(config) == set(DECLARED)
    for node, values in config.items():
        unknown = set(values) - DECLARED[node] - STANDARD
        assert not unknown, f"config/sim.yaml sets parameters {node} does not declare: {unknown}"


def test_launch_arguments_are_the_run_options_each_described_and_defaulting_to_the_parameter_file():
    declared = arguments()
    assert set(declared) == set(RUN_OPTIONS) | LAUNCH_ONLY
    for name, kwargs in declared.items():
        assert "description" in kwargs, f"launch argument {name} has no description"
        if name in RUN_OPTIONS:  # '' = the params_file's value: config/sim.yaml holds the only defaults
            assert isinstance(kwargs["default_value"], ast.Constant) and kwargs["default_value"].value == "", name


def test_every_run_option_sets_a_parameter_its_node_declares():
    for name, option in RUN_OPTIONS.items():
        assert option.parameter in DECLARED[option.node] | STANDARD, f"{name} sets {option.node}.{option.parameter}"


def test_every_parameter_a_user_may_set_is_reachable():
    """Per run through an argument, per deployment through params_file (a copy of config/sim.yaml)."""
    by_argument = {(o.node, o.parameter) for o in RUN_OPTIONS.values()}
    in_file = {(node, name) for node, values in read_node_parameters(SIM_YAML).items() for name in values}
    for node, names in DECLARED.items():
        unreachable = {name for name in names if (node, name) not in by_argument | in_file}
        assert not unreachable, f"{node} parameters neither a launch argument nor in config/sim.yaml: {unreachable}"


def test_dtvla_sim_and_the_launch_file_take_the_same_options():
    # dtvla-sim's own: its log files, its time limit, and `--record` (with ros2 launch: run `dtvla-record` or
    # `ros2 bag record` beside it)
    dests = {action.dest for action in build_parser()._actions} - {"help", "log_dir", "timeout", "record"}
    assert dests == set(arguments())


def test_either_node_exiting_shuts_the_launch_down():
    """OnProcessExit -> Shutdown on both nodes: the bridge after its episodes, a policy that fails to start."""
    handler = function("end_launch_when_exits")
    (on_exit,) = calls(handler, "OnProcessExit")
    assert isinstance(keywords(on_exit)["target_action"], ast.Name) and calls(keywords(on_exit)["on_exit"], "Shutdown")
    guarded = {c.args[0].id for c in calls(function("bring_up"), "end_launch_when_exits")}
    assert guarded == set(launch_nodes()) == {"policy", "bridge"}


def test_without_a_checkpoint_the_launch_refuses_and_says_how_to_make_one():
    """Neither the argument nor the shipped file sets one: LogInfo + Shutdown before any node is created."""
    assert not SimSettings.resolve(SIM_YAML).parameters("dtvla_policy").get("checkpoint")
    message = ast.literal_eval(assigned(TREE, "NO_CHECKPOINT"))
    assert "checkpoint:=DIR" in message and "dtvla-tiny-checkpoint DIR" in message
    bring_up = function("bring_up")
    refusal = next(s for s in bring_up.body if isinstance(s, ast.If) and "checkpoint" in ast.unparse(s.test))
    (returned,) = [s.value for s in refusal.body if isinstance(s, ast.Return)]
    assert [c.func.id for c in returned.elts] == ["LogInfo", "Shutdown"]
    assert ast.unparse(keywords(returned.elts[0])["msg"]) == "NO_CHECKPOINT"
    assert refusal.lineno < min(c.lineno for c in calls(bring_up, "Node"))


def test_topics_and_remappings_are_the_contract_s_relative_names():
    declared = arguments()
    assert ast.unparse(declared["agentview_topic"]["default_value"]) == "contract.AGENTVIEW_TOPIC"
    assert ast.unparse(declared["wrist_topic"]["default_value"]) == "contract.WRIST_TOPIC"
    assert not any(t.startswith("/") for t in (contract.AGENTVIEW_TOPIC, contract.WRIST_TOPIC,
                                               contract.POLICY_ACTION_CHUNK, contract.CHUNK_REQUEST_TOPIC))
    nodes = launch_nodes()
    assert ast.unparse(nodes["policy"]["remappings"]) == "[contract.CLOCK_REMAP, *cameras]"  # sim time per namespace
    assert ast.unparse(nodes["bridge"]["remappings"]) == "cameras"
    cameras = assigned(function("bring_up"), "cameras")
    assert [ast.unparse(pair.elts[0]) for pair in cameras.elts] == ["contract.AGENTVIEW_TOPIC", "contract.WRIST_TOPIC"]
    for node in nodes.values():
        assert ast.unparse(node["namespace"]) == "namespace"


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
    assert (share / "config" / "foxglove_layout.json").is_file()
    assert (install / "dtvla_policy" / "lib" / "dtvla_policy" / "dtvla-foxglove").is_file()
    for node in launch_nodes().values():
        assert (install / node["package"] / "lib" / node["package"] / node["executable"]).is_file()
    index = install / "dtvla_sim_bridge" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "dtvla_sim_bridge").is_file()
