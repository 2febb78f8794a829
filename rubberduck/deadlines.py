"""Deadlines that hold whether or not the caller is reading.

A caller waiting on a handle times out by itself; one that submitted and walked
away does not. :class:`DeadlineWatch` puts each request's deadline on the
runtime's :class:`~rubberduck.scheduler.Scheduler` (the thread that also runs
the Router's retry backoffs): at its deadline a request still running ends with
:class:`~rubberduck.errors.RequestTimeout`, which closes its HTTP call and frees
its slot. When a request ends first, its entry is cancelled and holds nothing
of it: a finished handle the caller dropped is garbage at once, however far
its deadline is.
"""

from __future__ import annotations

import threading

from rubberduck.errors import RequestTimeout
from rubberduck.request_state import RequestState
from rubberduck.scheduler import Scheduler, Timer

__all__ = ["DeadlineWatch"]


class DeadlineWatch:
    """Ends requests that outlive their deadline.

    Args:
        scheduler: The thread to run on; ``None``: one of its own. :meth:`stop`
            stops it either way.
    """

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        # Request id → its deadline entry, while the request runs. Locked: watch
        # runs on callers' threads, ended on whichever thread ends the request.
        self._timers: dict[int, Timer] = {}
        self._lock = threading.Lock()

    def watch(self, handle: RequestState) -> None:
        """End ``handle`` with ``RequestTimeout`` at ``handle.deadline`` if it is
        still running then. Call :meth:`ended` when it ends."""
        timer = self.scheduler.call_at(handle.deadline, _expire, handle)
        with self._lock:
            self._timers[handle.id] = timer
        if handle.finished:  # it ended before its entry was stored
            self.ended(handle)

    def ended(self, handle: RequestState) -> None:
        """``handle`` ended: forget its deadline (and so the handle)."""
        with self._lock:
            timer = self._timers.pop(handle.id, None)
        if timer is not None:
            timer.cancel()

    def stop(self) -> None:
        """Stop the scheduler's thread and wait for it. Idempotent."""
        with self._lock:
            self._timers.clear()
        self.scheduler.stop()


def _expire(handle: RequestState) -> None:
    # A request's deadline never moves (``result(timeout=...)`` only stops the
    # caller's wait), so the entry made at ``watch`` is the one that counts.
    handle.fail(RequestTimeout(f"no answer within the request timeout of {handle.timeout:g} s"))
