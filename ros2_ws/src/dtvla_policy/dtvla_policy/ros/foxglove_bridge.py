"""`dtvla-foxglove`: a Foxglove WebSocket server showing one robot's policy live (a thin adapter over `LiveView`).

Subscribes, in its namespace, to the cameras, the task, the policy's chain-of-thought, action chunk and reasoning
picture, the policy's /diagnostics status, /joint_states and the sim bridge's episode status, and re-publishes them
on the channels of `dtvla_policy.live_view` (Foxglove schemas, namespace-free names). Open the Foxglove app, connect
to ws://127.0.0.1:8765 and import config/foxglove_layout.json (installed in dtvla_policy's share). The server binds
127.0.0.1 unless `host` says otherwise: it has no authentication. Topics and parameters: docs/topics.md.
"""

from __future__ import annotations

import argparse
import sys

import foxglove
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from dtvla_policy import live_view
from dtvla_policy.ros import contract
from dtvla_policy.ros.image_conversion import ImageConversionError, image_to_rgb8
from dtvla_policy.ros.node_runner import run_node
from dtvla_policy.ros.sim_params import POLICY_NODE, config_file

LAYOUT_FILE = "foxglove_layout.json"  # in config/ of the source tree and of dtvla_policy's share


def _stamp_ns(header) -> int:
    return Time.from_msg(header.stamp).nanoseconds


class FoxgloveBridge(Node):
    """One robot's topics -> one Foxglove WebSocket server."""

    def __init__(self, **kwargs) -> None:
        self.server = None  # destroy_node also runs on a node whose __init__ failed
        super().__init__("dtvla_foxglove", **kwargs)
        host = self.declare_parameter("host", "127.0.0.1", ParameterDescriptor(
            description="address the WebSocket server binds; 0.0.0.0 exposes it (no authentication)",
            read_only=True)).value
        port = self.declare_parameter("port", 8765, ParameterDescriptor(
            description="WebSocket port; 0 picks a free one (logged)", read_only=True,
            integer_range=[IntegerRange(from_value=0, to_value=65535, step=1)])).value
        self.view = live_view.LiveView()
        self.server = foxglove.start_server(name=f"dtvla {self.get_namespace()}", host=host, port=port,
                                            context=self.view.context)
        self._policy_status = contract.status_name(f"{self.get_namespace().rstrip('/')}/{POLICY_NODE}", "inference")
        self._warned: set[str] = set()

        # the reasoning picture reliable keep-last-1 as published: best effort lost every other 0.8 MB picture (its
        # fragments), and keep-last-1 never makes the policy wait for a slow viewer
        for topic, channel, qos in ((contract.AGENTVIEW_TOPIC, live_view.AGENTVIEW, contract.SENSOR_QOS),
                                    (contract.WRIST_TOPIC, live_view.WRIST, contract.SENSOR_QOS),
                                    (contract.POLICY_REASONING_IMAGE, live_view.REASONING_IMAGE, contract.VIEW_QOS)):
            self.create_subscription(Image, topic, lambda m, c=channel: self._on_image(c, m), qos)
        self.create_subscription(String, contract.POLICY_CHAIN_OF_THOUGHT, self._on_cot, contract.COMMAND_QOS)
        self.create_subscription(String, contract.TASK_TOPIC, self._on_task, contract.LATCHED_QOS)
        self.create_subscription(JointTrajectory, contract.POLICY_ACTION_CHUNK, self._on_chunk, contract.COMMAND_QOS)
        self.create_subscription(DiagnosticArray, contract.DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)
        self.create_subscription(JointState, contract.JOINT_STATES_TOPIC, self._on_joint_state, contract.SENSOR_QOS)
        self.create_subscription(String, contract.EPISODE_STATUS_TOPIC,
                                 lambda m: self.view.episode_status(m.data), contract.LATCHED_QOS)
        self.get_logger().info(f"Foxglove WebSocket server on ws://{host}:{self.server.port}; "
                               f"layout: {config_file(LAYOUT_FILE)}")

    def _on_image(self, channel: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb8(msg)
        except ImageConversionError as err:
            if channel not in self._warned:  # once per camera: a stream of bad frames must not flood the log
                self._warned.add(channel)
                self.get_logger().warning(f"{channel}: frame not shown: {err}")
            return
        self.view.image(channel, rgb, _stamp_ns(msg.header))

    def _on_cot(self, msg: String) -> None:
        self.view.text(live_view.CHAIN_OF_THOUGHT, msg.data)

    def _on_task(self, msg: String) -> None:
        self.view.text(live_view.TASK, msg.data)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        positions = [list(point.positions) for point in msg.points]
        step_s = [p.time_from_start.sec + p.time_from_start.nanosec / 1e9 for p in msg.points]
        try:
            self.view.action_chunk(msg.joint_names, positions, step_s, _stamp_ns(msg.header))
        except ValueError as err:
            self.get_logger().warning(f"action chunk not shown: {err}", throttle_duration_sec=10.0)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self._policy_status:
                self.view.policy_status(ord(status.level), status.message,
                                        {kv.key: kv.value for kv in status.values})

    def _on_joint_state(self, msg: JointState) -> None:
        self.view.joint_states(msg.name, msg.position, _stamp_ns(msg.header))

    def destroy_node(self) -> None:
        if self.server is not None:
            self.server.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """`dtvla-foxglove [--port N] [--host ADDR] [--namespace NS] [--ros-args ...]`; a taken or invalid port: one
    FATAL line, exit 1."""
    parser = argparse.ArgumentParser(prog="dtvla-foxglove", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="WebSocket port (default 8765; 0: a free one)")
    parser.add_argument("--namespace", help="the robot's ROS namespace, e.g. robot1 (as dtvla-sim --namespace)")
    args = sys.argv[1:] if args is None else args
    split = args.index("--ros-args") if "--ros-args" in args else len(args)
    options = parser.parse_args(args[:split])
    ros = [f"{name}:={value}" for name, value in (("host", options.host), ("port", options.port)) if value is not None]
    ros = [arg for value in ros for arg in ("-p", value)]
    if options.namespace:
        ros += ["-r", f"__ns:=/{options.namespace.strip('/')}"]
    argv = [parser.prog, *args[split:], *(["--ros-args", *ros] if ros else [])]  # rcl skips argv[0]
    run_node(FoxgloveBridge, argv, startup_errors=(RuntimeError, OSError, InvalidParameterValueException))


if __name__ == "__main__":
    main()
