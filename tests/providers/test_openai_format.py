"""One OpenAI-format translation for the OpenAI-compatible and the embedded
llama.cpp providers: the same option map and format, the same handling of
tool calls (streamed fragments joined; arguments that are not JSON refused)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rubberduck.errors import ProtocolError
from rubberduck.messages import ChatRequest, Done, Event, Message, ToolCall
from rubberduck.providers.base import CancelScope
from rubberduck.providers.local import LocalProvider
from rubberduck.providers.openai.request import request_body

Chunk = dict[str, Any]


class FakeLlamaServer:
    """Stands in for xllamacpp's server: records the body, feeds the chunks."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self.bodies: list[dict[str, Any]] = []

    def handle_chat_completions(
        self, body: dict[str, Any], callback: Callable[[Chunk], bool] | None
    ) -> Chunk | None:
        self.bodies.append(body)
        assert callback is not None
        for chunk in self.chunks:
            if callback(chunk):
                break
        return None


def local_with(
    chunks: list[Chunk], monkeypatch: pytest.MonkeyPatch
) -> tuple[LocalProvider, FakeLlamaServer]:
    provider = LocalProvider("local", model="smollm2-135m-instruct")
    server = FakeLlamaServer(chunks)
    monkeypatch.setattr(provider, "load", lambda: server)
    return provider, server


def call_fragment(
    index: int, *, name: str | None = None, args: str = "", id: str | None = None
) -> Chunk:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    part: dict[str, Any] = {"index": index, "function": function}
    if id:
        part["id"] = id
    return {"choices": [{"index": 0, "delta": {"tool_calls": [part]}}]}


REQUEST = ChatRequest(
    model="m",
    messages=[Message("user", "weather?")],
    options={"temperature": 0.2, "top_k": 20, "num_predict": 64, "seed": 7},
    format={"type": "object"},
)


def test_local_sends_the_same_option_and_format_fields_as_openai(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, server = local_with(
        [{"choices": [{"index": 0, "finish_reason": "stop"}]}], monkeypatch
    )
    provider.run(REQUEST, lambda event: None, CancelScope())
    local = server.bodies[0]
    openai = request_body(REQUEST, "m")
    for field in ("temperature", "max_tokens", "seed", "response_format", "stream_options"):
        assert local[field] == openai[field], field
    assert local["top_k"] == 20 and "top_k" not in openai  # llama.cpp's own option


def test_local_joins_streamed_tool_call_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    args = json.dumps({"city": "Paris"})
    chunks = [
        call_fragment(0, name="get_weather", id="c1"),
        call_fragment(0, args=args[:6]),
        call_fragment(0, args=args[6:]),
        {"choices": [{"index": 0, "finish_reason": "tool_calls"}]},
    ]
    provider, _ = local_with(chunks, monkeypatch)
    events: list[Event] = []
    provider.run(REQUEST, events.append, CancelScope())
    assert events[0] == ToolCall("get_weather", {"city": "Paris"}, "c1")
    assert isinstance(events[-1], Done)


def test_local_refuses_tool_arguments_that_are_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [call_fragment(0, name="get_weather", args="{not json", id="c1")]
    provider, _ = local_with(chunks, monkeypatch)
    with pytest.raises(ProtocolError) as info:
        provider.run(REQUEST, lambda event: None, CancelScope())
    assert info.value.provider == "local" and "not json" not in info.value.message
