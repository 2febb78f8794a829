"""Reply channels: how a request's events travel from a worker thread to its caller.

A :class:`ReplyChannel` has a producer side, used by
:class:`~rubberduck.request_state.RequestState` on worker and actor threads, and a
consumer side that differs by kind of caller:

- :class:`ThreadChannel`: a bounded ``queue.Queue``; the caller's thread blocks
  on :meth:`ThreadChannel.get`.
- :class:`CallerChannel`: the channel of a blocking call (``Runtime.chat``, ...):
  the caller's thread, which only waits for the answer, also runs the attempts
  handed to it (:meth:`ReplyChannel.hand`) instead of a worker thread running
  them and waking it at the end.
- :class:`LoopChannel`: events reach an asyncio event loop with
  ``loop.call_soon_threadsafe`` into a buffer owned by the loop; the caller's task
  awaits :meth:`LoopChannel.get`. No thread waits on the loop's behalf.

Both are bounded (``[router] max_buffered_events``): when the caller is behind,
:meth:`ReplyChannel.put` makes the worker wait for room; the final item of a
request (:meth:`ReplyChannel.put_final`) never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["CallerChannel", "LoopChannel", "ReplyChannel", "ThreadChannel"]


class ReplyChannel(Protocol):
    """The producer side of a reply channel (any thread).

    Attributes:
        gone: ``True`` once the consumer can no longer receive anything (its
            event loop closed): the request should stop.
    """

    gone: bool

    def offer(self, item: Any) -> bool:
        """Send ``item`` if there is room now; ``False`` (nothing sent) if not."""

    def put(self, item: Any, timeout: float) -> bool:
        """Send ``item``, waiting up to ``timeout`` seconds for room; ``False``
        (nothing sent) if there was none in time."""

    def put_final(self, item: Any) -> None:
        """Send the request's last item (an error) without waiting, even when
        full: whoever ends the request may be the very thread that reads it."""

    def empty(self) -> bool:
        """Whether nothing sent is left unread."""

    def hand(self, attempt: Callable[[], None]) -> bool:
        """Give ``attempt`` (a request's attempt, ready to run) to the consumer's
        thread, to run it there; ``False`` (nothing given) when the consumer
        does not run attempts or no longer reads."""


class ThreadChannel:
    """A reply channel read by a blocking thread.

    Args:
        capacity: Items sent and not yet read before :meth:`put` waits; ``0``:
            no bound (for a reader that is also the producer).
    """

    def __init__(self, capacity: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self.gone = False

    def offer(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def put(self, item: Any, timeout: float) -> bool:
        try:
            self._queue.put(item, timeout=max(timeout, 0.0))
        except queue.Full:
            return False
        return True

    def put_final(self, item: Any) -> None:
        # Events still unread give way to it: the request is over.
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()

    def hand(self, attempt: Callable[[], None]) -> bool:
        return False  # its reader may be anywhere: a worker runs the attempt

    def get(self, timeout: float) -> Any:
        """The next item, waiting up to ``timeout`` seconds.

        Raises:
            queue.Empty: nothing came in time.
        """
        return self._queue.get(timeout=max(timeout, 0.0))


class _Attempt:
    """An attempt handed to a :class:`CallerChannel`'s reader (not an event)."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[], None]) -> None:
        self.run = run


class CallerChannel(ThreadChannel):
    """The unbounded channel of a blocking call, whose reader runs the attempts
    handed to it.

    The caller's thread of ``Runtime.chat`` (and the other blocking calls) does
    nothing but wait for the answer. An attempt that a backend starts later —
    when a slot frees for a request on its waiting list, or after a fallback or
    retry — comes to that thread through the channel and runs in :meth:`get`:
    one wake-up of the caller, where a worker would cost waking the worker and
    then, with the answer, the caller.

    Every attempt handed must run, or it would keep its backend slot: the
    reader calls :meth:`close` when it stops reading, which refuses later ones
    (the backend then gives them to a worker) and runs those left (each finds
    its request ended and only gives its slot back).
    """

    def __init__(self) -> None:
        super().__init__(0)
        self._lock = threading.Lock()
        self._open = True

    def hand(self, attempt: Callable[[], None]) -> bool:
        with self._lock:
            if not self._open:
                return False
            self._queue.put_nowait(_Attempt(attempt))
        return True

    def get(self, timeout: float) -> Any:
        """The next item, waiting up to ``timeout`` seconds; attempts handed
        meanwhile run here, on the reader's thread.

        Raises:
            queue.Empty: nothing came in time (running attempts included).
        """
        give_up = time.monotonic() + timeout
        while True:
            item = self._queue.get(timeout=max(give_up - time.monotonic(), 0.0))
            if type(item) is not _Attempt:
                return item
            item.run()

    def close(self) -> None:
        """The reader stops reading (its request must have ended): refuse any
        later attempt and run the ones handed already. Idempotent."""
        with self._lock:
            self._open = False
        while self._queue.qsize():  # usually empty: no exception raised to find out
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if type(item) is _Attempt:
                item.run()


class LoopChannel:
    """A reply channel read by a task on one asyncio event loop.

    Producers append to a ``deque`` and call ``loop.call_soon_threadsafe``
    once per batch (not while a delivery is already scheduled); on the loop the
    items move to a ``deque`` that only the loop touches, and wake the task
    waiting in :meth:`get`. The count of items sent and not yet read (under a lock shared
    with producers) is what bounds the channel.

    Args:
        loop: The loop whose tasks read it (the running loop at submit time).
        capacity: Items sent and not yet read before :meth:`put` waits.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._buffer: deque[Any] = deque()  # the loop's side only
        self._pending: deque[Any] = deque()  # sent, not yet moved to _buffer by the loop
        self._scheduled = False  # a _deliver is scheduled on the loop and has not run
        self._waiter: asyncio.Future[None] | None = None  # the loop's side only
        self._room = threading.Condition(threading.Lock())
        self._unread = 0  # sent and not yet read; under _room
        self.gone = False

    # --- producer side (any thread) -------------------------------------------------

    def offer(self, item: Any) -> bool:
        with self._room:
            if self._unread >= self._capacity:
                return False
            self._unread += 1
        self._send(item)
        return True

    def put(self, item: Any, timeout: float) -> bool:
        give_up = time.monotonic() + timeout
        with self._room:
            while self._unread >= self._capacity:
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self._room.wait(left)
            self._unread += 1
        self._send(item)
        return True

    def put_final(self, item: Any) -> None:
        with self._room:
            self._unread += 1
        self._send(item)

    def empty(self) -> bool:
        with self._room:
            return self._unread == 0

    def hand(self, attempt: Callable[[], None]) -> bool:
        return False  # the loop's thread never blocks on an attempt

    def _send(self, item: Any) -> None:
        # One wake-up of the loop per batch: while a delivery is scheduled and
        # not yet run, items join it (a burst of chunks costs one
        # call_soon_threadsafe, not one each).
        self._pending.append(item)
        if self._scheduled and not self._loop.is_closed():
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody will read this
            self.gone = True

    # --- the loop's side --------------------------------------------------------------

    def _deliver(self) -> None:
        # Cleared before taking the items: one sent after this is either taken
        # below or schedules the next delivery.
        self._scheduled = False
        pending, buffer = self._pending, self._buffer
        while pending:
            buffer.append(pending.popleft())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        """The next item; waits without blocking the loop.

        Raises:
            asyncio.CancelledError: the waiting task was cancelled (the item, if
                one comes, stays for the next ``get``).
        """
        while not self._buffer:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._buffer.popleft()
        with self._room:
            self._unread -= 1
            self._room.notify()
        return item
