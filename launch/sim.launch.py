"""Bring up the DeepThinkVLA policy node and the LIBERO sim bridge with config/sim.yaml.

    ros2 launch dtvla_policy sim.launch.py checkpoint:=/path/to/checkpoint [suite:=libero_10] [task:=3]
        [mode:=masked] [device:=cuda] [agentview_topic:=/my/cam] [wrist_topic:=/my/wrist_cam]

Needs a ROS 2 installation with launch_ros (e.g. the project's Docker image). Machines with only the ROS wheels
use `dtvla-sim`, which starts the same two executables with the same parameter file.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params_file = PathJoinSubstitution([FindPackageShare("dtvla_policy"), "config", "sim.yaml"])
    arguments = [
        DeclareLaunchArgument("checkpoint", description="DeepThinkVLA checkpoint directory"),
        DeclareLaunchArgument("suite", default_value="libero_spatial", description="LIBERO suite"),
        DeclareLaunchArgument("task", default_value="0", description="task id within the suite"),
        DeclareLaunchArgument("mode", default_value="full", description="full | masked"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device of the policy"),
        DeclareLaunchArgument("agentview_topic", default_value="/camera/agentview/image_raw"),
        DeclareLaunchArgument("wrist_topic", default_value="/camera/wrist/image_raw"),
    ]
    policy = Node(
        package="dtvla_policy",
        executable="policy_node",
        name="dtvla_policy",
        output="screen",
        emulate_tty=True,
        parameters=[
            params_file,
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "mode": LaunchConfiguration("mode"),
                "device": LaunchConfiguration("device"),
            },
        ],
        remappings=[
            ("/camera/agentview/image_raw", LaunchConfiguration("agentview_topic")),
            ("/camera/wrist/image_raw", LaunchConfiguration("wrist_topic")),
        ],
    )
    bridge = Node(
        package="dtvla_sim_bridge",
        executable="sim_bridge_node",
        name="dtvla_sim_bridge",
        output="screen",
        emulate_tty=True,
        parameters=[
            params_file,
            {
                "suite": LaunchConfiguration("suite"),
                "task_id": ParameterValue(LaunchConfiguration("task"), value_type=int),
            },
        ],
        remappings=[
            ("/camera/agentview/image_raw", LaunchConfiguration("agentview_topic")),
            ("/camera/wrist/image_raw", LaunchConfiguration("wrist_topic")),
        ],
    )
    return LaunchDescription([*arguments, policy, bridge])
