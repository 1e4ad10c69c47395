"""LatestOnlyWorker runs the newest job off the caller's thread and drops the ones superseded while it was busy."""

from __future__ import annotations

import threading

from dtvla_policy.latest_only_worker import LatestOnlyWorker


def test_jobs_submitted_while_busy_collapse_to_the_newest():
    started, release, newest_done = threading.Event(), threading.Event(), threading.Event()
    handled: list[str] = []

    def handle(job: str) -> None:
        handled.append(job)
        if job == "a":
            started.set()
            assert release.wait(10)
        if job == "d":
            newest_done.set()

    worker = LatestOnlyWorker(handle, "test-worker")
    worker.submit("a")
    assert started.wait(10)  # "a" runs and blocks: the caller is not blocked with it
    for job in ("b", "c", "d"):
        worker.submit(job)
    release.set()
    assert newest_done.wait(10)
    worker.close()
    assert handled == ["a", "d"] and worker.dropped == 2 and worker.done == 2


def test_an_error_is_handed_to_on_error_and_the_worker_goes_on():
    errors: list[Exception] = []
    handled: list[int] = []
    finished = threading.Event()

    def handle(job: int) -> None:
        if job == 1:
            raise ValueError("bad picture")
        handled.append(job)
        finished.set()

    worker = LatestOnlyWorker(handle, "test-worker", on_error=errors.append)
    worker.submit(1)
    while worker.done < 1:  # let the first job finish so the second cannot replace it
        threading.Event().wait(0.01)
    worker.submit(2)
    assert finished.wait(10)
    worker.close()
    assert [str(e) for e in errors] == ["bad picture"] and handled == [2]


def test_close_stops_the_thread_and_later_jobs_are_ignored():
    handled: list[int] = []
    worker = LatestOnlyWorker(handled.append, "test-worker")
    worker.close()
    worker.submit(1)
    assert not worker._thread.is_alive() and handled == []
