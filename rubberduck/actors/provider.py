"""ProviderActor: one per backend; runs requests on a bounded worker pool.

The Router admits work through :meth:`ProviderActor.admit` on its own thread (a
non-blocking slot check, then a hand-off to the pool), by way of
:class:`~rubberduck.actors.channels.Admissions`: a mailbox hop there would
cost a thread wake-up per request and carry nothing that the lock does not.
``max_in_flight`` requests run, ``max_queue`` more wait for a worker; past that
the backend is full and the Router offers the request elsewhere. When no other
backend has room, the Router asks for *overflow*: the request joins a waiting
list (FIFO, up to ``max_waiting``) and starts when a slot frees, or ends at its
deadline — a burst larger than the slots waits instead of failing busy. The
actor owns the pool and its lifecycle; it is what the supervisor restarts. A
worker runs the provider's blocking call with the request handle's ``emit`` as
the callback: chunks go straight to the caller's queue. A blocking call's
attempts (``Runtime.chat``, ...) run on its caller's thread instead, which only
waits for the answer: the first at once when a slot is free, a later one (a
slot freed for it on the waiting list, a fallback, a retry) handed to it
through its reply channel (:class:`~rubberduck.channels.CallerChannel`) — one
wake-up of the caller instead of a worker's and then the caller's. Either way
an attempt runs only with its model's turn (``max_in_flight_per_model``, see
:mod:`~rubberduck.actors.model_turns`) and then one of the ``max_in_flight``
turns, always in that order: a request waiting for its model's turn holds no
thread and no backend turn (it starts when the turn is given back), and one
waiting for a backend turn holds its model's. With ``[cluster]`` it then
takes a lease that holds both limits across the replicas sharing the Redis
(:meth:`ProviderActor._cluster_slot`). When the call ends, the
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

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from rubberduck.actors.channels import Admission, Load
from rubberduck.actors.health import HEALTH
from rubberduck.actors.model_turns import ModelTurns
from rubberduck.actors.residency import model_key
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
from rubberduck.telemetry import events, requests

if TYPE_CHECKING:
    from rubberduck.cluster.leases import Lease, SlotLeases

__all__ = ["Load", "ProviderActor", "provider_actor_name"]

ROUTER = "router"

#: Stands for the future of an attempt that runs on its caller's thread: it
#: cannot be cancelled; the actor's death closes its scope instead (or, not
#: started yet, the attempt finds the actor gone and hands the request back).
_ON_CALLER: Future[None] = Future()
_ON_CALLER.set_running_or_notify_cancel()

log = logging.getLogger("rubberduck.provider")


def provider_actor_name(backend: str) -> str:
    """Registry name of a backend's actor."""
    return f"provider:{backend}"


