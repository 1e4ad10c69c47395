"""`run_node`: the one `main` body of dtvla's nodes: init, build, spin until SIGINT/SIGTERM (exit 0) or until the
node says it is finished (exit with its code: the sim bridge after its episodes, so `ros2 launch` can end there).

Signals only trigger a guard condition whose callback raises KeyboardInterrupt between two executor callbacks.
rclpy's own handlers would raise KeyboardInterrupt anywhere (LIBERO's reset loop swallows it: `finally:
continue`) and shut the context down from another thread, racing the executor's next wait set (ros2/rclpy#1166:
RCLError, exit code 1). Python runs signal handlers only between bytecodes, and the executor's wait blocks in C
until some entity is ready, so a steady-clock timer wakes it at SIGNAL_POLL_S: without it a node whose only
timers follow an idle /clock (use_sim_time) would never see the signal. While the node is being built, the first
SIGINT/SIGTERM is only remembered (the node stops as soon as its executor spins, exit 0): raised inside
library code it becomes that code's error (robosuite's sensor check turns it into `ValueError: Current sensor ... is
invalid` with a bare `except:`), so a launcher stopping a bridge that is still building its env saw exit code 1. A
second signal interrupts at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

SIGNAL_POLL_S = 0.2  # worst-case delay between a signal and the shutdown starting


def _interrupt() -> None:
    raise KeyboardInterrupt


class _DeferredSignal:
    """SIGINT/SIGTERM handler while the node is built: the first signal is remembered, a second one interrupts."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, *_) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True


class FinishingNode(Node):
    """A node that ends its process by itself: `finished` gets the exit code."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.finished = Future()


def run_node(factory: Callable[[], Node], args: list[str] | None = None,
             startup_errors: tuple[type[Exception], ...] = ()) -> None:
    """Build the node with `factory` and spin it; `startup_errors` while building log FATAL and exit 1."""
    code = 0
    deferred = _DeferredSignal()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, deferred)
    try:
        with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
            try:
                node = factory()
            except startup_errors as err:
                rclpy.logging.get_logger("dtvla").fatal(f"{type(err).__name__}: {err}")
                raise SystemExit(1) from err
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            stop = node.create_guard_condition(_interrupt)
            node.create_timer(SIGNAL_POLL_S, lambda: None, clock=Clock(clock_type=ClockType.STEADY_TIME))
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.trigger())
            if deferred.received:
                stop.trigger()
            try:
                if isinstance(node, FinishingNode):
                    executor.spin_until_future_complete(node.finished)
                    code = node.finished.result()
                else:
                    executor.spin()
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    if code:
        raise SystemExit(code)
