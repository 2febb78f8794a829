"""Router: picks the backend for each request, falls back, and retries.

Candidates: backends that serve the requested model (a request with no model, a
model in the backend's catalogue, a backend whose catalogue is not known yet, or
one configured with ``serve_any_model`` when the request allows a substitute
model) and whose circuit is closed, among those the request allows
(``backends=``), ordered by priority and, within equal priority, by fewest
requests in flight. A request with ``fallback=False`` stays on the first backend
it was sent to.

Panic mode (as in Envoy): when no candidate with a closed circuit is left — every
one is open, or the closed ones were tried and failed — the request still goes to
the backends whose circuit is open, the least bad first (the one whose circuit
opened last: one that has stayed open longer has failed its probes since),
rather than failing with nothing tried. A backend that refuses connections
fails such an attempt in about a millisecond; one that answers serves it. The
catalogue is not a circuit: a backend without the model is never tried.

A backend whose slots are all taken is full, not failed: the request goes to the
next candidate at once; when no candidate has room, it waits on the best full
one's waiting list (overflow, see :mod:`rubberduck.actors.provider`) until a
slot frees or its deadline passes, rather than failing busy. The same holds
for a backend whose slots across the cluster (``[cluster]``) are all leased by
other runtimes: its provider hands the request back (``handle.cluster_full``).

A failure before the first chunk with ``fallback = True`` (refused, timeout, 5xx,
503, model not found, protocol error) moves the request to the next candidate at
once, so a busy backend is never waited on while another could answer. When every
candidate failed and some failures are worth repeating (busy, timeout, 5xx, a
dropped connection — not a refused connection), the request waits the backoff
(exponential with jitter; a ``Retry-After`` wins when longer) and takes another
round, up to ``[router] retries`` rounds and never past its deadline. Otherwise
the caller gets :class:`~rubberduck.errors.AllProvidersFailed` with every
backend's cause. A new request's first offer is usually made on the caller's thread, from the
table this Router publishes (:mod:`rubberduck.actors.routing`); the Router gets
the request only when that offer found no backend with room, and every failed
attempt after it. The backoff is an entry on the registry's one
:class:`~rubberduck.scheduler.Scheduler` thread, not a thread per request; when
it is over the request goes back to the Router by name, so a Router restarted
meanwhile gets it.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from rubberduck.actors.channels import Admission, Load
from rubberduck.actors.health import HEALTH
from rubberduck.actors.provider import ROUTER
from rubberduck.actors.routing import Route, RoutingTable, model_names, offer
from rubberduck.actors.supervisor import Registry, SupervisedActor
from rubberduck.errors import (
    AllProvidersFailed,
    InternalError,
    ModelNotFound,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
)
from rubberduck.messages import AttemptFailed, CatalogueRead, Resync, Submit
from rubberduck.request_state import RequestState
from rubberduck.telemetry import events

__all__ = ["RETRYABLE_KINDS", "Backoff", "Route", "Router"]

#: Error kinds worth another round on the same backend after a backoff.
RETRYABLE_KINDS = frozenset({"busy", "timeout", "unavailable"})

log = logging.getLogger("rubberduck.router")


@dataclass(frozen=True)
class Backoff:
    """Retry rounds per request and the wait before each.

    Attributes:
        retries: Extra rounds after every candidate failed.
        base_s: First wait, seconds; doubles each round.
        max_s: Cap of the wait, seconds.
    """

    retries: int = 2
    base_s: float = 0.1
    max_s: float = 2.0

    def delay(self, round_: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry round ``round_`` (0-based): exponential,
        with 50–100 % jitter; the server's ``Retry-After`` when that is longer."""
        wait = min(self.max_s, self.base_s * 2.0**round_) * (0.5 + rng.random() / 2)
        return max(wait, retry_after_s or 0.0)


