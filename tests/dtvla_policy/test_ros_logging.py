"""Library `logging` records reach /rosout through the node's ROS logger, each template rate-limited."""

from __future__ import annotations

import logging

import pytest
import rclpy
from rcl_interfaces.msg import Log
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dtvla_policy.ros.ros_logging import LIBRARY_LOGGER, route_library_logs, unroute_library_logs
from tests.fixtures.ros import probe_node

pytestmark = pytest.mark.ros
ROSOUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_engine_warnings_reach_rosout_once_per_period_with_the_count_held_back():
    context = Context()
    rclpy.init(context=context)
    node = Node("logging_node", context=context)
    engine_log = logging.getLogger(f"{LIBRARY_LOGGER}.inference.engine")
    handler = route_library_logs(node.get_logger())
    try:
        with probe_node("rosout_probe") as probe:
            rosout = probe.watch(Log, "/rosout", ROSOUT_QOS)
            probe.wait_for(lambda: node.count_subscribers("/rosout") > 0, 30, "the probe on /rosout")

            def ours() -> list[str]:
                return [m.msg for m in rosout if m.name == "logging_node" and "closed by force" in m.msg]

            for sample in range(5):  # one chunk each: the engine's message with varying numbers
                engine_log.warning("CoT of sample %d hit max_cot_tokens=%d; closed by force", sample, 3)
            probe.wait_for(lambda: len(ours()) >= 1, 10, "the first warning on /rosout")
            handler.period_s = 0.0  # the period has passed: the next one reports what was held back
            engine_log.warning("CoT of sample %d hit max_cot_tokens=%d; closed by force", 5, 3)
            probe.wait_for(lambda: len(ours()) >= 2, 10, "the second warning on /rosout")
            first, second = ours()
            assert first == "dtvla_policy.inference.engine: CoT of sample 0 hit max_cot_tokens=3; closed by force"
            assert second.startswith("dtvla_policy.inference.engine: CoT of sample 5") and "(4 more like it" in second
            assert {m.level for m in rosout if m.name == "logging_node"} == {Log.WARN}
    finally:
        unroute_library_logs(handler)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert handler not in logging.getLogger(LIBRARY_LOGGER).handlers
