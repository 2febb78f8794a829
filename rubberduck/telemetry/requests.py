"""One request's telemetry: its span, its attempts' spans, its GenAI metrics.

:func:`request_started` runs on the caller's thread (or event loop) as the
request is submitted, so the request span's parent is the caller's current
span — an ``AsyncRuntime`` task's included, since ``submit`` runs in the task.
Attempt spans are its children, started on the worker thread with that span
as explicit parent (no context needs to cross threads). :func:`request_finished`
runs once, where the request's outcome is decided
(:meth:`~rubberduck.request_state.RequestState._finish`).

With no SDK configured, :func:`request_started` returns ``None`` and every
other hook returns at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from rubberduck.messages import ChatRequest, Done, EmbedRequest
from rubberduck.telemetry import otel
from rubberduck.telemetry.logs import component, fields, never_raises, warn

if TYPE_CHECKING:
    from rubberduck.errors import RubberDuckError
    from rubberduck.providers.base import Provider
    from rubberduck.request_state import RequestState

__all__ = ["RequestTrace", "attempt_ended", "attempt_started", "request_finished"]

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


class RequestTrace:
    """The telemetry state of one request (only while an SDK listens).

    Chunks are only counted here (a clock read each); the stream metrics are
    recorded once, at the end, so that a long answer costs no more than a
    short one (see :func:`request_finished`).

    Attributes:
        started: ``time.monotonic()`` at submission, seconds.
        span: The request span, or ``None`` without a tracer provider.
        inst: The metric instruments, or ``None`` without a meter provider.
        first_chunk: When the first chunk reached the caller (monotonic s), or ``None``.
        last_chunk: When the last chunk reached the caller (monotonic seconds).
        chunks: Chunks that reached the caller.
        backend: ``(name, gen_ai.provider.name, server.address)`` of the last attempt.
    """

    __slots__ = (
        "attrs",
        "backend",
        "chunks",
        "first_chunk",
        "inst",
        "last_chunk",
        "span",
        "started",
        "stream",
    )

    def __init__(self, request: Any, inst: otel.Instruments | None, tracer: Any) -> None:
        self.started = time.monotonic()
        self.inst = inst
        self.first_chunk: float | None = None
        self.last_chunk = 0.0
        self.chunks = 0
        self.stream = bool(getattr(request, "stream", False))
        self.backend: tuple[str, str, str] | None = None
        op = _operation(request)
        self.attrs: dict[str, Any] = {"gen_ai.operation.name": op}
        if request.model:
            self.attrs["gen_ai.request.model"] = request.model
        self.span = None
        if tracer is not None:
            name = f"{op} {request.model}" if request.model else op
            self.span = tracer.start_span(name, kind=otel.client_kind(), attributes=self.attrs)

    def chunk(self) -> None:
        """A chunk reached the caller."""
        now = time.monotonic()
        if self.first_chunk is None:
            self.first_chunk = now
        self.last_chunk = now
        self.chunks += 1

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
    """An attempt on ``provider`` begins (on its worker thread): its span, a
    child of the request span. Returns a token for :func:`attempt_ended`."""
    trace = state.trace
    if trace is None:
        return None
    kind, address = _backend(provider)
    trace.backend = (provider.name, kind, address)
    span = None
    if trace.span is not None and (tracer := otel.tracer()) is not None:
        attributes = {
            "rubberduck.backend": provider.name,
            "gen_ai.provider.name": kind,
            "server.address": address,
            "rubberduck.attempt": len(state.tried),
        }
        span = tracer.start_span(
            f"attempt {provider.name}",
            context=otel.span_in_context(trace.span),
            kind=otel.client_kind(),
            attributes=attributes,
        )
    return (trace, span)


@never_raises
def attempt_ended(token: Any, outcome: str, error: RubberDuckError | None) -> None:
    """The attempt ended with ``outcome`` (``"ok"`` or an error kind)."""
    if token is None:
        return
    trace, span = token
    backend = trace.backend
    if trace.inst is not None and backend is not None:
        trace.inst.attempts.add(
            1, {"rubberduck.backend": backend[0], "rubberduck.outcome": outcome}
        )
    if span is not None:
        span.set_attribute("rubberduck.outcome", outcome)
        if error is not None:
            otel.error_status(span, type(error).__name__, error.message)
        span.end()


@never_raises
def request_finished(state: RequestState, outcome: Done | RubberDuckError) -> None:
    """The request ended: log a substituted model; record the GenAI metrics and
    end the request span."""
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
    attrs = dict(trace.attrs)
    backend = trace.backend
    if backend is not None:
        attrs["gen_ai.provider.name"] = backend[1]
        if backend[2]:
            attrs["server.address"] = backend[2]
        attrs["rubberduck.backend"] = backend[0]
    if done is not None:
        if done.model:
            attrs["gen_ai.response.model"] = done.model
    else:
        attrs["error.type"] = type(outcome).__name__
    inst = trace.inst
    if inst is not None:
        inst.duration.record(time.monotonic() - trace.started, attrs)
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
    span = trace.span
    if span is not None:
        attrs["rubberduck.request_id"] = state.id
        attrs["rubberduck.attempts"] = len(state.tried)
        if done is not None:
            attrs["gen_ai.usage.input_tokens"] = done.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = done.usage.completion_tokens
            if done.done_reason:
                attrs["gen_ai.response.finish_reasons"] = (done.done_reason,)
        span.set_attributes(attrs)  # one call: each takes the span's lock
        if not isinstance(outcome, Done):
            otel.error_status(span, attrs["error.type"], outcome.message)
        span.end()
