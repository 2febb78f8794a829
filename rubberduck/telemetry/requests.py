"""One request's telemetry: its span, its attempts' spans, its GenAI metrics.

On the request's path the hooks only capture: :func:`request_started` runs on
the caller's thread (or event loop) as the request is submitted and keeps the
caller's current context — an ``AsyncRuntime`` task's included, since
``submit`` runs in the task — and the clock; :func:`attempt_started` and
:func:`attempt_ended` (on the worker thread) note the backend, the clock and
the outcome; :func:`request_finished` runs once, where the request's outcome
is decided (:meth:`~rubberduck.request_state.RequestState._finish`), and hands
the whole to the :mod:`~rubberduck.telemetry.recorder`. Its thread then creates
the request span (parent: the caller's span, start and end times as
captured), one child span per attempt, and records the GenAI metrics.

Neither span is ever a current span that other code nests under (nor was it
before recording moved off the request path): the caller's own spans and an
instrumented HTTP library's stay children of the caller's span. An attempt
that ends after its request (a cancel) is recorded by a job of its own.

With no SDK configured, :func:`request_started` returns ``None`` and every
other hook returns at once.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from rubberduck.messages import ChatRequest, Done, EmbedRequest
from rubberduck.telemetry import otel, recorder
from rubberduck.telemetry.logs import component, fields, never_raises, warn

if TYPE_CHECKING:
    from rubberduck.errors import RubberDuckError
    from rubberduck.providers.base import Provider
    from rubberduck.request_state import RequestState

__all__ = [
    "Attempt",
    "RequestTrace",
    "attempt_ended",
    "attempt_started",
    "request_finished",
    "request_started",
]

_router_log = component("router")
_backends: WeakKeyDictionary[Any, tuple[str, str]] = WeakKeyDictionary()


def _operation(request: Any) -> str:
    if isinstance(request, ChatRequest):
        return "chat"
    if isinstance(request, EmbedRequest):
        return "embeddings"
    return "text_completion"


def _backend(provider: Provider) -> tuple[str, str]:
    """``(gen_ai.provider.name, server.address)`` of a backend, computed once."""
    try:
        return _backends[provider]
    except (KeyError, TypeError):
        pass
    try:
        address = urlsplit(provider.info().base_url).hostname or ""
    except Exception:  # noqa: BLE001 - a provider without a URL (the embedded model)
        address = ""
    found = (provider.kind, address)
    try:
        _backends[provider] = found
    except TypeError:  # not weak-referenceable: compute it each time
        pass
    return found


class Attempt:
    """One attempt as the worker saw it (monotonic seconds; ``outcome`` is
    ``None`` until it ended)."""

    __slots__ = ("address", "backend", "ended", "error", "kind", "number", "outcome", "started")

    def __init__(self, backend: str, kind: str, address: str, number: int) -> None:
        self.backend, self.kind, self.address, self.number = backend, kind, address, number
        self.started = time.monotonic()
        self.ended = 0.0
        self.outcome: str | None = None
        self.error: tuple[str, str] | None = None  # (error.type, message)


class RequestTrace:
    """The telemetry state of one request (only while an SDK listens).

    Chunks are only counted here (a clock read each); the stream metrics are
    recorded once, at the end, so that a long answer costs no more than a
    short one.

    Attributes:
        started: ``time.monotonic()`` at submission, seconds.
        started_ns: ``time.time_ns()`` at submission (the span's start time).
        parent: The caller's context (the request span's parent), or ``None``
            without a tracer provider.
        inst: The metric instruments, or ``None`` without a meter provider.
        tracer: RubberDuck's tracer, or ``None`` without a tracer provider.
        first_chunk: When the first chunk reached the caller (monotonic s), or ``None``.
        last_chunk: When the last chunk reached the caller (monotonic seconds).
        chunks: Chunks that reached the caller.
        backend: ``(name, gen_ai.provider.name, server.address)`` of the last attempt.
        attempts: The attempts, in order.
        recorded: The recorder has taken the attempts that had ended (one that
            ends later goes in a job of its own).
        span_context: The context holding the request span, once recorded.
    """

    __slots__ = (
        "attempts",
        "backend",
        "chunks",
        "first_chunk",
        "inst",
        "last_chunk",
        "lock",
        "model",
        "operation",
        "parent",
        "recorded",
        "span_context",
        "started",
        "started_ns",
        "stream",
        "tracer",
    )

    def __init__(self, request: Any, inst: otel.Instruments | None, tracer: Any) -> None:
        self.started = time.monotonic()
        self.started_ns = time.time_ns()
        self.inst = inst
        self.tracer = tracer
        self.parent = otel.current_context() if tracer is not None else None
        self.first_chunk: float | None = None
        self.last_chunk = 0.0
        self.chunks = 0
        self.stream = bool(getattr(request, "stream", False))
        self.operation = _operation(request)
        self.model: str = request.model or ""
        self.backend: tuple[str, str, str] | None = None
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self.recorded = False
        self.span_context: Any = None

    def chunk(self) -> None:
        """A chunk reached the caller."""
        now = time.monotonic()
        if self.first_chunk is None:
            self.first_chunk = now
        self.last_chunk = now
        self.chunks += 1

    def ns(self, monotonic_s: float) -> int:
        """A ``time.monotonic()`` reading as an epoch time in ns (for spans)."""
        return self.started_ns + int((monotonic_s - self.started) * 1e9)

    def record_stream(self, inst: otel.Instruments, attrs: dict[str, Any]) -> None:
        """Time to first chunk and the mean time per chunk after it (s), for a
        streamed request that received chunks."""
        if not self.stream or self.first_chunk is None:
            return
        inst.ttfc.record(self.first_chunk - self.started, attrs)
        if self.chunks > 1:
            gap = (self.last_chunk - self.first_chunk) / (self.chunks - 1)
            inst.tpoc.record(gap, attrs)


@never_raises
def request_started(request: Any) -> RequestTrace | None:
    """Start ``request``'s telemetry on the caller's thread; ``None`` when no
    SDK listens (then nothing else is recorded for it)."""
    inst = otel.instruments()
    tracer = otel.tracer()
    if inst is None and tracer is None:
        return None
    return RequestTrace(request, inst, tracer)


@never_raises
def attempt_started(state: RequestState, provider: Provider) -> Any:
    """An attempt on ``provider`` begins (on its worker thread): note its
    backend and start. Returns a token for :func:`attempt_ended`."""
    trace = state.trace
    if trace is None:
        return None
    kind, address = _backend(provider)
    trace.backend = (provider.name, kind, address)
    attempt = Attempt(provider.name, kind, address, len(state.tried))
    trace.attempts.append(attempt)
    return (trace, attempt)


@never_raises
def attempt_ended(token: Any, outcome: str, error: RubberDuckError | None) -> None:
    """The attempt ended with ``outcome`` (``"ok"`` or an error kind)."""
    if token is None:
        return
    trace, attempt = token
    attempt.ended = time.monotonic()
    if error is not None:
        attempt.error = (type(error).__name__, error.message)
    with trace.lock:  # either the request's job takes it, or it goes alone
        attempt.outcome = outcome
        late = trace.recorded
    if late:
        recorder.RECORDER.submit(_record_attempt, trace, attempt)


@never_raises
def request_finished(state: RequestState, outcome: Done | RubberDuckError) -> None:
    """The request ended: log a substituted model; hand its spans and GenAI
    metrics to the recorder."""
    done = outcome if type(outcome) is Done else None
    if done is not None and done.substituted_for is not None:
        warn(
            _router_log,
            "request %d: %s has no model %r and answered with its own (%r)",
            state.id,
            done.provider,
            done.substituted_for,
            done.model,
            extra=fields(state.id, done.provider, done.model, "substituted"),
        )
    trace = state.trace
    if trace is None:
        return
    error = None if isinstance(outcome, Done) else (type(outcome).__name__, outcome.message)
    recorder.RECORDER.submit(
        _record_request, trace, time.monotonic(), done, error, state.id, len(state.tried)
    )


def _record_request(
    trace: RequestTrace,
    ended: float,
    done: Done | None,
    error: tuple[str, str] | None,
    request_id: int,
    tried: int,
) -> None:
    """On the recorder thread: the GenAI metrics, the request span and its
    attempts' spans, with the times captured on the request's path. The
    attempts that have ended by now are recorded here (the worker ends the
    last one just after the request's Done: by the time the recorder runs,
    it has almost always ended)."""
    with trace.lock:
        trace.recorded = True
        attempts = [a for a in trace.attempts if a.outcome is not None]
    attrs: dict[str, Any] = {"gen_ai.operation.name": trace.operation}
    if trace.model:
        attrs["gen_ai.request.model"] = trace.model
    backend = trace.backend
    if backend is not None:
        attrs["gen_ai.provider.name"] = backend[1]
        if backend[2]:
            attrs["server.address"] = backend[2]
        attrs["rubberduck.backend"] = backend[0]
    if done is not None:
        if done.model:
            attrs["gen_ai.response.model"] = done.model
    elif error is not None:
        attrs["error.type"] = error[0]
    inst = trace.inst
    if inst is not None:
        inst.duration.record(ended - trace.started, attrs)
        trace.record_stream(inst, attrs)
        if done is not None:
            usage = done.usage
            if usage.prompt_tokens:
                inst.tokens.record(usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
            if usage.completion_tokens:
                inst.tokens.record(
                    usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"}
                )
            if done.substituted_for is not None:
                inst.substitutions.add(1, {"rubberduck.backend": done.provider})
    tracer = trace.tracer
    span = None
    if tracer is not None:
        attrs["rubberduck.request_id"] = request_id
        attrs["rubberduck.attempts"] = tried
        if done is not None:
            attrs["gen_ai.usage.input_tokens"] = done.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = done.usage.completion_tokens
            if done.done_reason:
                attrs["gen_ai.response.finish_reasons"] = (done.done_reason,)
        model = trace.model
        span = tracer.start_span(
            f"{trace.operation} {model}" if model else trace.operation,
            context=trace.parent,
            kind=otel.client_kind(),
            attributes=attrs,
            start_time=trace.started_ns,
        )
        trace.span_context = otel.span_in_context(span)
    for attempt in attempts:
        _record_attempt(trace, attempt)
    if span is not None:
        if error is not None:
            otel.error_status(span, error[0], error[1])
        span.end(end_time=trace.ns(ended))


def _record_attempt(trace: RequestTrace, attempt: Attempt) -> None:
    """On the recorder thread: an attempt's counter and span (a child of the
    request span; none if the request's job was dropped)."""
    outcome = attempt.outcome
    if trace.inst is not None:
        trace.inst.attempts.add(
            1, {"rubberduck.backend": attempt.backend, "rubberduck.outcome": outcome}
        )
    if trace.span_context is None or trace.tracer is None:
        return
    attributes = {
        "rubberduck.backend": attempt.backend,
        "gen_ai.provider.name": attempt.kind,
        "server.address": attempt.address,
        "rubberduck.attempt": attempt.number,
        "rubberduck.outcome": outcome,
    }
    span = trace.tracer.start_span(
        f"attempt {attempt.backend}",
        context=trace.span_context,
        kind=otel.client_kind(),
        attributes=attributes,
        start_time=trace.ns(attempt.started),
    )
    if attempt.error is not None:
        otel.error_status(span, *attempt.error)
    span.end(end_time=trace.ns(attempt.ended))
