"""Where a request may go: the Router's view of the backends, and its first
offer made on the caller's thread.

A :class:`RoutingTable` holds what the Router knows (configured routes,
catalogues) and picks the candidates for a request. The Router owns one and
changes it as catalogue news arrive; after each change it publishes a copy in
the registry (``Registry.routing``). Open circuits are not the Router's: every
table reads them live from the HealthMonitor's
:class:`~rubberduck.actors.channels.Circuits`, the source ``Runtime.health``
reports from too. A caller's thread routes a new request from the published
copy (:func:`route_first`): the first backend with room takes it at once,
without a hop through the Router's mailbox.
Everything else — no backend with room, a failed attempt, a retry round, panic
mode, overflow onto a waiting list — stays the Router actor's, which gets the
request by message as before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rubberduck.actors.balance import order as balance_order
from rubberduck.actors.channels import Admission, Admissions, Circuits, Load
from rubberduck.actors.residency import Residency, model_key
from rubberduck.errors import (
    InvalidRequest,
    ModelNotFound,
    ProviderUnavailable,
    ServerBusy,
)
from rubberduck.messages import EmbedRequest
from rubberduck.telemetry import events
from rubberduck.telemetry.logs import component

if TYPE_CHECKING:
    from rubberduck.request_state import RequestState

__all__ = ["Route", "RoutingTable", "model_names", "offer", "route_first"]

log = component("router")


@dataclass(frozen=True)
class Route:
    """What the Router knows of a backend from configuration.

    Attributes:
        name: Backend name.
        models: Models to treat as served before the catalogue is read.
        serve_any_model: Accept any model (answering with its own).
        priority: Lower goes first; equal priorities share the load.
        embeddings: The backend can embed (``EmbedRequest``).
        kind: The provider kind (``"ollama"``, ...), for the remedy a message names.
        weight: Share of the load among equal priorities (relative; see
            :mod:`rubberduck.actors.balance`).
        max_in_flight: Requests that run at once there (``None``: no bound known).
        max_in_flight_per_model: Requests per model that run at once there
            (the host's ``OLLAMA_NUM_PARALLEL``; ``None``: not bounded).
        max_loaded_models: Models the host holds at once
            (``OLLAMA_MAX_LOADED_MODELS``; ``None``: not known).
    """

    name: str
    models: tuple[str, ...] = ()
    serve_any_model: bool = False
    priority: int = 0
    embeddings: bool = True
    kind: str = ""
    weight: float = 1.0
    max_in_flight: int | None = None
    max_in_flight_per_model: int | None = None
    max_loaded_models: int | None = None


def model_names(models: tuple[str, ...] | list[str]) -> set[str]:
    """Names as given plus, for Ollama's ``name:latest``, the bare name."""
    names = set(models)
    names.update(m[: -len(":latest")] for m in models if m.endswith(":latest"))
    return names


@dataclass
class RoutingTable:
    """The backends as the Router sees them.

    Attributes:
        routes: Backends by priority (stable: equal priorities in configured order).
        load: Requests in flight per backend (shared, live).
        circuits: The open circuits (the HealthMonitor's; shared, live).
        catalogue: Backend → its models, from its last catalogue read.
        residency: Models loaded and latency per backend (shared, live).
        balance: The order among equal priorities (one of
            :data:`~rubberduck.actors.balance.BALANCES`).
        rng: The power-of-two-choices draws (shared by copies; seed it for tests).
    """

    routes: list[Route]
    load: Load
    circuits: Circuits = field(default_factory=Circuits)
    catalogue: dict[str, set[str]] = field(default_factory=dict)
    residency: Residency = field(default_factory=Residency)
    balance: str = "warm"
    rng: random.Random = field(default_factory=random.Random)

    @property
    def down(self) -> dict[str, str]:
        """Backend → why its circuit is open, now."""
        return self.circuits.down

    def copy(self) -> RoutingTable:
        """A copy that later changes to this table do not touch (to publish);
        it shares the live :attr:`load` and :attr:`circuits`."""
        return replace(
            self, catalogue={name: set(models) for name, models in self.catalogue.items()}
        )

    def serves(self, route: Route, model: str | None) -> bool:
        """Whether ``route`` has ``model``, not counting ``serve_any_model``. A
        backend whose catalogue is not known yet may have any model, except one
        that serves any model: it has only those it names."""
        if model is None or model in route.models or f"{model}:latest" in route.models:
            return True
        known = self.catalogue.get(route.name)
        if known is None:
            return not route.serve_any_model
        return model in known or f"{model}:latest" in known

    def candidates(self, handle: RequestState, *, panic: bool = False) -> list[Route]:
        """Routes ``handle`` may go to now, best first; records why others are skipped.

        Args:
            handle: The request.
            panic: Return the backends skipped only for an open circuit instead,
                the one whose circuit opened last first (panic mode).
        """
        model = handle.request.model
        down, down_since = self.circuits.state()  # one state for the whole pass
        allowed = handle.backends
        if not handle.fallback and handle.tried:
            allowed = frozenset(handle.tried[:1])
        out = []
        for route in self.routes:
            name = route.name
            if name in handle.excluded or (allowed is not None and name not in allowed):
                continue
            has_model = self.serves(route, model)
            if not route.embeddings and isinstance(handle.request, EmbedRequest):
                handle.causes.setdefault(
                    name, InvalidRequest("has no embeddings endpoint", provider=name)
                )
            elif not has_model and not (route.serve_any_model and handle.allow_substitute):
                handle.causes.setdefault(name, missing(route, model or ""))
            elif name in down and not panic:
                handle.causes.setdefault(
                    name, ProviderUnavailable(f"skipped, circuit open: {down[name]}", provider=name)
                )
            elif name in down or not panic:
                if not has_model:
                    handle.substitutes.add(name)
                out.append(route)
        if panic:
            return sorted(out, key=lambda r: -down_since.get(r.name, 0.0))
        if len(out) > 1:
            out = balance_order(
                out, model_key(model), self.load, self.residency, self.balance, self.rng
            )
        return out


def offer(
    handle: RequestState, route: Route, admissions: Admissions, load: Load, *, overflow: bool
) -> Admission:
    """Offer ``handle`` to backend ``route``; records it as tried when taken (or
    refused on overflow), and why when refused.

    The request is marked tried *before* the offer: once taken, a worker may
    fail it and the Router route it again at once, from another thread.
    """
    name = route.name
    model = model_key(handle.request.model)
    load.add(name, 1, model)
    handle.excluded.add(name)
    handle.tried.append(name)
    taken = admissions.admit(name, handle, overflow=overflow)
    if taken is Admission.TAKEN:
        events.taken(handle, name)  # telemetry: a fallback, when one failed before
        return taken
    per_model = load.model(name, model) if model is not None else 0
    load.add(name, -1, model)
    if taken is Admission.FULL:
        handle.causes[name] = _full(route, model, load[name], per_model, overflow)
        if not overflow:
            handle.untry(name)
    else:
        handle.causes[name] = ProviderUnavailable("its actor is restarting", provider=name)
    return taken


def route_first(table: RoutingTable, handle: RequestState, admissions: Admissions) -> bool:
    """On the caller's thread: give ``handle`` to the best candidate that has
    room now (``table``: the Router's published view).

    When every candidate is full, the request waits on the best one's
    waiting list (overflow), as the Router's first pass would do.

    Returns:
        ``True`` when a backend took it; ``False`` when none would, none was a
        candidate, or routing failed: then the Router actor must route it
        (panic mode, a retry round, the error) — what was recorded here
        (causes, backends tried) is what the Router would record too.
    """
    try:
        routes = table.candidates(handle)
    except Exception:  # the Router decides, and ends the request if it fails too
        log.debug("routing request %s on the caller's thread failed", handle.id, exc_info=True)
        return False
    events.routed(handle, routes, table.down)  # telemetry
    full = []
    for route in routes:
        # As the Router's first pass: without fallback, wait on the one backend.
        taken = offer(handle, route, admissions, table.load, overflow=not handle.fallback)
        if taken is Admission.TAKEN:
            return True
        if taken is Admission.FULL:
            full.append(route)
        if not handle.fallback:
            return False
    if full:  # no backend has room: wait for a slot on the best full one
        return offer(handle, full[0], admissions, table.load, overflow=True) is Admission.TAKEN
    return False


def _full(
    route: Route, model: str | None, running: int, per_model: int, overflow: bool
) -> ServerBusy:
    """Why ``route`` refused a request as full, with the setting to raise:
    ``max_in_flight_per_model`` when its turns for the model were the limit
    (``per_model`` requests for it there, this one included)."""
    limit = route.max_in_flight_per_model
    if not overflow and model is not None and limit is not None and per_model > limit:
        return ServerBusy(
            f"skipped, full for model {model!r}: {per_model - 1} requests for it "
            f"running or waiting, max_in_flight_per_model = {limit} — raise "
            "max_in_flight_per_model for this provider if the host runs more at "
            "once (OLLAMA_NUM_PARALLEL), or add a backend",
            provider=route.name,
        )
    waiting = "and too many wait for a slot" if overflow else "or waiting"
    return ServerBusy(
        f"skipped, full: {running} requests running {waiting} — raise "
        "max_in_flight/max_queue for this provider, or add a backend",
        provider=route.name,
    )


def missing(route: Route, model: str) -> ModelNotFound:
    """``route`` does not have ``model`` (by its catalogue), with the remedy."""
    why = " (and this request allows no substitute model)" * route.serve_any_model
    remedy = f" — run `ollama pull {model}`" * (route.kind == "ollama")
    return ModelNotFound(
        f"does not have model {model!r}{why}{remedy}", provider=route.name, model=model
    )
