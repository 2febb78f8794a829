"""ProviderActor: one per backend; runs requests on a bounded worker pool.

The Router admits work through :meth:`ProviderActor.admit` on its own thread (a
non-blocking slot check, then a hand-off to the pool): a mailbox hop there would
cost a thread wake-up per request and carry nothing that the lock does not. The
actor owns the pool and its lifecycle; it is what the supervisor restarts. A
worker runs the provider's blocking call with the request handle's ``emit`` as
the callback: chunks go straight to the caller's queue. When the call ends, the
worker notes the outcome for the HealthMonitor and, for a failure, tells the
Router to try elsewhere (retries with backoff are the Router's: a 503 goes to
another backend first).

Mid-stream policy: once a chunk has reached the caller, a failure is not silently
re-routed. With ``mid_stream="error"`` the caller gets
:class:`~rubberduck.errors.StreamInterrupted` with the partial text; with
``"restart"`` a :class:`~rubberduck.messages.Restart` event, then the request
falls back like any other.

When the actor dies (a crash, or a sibling's restart under ``one_for_all``), it
admits nothing more and its requests are not lost: those still queued go back to
the Router at once, the running ones have their HTTP call closed and go back to
the Router (or, past the first chunk, follow the mid-stream policy).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from rubberduck.actors.health import HEALTH
from rubberduck.actors.supervisor import Registry, SupervisedActor
from rubberduck.errors import (
    AllProvidersFailed,
    Cancelled,
    InternalError,
    ProtocolError,
    ProviderUnavailable,
    RubberDuckError,
    ServerBusy,
    StreamInterrupted,
)
from rubberduck.messages import AttemptFailed, Done, EmbedRequest, Outcome, Tick
from rubberduck.providers.base import CancelScope, Provider, sending
from rubberduck.request_state import RequestState

__all__ = ["Load", "ProviderActor", "provider_actor_name"]

ROUTER = "router"

log = logging.getLogger("rubberduck.provider")


def provider_actor_name(backend: str) -> str:
    """Registry name of a backend's actor."""
    return f"provider:{backend}"


class Load:
    """Requests dispatched to each backend and not finished there yet.

    The Router adds one when it dispatches; the backend's actor takes it away
    when the request leaves it (done, failed, handed back). The Router reads it
    to break priority ties by fewest requests in flight. Shared by reference, so
    it survives actor restarts.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, backend: str, n: int) -> None:
        """Change ``backend``'s count by ``n``."""
        with self._lock:
            self._counts[backend] = self._counts.get(backend, 0) + n

    def __getitem__(self, backend: str) -> int:
        return self._counts.get(backend, 0)


