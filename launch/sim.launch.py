"""Bring up the DeepThinkVLA policy node and the LIBERO sim bridge; ends when the bridge has run its episodes.

    ros2 launch dtvla_policy sim.launch.py checkpoint:=/path/to/checkpoint [suite:=libero_10] [task_id:=3]
        [episodes:=5] [device:=cuda clock_mode:=realtime] [namespace:=robot1] [params_file:=my_sim.yaml]
    ros2 launch dtvla_policy sim.launch.py --show-args

A node argument left at '' keeps the params_file's value (config/sim.yaml): these are the options of `dtvla-sim`
(`dtvla_policy.ros.sim_params.RUN_OPTIONS`), resolved by the same `SimSettings`, so the two front ends share one
parameter set and one set of defaults. When either node exits the launch shuts down: the bridge exits after
`episodes`, a policy that cannot start exits 1. Needs a ROS 2 installation with launch_ros (e.g. the project's
Docker image); machines with only the ROS wheels use `dtvla-sim`, which starts the same executables the same way.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dtvla_policy.ros import contract
from dtvla_policy.ros.sim_params import BRIDGE_NODE, POLICY_NODE, RUN_OPTIONS, SimSettings, parse_options
from launch import LaunchDescription

NO_CHECKPOINT = ("no checkpoint: pass checkpoint:=DIR (or set it in params_file). The package ships none; the "
                 "repository's assets/demo_checkpoint is a small demo policy, and `dtvla-tiny-checkpoint DIR` writes "
                 "an UNTRAINED one (noise actions) to try the plumbing")


def about(option: str) -> str:
    return f"{RUN_OPTIONS[option].help} ('': the params_file's value)"


ARGUMENTS = [
    DeclareLaunchArgument("checkpoint", default_value="", description=f"{RUN_OPTIONS['checkpoint'].help}, required "
                          "(here or in params_file): the package ships none; the repository's assets/demo_checkpoint "
                          "is a small demo policy"),
    DeclareLaunchArgument("mode", default_value="", description=about("mode")),
    DeclareLaunchArgument("device", default_value="", description=about("device")),
    DeclareLaunchArgument("dtype", default_value="", description=about("dtype")),
    DeclareLaunchArgument("max_cot_tokens", default_value="", description=about("max_cot_tokens")),
    DeclareLaunchArgument("use_sim_time", default_value="", description=about("use_sim_time")),
    DeclareLaunchArgument("suite", default_value="", description=about("suite")),
    DeclareLaunchArgument("task_id", default_value="", description=about("task_id")),
    DeclareLaunchArgument("init_state", default_value="", description=about("init_state")),
    DeclareLaunchArgument("episodes", default_value="", description=about("episodes")),
    DeclareLaunchArgument("max_steps", default_value="", description=about("max_steps")),
    DeclareLaunchArgument("clock_mode", default_value="", description=about("clock_mode")),
    DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
        [FindPackageShare("dtvla_policy"), "config", "sim.yaml"]), description="ROS parameter file of both nodes"),
    DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of both nodes, e.g. robot1"),
    DeclareLaunchArgument("agentview_topic", default_value=contract.AGENTVIEW_TOPIC,
                          description="agentview camera topic (relative: under the namespace)"),
    DeclareLaunchArgument("wrist_topic", default_value=contract.WRIST_TOPIC,
                          description="wrist camera topic (relative: under the namespace)"),
]


def end_launch_when_exits(node: Node) -> RegisterEventHandler:
    """Either node ending ends the launch; the reason carries its exit code."""
    return RegisterEventHandler(OnProcessExit(target_action=node, on_exit=lambda event, _context: [
        Shutdown(reason=f"{event.action.name} exited with code {event.returncode}")]))


def bring_up(context: LaunchContext) -> list:
    """The two nodes with the resolved settings, or a refusal that says what to do."""
    params_file = Path(LaunchConfiguration("params_file").perform(context))
    try:
        options = parse_options({name: LaunchConfiguration(name).perform(context) for name in RUN_OPTIONS})
        settings = SimSettings.resolve(params_file, **options)
    except (OSError, ValueError) as exc:
        return [LogInfo(msg=f"refusing to start: {exc}"), Shutdown(reason="bad launch arguments")]
    if not settings.parameters(POLICY_NODE).get("checkpoint"):
        return [LogInfo(msg=NO_CHECKPOINT), Shutdown(reason="no checkpoint")]
    namespace = LaunchConfiguration("namespace").perform(context).strip("/") or None
    cameras = [(contract.AGENTVIEW_TOPIC, LaunchConfiguration("agentview_topic")),
               (contract.WRIST_TOPIC, LaunchConfiguration("wrist_topic"))]
    policy = Node(
        package="dtvla_policy",
        executable="policy_node",
        name="dtvla_policy",
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[str(params_file), settings.overrides[POLICY_NODE]],
        remappings=[contract.CLOCK_REMAP, *cameras],
    )
    bridge = Node(
        package="dtvla_sim_bridge",
        executable="sim_bridge_node",
        name="dtvla_sim_bridge",
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[str(params_file), settings.overrides[BRIDGE_NODE]],
        remappings=cameras,
    )
    return [policy, bridge, end_launch_when_exits(policy), end_launch_when_exits(bridge)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*ARGUMENTS, OpaqueFunction(function=bring_up)])
