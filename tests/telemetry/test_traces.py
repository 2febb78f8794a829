"""One span per request, a child span per attempt, parented to the caller's
current span — in a thread and in an AsyncRuntime task."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from rubberduck import AsyncRuntime
from tests.conftest import HI, runtime_for
from tests.fake_ollama import FakeOllama
from tests.telemetry.conftest import Sdk

pytestmark = pytest.mark.usefixtures("no_thread_left")


def test_a_request_span_under_the_callers_span_with_a_child_per_attempt(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    tracer = trace.get_tracer("the-service")
    with runtime_for(primary.url, backup.url) as rt:
        with tracer.start_as_current_span("handler") as handler:
            reply = rt.chat("llama3.2", HI)
    spans = {s.name: s for s in sdk.finished()}
    request = spans["chat llama3.2"]
    assert request.kind is SpanKind.CLIENT
    assert request.parent is not None
    assert request.parent.span_id == handler.get_span_context().span_id
    assert request.context.trace_id == handler.get_span_context().trace_id
    attrs = request.attributes or {}
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "llama3.2"
    assert attrs["gen_ai.response.model"] == reply.model
    assert attrs["gen_ai.provider.name"] == "ollama"
    assert attrs["rubberduck.backend"] == "backup"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (26, 282)
    assert attrs["rubberduck.attempts"] == 2
    assert request.status.status_code is StatusCode.UNSET
    first, second = spans["attempt primary"], spans["attempt backup"]
    for attempt in (first, second):
        assert attempt.parent is not None
        assert attempt.parent.span_id == request.context.span_id
    assert (first.attributes or {})["rubberduck.outcome"] == "busy"
    assert (first.attributes or {})["error.type"] == "ServerBusy"
    assert first.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["rubberduck.outcome"] == "ok"
    assert (second.attributes or {})["server.address"] == "127.0.0.1"


def test_a_failed_request_span_has_error_type(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "midstream"
    with runtime_for(primary.url, backup.url) as rt:
        with pytest.raises(Exception, match="broke"):
            list(rt.stream_chat("llama3.2", HI, mid_stream="error"))
    [request] = [s for s in sdk.finished() if s.name == "chat llama3.2"]
    assert request.status.status_code is StatusCode.ERROR
    assert (request.attributes or {})["error.type"] == "StreamInterrupted"


def test_spans_follow_requests_into_async_runtime_tasks(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    tracer = trace.get_tracer("the-service")

    async def handler(rt: AsyncRuntime, name: str) -> int:
        with tracer.start_as_current_span(name) as span:
            await rt.chat("llama3.2", HI)
            return span.get_span_context().span_id

    with runtime_for(primary.url, backup.url) as sync_rt:
        config = sync_rt.config

    async def main() -> list[int]:
        async with AsyncRuntime(config) as rt:
            return list(await asyncio.gather(handler(rt, "a"), handler(rt, "b")))

    parents = asyncio.run(main())
    requests = [s for s in sdk.finished() if s.name == "chat llama3.2"]
    assert sorted(s.parent.span_id for s in requests if s.parent) == sorted(parents)
