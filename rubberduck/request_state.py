"""The internal state of one request: deadline, cancel scope, exactly-once outcome.

A :class:`RequestState` is what the actors pass along by reference (in
:class:`~rubberduck.messages.Submit` and
:class:`~rubberduck.messages.AttemptFailed`); the caller never sees it, it holds
a consumer-only handle (:mod:`rubberduck.handle`). Events go from the worker
thread through :meth:`RequestState.emit` straight into the request's reply
channel (:mod:`rubberduck.channels`; the data path never crosses an actor).
Whoever ends the request — the worker with ``Done``, the router with an error,
the deadline watch, the caller by cancelling — goes through
:meth:`RequestState._finish`, which lets exactly one of them win.

It also carries the routing bookkeeping the Router and the workers write
(``tried``, ``causes``, ``excluded``, ``retry_round``, ``substitutes``,
``delivered``, ``partial``, ``embedding``): written by one thread at a time, as
the request moves from the Router to a worker and back.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from rubberduck.channels import ReplyChannel
from rubberduck.errors import Cancelled, RequestTimeout, RubberDuckError
from rubberduck.messages import AnyRequest, Delta, Done, EmbedResponse, Event, Restart
from rubberduck.providers.base import CancelScope
from rubberduck.telemetry.requests import request_finished, request_started

__all__ = ["RequestState"]

_ids = itertools.count(1)

#: Longest wait for room in the channel between two looks at the request's end.
_ROOM_SLICE_S = 0.05


class RequestState:
    """One request in flight, as the runtime's threads see it (the producer side).

    Args:
        request: The request as submitted (already checked).
        channel: Where its events go.
        timeout: The request's total timeout, seconds.
        mid_stream: What a break after the first chunk does: ``"error"`` or
            ``"restart"``.
        backends: The backends that may serve it; ``None``: any.
        fallback: ``False`` keeps it on the first backend it was sent to.
        allow_substitute: Whether a ``serve_any_model`` backend may answer with
            another model.

    Attributes:
        id: Process-unique request number.
        deadline: ``time.monotonic()`` value after which the request fails with
            :class:`~rubberduck.errors.RequestTimeout`. It never moves.
        finished: A terminal outcome exists.
        cancelled: The caller cancelled it.
        on_finish: Called with the state once it ended (the runtime forgets it).
        pricer: Fills in a ``Done``'s cost and counts its usage.
    """

    def __init__(
        self,
        request: AnyRequest,
        channel: ReplyChannel,
        *,
        timeout: float,
        mid_stream: Literal["error", "restart"] = "error",
        backends: frozenset[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool = True,
    ) -> None:
        self.id = next(_ids)
        self.request = request
        self.channel = channel
        self.mid_stream = mid_stream
        self.backends = backends
        self.fallback = fallback
        self.allow_substitute = allow_substitute
        self.timeout = timeout
        #: The caller reads the answer as it comes (a streamed chat or generate).
        self.streamed: bool = getattr(request, "stream", False) is True
        self.deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._scope: CancelScope | None = None
        self.finished = False
        self.cancelled = False
        self.on_finish: Callable[[RequestState], None] | None = None
        self.pricer: Callable[[Done], Done] | None = None
        # --- routing bookkeeping (Router and workers) ---
        #: Backends attempted, in order (again after a retry round).
        self.tried: list[str] = []
        #: Backend name → the last error it gave for this request.
        self.causes: dict[str, RubberDuckError] = {}
        #: Backends not to try again this round.
        self.excluded: set[str] = set()
        #: Backends whose slots across the cluster were all leased when it
        #: came: full for it, as for local slots (only overflow waits there).
        self.cluster_full: set[str] = set()
        #: Retry rounds taken.
        self.retry_round = 0
        #: Backends the router chose knowing they would answer with another model.
        self.substitutes: set[str] = set()
        #: A Delta/ToolCall reached the caller: no silent fallback.
        self.delivered = False
        #: Text delivered in the current attempt (for a Restart or StreamInterrupted).
        self.partial: list[str] = []
        #: The answer of an embedding request, set by the worker before its Done.
        self.embedding: EmbedResponse | None = None
        #: The answer's final event, once it ended with one.
        self.done: Done | None = None
        # Telemetry: on the caller's thread, so the span's parent is the caller's.
        self.trace = request_started(request)
        #: The caller's thread will wait for the answer anyway and may run the
        #: first attempt itself (set only while it makes the first offer).
        self.caller_runs = False
        #: The first attempt, for the caller's thread to run, when a backend took
        #: the request on those terms (see ``ProviderActor.admit``).
        self.inline: Callable[[], None] | None = None

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<RequestState #{self.id} model={self.request.model!r} {state}>"

    def untry(self, backend: str) -> None:
        """``backend`` was full, not tried: it may take the request again (as
        overflow) in this round."""
        self.excluded.discard(backend)
        if self.tried and self.tried[-1] == backend:
            self.tried.pop()

    def time_left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self.deadline - time.monotonic()

    def new_scope(self) -> CancelScope:
        """A cancel scope for the next attempt, already cancelled if the request ended."""
        scope = CancelScope()
        with self._lock:
            self._scope = scope
            ended = self.finished
        if ended:
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
        self._put(Restart(provider=provider, reason=reason, discarded_text="".join(self.partial)))
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
            self._finish(self._annotated(event))
            return
        first = not self.delivered
        self.delivered = True
        if type(event) is Delta:
            self.partial.append(event.text)
            if self.trace is not None:
                self.trace.chunk()
        self._put(event)
        if first and self.streamed:
            # Give up the GIL once: the reader just woken takes the first chunk
            # now, instead of after this thread has decoded the rest of a burst
            # (CPython switches threads only every few milliseconds otherwise).
            time.sleep(0)

    def _annotated(self, done: Done) -> Done:
        """``done`` with the fallbacks taken, the substitution and the cost."""
        if self.causes:
            others = [(name, err) for name, err in self.causes.items() if name != done.provider]
            notes = tuple(f"{name}: {err.message}" for name, err in others)
            done = msgspec.structs.replace(done, fallbacks=notes)
        if done.provider in self.substitutes:
            done = msgspec.structs.replace(done, substituted_for=self.request.model)
        if self.pricer is not None:
            done = self.pricer(done)
        return done

    def _put(self, event: Event) -> None:
        # Checked and sent under the lock, so that no event lands behind the
        # terminal one that another thread (a cancel, the deadline) just sent.
        with self._lock:
            if self.finished:
                raise Cancelled("the request was cancelled")
            sent = self.channel.offer(event)
        if not sent:
            self._wait_for_room(event)
        if self.channel.gone:
            self.fail(Cancelled("the caller's event loop closed"))
            raise Cancelled("the caller's event loop closed")

    def _wait_for_room(self, event: Event) -> None:
        """The caller is behind (backpressure): wait for room in short slices, so
        that a cancel or the deadline ending the request stops the wait."""
        while (left := self.time_left()) > 0:
            if self.finished:
                raise Cancelled("the request was cancelled")
            if self.channel.put(event, min(_ROOM_SLICE_S, left)):
                return
        self._finish(RequestTimeout("the caller stopped reading events before the deadline"))
        raise Cancelled("the caller stopped reading")

    def fail(self, error: RubberDuckError) -> bool:
        """End the request with ``error``; ``False`` if it had already ended."""
        return self._finish(error)

    def cancel(self) -> None:
        """The caller's cancel: the outcome becomes
        :class:`~rubberduck.errors.Cancelled` and the HTTP call is closed, unless
        the request already ended."""
        with self._lock:
            if self.finished:
                return
            self.cancelled = True
        self._finish(Cancelled("the request was cancelled by the caller"))

    def _finish(self, outcome: Done | RubberDuckError) -> bool:
        with self._lock:
            if self.finished:
                return False
            self.finished = True
            scope = self._scope
        if isinstance(outcome, (Cancelled, RequestTimeout)) and scope is not None:
            scope.cancel()
        if isinstance(outcome, Done):
            self.done = outcome
            # The whole answer must reach the caller: wait for it to read (its
            # own deadline ends the wait when it is not reading).
            self.channel.put(outcome, max(self.time_left(), 0.0))
        else:
            self.channel.put_final(outcome)
        request_finished(self, outcome)
        if self.on_finish is not None:
            self.on_finish(self)
        return True
