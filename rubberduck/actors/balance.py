"""The order of backends of equal priority: the ``[router] balance`` policy.

Priorities come first and stay absolute: a backend of a lower priority number
is always offered a request before one of a higher number. Among backends of
*equal* priority (a fleet of hosts serving the same models) the policy decides:

``"priority"``
    Fewest requests in flight first, then configured order (RubberDuck before
    fleets: deterministic, no randomness).
``"least_loaded"``
    Power of two choices: two backends drawn at random, the one with the lower
    cost goes first; the cost is ``(requests in flight + 1) × latency EWMA ÷
    weight`` (latency from successful attempts, ``weight`` from
    ``[provider.NAME]``). The rest follow by cost. Drawing two instead of
    taking the cheapest keeps many replicas, each with its own view, from
    sending their next requests to the same host at once.
``"warm"`` (default)
    As ``least_loaded``, by *placement* of the request's model on each host:

    1. warm: the model is loaded there (``/api/ps``, or it answered there since)
       or requests for it are in flight there, and a slot for it is free;
    2. cold: not loaded, a slot is free, and loading it evicts no model in use;
    3. full: every slot for the model is taken there (``max_in_flight_per_model``,
       i.e. the host's ``OLLAMA_NUM_PARALLEL``; without it Ollama's default, 1,
       is assumed here), or every one of the backend's ``max_in_flight``: the
       request would queue;
    4. evicting: not loaded, and the host is at ``max_loaded_models``
       (``OLLAMA_MAX_LOADED_MODELS``) with a request of ours in flight on each
       loaded model: loading it would evict a model in use (Ollama waits for
       that model to go idle first, then loads: the slowest start of all).

    Warm and cold hosts (the free ones) go first, in order of cost, a cold
    host's cost raised by the model's load time (an EWMA of the cold loads
    seen, from answers' ``load_duration``; 5 s until one was seen): a warm
    host is preferred unless the requests already queued there would cost
    more than loading the model elsewhere. Then full hosts, then evicting
    ones. The two choices are drawn among the hosts of the first one's
    placement (warm ones, usually), so that affinity holds. A warm host is
    never passed over for a cold one by chance, and a full one never goes
    before a free one.

These functions are pure (no HTTP, no actors): :class:`RoutingTable
<rubberduck.actors.routing.RoutingTable>` calls :func:`order`, and so does the
fleet simulation (``benchmarks/fleet_sim.py``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

from rubberduck.actors.channels import Load
from rubberduck.actors.residency import Residency

if TYPE_CHECKING:
    from rubberduck.actors.routing import Route

__all__ = ["BALANCES", "COLD", "EVICTING", "FULL", "WARM", "Balance", "cost", "order", "placement"]

#: The ``[router] balance`` policies.
Balance = Literal["priority", "least_loaded", "warm"]
BALANCES: tuple[str, ...] = get_args(Balance)

#: Placements of a model on a host, best first (see the module's docstring).
WARM, COLD, FULL, EVICTING = 0, 1, 2, 3

#: The slots per model assumed for a host without ``max_in_flight_per_model``:
#: Ollama's default ``OLLAMA_NUM_PARALLEL`` (only to rank hosts; nothing waits).
_DEFAULT_NUM_PARALLEL = 1

#: Latency assumed for every backend while none has answered yet, seconds.
_UNKNOWN_LATENCY_S = 1.0
#: Load time assumed for a model before a cold load of it was seen, seconds.
_UNKNOWN_LOAD_S = 5.0


def cost(route: Route, load: Load, latency_s: float) -> float:
    """Expected wait behind the requests in flight: ``(in flight + 1) ×
    latency_s ÷ weight`` (seconds per unit of weight; lower is better)."""
    return (load[route.name] + 1) * latency_s / route.weight


def placement(route: Route, model: str | None, load: Load, residency: Residency) -> int:
    """Where ``model`` stands on ``route``'s host: :data:`WARM`, :data:`COLD`,
    :data:`FULL` or :data:`EVICTING`. A request naming no model is warm anywhere."""
    name = route.name
    if route.max_in_flight is not None and load[name] >= route.max_in_flight:
        return FULL
    if model is None:
        return WARM
    in_flight = load.model(name, model)
    if in_flight >= (route.max_in_flight_per_model or _DEFAULT_NUM_PARALLEL):
        return FULL
    loaded = residency.loaded(name)
    if in_flight or (loaded is not None and model in loaded):
        return WARM
    if (
        loaded is not None
        and route.max_loaded_models is not None
        and len(loaded) >= route.max_loaded_models
        and loaded <= load.busy_models(name)
    ):
        return EVICTING
    return COLD


def order(
    routes: Sequence[Route],
    model: str | None,
    load: Load,
    residency: Residency,
    policy: str,
    rng: random.Random,
) -> list[Route]:
    """``routes`` best first: by priority, then by ``policy`` among equals.

    Args:
        routes: The candidates (any order; equal priorities in configured order).
        model: The request's model as :func:`~rubberduck.actors.residency.model_key`
            gives it (``None``: it names none).
        load: Requests in flight, per backend and per model.
        residency: Models loaded and latency per backend.
        policy: One of :data:`BALANCES`.
        rng: The draws of the power of two choices (seed it for tests).

    Raises:
        ValueError: ``policy`` is not one of :data:`BALANCES` (the config
            checks it before).
    """
    if policy == "priority":
        return sorted(routes, key=lambda r: (r.priority, load[r.name]))
    if policy not in BALANCES:
        raise ValueError(f"unknown balance policy {policy!r}; use one of {BALANCES}")
    out: list[Route] = []
    by_priority = sorted(routes, key=lambda r: r.priority)
    for _, same in itertools.groupby(by_priority, key=lambda r: r.priority):
        out.extend(_order_equals(list(same), model, load, residency, policy == "warm", rng))
    return out


def _order_equals(
    routes: list[Route],
    model: str | None,
    load: Load,
    residency: Residency,
    warm: bool,
    rng: random.Random,
) -> list[Route]:
    if len(routes) == 1:
        return routes
    known = [t for r in routes if (t := residency.latency(r.name)) is not None]
    default = sum(known) / len(known) if known else _UNKNOWN_LATENCY_S
    tiers = {r.name: placement(r, model, load, residency) if warm else WARM for r in routes}
    loading = (residency.load_time(model) if model else None) or _UNKNOWN_LOAD_S
    costs = {}
    for r in routes:
        latency = residency.latency(r.name)
        costs[r.name] = cost(r, load, default if latency is None else latency)
        costs[r.name] += loading * (tiers[r.name] == COLD)
    # Warm and cold compete on cost; full, then evicting ones come last.
    group = {WARM: 0, COLD: 0, FULL: 1, EVICTING: 2}
    ranked = sorted(routes, key=lambda r: (group[tiers[r.name]], costs[r.name]))  # stable
    best = [r for r in ranked if tiers[r.name] == tiers[ranked[0].name]]
    if len(best) > 2:  # with two, both are drawn: the cheaper is first already
        a, b = rng.sample(range(len(best)), 2)
        first = best[min(a, b, key=lambda i: (costs[best[i].name], i))]
        ranked.remove(first)
        ranked.insert(0, first)
    return ranked
