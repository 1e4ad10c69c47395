"""The names of the topic contract (docs/topics.md), without rclpy: what recordings are read by.

`ros/contract.py` adds the QoS profiles and is what nodes import; library code that reads recorded bags (replay,
bag -> dataset) takes the same names from here, since it never imports rclpy.
"""

from __future__ import annotations

from dtvla_policy.model.conventions import COMMAND_NAMES

# Relative names: under a namespace (`__ns:=/robot1`, PushRosNamespace) each robot's policy and bridge find each
# other there and two robots on one domain do not mix. /diagnostics stays global (the aggregator's convention;
# status names carry the namespace). Sim time: the bridge publishes `clock` (also relative, so two lockstep sims do
# not fight over one /clock); rclpy's use_sim_time listens on the absolute /clock, so a namespaced policy needs
# the remap `/clock:=clock` (CLOCK_REMAP), which sim.launch.py and dtvla-sim pass.
AGENTVIEW_TOPIC = "camera/agentview/image_raw"
WRIST_TOPIC = "camera/wrist/image_raw"
JOINT_STATES_TOPIC = "joint_states"
TASK_TOPIC = "task/instruction"
ACTION_CHUNK_TOPIC = "~/action_chunk"  # <ns>/dtvla_policy/action_chunk
CHAIN_OF_THOUGHT_TOPIC = "~/chain_of_thought"
REASONING_IMAGE_TOPIC = "~/reasoning_image"
DIAGNOSTICS_TOPIC = "/diagnostics"
POLICY_ACTION_CHUNK = "dtvla_policy/action_chunk"  # what the bridge subscribes to
POLICY_CHAIN_OF_THOUGHT = "dtvla_policy/chain_of_thought"  # the policy's ~/ topics seen from its namespace
POLICY_REASONING_IMAGE = "dtvla_policy/reasoning_image"
CHUNK_REQUEST_TOPIC = "dtvla_sim_bridge/chunk_request"  # std_msgs/Header: "answer the frames with this stamp"
EPISODE_STATUS_TOPIC = "dtvla_sim_bridge/episode_status"  # std_msgs/String, JSON, latched
RESET_SERVICE = "dtvla_sim_bridge/reset"  # std_srvs/Trigger
CLOCK_TOPIC = "clock"  # rosgraph_msgs/Clock, lockstep sim time: /clock without a namespace
CLOCK_REMAP = ("/clock", CLOCK_TOPIC)  # for nodes with use_sim_time: rclpy subscribes to the absolute /clock

# The `state` values of EPISODE_STATUS_TOPIC that end an episode; "finished" (the run is over) follows the last one
# and keeps it in "outcome".
EPISODE_END_STATES = ("success", "timeout", "failed", "aborted")

CHUNK_JOINT_NAMES = COMMAND_NAMES  # JointTrajectory.joint_names of an action chunk
# Franka Panda joints as LIBERO/robosuite name them (robot0_joint_pos + the two finger joints).
ROBOT_JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8)) + ("panda_finger_joint1", "panda_finger_joint2")


def status_name(node_fqn: str, what: str) -> str:
    """A /diagnostics status name, `robot1/dtvla_policy: inference`: unique per robot on the shared topic."""
    return f"{node_fqn.lstrip('/')}: {what}"


def absolute_name(namespace: str, name: str) -> str:
    """Where a relative contract name lives under `namespace` ('' or '/robot1'); absolute names stay."""
    if name.startswith("/"):
        return name
    return f"/{namespace.strip('/')}/{name}" if namespace.strip("/") else f"/{name}"
