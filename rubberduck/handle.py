"""The life of one request: its reply queue, deadline and single terminal outcome.

The caller holds a :class:`RequestHandle`; actors pass it along by reference.
Events go from the worker thread straight into the handle's queue (the data path
never crosses an actor). Whoever ends the request — the worker with ``Done``, the
router with an error, the caller by cancelling or timing out — goes through
:meth:`RequestHandle._finish`, which lets exactly one of them win.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec

from rubberduck.errors import Cancelled, RequestTimeout, RubberDuckError
from rubberduck.messages import (
    AnyRequest,
    ChatRequest,
    ChatResponse,
    Delta,
    Done,
    EmbedResponse,
    Event,
    GenerateResponse,
    Restart,
    assemble_chat,
    assemble_generate,
)
from rubberduck.providers.base import CancelScope

__all__ = ["RequestHandle"]

_ids = itertools.count(1)


class RequestHandle:
    """A submitted request: iterate it for events, or wait for its ``result()``.

    Iterating yields :class:`~rubberduck.messages.Delta`,
    :class:`~rubberduck.messages.ToolCall` and finally
    :class:`~rubberduck.messages.Done`; a failure is raised as a
    :class:`~rubberduck.errors.RubberDuckError` instead of ``Done``. Closing the
    handle (or leaving its ``with`` block) before the end cancels the request and
    closes its HTTP connection.

    Attributes:
        id: Process-unique request number.
        request: The request as submitted.
        deadline: ``time.monotonic()`` value after which the request fails with
            :class:`~rubberduck.errors.RequestTimeout`.
        timeout: The request's total timeout as given, seconds.
        mid_stream: What a break after the first chunk does: ``"error"`` or
            ``"restart"`` (see :class:`~rubberduck.messages.Restart`).
        backends: The backends that may serve it; ``None``: any.
        fallback: ``False`` keeps the request on the first backend it was sent
            to (retry rounds included): no other backend is tried.
        allow_substitute: Whether a ``serve_any_model`` backend may answer with
            a model other than the one asked for.
        tried: Backends attempted, in order (a backend appears again after a
            retry round).
        causes: Backend name → the last error it gave for this request.
    """

    def __init__(
        self,
        request: AnyRequest,
        *,
        timeout: float,
        max_buffered: int = 4096,
        mid_stream: Literal["error", "restart"] = "error",
        backends: frozenset[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool = True,
    ) -> None:
        self.id = next(_ids)
        self.request = request
        self.mid_stream = mid_stream
        self.backends = backends
        self.fallback = fallback
        self.allow_substitute = allow_substitute
        #: Backends the router chose knowing they would answer with another model.
        self.substitutes: set[str] = set()
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_buffered)
        self._lock = threading.Lock()
        self._scope: CancelScope | None = None
        self._events: list[Event] = []
        self._outcome: Done | RubberDuckError | None = None  # as the caller saw it
        self.finished = False  # a terminal outcome exists (producer side)
        self.cancelled = False
        self.delivered = False  # a Delta/ToolCall reached the queue: no silent fallback
        self.partial: list[str] = []
        self.tried: list[str] = []
        self.causes: dict[str, RubberDuckError] = {}
        # Router bookkeeping: backends not to try again this round, rounds retried.
        self.excluded: set[str] = set()
        self.retry_round = 0
        self.on_finish: Any = None  # set by the runtime to forget the handle
        #: The answer of an embedding request, set by the worker before its Done.
        self.embedding: EmbedResponse | None = None
        #: Set by the runtime: fills in a Done's cost and counts its usage.
        self.pricer: Callable[[Done], Done] | None = None

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<RequestHandle #{self.id} model={self.request.model!r} {state}>"

    # --- producer side (worker threads and the router) ------------------------------

    def time_left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self.deadline - time.monotonic()

    def new_scope(self) -> CancelScope:
        """A cancel scope for the next attempt, already cancelled if the request is."""
        scope = CancelScope()
        with self._lock:
            self._scope = scope
            cancelled = self.finished
        if cancelled:
            scope.cancel()
        return scope

    def restart(self, provider: str, reason: str) -> None:
        """Tell the caller to discard what it received (a :class:`Restart` event);
        the request may then fall back as if nothing had been delivered.

        Raises:
            Cancelled: the request already ended or the caller stopped reading.
        """
        if self.finished:
            raise Cancelled("the request was cancelled")
        event = Restart(provider=provider, reason=reason, discarded_text="".join(self.partial))
        self._put(event)
        self.partial = []
        self.delivered = False

    def emit(self, event: Event) -> None:
        """Deliver one event to the caller (the provider's ``emit`` callback).

        Raises:
            Cancelled: the request already ended (cancelled, timed out) or the
                caller stopped reading until the deadline; the provider stops.
        """
        if self.finished:
            raise Cancelled("the request was cancelled")
        if type(event) is Done:
            done: Done = event
            if self.causes:
                notes = tuple(
                    f"{name}: {err.message}"
                    for name, err in self.causes.items()
                    if name != done.provider
                )
                done = msgspec.structs.replace(done, fallbacks=notes)
            if done.provider in self.substitutes:
                done = msgspec.structs.replace(done, substituted_for=self.request.model)
            if self.pricer is not None:
                done = self.pricer(done)
            self._finish(done)
            return
        self.delivered = True
        if type(event) is Delta:
            self.partial.append(event.text)
        self._put(event)

    def _put(self, event: Event) -> None:
        # Checked and queued under the lock, so that no event lands behind the
        # terminal one that another thread (a cancel, the deadline) just queued.
        with self._lock:
            if self.finished:
                raise Cancelled("the request was cancelled")
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                pass
        # The caller is behind: wait for room outside the lock, in short slices,
        # so that a cancel or the deadline ending the request stops the wait.
        while self.time_left() > 0:
            if self.finished:
                raise Cancelled("the request was cancelled")
            try:
                self._queue.put(event, timeout=min(0.05, max(self.time_left(), 0.0)))
                return
            except queue.Full:
                continue
        self._finish(RequestTimeout("the caller stopped reading events before the deadline"))
        raise Cancelled("the caller stopped reading")

    def fail(self, error: RubberDuckError) -> bool:
        """End the request with ``error``; ``False`` if it had already ended."""
        return self._finish(error)

    def _finish(self, outcome: Done | RubberDuckError) -> bool:
        with self._lock:
            if self.finished:
                return False
            self.finished = True
            scope = self._scope
        if isinstance(outcome, (Cancelled, RequestTimeout)) and scope is not None:
            scope.cancel()
        if isinstance(outcome, Done):
            try:  # the whole answer must reach the caller: wait for it to read
                self._queue.put(outcome, timeout=max(self.time_left(), 0.0))
            except queue.Full:
                pass  # the caller is not reading; its own deadline ends the wait
        else:
            self._put_failure(outcome)
        if self.on_finish is not None:
            self.on_finish(self)
        return True

    def _put_failure(self, error: RubberDuckError) -> None:
        """Queue a failure without waiting: whoever ends the request (a cancel,
        ``Runtime.close()``, the deadline) may be the very thread that should be
        reading. Events still unread give way to it; the request is over."""
        while True:
            try:
                self._queue.put_nowait(error)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    # --- caller side --------------------------------------------------------------

    def next_event(self) -> Event:
        """Wait for the next event.

        Raises:
            StopIteration: the request already ended and its outcome was read.
            RubberDuckError: the request failed (typed), or its deadline passed
                (:class:`~rubberduck.errors.RequestTimeout`).
        """
        if self._outcome is not None:
            if isinstance(self._outcome, RubberDuckError):
                raise self._outcome
            raise StopIteration
        try:
            item = self._queue.get(timeout=max(self.time_left(), 0.0))
        except queue.Empty:
            self._finish(
                RequestTimeout(f"no answer within the request timeout of {self.timeout:g} s")
            )
            item = self._drain_terminal()
        if isinstance(item, RubberDuckError):
            self._outcome = item
            raise item
        if type(item) is Done:
            self._outcome = item
        return item  # type: ignore[no-any-return]

    def _drain_terminal(self) -> Any:
        """After a timeout, the next item: the request has ended, so its terminal
        item is in the queue or about to be (whoever ended it queues it just
        after marking it ended); events queued before it come first."""
        try:
            return self._queue.get(timeout=1.0)
        except queue.Empty:
            return RequestTimeout(f"no answer within the request timeout of {self.timeout:g} s")

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                event = self.next_event()
            except StopIteration:
                return
            self._events.append(event)
            yield event
            if type(event) is Done:
                return

    def result(
        self, timeout: float | None = None
    ) -> ChatResponse | GenerateResponse | EmbedResponse:
        """Wait for the whole answer.

        Args:
            timeout: Seconds to wait at most; ``None`` waits until the request's
                deadline. Passing it cancels the request.

        Returns:
            A :class:`ChatResponse` for a chat request, a
            :class:`GenerateResponse` for a generate request, an
            :class:`EmbedResponse` for an embedding request.

        Raises:
            RubberDuckError: the request failed; a timeout is
                :class:`~rubberduck.errors.RequestTimeout`.
        """
        if timeout is not None:
            self.deadline = min(self.deadline, time.monotonic() + timeout)
        for _ in self:
            pass
        if isinstance(self._outcome, RubberDuckError):
            raise self._outcome
        if isinstance(self.request, ChatRequest):
            return assemble_chat(self._events)
        if self.embedding is not None:
            done = self._events[-1]
            if type(done) is Done and done.substituted_for is not None:
                return msgspec.structs.replace(self.embedding, substituted_for=done.substituted_for)
            return self.embedding
        return assemble_generate(self._events)

    def cancel(self) -> None:
        """Stop the request: its HTTP call is closed and its slot freed.

        A request that already ended is left as it was; otherwise its outcome
        becomes :class:`~rubberduck.errors.Cancelled`.
        """
        with self._lock:
            if self.finished:
                return
            self.cancelled = True
        self._finish(Cancelled("the request was cancelled by the caller"))

    def close(self) -> None:
        """Same as :meth:`cancel`; makes the handle usable with ``contextlib.closing``."""
        self.cancel()

    def __enter__(self) -> RequestHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()
