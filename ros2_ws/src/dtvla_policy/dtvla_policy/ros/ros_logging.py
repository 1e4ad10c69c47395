"""`RosLogHandler`: Python `logging` records of the library (which never imports rclpy) into a node's ROS logger.

Without it the engine's warnings (e.g. "CoT ... closed by force", once per chunk) go to stderr only: not to
/rosout, not rate-limited. Each message template is logged at most once per `period_s`, with the number of
repeats held back since; the template (`record.msg`), not the formatted text, is the key, so a stream of varying
numbers cannot grow the set.
"""

from __future__ import annotations

import logging
import threading
import time

from rclpy.impl.rcutils_logger import RcutilsLogger

LIBRARY_LOGGER = "dtvla_policy"  # parent of every library module's `logging.getLogger(__name__)`
PERIOD_S = 30.0


class RosLogHandler(logging.Handler):
    """Forwards records to `logger`, each template at most once per `period_s`."""

    def __init__(self, logger: RcutilsLogger, period_s: float = PERIOD_S) -> None:
        super().__init__(level=logging.INFO)
        self.logger = logger
        self.period_s = period_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (last logged, held back since)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(key, (-self.period_s, 0))
            if now - last < self.period_s:
                self._last[key] = (last, held + 1)
                return
            self._last[key] = (now, 0)
        text = f"{record.name}: {record.getMessage()}"
        if held:
            text += f" ({held} more like it in the last {now - last:.0f} s)"
        # one call site per severity: rclpy refuses a call site whose severity changes
        if record.levelno >= logging.ERROR:
            self.logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.logger.warning(text)
        else:
            self.logger.info(text)


def route_library_logs(logger: RcutilsLogger) -> RosLogHandler:
    """Attach a handler for the library's loggers to `logger`; `unroute_library_logs` detaches it."""
    handler = RosLogHandler(logger)
    logging.getLogger(LIBRARY_LOGGER).addHandler(handler)
    return handler


def unroute_library_logs(handler: RosLogHandler | None) -> None:
    if handler is not None:
        logging.getLogger(LIBRARY_LOGGER).removeHandler(handler)
