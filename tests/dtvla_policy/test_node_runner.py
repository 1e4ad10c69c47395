"""`run_node` keeps a stop signal that arrives while the node is built from becoming the building library's error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

# The factory signals its own process, then runs code shaped like robosuite's sensor check (a bare `except:` that
# re-raises anything as ValueError). Self-sent, so the signal always lands inside that `try`: no race.
PROGRAM = textwrap.dedent("""
    import os, signal
    from rclpy.node import Node
    from dtvla_policy.ros.node_runner import FinishingNode, run_node

    def build():
        try:
            os.kill(os.getpid(), signal.{signal})  # a raising handler fires right after this call
        except:  # noqa: E722 - as robosuite/utils/observables.py does
            raise ValueError("Current sensor for observable agentview_image is invalid.")
        print("built", flush=True)
        return {node}("stopped_while_built")

    run_node(build)
    print("exited cleanly", flush=True)
""")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("node_class", ["Node", "FinishingNode"])
def test_a_signal_while_the_node_is_built_stops_it_cleanly_once_it_spins(signal_name, node_class):
    result = subprocess.run([sys.executable, "-c", PROGRAM.format(signal=signal_name, node=node_class)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["built", "exited", "cleanly"], result.stdout
    assert "Traceback" not in result.stderr, result.stderr
