"""One thread for every timed action of a runtime: deadlines and retry backoffs.

A :class:`Scheduler` keeps a heap of :class:`Timer` entries and runs each
callback on its one thread when its time comes. Scheduling costs a heap push
under a lock; a thousand requests waiting out a backoff cost a thousand small
entries, not a thousand threads (``threading.Timer`` is a thread each).

Locking: one :class:`threading.Condition` guards the heap, the count of
cancelled entries and the stopped flag. Callbacks run on the scheduler's thread
with the lock released, so a callback may schedule or cancel entries; it must be
quick and must not block (a slow one delays every deadline behind it). An
exception in a callback is logged and the thread goes on.

A cancelled entry drops its callback and arguments at once (so it holds nothing
of a finished request) and leaves the heap when the heap is mostly cancelled
entries (amortized O(1) per entry), so memory follows the entries pending.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Scheduler", "Timer"]

log = logging.getLogger("rubberduck.scheduler")

#: Below this many entries the heap is never compacted (not worth the scan).
_COMPACT_MIN = 256


class Timer:
    """One scheduled call; :meth:`cancel` it until it runs.

    Attributes:
        when: ``time.monotonic()`` value at which the call is due, seconds.
    """

    __slots__ = ("_args", "_callback", "_scheduler", "_seq", "when")

    def __init__(
        self,
        scheduler: Scheduler,
        when: float,
        seq: int,
        callback: Callable[..., None],
        args: tuple[Any, ...],
    ) -> None:
        self._scheduler = scheduler
        self.when = when
        self._seq = seq
        self._callback: Callable[..., None] | None = callback
        self._args = args

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self._seq) < (other.when, other._seq)

    @property
    def pending(self) -> bool:
        """Neither run nor cancelled yet."""
        return self._callback is not None

    def cancel(self) -> bool:
        """Do not run the call. Returns ``False`` if it already ran or was cancelled."""
        return self._scheduler._cancel(self)


class Scheduler:
    """Runs callbacks at given monotonic times on one daemon thread.

    The thread starts with the first entry (a scheduler nobody uses costs no
    thread) and ends with :meth:`stop`.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str = "rubberduck-scheduler") -> None:
        self.name = name
        self._heap: list[Timer] = []
        self._cancelled = 0  # cancelled entries still in the heap
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self.thread: threading.Thread | None = None

    def __len__(self) -> int:
        """Entries pending (scheduled, not run, not cancelled)."""
        with self._wake:
            return len(self._heap) - self._cancelled

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> Timer:
        """Call ``callback(*args)`` on the scheduler's thread at ``when``
        (``time.monotonic()`` seconds; a time already past runs at once).

        Raises:
            RuntimeError: the scheduler was stopped.
        """
        with self._wake:
            if self._stopped:
                raise RuntimeError(f"{self.name} was stopped")
            timer = Timer(self, when, next(self._seq), callback, args)
            heapq.heappush(self._heap, timer)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            elif self._heap[0] is timer:
                self._wake.notify()
        return timer

    def call_later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> Timer:
        """Call ``callback(*args)`` on the scheduler's thread in ``delay_s`` seconds.

        Raises:
            RuntimeError: the scheduler was stopped.
        """
        return self.call_at(time.monotonic() + delay_s, callback, *args)

    def stop(self) -> None:
        """Drop every pending entry, stop the thread and wait for it (not when
        called from a callback). Idempotent."""
        with self._wake:
            self._stopped = True
            for timer in self._heap:
                timer._callback, timer._args = None, ()
            self._heap.clear()
            self._cancelled = 0
            self._wake.notify()
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _cancel(self, timer: Timer) -> bool:
        with self._wake:
            if timer._callback is None:
                return False
            timer._callback, timer._args = None, ()
            self._cancelled += 1
            if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
                self._heap = [t for t in self._heap if t._callback is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0
            return True

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped:
                        return
                    if self._heap:
                        wait = self._heap[0].when - time.monotonic()
                        if wait <= 0:
                            break
                    else:
                        wait = None
                    self._wake.wait(wait)
                timer = heapq.heappop(self._heap)
                callback, args = timer._callback, timer._args
                if callback is None:
                    self._cancelled -= 1
                    continue
                timer._callback, timer._args = None, ()
            try:
                callback(*args)
            except Exception:
                log.exception("a scheduled call failed: %r", callback)
            # Not kept alive while the thread waits for the next entry.
            del callback, args
