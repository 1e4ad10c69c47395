"""The topic contract between the policy node, the sim bridge and operators (docs/topics.md), in one place.

Names (defined in the rclpy-free `dtvla_policy.topic_names`) are defaults: every one can be remapped with
`--ros-args -r old:=new`. QoS follows the stream: sensor data (best effort, keep last 1) where a lost frame is
harmless, reliable for commands, transient local (latched) for the task instruction and episode status, so late
joiners get the current value.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

# The names live in the rclpy-free `topic_names` (bag readers use them too); re-exported here with the QoS.
from dtvla_policy.topic_names import (  # noqa: F401
    ACTION_CHUNK_TOPIC,
    AGENTVIEW_TOPIC,
    CHAIN_OF_THOUGHT_TOPIC,
    CHUNK_JOINT_NAMES,
    CHUNK_REQUEST_TOPIC,
    CLOCK_REMAP,
    CLOCK_TOPIC,
    DIAGNOSTICS_TOPIC,
    EPISODE_STATUS_TOPIC,
    JOINT_STATES_TOPIC,
    POLICY_ACTION_CHUNK,
    POLICY_CHAIN_OF_THOUGHT,
    POLICY_REASONING_IMAGE,
    REASONING_IMAGE_TOPIC,
    RESET_SERVICE,
    ROBOT_JOINT_NAMES,
    TASK_TOPIC,
    WRIST_TOPIC,
    absolute_name,
    status_name,
)

SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Large debug images (~0.8 MB): reliable keep-last-1, because best-effort drops fragmented samples; best-effort
# subscribers (rqt_image_view, Foxglove) are still compatible with a reliable publisher.
VIEW_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