class ProviderActor(SupervisedActor):
    """Admits requests for one backend and runs them on its worker pool.

    Args:
        registry: Where the Router and HealthMonitor are found.
        provider: The backend's provider.
        load: The shared in-flight counts (see :class:`Load`).
        max_in_flight: Requests running at once (pool size).
        max_queue: Requests waiting for a worker; past it, ``ServerBusy``.
    """

    def __init__(
        self,
        registry: Registry,
        provider: Provider,
        load: Load | None = None,
        *,
        max_in_flight: int = 4,
        max_queue: int = 64,
    ) -> None:
        super().__init__(registry, provider_actor_name(provider.name))
        self.provider = provider
        self.backend = provider.name
        self.load = load if load is not None else Load()
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue

    def started(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix=f"rubberduck-{self.backend}"
        )
        self._slots = threading.Semaphore(self.max_in_flight + self.max_queue)
        self._lock = threading.Lock()
        self._admitted: dict[int, tuple[RequestState, Future[None]]] = {}
        # The cancel scope of each attempt running here, by handle id. At our death
        # only these are closed: a request already handed on may be running its
        # next attempt elsewhere.
        self._scopes: dict[int, CancelScope] = {}
        self._exit_reason: str | None = None
        self.registry.admissions[self.backend] = self.admit

    def cleanup(self, crashed: bool) -> None:
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        with self._lock:
            self._exit_reason = "crashed" if crashed else "stopped"
            admitted = list(self._admitted.values())
            running = list(self._scopes.values())
        if self.registry.admissions.get(self.backend) == self.admit:
            del self.registry.admissions[self.backend]
        for handle, future in admitted:
            if future.cancel():  # still queued: it never reached the backend
                self._left(handle)
                self._hand_back(handle, "before it started")
        for scope in running:
            scope.cancel()  # the worker sees the closed call and hands the request on
        # After a crash the replacement takes new work at once (the runtime joins
        # these workers at close); at a stop, wait for them (their calls are
        # closed, so the wait is short).
        pool.shutdown(wait=not crashed)
        if crashed:
            self.registry.leftovers.append(pool)

    def admit(self, handle: RequestState) -> bool:
        """Take ``handle`` for this backend: queue it on the worker pool, or answer
        :class:`~rubberduck.errors.ServerBusy` (through the Router) when
        ``max_in_flight + max_queue`` requests are here already. Called on the
        Router's thread; never blocks.

        Returns:
            ``False`` if this actor is going away and took nothing (route it
            elsewhere); the caller's in-flight count is then the caller's to undo.
        """
        with self._lock:
            if self._exit_reason is not None:
                return False
            if handle.finished:
                self.load.add(self.backend, -1)
                return True
            if self._slots.acquire(blocking=False):
                future = self._pool.submit(self._work, handle)
                self._admitted[handle.id] = (handle, future)
                return True
        self.load.add(self.backend, -1)
        busy = ServerBusy(
            f"{self.max_in_flight} requests running and {self.max_queue} waiting — "
            "raise max_in_flight/max_queue for this provider, or add a backend",
            provider=self.backend,
        )
        self._report_failed(handle, busy)
        return True

    def _left(self, handle: RequestState) -> None:
        """``handle`` is no longer this actor's: free its slot and count."""
        with self._lock:
            self._admitted.pop(handle.id, None)
            self._scopes.pop(handle.id, None)
        self._slots.release()
        self.load.add(self.backend, -1)

    def _moved(self, when: str) -> ProviderUnavailable:
        """Why a request leaves this actor as it dies (fallback: the Router moves it)."""
        return ProviderUnavailable(
            f"its actor {self._exit_reason or 'stopped'} {when}", provider=self.backend
        )

    def _hand_back(self, handle: RequestState, when: str) -> None:
        self._report_failed(handle, self._moved(f"{when}; the request was moved"))

    # --- worker threads -----------------------------------------------------------

    def _work(self, handle: RequestState) -> None:
        try:
            if handle.finished:
                return
            error = self._attempt(handle) if self._exit_reason is None else None
            if handle.finished:
                return
            if self._exit_reason is not None:
                error = self._moved("during the request")
            elif error is None:
                error = ProtocolError(
                    "the answer ended without a final chunk", provider=self.backend
                )
            if handle.delivered:
                self._interrupted(handle, error)
            else:
                self._report_failed(handle, error)
        except Exception as exc:
            log.exception("%s failed on request %s", self.name, handle.id)
            handle.fail(InternalError(f"{self.name} failed on this request: {exc!r}"))
        finally:
            self._left(handle)

    def _interrupted(self, handle: RequestState, error: RubberDuckError) -> None:
        """A failure after the first chunk reached the caller: the mid-stream policy."""
        reason = f"the stream broke after it started: {error.message}"
        if handle.mid_stream == "restart" and error.fallback:
            try:
                handle.restart(self.backend, error.message)
            except Cancelled:
                return
            self._report_failed(handle, error)
            return
        handle.fail(
            StreamInterrupted(reason, provider=self.backend, partial_text="".join(handle.partial))
        )

    def _attempt(self, handle: RequestState) -> RubberDuckError | None:
        """One call to the backend; returns the error, or ``None`` on success."""
        started = time.monotonic()
        scope = handle.new_scope()
        with self._lock:
            self._scopes[handle.id] = scope
            dying = self._exit_reason is not None
        if dying:
            scope.cancel()  # cleanup has already closed the scopes it knew of
        error: RubberDuckError | None = None
        try:
            request = handle.request
            if isinstance(request, EmbedRequest):
                self._embed(handle, request, scope)
            else:
                self.provider.run(request, handle.emit, scope)
        except RubberDuckError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a provider bug must not lose the request
            error = ProtocolError(f"provider failed unexpectedly: {exc!r}", provider=self.backend)
        if handle.cancelled or (error is not None and scope.cancelled):
            kind = "cancelled"
        elif error is None:
            kind = "ok"
        elif isinstance(error, ProviderUnavailable) and error.refused:
            kind = "refused"
        else:
            kind = error.kind
        outcome = Outcome(
            self.backend, kind, time.monotonic() - started, error.message if error else ""
        )
        # One ordered queue for every outcome, so that the breaker sees them in the
        # order they happened; a failure also wakes the monitor.
        self.registry.outcomes.append(outcome)
        if kind != "ok":
            self.registry.tell(HEALTH, Tick())
        if error is not None and not error.provider:
            error.provider = self.backend
        return error

    def _embed(self, handle: RequestState, request: EmbedRequest, scope: CancelScope) -> None:
        """An embedding request: one call, no stream; a cancel, the deadline or
        this actor's death closes its connection (HTTP providers)."""
        try:
            with sending(scope):
                answer = self.provider.embed(request, timeout=max(handle.time_left(), 0.001))
        finally:
            scope.detach()
        handle.embedding = answer
        handle.emit(
            Done(
                done_reason="stop",
                usage=answer.usage,
                model=answer.model,
                provider=self.backend,
                durations=answer.durations,
            )
        )

    def _report_failed(self, handle: RequestState, error: RubberDuckError) -> None:
        if handle.finished:
            return  # cancelled, timed out or closed meanwhile: nothing to route
        message = AttemptFailed(handle, self.backend, error)
        if not self.registry.tell_eventually(ROUTER, message, handle.time_left()):
            handle.causes[self.backend] = error
            handle.fail(AllProvidersFailed(handle.causes, model=handle.request.model))