class Router(SupervisedActor):
    """Args:
    registry: Where ProviderActors and the HealthMonitor are found.
    routes: Backends, in configured order.
    load: Requests in flight per backend, shared with the ProviderActors.
    backoff: Retry rounds and waits.
    balance: The order among equal priorities (see :mod:`rubberduck.actors.balance`).
    seed: Seed of the power-of-two-choices draws (``None``: unseeded).
    """

    def __init__(
        self,
        registry: Registry,
        routes: list[Route],
        load: Load | None = None,
        backoff: Backoff = Backoff(),
        balance: str = "warm",
        seed: int | None = None,
    ) -> None:
        super().__init__(registry, ROUTER)
        # Stable sort: equal priorities keep the configured order.
        self.routes = sorted(routes, key=lambda r: r.priority)
        self.load = load if load is not None else Load()
        self.backoff = backoff
        self._rng = random.Random()
        self.balance = balance
        self._balance_rng = random.Random(seed)

    def started(self) -> None:
        #: What this router knows of the backends; a copy is published after each
        #: change, for callers to route new requests from (see
        #: :func:`~rubberduck.actors.routing.route_first`).
        self.table = RoutingTable(
            self.routes,
            self.load,
            self.registry.circuits,
            residency=self.registry.residency,
            balance=self.balance,
            rng=self._balance_rng,
        )
        self.catalogue = self.table.catalogue
        self._publish()
        # After a restart our view is empty: ask for the current one.
        self.registry.tell(HEALTH, Resync())

    def _publish(self) -> None:
        self.registry.routing = self.table.copy()

    def dead_letter(self, message: Any) -> None:
        # Still in the mailbox when this router died: give it to the next one.
        if isinstance(message, (Submit, AttemptFailed)) and not message.handle.finished:
            if not self.registry.tell_eventually(ROUTER, message, message.handle.time_left()):
                message.handle.fail(
                    ProviderUnavailable("the router stopped — create a new Runtime")
                )

    def receive(self, message: Any) -> Any:
        try:
            if isinstance(message, Submit):
                self._route(message.handle)
            elif isinstance(message, AttemptFailed):
                self._attempt_failed(message)
            elif isinstance(message, CatalogueRead):
                self.catalogue[message.provider] = model_names(message.models)
                self._publish()
        except Exception as exc:
            handle = getattr(message, "handle", None)
            if not isinstance(handle, RequestState):
                raise  # not tied to a request: a genuine fault, for the supervisor
            # A failure tied to one request ends that request, not the router:
            # restarts (and their intensity) are for faults that hit everyone.
            log.exception("the router failed on request %s", handle.id)
            handle.fail(InternalError(f"the router failed on this request: {exc!r}"))
        if isinstance(message, (Submit, AttemptFailed)):
            self.forget_last_message()  # hold nothing of a request once idle
        return None

    def serves(self, route: Route, model: str | None) -> bool:
        """See :meth:`RoutingTable.serves <rubberduck.actors.routing.RoutingTable.serves>`."""
        return self.table.serves(route, model)

    def candidates(self, handle: RequestState, *, panic: bool = False) -> list[Route]:
        """See :meth:`RoutingTable.candidates
        <rubberduck.actors.routing.RoutingTable.candidates>`."""
        return self.table.candidates(handle, panic=panic)

    def _route(self, handle: RequestState) -> None:
        if handle.finished:
            return
        if handle.time_left() <= 0:
            handle.fail(RequestTimeout("the request's deadline passed before a backend was free"))
            return
        full: list[Route] = []
        candidates = self.candidates(handle) or self.candidates(handle, panic=True)
        events.routed(handle, candidates, self.table.down)  # telemetry
        for route in candidates:
            if route.name in handle.cluster_full:  # full for it, as below: overflow only
                full.append(route)
                continue
            # Without fallback the first candidate is the only one: wait there.
            taken = self._offer(handle, route, overflow=not handle.fallback)
            if taken is Admission.TAKEN:
                return
            if taken is Admission.FULL:
                full.append(route)
            if not handle.fallback:
                break
        if full and handle.fallback:
            # No backend has room: wait for a slot on the best full one.
            taken = self._offer(handle, full[0], overflow=True)
            if taken is Admission.TAKEN:
                return
        if self._retry_later(handle):
            return
        if not handle.fallback and handle.tried:  # one backend: its own error says it all
            handle.fail(handle.causes[handle.tried[0]])
        else:
            handle.fail(AllProvidersFailed(handle.causes, model=handle.request.model))

    def _offer(self, handle: RequestState, route: Route, *, overflow: bool) -> Admission:
        return offer(handle, route, self.registry.admissions, self.load, overflow=overflow)

    def _retry_later(self, handle: RequestState) -> bool:
        """Schedule another round if some backend is worth retrying in time."""
        if handle.retry_round >= self.backoff.retries:
            return False
        again = [
            (name, error)
            for name, error in handle.causes.items()
            if name in handle.excluded and name not in self.table.down and _retryable(error)
        ]
        if not again:
            return False
        retry_after = max((getattr(e, "retry_after_s", None) or 0.0) for _, e in again)
        delay = self.backoff.delay(handle.retry_round, retry_after, self._rng)
        if delay >= handle.time_left():
            return False
        try:
            self.registry.scheduler.call_later(delay, _resubmit, self.registry, handle, None)
        except RuntimeError:  # the scheduler stopped: the runtime is closing
            return False
        handle.retry_round += 1
        handle.excluded.difference_update(name for name, _ in again)
        handle.cluster_full.clear()
        events.retry_round(handle, delay, [name for name, _ in again])  # telemetry
        return True

    def _attempt_failed(self, msg: AttemptFailed) -> None:
        handle, error = msg.handle, msg.error
        handle.causes[msg.provider] = error
        if isinstance(error, ModelNotFound) and error.model:
            # Until the next catalogue read, skip this backend for that model.
            known = self.catalogue.get(msg.provider)
            if known is not None:
                known.discard(error.model)
                known.discard(f"{error.model}:latest")
                self._publish()
        if handle.finished:
            return
        if not error.fallback:
            handle.fail(error)
            return
        self._route(handle)


def _resubmit(registry: Registry, handle: RequestState, give_up: float | None) -> None:
    """On the scheduler's thread: the backoff is over, back to the Router. By
    name, so a restarted Router gets it; while none runs (a restart takes
    milliseconds), try again every 5 ms for up to a second — never blocking
    the scheduler, which runs every deadline too."""
    if handle.finished:
        return
    if registry.tell(ROUTER, Submit(handle)):
        return
    now = time.monotonic()
    give_up = now + 1.0 if give_up is None else give_up
    if now < min(give_up, handle.deadline):
        try:
            registry.scheduler.call_later(0.005, _resubmit, registry, handle, give_up)
            return
        except RuntimeError:
            pass  # the scheduler stopped: the runtime is closing
    handle.fail(ProviderUnavailable("the router stopped — create a new Runtime"))


def _retryable(error: RubberDuckError) -> bool:
    return error.kind in RETRYABLE_KINDS and not getattr(error, "refused", False)
