"""`LatestOnlyWorker`: side work (the reasoning picture) on its own thread, so it never delays the next chunk.

Publishing the ~0.8 MB reasoning image to a reliable subscriber (a recorder, the Foxglove bridge) blocked the
policy node's inference thread for 0.5-3 s in some chunks. Only the newest picture matters to a viewer, so a job
submitted while an older one waits replaces it (counted in `dropped`) instead of queueing behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Job = TypeVar("Job")


class LatestOnlyWorker(Generic[Job]):
    """Calls `handle(job)` on a daemon thread for the newest submitted job; `on_error` gets what `handle` raises."""

    def __init__(self, handle: Callable[[Job], None], name: str,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self._handle = handle
        self._on_error = on_error
        self._cv = threading.Condition()
        self._job: Job | None = None
        self._has_job = False
        self._closing = False
        self.dropped = 0  # jobs replaced by a newer one before they started
        self.done = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                return
            if self._has_job:
                self.dropped += 1
            self._job, self._has_job = job, True
            self._cv.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the job in progress, drop a waiting one, stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._has_job and not self._closing:
                    self._cv.wait()
                if self._closing:
                    return
                job, self._job, self._has_job = self._job, None, False
            try:
                self._handle(job)
            except Exception as err:  # noqa: BLE001 - side work must not end the thread; the owner reports it
                if self._on_error is not None:
                    self._on_error(err)
            with self._cv:
                self.done += 1
