"""The OpenTelemetry API, if installed, and whether an SDK listens.

RubberDuck records to the *global* providers, as instrumentation libraries do:
the application configures the SDK (``set_meter_provider``,
``set_tracer_provider``) and RubberDuck's instruments report there. The API is
optional (``pip install rubberduck[otel]``). When it is missing, or no SDK
provider has been set, :func:`instruments` and :func:`tracer` return ``None``
and the hooks return at once — no instrument call, no span object.

Names follow the OpenTelemetry GenAI semantic conventions for **clients**,
semantic-conventions-genai v0.1.0 (the metric and attribute names are those of
semantic-conventions v1.41.0, where the GenAI conventions lived before they
moved): ``gen_ai.provider.name`` (``gen_ai.system`` before v1.37). The use of
the API's internals (whether the global meter provider is still the proxy) is
kept here, behind a check that falls back to "enabled".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the optional extra is not installed
    _context = None  # type: ignore[assignment]
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

__all__ = ["SEMCONV", "Instruments", "available", "instruments", "tracer"]

#: The GenAI semantic conventions followed.
SEMCONV = "semantic-conventions-genai v0.1.0"
SCOPE = "rubberduck"

#: Bucket boundaries the conventions advise (seconds; tokens).
DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))  # 0.01 … 81.92 s
CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = tuple(4**i for i in range(14))  # 1 … 67108864 tokens


def available() -> bool:
    """Whether the OpenTelemetry API is installed."""
    return _metrics is not None


def _unset_meter_provider_types() -> tuple[type, ...]:
    """The meter provider types that mean "no SDK set": the API's no-op one and
    its proxy (internal: ``get_meter_provider()`` returns it until one is set)."""
    if _metrics is None:
        return ()
    try:
        from opentelemetry.metrics import _internal

        return (_metrics.NoOpMeterProvider, _internal._ProxyMeterProvider)
    except (ImportError, AttributeError):  # another API version: only the no-op one
        return (_metrics.NoOpMeterProvider,)


_UNSET = _unset_meter_provider_types()


def _globals_readable() -> bool:
    """Whether this API version keeps the global providers where
    :func:`_meter_provider` and :func:`_tracer_provider` read them (internal:
    ``None`` until one is set)."""
    try:
        from opentelemetry.metrics import _internal

        return hasattr(_internal, "_METER_PROVIDER") and hasattr(_trace, "_TRACER_PROVIDER")
    except (ImportError, AttributeError):
        return False


# The API's getters look the environment up on every call while no provider is
# set (OTEL_PYTHON_*_PROVIDER names one to load): about 1 µs each, per request.
_FAST = _metrics is not None and _globals_readable()
_ENV = frozenset(("OTEL_PYTHON_METER_PROVIDER", "OTEL_PYTHON_TRACER_PROVIDER")) & set(os.environ)


def _meter_provider() -> Any:
    """The global meter provider, or ``None`` when none is set."""
    if _FAST:
        from opentelemetry.metrics import _internal

        provider = _internal._METER_PROVIDER
        if provider is not None or "OTEL_PYTHON_METER_PROVIDER" not in _ENV:
            return provider
    return _metrics.get_meter_provider()


def _tracer_provider() -> Any:
    """The global tracer provider, or ``None`` when none is set."""
    if _FAST:
        provider = _trace._TRACER_PROVIDER
        if provider is not None or "OTEL_PYTHON_TRACER_PROVIDER" not in _ENV:
            return provider
    return _trace.get_tracer_provider()


class Instruments:
    """Every metric instrument RubberDuck records to, from one meter.

    GenAI client metrics (semantic conventions): ``duration``
    (``gen_ai.client.operation.duration``, s), ``tokens``
    (``gen_ai.client.token.usage``, {token}), ``ttfc``
    (``gen_ai.client.operation.time_to_first_chunk``, s), ``tpoc``
    (``gen_ai.client.operation.time_per_output_chunk``, s). Runtime metrics
    under ``rubberduck.``: see the README's "Operating it".
    """

    def __init__(self, meter: Any) -> None:
        h, c = meter.create_histogram, meter.create_counter
        self.duration = h(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = h(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.ttfc = h(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streamed answer",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tpoc = h(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time between chunks of a streamed answer, after the first",
            explicit_bucket_boundaries_advisory=CHUNK_BUCKETS,
        )
        self.attempts = c("rubberduck.attempts", "{attempt}", "Attempts sent to a backend")
        self.fallbacks = c(
            "rubberduck.fallbacks", "{fallback}", "Requests moved on after a backend failed them"
        )
        self.retries = c("rubberduck.retries", "{round}", "Retry rounds after every backend failed")
        self.interruptions = c(
            "rubberduck.stream.interruptions", "{stream}", "Streams broken after the first chunk"
        )
        self.restarts = c(
            "rubberduck.stream.restarts", "{stream}", "Broken streams restarted on another backend"
        )
        self.substitutions = c(
            "rubberduck.substitutions", "{request}", "Requests answered by another model"
        )
        self.circuit_changes = c(
            "rubberduck.circuit.transitions", "{transition}", "Circuit breaker state changes"
        )
        self.probe = h(
            "rubberduck.probe.duration",
            "s",
            "Health probe latency",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.actor_restarts = c(
            "rubberduck.actor.restarts", "{restart}", "Actor restarts by the supervisor"
        )
        self.escalations = c(
            "rubberduck.escalations", "{escalation}", "Supervisor gave up (restart intensity)"
        )
        self.dropped = c(
            "rubberduck.telemetry.dropped",
            "{request}",
            "Requests whose spans and metrics were dropped (the recorder's queue was full)",
        )
        self.redis_errors = c(
            "rubberduck.cluster.redis_errors",
            "{error}",
            "Redis calls that failed (the runtime used its local state)",
        )
        self.cluster_rejoins = c(
            "rubberduck.cluster.rejoins", "{rejoin}", "Redis answered again after failing"
        )
        self.slot_wait = h(
            "rubberduck.cluster.slot_wait",
            "s",
            "Time a request waited for a slot leased across the cluster",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def observe(self, meter: Any, callbacks: dict[str, Callable[[Any], Iterable[Any]]]) -> None:
        """Register the observable gauges (name → callback)."""
        units = {
            "rubberduck.backend.in_flight": ("{request}", "Requests running on a backend"),
            "rubberduck.backend.queued": ("{request}", "Requests waiting for a backend's worker"),
            "rubberduck.circuit.state": ("1", "1 for a backend's current circuit state"),
        }
        for name, callback in callbacks.items():
            unit, description = units[name]
            meter.create_observable_gauge(name, [callback], unit, description)


_cache: list[Any] = [None, None, None]  # meter provider, its Instruments, tracer provider
_tracer: list[Any] = [None]
#: Set by :mod:`rubberduck.telemetry.gauges`: name → callback for observable gauges.
GAUGE_CALLBACKS: dict[str, Callable[[Any], Iterable[Any]]] = {}


def instruments() -> Instruments | None:
    """The instruments on the global meter provider, or ``None`` when the API
    is missing or no SDK provider is set (a few hundred nanoseconds)."""
    if _metrics is None:
        return None
    provider = _meter_provider()
    if provider is _cache[0]:
        inst: Instruments | None = _cache[1]
        return inst
    if provider is None or isinstance(provider, _UNSET):
        return None
    from rubberduck._version import __version__

    meter = provider.get_meter(SCOPE, __version__)
    inst = Instruments(meter)
    inst.observe(meter, GAUGE_CALLBACKS)
    _cache[0], _cache[1] = provider, inst
    return inst


def tracer() -> Any | None:
    """RubberDuck's tracer on the global tracer provider, or ``None`` when the
    API is missing or no SDK provider is set."""
    if _trace is None:
        return None
    provider = _tracer_provider()
    if provider is _cache[2]:
        return _tracer[0]
    if provider is None or isinstance(
        provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
    ):
        return None
    from rubberduck._version import __version__

    _tracer[0] = provider.get_tracer(SCOPE, __version__)
    _cache[2] = provider
    return _tracer[0]


def current_context() -> Any:
    """The caller's current context (its current span: the request span's parent)."""
    assert _trace is not None
    return _context.get_current()


def span_in_context(span: Any) -> Any:
    """A context whose current span is ``span`` (the parent of attempt spans)."""
    assert _trace is not None
    return _trace.set_span_in_context(span)


def error_status(span: Any, error_type: str, description: str) -> None:
    """Mark ``span`` as failed with ``error.type``."""
    assert _trace is not None
    span.set_attribute("error.type", error_type)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, description))


def client_kind() -> Any:
    """``SpanKind.CLIENT``: the conventions' kind for a call to a model server."""
    assert _trace is not None
    return _trace.SpanKind.CLIENT


def observations(values: Sequence[tuple[float, dict[str, Any]]]) -> list[Any]:
    """Observations for an observable gauge's callback."""
    assert _metrics is not None
    return [_metrics.Observation(v, a) for v, a in values]
