"""Recording off the request path: a bounded queue and one daemon thread.

The OpenTelemetry Python SDK spends most of a request's instrumentation cost
(~100 µs for two spans, five histogram records and a counter add: cleaning and
hashing attributes, creating spans, locks) in its own calls. The request's
threads only capture timestamps and names (a few µs) and :meth:`Recorder.submit`
a job; the ``rubberduck-telemetry`` thread makes the SDK calls. Spans are
created there with their real ``start_time``/``end_time`` (ns) and the parent
context captured from the caller, so they are the same spans; histogram
records made later are the same data.

What this moves where: the SDK's CPU is still spent, on the recorder thread
(which holds the GIL while it records: a service saturating its CPU gains no
throughput). The queue is bounded (:attr:`Recorder.capacity` jobs); when it is
full a job is dropped — never blocks, never raises — and counted in
:attr:`Recorder.dropped`, the ``rubberduck.telemetry.dropped`` counter and a
rate-limited WARNING on ``rubberduck.telemetry``. :func:`flush` (also called by
``Runtime.close()`` and at interpreter exit) records what is queued.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rubberduck.telemetry import otel
from rubberduck.telemetry.logs import LIMITER, component, fields, warn

__all__ = ["RECORDER", "Recorder", "flush"]

_log = component("telemetry")
Job = Callable[..., None]


class Recorder:
    """A bounded FIFO of telemetry jobs, run by one daemon thread started on
    the first :meth:`submit`.

    Args:
        capacity: Jobs (about one per request) that may wait; past it,
            :meth:`submit` drops the job and counts it.
        interval_s: Seconds the thread sleeps after a batch, so that jobs
            arriving under load are recorded in batches (it waits on an event
            when the queue is empty: no polling while idle).
        yield_s: Seconds of recording after which the thread gives up the GIL
            once, so that a request thread waits at most about that long.

    Attributes:
        dropped: Jobs dropped because the queue was full, since creation.
        inline: Run each job at once on the submitting thread (the SDK's cost
            back on the request path; benchmarks compare both).
    """

    def __init__(
        self, capacity: int = 10_000, interval_s: float = 0.02, yield_s: float = 0.001
    ) -> None:
        self.capacity = capacity
        self.interval_s = interval_s
        self.yield_s = yield_s
        self.inline = False
        self.dropped = 0
        self._reported = 0
        self._queue: deque[tuple[Job, tuple[Any, ...]]] = deque()
        self._draining = threading.Lock()  # held while jobs run: flush waits on it
        self._count = threading.Lock()
        self._wake = threading.Event()
        self._idle = True
        self._thread: threading.Thread | None = None

    def submit(self, job: Job, *args: Any) -> bool:
        """Queue ``job(*args)`` for the recorder thread; ``False`` when the
        queue is full and the job was dropped (and counted). Never blocks on
        the SDK, never raises."""
        if self.inline:
            self._run(job, args)
            return True
        queue = self._queue
        if len(queue) >= self.capacity:
            with self._count:
                self.dropped += 1
            return False
        queue.append((job, args))
        if self._thread is None:
            self._start()
        if self._idle:
            self._wake.set()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Record every job queued so far, on this thread if the recorder is
        not already at it. ``False`` if the recorder held the queue longer than
        ``timeout_s`` seconds. The SDK's own buffers (a ``BatchSpanProcessor``,
        a periodic reader) are the application's to flush."""
        if not self._draining.acquire(timeout=timeout_s):
            return False
        try:
            self._drain(pause=False)
        finally:
            self._draining.release()
        return True

    def _start(self) -> None:
        with self._count:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._loop, name="rubberduck-telemetry", daemon=True)
            self._thread = thread
        atexit.register(self.flush, 2.0)  # after the SDK's own (LIFO): runs before its shutdown
        thread.start()

    def _loop(self) -> None:
        while True:
            if not self._queue:
                self._idle = True
                if not self._queue:  # re-checked: a submit may have seen _idle False
                    self._wake.wait()
                self._wake.clear()
                self._idle = False
            with self._draining:
                self._drain(pause=True)
            time.sleep(self.interval_s)

    def _drain(self, pause: bool) -> None:
        """Run the queued jobs (the caller holds ``_draining``)."""
        queue = self._queue
        clock = time.perf_counter
        since = clock()
        while queue:
            job, args = queue.popleft()
            self._run(job, args)
            if pause and clock() - since > self.yield_s:
                # Let a request thread waiting for the GIL have it now rather
                # than at the interpreter's switch interval (5 ms); not after
                # every job: each hand-over costs both threads CPU.
                time.sleep(0)
                since = clock()
        self._report_dropped()

    def _run(self, job: Job, args: tuple[Any, ...]) -> None:
        try:
            job(*args)
        except Exception:  # noqa: BLE001 - telemetry must never stop the recorder
            name = getattr(job, "__name__", repr(job))
            if LIMITER.allow(("rubberduck.telemetry", name)) is not None:
                _log.exception("telemetry job %s failed", name)

    def _report_dropped(self) -> None:
        dropped = self.dropped
        if dropped == self._reported:
            return
        delta, self._reported = dropped - self._reported, dropped
        self._run(self._count_dropped, (delta,))

    def _count_dropped(self, delta: int) -> None:
        """WARNING and ``rubberduck.telemetry.dropped``: ``delta`` more jobs dropped."""
        warn(
            _log,
            "telemetry queue full (%d jobs): %d requests' spans and metrics dropped",
            self.capacity,
            delta,
            extra=fields(error_kind="queue_full", dropped=delta),
        )
        if (inst := otel.instruments()) is not None:
            inst.dropped.add(delta)

    def _forked(self) -> None:
        """In a forked child: no thread, and the parent records what it queued."""
        self._queue.clear()
        self._thread = None
        self._idle = True
        self._draining = threading.Lock()
        self._count = threading.Lock()
        self._wake = threading.Event()


#: The recorder every request's telemetry goes through.
RECORDER = Recorder()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: RECORDER._forked())


def flush(timeout_s: float = 10.0) -> bool:
    """Record the telemetry of every request that has finished so far (spans
    ended, metrics recorded to the SDK); ``Runtime.close()`` calls it. Call it
    before reading an in-memory exporter or reader, or before shutting the SDK
    down yourself.

    Args:
        timeout_s: Seconds to wait for the recorder thread's current batch.

    Returns:
        ``False`` if the recorder did not let go within ``timeout_s``.
    """
    return RECORDER.flush(timeout_s)
