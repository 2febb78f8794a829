"""Observable gauges: requests in flight and queued, circuit state, per backend.

Read when the metric reader collects (on its thread), not on the request path:
each running :class:`~rubberduck.runtime.Runtime` registers a
:class:`BackendGauges` here, and the callbacks read the shared in-flight counts
(:class:`~rubberduck.actors.channels.Load`) and the breakers' states.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rubberduck.telemetry import otel

if TYPE_CHECKING:
    from rubberduck.actors.breaker import CircuitBreaker
    from rubberduck.actors.channels import Load

__all__ = ["BackendGauges", "unwatch", "watch"]

_STATES = ("closed", "half_open", "open")
_lock = threading.Lock()
_watched: weakref.WeakSet[BackendGauges] = weakref.WeakSet()


class BackendGauges:
    """What one runtime reports to the gauges.

    Args:
        load: Requests admitted per backend (running, queued or waiting).
        workers: Backend name → ``max_in_flight`` (its worker count).
        breakers: Backend name → its circuit breaker (filled in by the
            HealthMonitor; replaced when it restarts).
    """

    def __init__(
        self, load: Load, workers: Mapping[str, int], breakers: Mapping[str, CircuitBreaker]
    ) -> None:
        self.load = load
        self.workers = dict(workers)
        self.breakers = breakers

    def counts(self) -> list[tuple[str, int, int]]:
        """``(backend, in flight, queued)`` for each backend."""
        out = []
        for name, workers in self.workers.items():
            admitted = max(self.load[name], 0)
            out.append((name, min(admitted, workers), max(admitted - workers, 0)))
        return out


def watch(gauges: BackendGauges) -> None:
    """Report ``gauges`` until :func:`unwatch` (or until it is garbage)."""
    with _lock:
        _watched.add(gauges)


def unwatch(gauges: BackendGauges) -> None:
    """Stop reporting ``gauges`` (the runtime closed)."""
    with _lock:
        _watched.discard(gauges)


def _all() -> list[BackendGauges]:
    with _lock:
        return list(_watched)


def _in_flight(options: Any) -> list[Any]:
    return otel.observations(
        [(n, {"rubberduck.backend": b}) for g in _all() for b, n, _ in g.counts()]
    )


def _queued(options: Any) -> list[Any]:
    return otel.observations(
        [(q, {"rubberduck.backend": b}) for g in _all() for b, _, q in g.counts()]
    )


def _circuits(options: Any) -> list[Any]:
    values = []
    for g in _all():
        for backend, breaker in list(g.breakers.items()):
            current = breaker.state
            for state in _STATES:
                attrs = {"rubberduck.backend": backend, "rubberduck.state": state}
                values.append((1.0 if state == current else 0.0, attrs))
    return otel.observations(values)


otel.GAUGE_CALLBACKS.update(
    {
        "rubberduck.backend.in_flight": _in_flight,
        "rubberduck.backend.queued": _queued,
        "rubberduck.circuit.state": _circuits,
    }
)
