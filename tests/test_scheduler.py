"""The scheduler: one thread for every deadline and retry backoff, entries that
run in time order, cancel without a trace, and stop with the runtime."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from rubberduck.scheduler import Scheduler
from tests.conftest import wait_until


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler("test-scheduler")
    yield scheduler
    scheduler.stop()


class Payload:
    """Something a scheduled call holds (weakly referenceable)."""


def test_calls_run_in_time_order(scheduler: Scheduler) -> None:
    ran: list[int] = []
    done = threading.Event()
    # Due together a little later (so that all are queued before the first runs):
    # earliest first, ties in the order given.
    soon = time.monotonic() + 0.5
    for i, when in enumerate([soon + 0.003, soon + 0.001, soon + 0.002, soon + 0.002]):
        scheduler.call_at(when, ran.append, i)
    scheduler.call_at(soon + 0.004, done.set)
    assert done.wait(5)
    assert ran == [1, 2, 3, 0]


def test_a_later_entry_does_not_hold_up_an_earlier_one(scheduler: Scheduler) -> None:
    early = threading.Event()
    scheduler.call_later(3600, early.clear)
    scheduler.call_later(0, early.set)
    assert early.wait(5)


def test_many_entries_share_one_thread(scheduler: Scheduler) -> None:
    before = threading.active_count()
    timers = [scheduler.call_later(3600, Payload) for _ in range(500)]
    assert threading.active_count() <= before + 1
    assert len(scheduler) == 500
    for timer in timers:
        assert timer.cancel()
    assert len(scheduler) == 0


def test_a_cancelled_entry_neither_runs_nor_holds_its_arguments(scheduler: Scheduler) -> None:
    ran: list[Payload] = []
    payload = Payload()
    gone = weakref.ref(payload)
    timer = scheduler.call_later(0.05, ran.append, payload)
    assert timer.pending
    assert timer.cancel()
    assert not timer.cancel(), "a second cancel changes nothing"
    del payload
    gc.collect()
    assert gone() is None
    marker = threading.Event()
    scheduler.call_later(0.1, marker.set)
    assert marker.wait(5)
    assert ran == []


def test_a_call_that_ran_holds_nothing(scheduler: Scheduler) -> None:
    payload = Payload()
    gone = weakref.ref(payload)
    seen = threading.Event()
    timer = scheduler.call_later(0, lambda _p: seen.set(), payload)
    del payload
    assert seen.wait(5)
    assert wait_until(lambda: not timer.pending)
    gc.collect()
    assert gone() is None
    assert not timer.cancel()


def test_cancelled_entries_leave_the_heap(scheduler: Scheduler) -> None:
    timers = [scheduler.call_later(3600, Payload) for _ in range(2000)]
    for timer in timers[:1500]:
        timer.cancel()
    assert len(scheduler._heap) < 1000, "mostly cancelled: compacted"
    assert len(scheduler) == 500


def test_a_failing_call_is_logged_and_the_thread_goes_on(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    after = threading.Event()
    with caplog.at_level(logging.ERROR, logger="rubberduck.scheduler"):
        scheduler.call_later(0, lambda: 1 / 0)
        scheduler.call_later(0, after.set)
        assert after.wait(5)
    assert "a scheduled call failed" in caplog.text


def test_a_call_may_schedule_another(scheduler: Scheduler) -> None:
    second = threading.Event()
    scheduler.call_later(0, lambda: scheduler.call_later(0, second.set))
    assert second.wait(5)


def test_stop_drops_pending_entries_and_ends_the_thread() -> None:
    scheduler = Scheduler()
    assert scheduler.thread is None, "no entry yet: no thread"
    payload = Payload()
    gone = weakref.ref(payload)
    scheduler.call_later(3600, id, payload)
    thread = scheduler.thread
    assert thread is not None and thread.is_alive()
    del payload
    scheduler.stop()
    assert not thread.is_alive()
    gc.collect()
    assert gone() is None
    with pytest.raises(RuntimeError, match="stopped"):
        scheduler.call_later(0, id, 1)
    scheduler.stop()  # idempotent