class ProviderActor(SupervisedActor):
    """Admits requests for one backend and runs them on its worker pool.

    Args:
        registry: Where the Router and HealthMonitor are found.
        provider: The backend's provider.
        load: The shared in-flight counts (see :class:`Load`).
        max_in_flight: Requests running at once (pool size).
        max_queue: Requests waiting for a worker; past it the backend is full
            (the Router offers the request elsewhere).
        max_waiting: Requests taken as overflow (no backend had room) waiting
            for a slot; past it, full even for overflow.
        max_in_flight_per_model: Requests per model running at once (the
            host's ``OLLAMA_NUM_PARALLEL``; see
            :mod:`~rubberduck.actors.model_turns`); ``None``: no limit.
        leases: The cluster's slot leases (``[cluster]``): an attempt also
            holds one of the backend's ``max_in_flight`` leases across every
            runtime sharing the Redis (and, with ``max_in_flight_per_model``,
            one of its model's there: the same lease), taken after its local
            turns (:mod:`rubberduck.cluster.leases`; when none is free, see
            :meth:`_cluster_slot`). ``None``: local slots only.
    """

    def __init__(
        self,
        registry: Registry,
        provider: Provider,
        load: Load | None = None,
        *,
        max_in_flight: int = 4,
        max_queue: int = 64,
        max_waiting: int = 1024,
        max_in_flight_per_model: int | None = None,
        leases: SlotLeases | None = None,
    ) -> None:
        super().__init__(registry, provider_actor_name(provider.name))
        self.provider = provider
        self.backend = provider.name
        self.load = load if load is not None else Load()
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.max_waiting = max_waiting
        self.model_turns = ModelTurns(max_in_flight_per_model)
        self.leases = leases

    def started(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix=f"rubberduck-{self.backend}"
        )
        self._slots = threading.Semaphore(self.max_in_flight + self.max_queue)
        # Attempts running at once, on workers or on callers' threads.
        self._turns = threading.Semaphore(self.max_in_flight)
        self._lock = threading.Lock()
        self._admitted: dict[int, tuple[RequestState, Future[None]]] = {}
        # Overflow: taken with every slot busy, started in order as slots free.
        self._waiting: deque[RequestState] = deque()
        self._prune_at = 64  # waiting-list length at which finished ones are dropped
        # The cancel scope of each attempt running here, by handle id. At our death
        # only these are closed: a request already handed on may be running its
        # next attempt elsewhere.
        self._scopes: dict[int, CancelScope] = {}
        self._exit_reason: str | None = None
        self.registry.admissions.register(self.backend, self.admit)

    def cleanup(self, crashed: bool) -> None:
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        with self._lock:
            self._exit_reason = "crashed" if crashed else "stopped"
            admitted = list(self._admitted.values())
            running = list(self._scopes.values())
            waiting, self._waiting = list(self._waiting), deque()
        self.registry.admissions.unregister(self.backend, self.admit)
        for handle in waiting:  # never had a slot
            self.load.add(self.backend, -1, model_key(handle.request.model))
            self._hand_back(handle, "before it started")
        for handle, future in admitted:
            if future.cancel():  # still queued: it never reached the backend
                self._left(handle)
                self._hand_back(handle, "before it started")
        for scope in running:
            scope.cancel()  # the worker sees the closed call and hands the request on
        # Attempts handed to their callers' threads and not started yet run
        # soon (each caller is waiting for it), find _exit_reason set and hand
        # their request back the same way.
        # After a crash the replacement takes new work at once (the runtime joins
        # these workers at close); at a stop, wait for them (their calls are
        # closed, so the wait is short).
        pool.shutdown(wait=not crashed)
        if crashed:
            self.registry.leftovers.append(pool)

    def admit(self, handle: RequestState, *, overflow: bool = False) -> Admission:
        """Take ``handle`` for this backend if a slot is free (see
        :class:`~rubberduck.actors.channels.Admit`). Called on the Router's
        thread; never blocks. The Router counted the request in :class:`Load`
        before the call; a request taken is this actor's to uncount.

        Args:
            handle: The request.
            overflow: Take it even with every slot busy (no other backend has
                room): it waits for a slot, behind any taken so before it.

        A request whose caller will wait for it (``handle.caller_runs``) and
        finds a slot free gets its attempt as ``handle.inline``, for the
        caller's thread to run once one of the ``max_in_flight`` turns is
        free: same slot, same bound, same scope, same outcome, no thread
        hand-off to a worker and back.

        Returns:
            ``TAKEN``; ``FULL`` when ``max_in_flight + max_queue`` requests are
            here already (and, with ``overflow``, ``max_waiting`` more wait);
            ``GONE`` if this actor is going away. For ``FULL`` and ``GONE``
            nothing changed.
        """
        with self._lock:
            if self._exit_reason is not None:
                return Admission.GONE
            if handle.finished:
                self.load.add(self.backend, -1, model_key(handle.request.model))
                return Admission.TAKEN
            if not overflow and self._model_full(handle):
                return Admission.FULL
            # Requests already waiting go first: a new one does not jump the line.
            if not self._waiting and self._slots.acquire(blocking=False):
                if handle.caller_runs and self.model_turns.try_take(
                    model_key(handle.request.model)
                ):
                    # Its thread runs it (after waiting for a turn if none is
                    # free): no hand-off to a worker and back. The model's turn
                    # comes before the backend's (always: never the other way
                    # round, or a caller holding the backend's turn and a worker
                    # holding the model's would wait for each other), so it
                    # takes a backend turn here only with the model's.
                    turn = self._turns.acquire(blocking=False)
                    handle.inline = functools.partial(
                        self._work, handle, turn=turn, overflow=overflow
                    )
                    future = _ON_CALLER
                else:
                    future = self._start(handle, overflow)
                self._admitted[handle.id] = (handle, future)
                return Admission.TAKEN
            if overflow and len(self._waiting) < self.max_waiting:
                self._wait_for_slot(handle)
                return Admission.TAKEN
        return Admission.FULL

    def _wait_for_slot(self, handle: RequestState) -> None:
        """Put ``handle`` on the waiting list (under ``_lock``). Requests that
        ended while waiting (deadline, cancel) leave it when a slot frees, or
        here once the list has doubled, so it holds few finished ones."""
        if len(self._waiting) >= self._prune_at:
            live: deque[RequestState] = deque()
            for h in self._waiting:  # one pass: each either counted out or kept
                if h.finished:
                    self.load.add(self.backend, -1, model_key(h.request.model))
                else:
                    live.append(h)
            self._waiting = live
            self._prune_at = max(64, 2 * len(live))
        self._waiting.append(handle)
        if self._slots.acquire(blocking=False):  # a slot freed meanwhile
            self._start_waiting()

    def _start_waiting(self) -> None:
        """Start waiting requests while slots are free (under ``_lock``; the
        caller holds one slot, which the first live request takes)."""
        while self._waiting:
            handle = self._waiting.popleft()
            if handle.finished:
                self.load.add(self.backend, -1, model_key(handle.request.model))
                continue
            self._admitted[handle.id] = (handle, self._start(handle, True))
            if not self._slots.acquire(blocking=False):
                return
        self._slots.release()

    def _start(self, handle: RequestState, overflow: bool) -> Future[None]:
        """Start ``handle``'s attempt, which has a slot (under ``_lock``), once
        its model's turn is free: at once, or when :meth:`_given` gets it (the
        request waits on the model's waiting list meanwhile, holding no thread;
        the future returned stands for it until then). ``overflow``: it was
        taken as overflow (see :meth:`_cluster_slot`)."""
        model = model_key(handle.request.model)
        if self.model_turns.try_take(model):
            return self._run(handle, overflow)
        parked: Future[None] = Future()
        given = functools.partial(self._given, handle, parked, overflow)
        if self.model_turns.take(model, given):
            return self._run(handle, overflow)  # a turn freed meanwhile
        return parked

    def _given(self, handle: RequestState, parked: Future[None], overflow: bool) -> bool:
        """A turn of its model is ``handle``'s now (see :meth:`_start`): start
        it; ``False`` (the turn passes on) when it ended while it waited, or
        this actor is going (which hands it back)."""
        with self._lock:
            if self._exit_reason is not None or not parked.set_running_or_notify_cancel():
                return False
            if not handle.finished:
                self._admitted[handle.id] = (handle, self._run(handle, overflow))
                return True
        self._left(handle)
        return False

    def _run(self, handle: RequestState, overflow: bool) -> Future[None]:
        """Run ``handle``'s attempt, which has a slot and its model's turn
        (under ``_lock``): on its caller's thread when that thread only waits
        for the answer (a blocking call: its channel takes the attempt, see
        :class:`~rubberduck.channels.CallerChannel`), else on a worker. Either
        way it waits there for one of the ``max_in_flight`` turns."""
        attempt = functools.partial(self._work, handle, overflow=overflow)
        if handle.channel.hand(attempt):
            # Runs soon (its caller is waiting on the channel); if this actor
            # dies first, the attempt finds it gone and hands the request back.
            return _ON_CALLER
        return self._pool.submit(attempt)

    def _left(self, handle: RequestState) -> None:
        """``handle`` is no longer this actor's: free its slot and count, and
        give the slot to the next waiting request."""
        self.load.add(self.backend, -1, model_key(handle.request.model))
        with self._lock:
            self._admitted.pop(handle.id, None)
            self._scopes.pop(handle.id, None)
            # Under the lock, so that a request joining the waiting list now
            # sees either this slot or its own place in the list taken up here.
            if self._waiting and self._exit_reason is None:
                self._start_waiting()  # the slot passes on
            else:
                self._slots.release()

    def _model_full(self, handle: RequestState) -> bool:
        """Every turn for ``handle``'s model here is taken (the Router counted
        it in :class:`Load` already)."""
        model = model_key(handle.request.model)
        return model is not None and self.model_turns.full(self.load.model(self.backend, model))

    def _moved(self, when: str) -> ProviderUnavailable:
        """Why a request leaves this actor as it dies (fallback: the Router moves it)."""
        return ProviderUnavailable(
            f"its actor {self._exit_reason or 'stopped'} {when}", provider=self.backend
        )

    def _hand_back(self, handle: RequestState, when: str) -> None:
        self._report_failed(handle, self._moved(f"{when}; the request was moved"))

    # --- worker threads -----------------------------------------------------------

    def _work(self, handle: RequestState, *, turn: bool = False, overflow: bool = False) -> None:
        """Run ``handle``'s attempt (on a worker or on its caller's thread),
        which holds its model's turn (given back here); ``turn``: it holds one
        of the ``max_in_flight`` turns already; ``overflow``: it was taken as
        overflow (no other backend had room)."""
        turn = turn or self._take_turn(handle)
        lease = None
        try:
            if turn and self.leases is not None:  # the cluster's slot, after ours
                lease = self._cluster_slot(handle, overflow)
                if lease is False:
                    return
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
            if lease and self.leases is not None:
                self.leases.release(lease)
            if turn:
                self._turns.release()
            self.model_turns.give(model_key(handle.request.model))
            self._left(handle)

    def _cluster_slot(self, handle: RequestState, overflow: bool) -> Lease | Literal[False] | None:
        """One of the backend's ``max_in_flight`` slots across the cluster
        and, with ``max_in_flight_per_model``, one of its slots for the
        request's model (both in one round trip, or neither).

        Only a request taken as overflow (no other backend had room) waits for
        one. Any other that finds them all leased by other runtimes sharing the
        Redis goes back to the Router, as when this runtime's own slots are
        full: it is offered to another backend, and comes back here as
        overflow only when none has room. That is no failure of this backend:
        the breaker does not see it.

        Returns:
            The lease; ``None`` when running without one (Redis failed, or the
            request ended while it waited); ``False`` when it went back to the
            Router.
        """
        assert self.leases is not None
        model, model_limit = model_key(handle.request.model), self.model_turns.limit
        if overflow:
            return self.leases.acquire(
                self.backend,
                self.max_in_flight,
                self._gives_up(handle),
                model=model,
                model_limit=model_limit,
            )
        # One try, flagged as no wait: the request goes elsewhere if it fails.
        got = self.leases.try_acquire(
            self.backend, self.max_in_flight, model=model, model_limit=model_limit, waiting=False
        )
        if got is not False:
            return None if isinstance(got, bool) else got
        handle.cluster_full.add(self.backend)
        handle.untry(self.backend)  # as a full backend: it may come back as overflow
        slots = f"its {self.max_in_flight} slots (max_in_flight)"
        if model is not None and model_limit is not None:
            slots += f" or its {model_limit} for {model!r} (max_in_flight_per_model)"
        busy = ServerBusy(
            f"skipped, full across the cluster: {slots} are leased by runtimes sharing "
            "the Redis — raise the limit if the host has room, or add a backend",
            provider=self.backend,
        )
        self._report_failed(handle, busy)
        return False

    def _gives_up(self, handle: RequestState) -> Callable[[], bool]:
        """When a wait of ``handle``'s ends (for a turn, a cluster slot): the
        request ended, or this actor goes."""
        return lambda: handle.finished or self._exit_reason is not None

    def _take_turn(self, handle: RequestState) -> bool:
        """Wait for one of the ``max_in_flight`` turns (workers and callers'
        threads running their own attempts share them); ``False`` if the
        request ended or this actor is going away first."""
        gave_up = self._gives_up(handle)
        while not gave_up():
            if self._turns.acquire(timeout=0.05):
                return True
        return False

    def _interrupted(self, handle: RequestState, error: RubberDuckError) -> None:
        """A failure after the first chunk reached the caller: the mid-stream policy."""
        reason = f"the stream broke after it started: {error.message}"
        restart = handle.mid_stream == "restart" and error.fallback
        events.stream_broke(handle, self.backend, error, restart)  # telemetry
        if restart:
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
        attempt = requests.attempt_started(handle, self.provider)  # telemetry
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
        elif (done := handle.done) is not None:  # the model is loaded here now
            self.registry.residency.answered(
                self.backend, done.model or handle.request.model, done.durations.load_s
            )
        if error is not None and not error.provider:
            error.provider = self.backend
        requests.attempt_ended(attempt, kind, error)  # telemetry
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
