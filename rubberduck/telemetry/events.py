"""The runtime's decisions and state changes: a log record and a metric each.

Called from few places: the Router (:func:`routed`, :func:`taken`,
:func:`retry_round`), the ProviderActor (:func:`stream_broke`), the
HealthMonitor (:func:`circuit_changed`, :func:`probed`), the Supervisor
(:func:`actor_restarted`, :func:`escalated`) and the Runtime
(:func:`runtime_started`, :func:`runtime_closed`). Each is cheap when its log
level is off and no SDK listens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rubberduck.telemetry import otel
from rubberduck.telemetry.logs import component, fields, never_raises, warn

if TYPE_CHECKING:
    from rubberduck.actors.breaker import CircuitBreaker
    from rubberduck.errors import RubberDuckError
    from rubberduck.request_state import RequestState

__all__ = [
    "actor_restarted",
    "circuit_changed",
    "cluster_redis_error",
    "cluster_rejoined",
    "cluster_slot_wait",
    "escalated",
    "probed",
    "retry_round",
    "routed",
    "runtime_closed",
    "runtime_started",
    "stream_broke",
    "taken",
]

_router = component("router")
_health = component("health")
_supervisor = component("supervisor")
_runtime = component("runtime")


@never_raises
def routed(state: RequestState, candidates: Iterable[Any], down: dict[str, str]) -> None:
    """DEBUG: the Router's candidates for ``state``, and each backend skipped
    because its circuit is open."""
    if not _router.isEnabledFor(logging.DEBUG):
        return
    model = state.request.model
    names = [route.name for route in candidates]
    for name, reason in down.items():
        if name not in names and name not in state.excluded:
            _router.debug(
                "request %d: skipped %s, circuit open (%s)",
                state.id,
                name,
                reason,
                extra=fields(state.id, name, model, "circuit_open"),
            )
    _router.debug(
        "request %d: candidates %s (tried %s, round %d)",
        state.id,
        names,
        list(state.tried),  # a copy: the record is formatted later
        state.retry_round,
        extra=fields(state.id, names[0] if names else None, model, candidates=names),
    )


@never_raises
def taken(state: RequestState, backend: str) -> None:
    """``backend`` took ``state``: a fallback when the attempt before, on
    another backend, failed (WARNING: from where, to where, why)."""
    tried = state.tried
    if len(tried) < 2 or backend in tried[:-1]:
        return  # a first attempt, or a retry round (logged as such)
    source = tried[-2]
    cause = state.causes.get(source)
    if cause is None:
        return
    model = state.request.model
    warn(
        _router,
        "request %d: %s failed (%s: %s), falling back to %s",
        state.id,
        source,
        cause.kind,
        cause.message,
        backend,
        extra=fields(state.id, source, model, cause.kind, fallback_to=backend),
    )
    if (inst := otel.instruments()) is not None:
        inst.fallbacks.add(
            1,
            {
                "rubberduck.backend": source,
                "rubberduck.fallback_to": backend,
                "error.type": type(cause).__name__,
            },
        )


@never_raises
def retry_round(state: RequestState, delay_s: float, backends: list[str]) -> None:
    """WARNING: every candidate failed; another round on ``backends`` in ``delay_s``."""
    kinds = sorted({state.causes[b].kind for b in backends if b in state.causes})
    warn(
        _router,
        "request %d: every backend failed; retry round %d on %s in %.2f s",
        state.id,
        state.retry_round,
        backends,
        delay_s,
        extra=fields(state.id, backends[0], state.request.model, ",".join(kinds)),
    )
    if (inst := otel.instruments()) is not None:
        for backend in backends:
            inst.retries.add(1, {"rubberduck.backend": backend})


@never_raises
def stream_broke(state: RequestState, backend: str, error: RubberDuckError, restart: bool) -> None:
    """WARNING on ``rubberduck.provider.BACKEND``: the stream broke after its
    first chunk; ``restart``: it starts over elsewhere (a ``Restart`` event)."""
    then = "restarting it on another backend" if restart else "the caller gets StreamInterrupted"
    warn(
        component(f"provider.{backend}"),
        "request %d: the stream broke after it started (%s: %s); %s",
        state.id,
        error.kind,
        error.message,
        then,
        extra=fields(state.id, backend, state.request.model, error.kind, restart=restart),
    )
    if (inst := otel.instruments()) is not None:
        attrs = {"rubberduck.backend": backend, "error.type": type(error).__name__}
        inst.interruptions.add(1, attrs)
        if restart:
            inst.restarts.add(1, attrs)


@never_raises
def circuit_changed(backend: str, breaker: CircuitBreaker, reason: str) -> None:
    """A circuit changed state. WARNING when it opens, INFO when it closes (the
    backend is back); a failed half-open probe (still down) is DEBUG."""
    state = breaker.state
    extra = fields(None, backend, None, None if state == "closed" else "circuit_open")
    if state == "closed":
        _health.info("circuit of %s closed: the backend is back", backend, extra=extra)
    elif breaker.probes:  # reopened by a failed probe: still down, already reported
        _health.debug("circuit of %s still open: %s", backend, reason, extra=extra)
    else:
        _health.warning(
            "circuit of %s opened (%d failures): %s; probing again in %.1f s",
            backend,
            breaker.failures,
            reason,
            breaker.cooldown,
            extra=extra,
        )
    if (inst := otel.instruments()) is not None:
        inst.circuit_changes.add(1, {"rubberduck.backend": backend, "rubberduck.state": state})


@never_raises
def probed(backend: str, latency_s: float, ok: bool) -> None:
    """A health probe's latency (seconds) and result."""
    if (inst := otel.instruments()) is not None:
        outcome = "ok" if ok else "error"
        inst.probe.record(latency_s, {"rubberduck.backend": backend, "rubberduck.outcome": outcome})


@never_raises
def actor_restarted(actor: str, reason: str) -> None:
    """The supervisor restarted ``actor`` (its WARNING is the supervisor's own)."""
    if (inst := otel.instruments()) is not None:
        inst.actor_restarts.add(1, {"rubberduck.actor": actor})


@never_raises
def escalated(reason: str) -> None:
    """The supervisor gave up (its ERROR is the supervisor's own)."""
    if (inst := otel.instruments()) is not None:
        inst.escalations.add(1)


@never_raises
def runtime_started(backends: list[str]) -> None:
    """INFO: a runtime started with ``backends``."""
    _runtime.info("runtime started with backends %s", backends, extra=fields(backends=backends))


@never_raises
def runtime_closed(backends: list[str]) -> None:
    """INFO: a runtime closed."""
    _runtime.info("runtime closed", extra=fields(backends=backends))


@never_raises
def cluster_redis_error(what: str) -> None:
    """A Redis call failed (its rate-limited WARNING is the link's own): counted
    in ``rubberduck.cluster.redis_errors`` by what the call was for."""
    if (inst := otel.instruments()) is not None:
        inst.redis_errors.add(1, {"rubberduck.operation": what})


@never_raises
def cluster_rejoined() -> None:
    """Redis answers again after a failure: counted in ``rubberduck.cluster.rejoins``."""
    if (inst := otel.instruments()) is not None:
        inst.cluster_rejoins.add(1)


@never_raises
def cluster_slot_wait(backend: str, waited_s: float) -> None:
    """A request waited ``waited_s`` seconds because every slot of ``backend``
    was leased across the cluster (``rubberduck.cluster.slot_wait``)."""
    if (inst := otel.instruments()) is not None:
        inst.slot_wait.record(waited_s, {"rubberduck.backend": backend})
