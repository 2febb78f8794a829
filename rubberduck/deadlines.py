"""Deadlines that hold whether or not the caller is reading.

A caller waiting on a handle times out by itself; one that submitted and walked
away does not. :class:`DeadlineWatch` is one thread with a heap of deadlines: it
ends every request still running at its deadline with
:class:`~rubberduck.errors.RequestTimeout`, which closes its HTTP call and frees
its slot. Cost per request: one heap push under a lock.
"""

from __future__ import annotations

import heapq
import threading
import time

from rubberduck.errors import RequestTimeout
from rubberduck.request_state import RequestState

__all__ = ["DeadlineWatch"]


class DeadlineWatch:
    """Ends requests that outlive their deadline. :meth:`stop` ends the thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, RequestState]] = []
        self._ended = 0  # entries in the heap whose request already ended
        self._wake = threading.Condition()
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name="rubberduck-deadlines", daemon=True)
        self.thread.start()

    def watch(self, handle: RequestState) -> None:
        """End ``handle`` with ``RequestTimeout`` at ``handle.deadline`` if it is
        still running then."""
        with self._wake:
            heapq.heappush(self._heap, (handle.deadline, handle.id, handle))
            if self._heap[0][2] is handle:
                self._wake.notify()

    def ended(self) -> None:
        """A watched request ended. Its entry stays until the heap is mostly
        ended entries, then the heap is rebuilt (amortized O(1) per request), so
        memory follows the requests in flight, not the request rate."""
        with self._wake:
            self._ended += 1
            if self._ended > 1024 and self._ended * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].finished]
                heapq.heapify(self._heap)
                self._ended = 0

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self.thread.join()

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, handle = heapq.heappop(self._heap)
                    # (A deadline only ever moves earlier: result(timeout=...).)
                    handle.fail(
                        RequestTimeout(
                            f"no answer within the request timeout of {handle.timeout:g} s"
                        )
                    )
                wait = self._heap[0][0] - now if self._heap else None
                self._wake.wait(wait)
