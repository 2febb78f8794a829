"""AnthropicProvider against a fake Anthropic API replaying the documented transcripts
(``tests/fixtures/anthropic``) as real SSE over HTTP/1.1."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubberduck import Runtime
from rubberduck.config import load_config
from rubberduck.errors import (
    AuthError,
    Cancelled,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.messages import (
    ChatRequest,
    Delta,
    Done,
    EmbedRequest,
    Event,
    GenerateRequest,
    Message,
    ToolCall,
    Usage,
)
from rubberduck.providers import create_provider
from rubberduck.providers.anthropic import AnthropicProvider
from rubberduck.providers.base import CancelScope
from tests.conftest import run, run_failing
from tests.fake_anthropic import FIXTURES, JSON, FakeAnthropic, Reply, fixture, sse_events
from tests.fake_ollama import free_port
from tests.strategies import AnthropicStream, anthropic_streams, chunkings

KEY = "sk-ant-api03-TESTKEY-do-not-leak-0123456789abcdef"
KEY_ENV = "RUBBERDUCK_TEST_ANTHROPIC_KEY"
MODEL = "claude-3-7-sonnet-20250219"
HI = [Message(role="user", content="Hello")]
DOCUMENTED_MODEL = "claude-3-7-sonnet-20250219"
STATUSES = (400, 401, 403, 404, 413, 429, 500, 529)

# --- helpers ------------------------------------------------------------------------


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest(**{"model": MODEL, "messages": HI, **fields})


def sent_json(server: FakeAnthropic) -> dict[str, Any]:
    """The JSON body of the one request the server received."""
    assert len(server.requests) == 1, server.requests
    body: dict[str, Any] = json.loads(server.requests[0].body)
    return body


def done(stop: str | None, prompt: int, completion: int, model: str = DOCUMENTED_MODEL) -> Done:
    return Done(
        done_reason=stop,
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        model=model,
        provider="claude",
    )


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(KEY) as fake:
        yield fake


@pytest.fixture
def make_provider(server: FakeAnthropic) -> Iterator[Callable[..., AnthropicProvider]]:
    made: list[AnthropicProvider] = []

    def make(**overrides: Any) -> AnthropicProvider:
        kwargs: dict[str, Any] = {
            "name": "claude",
            "base_url": server.url,
            "api_key_env": KEY_ENV,
            "default_model": MODEL,
            "max_tokens": 512,
            "timeout": 5,
            "connect_timeout": 1,
            **overrides,
        }
        provider = AnthropicProvider(**kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., AnthropicProvider]) -> AnthropicProvider:
    return make_provider()


def run_failing_in(
    provider: AnthropicProvider, request: ChatRequest, scope: CancelScope, error: type[Exception]
) -> tuple[list[Event], Any]:
    """Run ``request`` under ``scope``; it must raise ``error``."""
    events: list[Event] = []
    with pytest.raises(error) as info:
        provider.run(request, events.append, scope)
    return events, info.value


def serve(server: FakeAnthropic, name: str, **reply: Any) -> None:
    """Answer the next POSTs with one fixture, in one piece unless ``pieces`` is given."""
    if "pieces" not in reply:
        reply["pieces"] = [fixture(name)]
    if name.endswith(".json"):
        reply.setdefault("content_type", JSON)
    server.reply("POST /v1/messages", Reply(**reply))


# --- the transcripts ----------------------------------------------------------------

TEXT_EVENTS: list[Event] = [Delta("Hello"), Delta("!"), done("stop", 25, 15)]
TOOL_TEXT = "Okay, let's check the weather for San Francisco, CA:"
TOOL_EVENTS: list[Event] = [
    *(
        Delta(t)
        for t in [
            "Okay",
            ",",
            " let",
            "'s",
            " check",
            " the",
            " weather",
            " for",
            " San",
            " Francisco",
            ",",
            " CA",
            ":",
        ]
    ),
    ToolCall(
        name="get_weather",
        arguments={"location": "San Francisco, CA", "unit": "fahrenheit"},
        id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
    ),
    done("stop", 472, 89, model="claude-3-haiku-20240307"),
]
THINKING = [
    "Let me solve this step by step:\n\n1. First break down 27 * 453",
    "\n2. 453 = 400 + 50 + 3",
    "\n3. 27 * 400 = 10,800",
    "\n4. 27 * 50 = 1,350",
    "\n5. 27 * 3 = 81",
    "\n6. 10,800 + 1,350 + 81 = 12,231",
]
THINKING_EVENTS: list[Event] = [
    *(Delta("", thinking=t) for t in THINKING),
    Delta("27 * 453 = 12,231"),
    done("stop", 0, 0),  # the documented thinking stream reports no usage
]
TRANSCRIPTS = {
    "stream_text.sse": TEXT_EVENTS,
    "stream_tool_use.sse": TOOL_EVENTS,
    "stream_thinking.sse": THINKING_EVENTS,
}


def test_fixtures_readme_lists_every_transcript() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.iterdir():
        if path.name != "README.md" and not path.name.startswith("error_"):
            assert f"`{path.name}`" in readme, path.name
    assert "docs.anthropic.com" in readme


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_documented_streams(server: FakeAnthropic, provider: AnthropicProvider, name: str) -> None:
    serve(server, name)
    assert run(provider, chat()) == TRANSCRIPTS[name]


@pytest.mark.parametrize(
    ("stop_reason", "done_reason"),
    [
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("stop_sequence", "stop"),
        ("refusal", "refusal"),
    ],
)
def test_stop_reasons(
    server: FakeAnthropic, provider: AnthropicProvider, stop_reason: str, done_reason: str
) -> None:
    body = fixture("stream_text.sse").replace(b'"end_turn"', f'"{stop_reason}"'.encode())
    serve(server, "", pieces=[body])
    final = run(provider, chat())[-1]
    assert isinstance(final, Done)
    assert final.done_reason == done_reason


def test_tool_use_text_reassembles(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    serve(server, "stream_tool_use.sse")
    events = run(provider, chat())
    assert "".join(e.text for e in events if isinstance(e, Delta)) == TOOL_TEXT


def test_stream_served_one_event_per_chunk(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    serve(server, "stream_tool_use.sse", pieces=sse_events(fixture("stream_tool_use.sse")))
    assert run(provider, chat()) == TOOL_EVENTS


def test_each_event_is_emitted_as_it_arrives(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """The first Delta reaches ``emit`` while the server still withholds the rest."""
    events = sse_events(fixture("stream_text.sse"))
    first_seen = threading.Event()
    server.reply("POST /v1/messages", Reply(events[:4], end="stall"))
    seen: list[Event] = []

    def emit(event: Event) -> None:
        seen.append(event)
        first_seen.set()

    provider = make_provider()

    def work() -> None:
        with contextlib.suppress(RubberDuckError):
            provider.run(chat(), emit, CancelScope())

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert first_seen.wait(3), "no Delta before the stream ended"
        assert seen == [Delta("Hello")]
    finally:
        server.release.set()
        worker.join(5)


def test_unknown_event_types_are_skipped(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    events = sse_events(fixture("stream_text.sse"))
    newer = b'event: content_block_citation\ndata: {"type": "content_block_citation"}\n\n'
    comment = b": a comment line\n\n"
    serve(server, "", pieces=[*events[:3], newer, comment, *events[3:]])
    assert run(provider, chat()) == TEXT_EVENTS


# --- the request --------------------------------------------------------------------


def test_headers(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    run(provider, chat())
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def test_chat_body_with_system_tools_and_tool_history(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    history = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="Weather in SF and Paris?"),
        Message(
            role="assistant",
            content="Checking.",
            thinking="dropped: Anthropic wants thinking back only with its signature",
            tool_calls=[
                {"function": {"name": "get_weather", "arguments": {"location": "SF"}}},
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        ),
        Message(role="tool", content="10:00", tool_name="get_time"),
        Message(role="tool", content="15 degrees", tool_name="get_weather"),
        Message(role="user", content="Thanks. In Celsius?"),
        Message(role="system", content="Answer in French."),
    ]
    options = {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "num_predict": 100, "seed": 1}
    options["stop"] = ["\n\nHuman:"]
    run(provider, chat(messages=history, tools=[WEATHER_TOOL], options=options))
    assert sent_json(server) == {
        "model": MODEL,
        "max_tokens": 100,
        "system": "You are terse.\n\nAnswer in French.",
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "messages": [
            {"role": "user", "content": "Weather in SF and Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_rubberduck_1",
                        "name": "get_weather",
                        "input": {"location": "SF"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_7",
                        "name": "get_time",
                        "input": {"tz": "CET"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_7", "content": "10:00"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_rubberduck_1",
                        "content": "15 degrees",
                    },
                    {"type": "text", "text": "Thanks. In Celsius?"},
                ],
            },
        ],
    }


def test_generate_body_is_one_user_message(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    serve(server, "message.json")
    events = run(
        provider,
        GenerateRequest(model=None, prompt="Hello", system="Be brief.", stream=False),
    )
    assert sent_json(server) == {
        "model": MODEL,
        "max_tokens": 512,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
    }
    assert events == [Delta("Hi! My name is Claude."), done("stop", 2095, 503)]


def test_messages_without_content_are_left_out(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    """Anthropic answers 400 to a turn with no content ("all messages must have
    non-empty content"); an empty message adds nothing, so it is not sent."""
    history = [
        Message(role="user", content="Hello"),
        Message(role="assistant", content="", thinking="only thinking, which is dropped"),
        Message(role="user", content=""),
        Message(role="user", content="Anyone there?"),
    ]
    run(provider, chat(messages=history))
    assert sent_json(server)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": "Anyone there?"},
            ],
        }
    ]


def test_images_become_base64_image_blocks(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    png = (  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAAB"
        "JRU5ErkJggg=="
    )
    run(provider, chat(messages=[Message(role="user", content="What is this?", images=[png])]))
    assert sent_json(server)["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("think", "max_tokens", "budget"),
    [(True, 8192, 4096), ("low", 8192, 1024), ("high", 512 + 16384, 16384)],
)
def test_think_asks_for_extended_thinking(
    server: FakeAnthropic,
    provider: AnthropicProvider,
    think: bool | str,
    max_tokens: int,
    budget: int,
) -> None:
    run(provider, chat(think=think, options={"num_predict": 8192} if think != "high" else None))
    body = sent_json(server)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens > budget


def test_unknown_think_value_is_invalid(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    _, exc = run_failing(provider, chat(think="extreme"), InvalidRequest)
    assert "think" in exc.message
    assert server.requests == []


def test_tool_message_without_a_call_is_invalid(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    history = [*HI, Message(role="tool", content="15 degrees", tool_name="get_weather")]
    _, exc = run_failing(provider, chat(messages=history), InvalidRequest)
    assert exc.fallback is False
    assert server.requests == []


@pytest.mark.parametrize(
    ("request_", "what"),
    [
        (chat(format="json"), "JSON mode"),
        (GenerateRequest(model=MODEL, prompt="def f(", suffix="return 1"), "suffix"),
    ],
    ids=["format", "suffix"],
)
def test_unoffered_features_fall_back(
    server: FakeAnthropic,
    provider: AnthropicProvider,
    request_: ChatRequest | GenerateRequest,
    what: str,
) -> None:
    _, exc = run_failing(provider, request_, InvalidRequest)
    assert exc.fallback is True
    assert what in exc.message
    assert server.requests == []


def test_embeddings_are_not_offered(provider: AnthropicProvider) -> None:
    with pytest.raises(InvalidRequest) as info:
        provider.embed(EmbedRequest(model=MODEL, input="hi"), timeout=1)
    assert info.value.fallback is True
    assert InvalidRequest.fallback is False  # the class default is untouched
    assert provider.supports_feature("embeddings") is False


@pytest.mark.parametrize(
    "request_",
    [
        chat(tools=["get_weather"]),
        chat(messages=[*HI, Message(role="assistant", tool_calls=["get_weather"])]),  # type: ignore[list-item]
        chat(tools=[{"function": {"name": "f", "parameters": {"x": object()}}}]),
        chat(options={"temperature": object()}),
    ],
    ids=["tool_not_a_dict", "tool_call_not_a_dict", "schema_not_json", "option_not_a_number"],
)
def test_request_that_cannot_be_sent_is_invalid(
    server: FakeAnthropic, provider: AnthropicProvider, request_: ChatRequest
) -> None:
    """Nothing but a typed error comes out, and nothing is sent."""
    _, exc = run_failing(provider, request_, InvalidRequest)
    assert exc.fallback is False
    assert exc.provider == "claude"
    assert server.requests == []


def test_no_model_anywhere(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    _, exc = run_failing(make_provider(default_model=None), chat(model=None), InvalidRequest)
    assert "model" in exc.message
    assert server.requests == []


# --- non-streamed answers -----------------------------------------------------------


def test_non_streamed_tool_use(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    serve(server, "message_tool_use.json")
    events = run(provider, chat(stream=False))
    assert "stream" not in sent_json(server)
    assert events == [
        Delta(
            "<thinking>I need to call the get_weather function, and the user wants SF, "
            "which is likely San Francisco, CA.</thinking>"
        ),
        ToolCall(
            name="get_weather",
            arguments={"location": "San Francisco, CA", "unit": "celsius"},
            id="toolu_01A09q90qw90lq917835lq9",
        ),
        done("stop", 0, 0),
    ]


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "fallback", "text"),
    [
        (400, InvalidRequest, False, "roles must alternate"),
        (401, AuthError, True, f"check the API key in ${KEY_ENV}"),
        (403, AuthError, True, f"check the API key in ${KEY_ENV}"),
        (404, ProviderUnavailable, True, "base_url"),
        (413, InvalidRequest, False, "too large"),
        (429, ServerBusy, True, "rate limit"),
        (500, ProviderUnavailable, True, "api_error"),
        (529, ServerBusy, True, "Overloaded"),
    ],
)
def test_http_errors(
    server: FakeAnthropic,
    provider: AnthropicProvider,
    status: int,
    error: type[RubberDuckError],
    fallback: bool,
    text: str,
) -> None:
    serve(server, f"error_{status}.json", status=status)
    events, exc = run_failing(provider, chat(), error)
    assert type(exc) is error
    assert exc.fallback is fallback
    assert exc.provider == "claude"
    assert text in exc.message
    assert f"HTTP {status}" in exc.message
    assert events == []
    if isinstance(exc, ProviderUnavailable):
        assert exc.refused is False


def test_unknown_model_is_model_not_found(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    """The live 404 for a model names it (``"model: <name>"``)."""
    serve(server, "error_404_model.json", status=404)
    _, exc = run_failing(provider, chat(), ModelNotFound)
    assert exc.model == MODEL
    assert "rubberduck models" in exc.message


def test_wrong_base_url_is_not_model_not_found(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """A base_url ending in /v1 (as OpenAI's does) posts to /v1/v1/messages: the
    generic 404 says the path is wrong, not that the model is missing."""
    provider = make_provider(base_url=server.url + "/v1")
    _, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert server.requests[0].path == "/v1/v1/messages"
    assert "base_url" in exc.message
    assert "/v1" in exc.message


@pytest.mark.parametrize("status", [429, 529])
@pytest.mark.parametrize(("header", "seconds"), [(None, None), ("7", 7.0), ("soon", None)])
def test_retry_after(
    server: FakeAnthropic,
    provider: AnthropicProvider,
    status: int,
    header: str | None,
    seconds: float | None,
) -> None:
    headers = {"retry-after": header} if header else {}
    serve(server, f"error_{status}.json", status=status, headers=headers)
    _, exc = run_failing(provider, chat(), ServerBusy)
    assert exc.retry_after_s == seconds


def test_wrong_key_is_the_documented_401(
    server: FakeAnthropic, provider: AnthropicProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.api_key = "another-key"
    _, exc = run_failing(provider, chat(), AuthError)
    assert "invalid x-api-key" in exc.message
    assert KEY_ENV in exc.message


def test_overloaded_error_event_mid_stream(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    serve(server, "stream_overloaded_error.sse")
    events, exc = run_failing(provider, chat(), ServerBusy)
    assert events == [Delta("Hello")]
    assert exc.fallback is True
    assert "Overloaded" in exc.message


def test_other_error_event_mid_stream(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    events = sse_events(fixture("stream_text.sse"))
    error = b'event: error\ndata: {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}\n\n'  # noqa: E501
    serve(server, "", pieces=[*events[:4], error])
    seen, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert seen == [Delta("Hello")]
    assert "api_error: Internal server error" in exc.message


@pytest.mark.parametrize("cut", range(8))
def test_stream_ending_before_message_stop(
    server: FakeAnthropic, provider: AnthropicProvider, cut: int
) -> None:
    """However many documented events arrive, no message_stop means a typed error."""
    events = sse_events(fixture("stream_text.sse"))
    serve(server, "", pieces=events[:cut])
    seen, exc = run_failing(provider, chat(), ProtocolError)
    assert not any(isinstance(e, Done) for e in seen)
    assert "message_stop" in exc.message


@pytest.mark.parametrize("end", ["clean", "drop"])
def test_stream_cut_mid_event(server: FakeAnthropic, provider: AnthropicProvider, end: str) -> None:
    body = fixture("stream_text.sse")
    cut = body.index(b'"text": "!"')
    serve(server, "", pieces=[body[:cut]], end=end)
    error = ProtocolError if end == "clean" else ProviderUnavailable
    seen, exc = run_failing(provider, chat(), error)
    assert seen == [Delta("Hello")]
    assert exc.provider == "claude"


@pytest.mark.parametrize(
    "body",
    [
        b"event: message_start\ndata: {not json\n\n",
        b'event: content_block_delta\ndata: {"type": "content_block_delta"}\n\n',
        b"event: message_start\ndata: \xff\xfe\n\n",
    ],
    ids=["not_json", "missing_fields", "not_utf8"],
)
def test_malformed_event_is_protocol_error(
    server: FakeAnthropic, provider: AnthropicProvider, body: bytes
) -> None:
    serve(server, "", pieces=[body])
    run_failing(provider, chat(), ProtocolError)


def test_tool_input_that_is_not_json(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    body = fixture("stream_tool_use.sse").replace(b'"renheit\\"}"', b'"renheit\\""')
    serve(server, "", pieces=[body])
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert "get_weather" in exc.message
    assert not any(isinstance(e, ToolCall) for e in events)


def test_event_over_max_event_bytes(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    events = sse_events(fixture("stream_text.sse"))
    huge = json.dumps(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "x" * 5000},
        }
    )
    serve(
        server, "", pieces=[*events[:2], f"event: content_block_delta\ndata: {huge}\n\n".encode()]
    )
    _, exc = run_failing(make_provider(max_event_bytes=4096), chat(), ProtocolError)
    assert "4096" in exc.message


def test_event_that_never_ends_is_bounded(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    serve(server, "", pieces=[b"data: " + b"x" * 2048] * 4, end="stall")
    started = time.monotonic()
    run_failing(make_provider(max_event_bytes=4096), chat(), ProtocolError)
    assert time.monotonic() - started < 2


# --- connections --------------------------------------------------------------------


def test_connection_refused() -> None:
    provider = AnthropicProvider(
        "claude", base_url=f"http://127.0.0.1:{free_port()}", api_key_env=KEY_ENV, timeout=2
    )
    try:
        events, exc = run_failing(provider, chat(), ProviderUnavailable)
        assert exc.refused is True
        assert exc.provider == "claude"
        assert events == []
        with pytest.raises(ProviderUnavailable) as info:
            provider.health_check(1)
        assert info.value.refused is True
    finally:
        provider.close()


def test_cancel_mid_stream_returns_promptly(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    server.reply(
        "POST /v1/messages", Reply(sse_events(fixture("stream_text.sse"))[:4], end="stall")
    )
    scope = CancelScope()
    events: list[Event] = []
    timer = threading.Timer(0.2, scope.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            provider.run(chat(), events.append, scope)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2
    assert events == [Delta("Hello")]


def cancel_after(scope: CancelScope, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, scope.cancel)
    timer.start()
    return timer


@pytest.mark.parametrize("stream", [True, False])
def test_cancel_while_waiting_for_headers(
    server: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    server.reply("POST /v1/messages", Reply([fixture("stream_text.sse")], hold_headers=True))
    scope = CancelScope()
    timer = cancel_after(scope, 0.2)
    started = time.monotonic()
    try:
        events, _ = run_failing_in(provider, chat(stream=stream), scope, Cancelled)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2
    assert events == []


def test_cancel_while_reading_an_error_body(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    """A cancel that lands while the error body trickles in is still a cancel, not
    the HTTP status (which the router would act on)."""
    serve(server, "error_429.json", status=429, pieces=[b'{"type": "error", '], end="stall")
    scope = CancelScope()
    timer = cancel_after(scope, 0.2)
    started = time.monotonic()
    try:
        run_failing_in(provider, chat(), scope, Cancelled)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("where", ["headers", "body"])
def test_read_timeout(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider], where: str
) -> None:
    events = sse_events(fixture("stream_text.sse"))
    if where == "headers":
        server.reply("POST /v1/messages", Reply(events, hold_headers=True))
    else:
        server.reply("POST /v1/messages", Reply(events[:4], end="stall"))
    started = time.monotonic()
    seen, exc = run_failing(make_provider(timeout=0.3), chat(), RequestTimeout)
    assert time.monotonic() - started < 2
    assert exc.provider == "claude"
    assert seen == ([] if where == "headers" else [Delta("Hello")])


def test_cancel_before_run(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    scope = CancelScope()
    scope.cancel()
    events, _ = run_failing_in(provider, chat(), scope, Cancelled)
    assert events == []


@pytest.mark.parametrize("stream", [True, False])
def test_complete_answers_reuse_the_connection(
    server: FakeAnthropic, provider: AnthropicProvider, stream: bool
) -> None:
    if not stream:
        serve(server, "message.json")
    for _ in range(3):
        assert isinstance(run(provider, chat(stream=stream))[-1], Done)
    assert len(server.client_ports) == 1


# --- the API key --------------------------------------------------------------------


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError) as info:
        AnthropicProvider("claude", api_key_env=KEY_ENV)
    assert KEY_ENV in info.value.message
    monkeypatch.setenv(KEY_ENV, "  ")
    with pytest.raises(ConfigError, match=KEY_ENV):
        AnthropicProvider("claude", api_key_env=KEY_ENV)


@pytest.mark.parametrize("value", [f"{KEY}\nX-Evil: 1", f"{KEY} {KEY}", f"{KEY}é"])
def test_key_that_is_not_header_safe(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(ConfigError) as info:
        AnthropicProvider("claude", api_key_env=KEY_ENV)
    assert KEY_ENV in info.value.message
    assert KEY not in str(info.value)


def test_default_key_variable_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    provider = AnthropicProvider()
    assert (provider.base_url, provider.api_key_env) == (
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
    )
    assert provider.is_local is False
    provider.close()


def test_key_never_leaks(
    server: FakeAnthropic, provider: AnthropicProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = json.dumps(
        {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}}
    )
    serve(server, "", pieces=[echo.encode()], status=401, content_type=JSON)
    _, exc = run_failing(provider, chat(), AuthError)
    seen = [str(exc), repr(exc), exc.message, repr(provider), str(provider), str(provider.info())]
    serve(server, "stream_text.sse")
    run(provider, chat())
    seen.append(caplog.text)
    for text in seen:
        assert KEY not in text
    assert "***" in exc.message


@pytest.mark.parametrize("content_type", [JSON, "text/html"])
def test_error_detail_is_bounded_and_never_holds_part_of_the_key(
    server: FakeAnthropic, provider: AnthropicProvider, content_type: str
) -> None:
    """A long error body is cut to a short detail, and the key is redacted before
    the cut: a key straddling the cut must not leave its first half behind."""
    text = "x" * 180 + f" {KEY} " + "y" * 50_000
    body = (
        json.dumps({"type": "error", "error": {"type": "api_error", "message": text}}).encode()
        if content_type == JSON
        else text.encode()
    )
    serve(server, "", pieces=[body], status=500, content_type=content_type)
    _, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert len(exc.message) < 1000
    assert KEY[:12] not in str(exc)


def test_malformed_answer_never_shows_the_key(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    serve(server, "", pieces=[f"not json {KEY}".encode()], content_type=JSON)
    _, exc = run_failing(provider, chat(stream=False), ProtocolError)
    assert KEY[:12] not in str(exc)


# --- control plane and description --------------------------------------------------


def test_health_check_and_list_models(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    assert provider.health_check(1) == "anthropic API 2023-06-01"
    assert provider.list_models(1) == [DOCUMENTED_MODEL]
    assert [r.path for r in server.requests] == ["/v1/models?limit=1", "/v1/models?limit=1000"]
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["x-api-key"] == KEY


def test_list_models_follows_pages(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    pages = [
        {"data": [{"id": "claude-a", "type": "model"}], "has_more": True, "last_id": "claude-a"},
        {"data": [{"id": "claude-b", "type": "model"}], "has_more": False, "last_id": "claude-b"},
    ]
    server.reply(
        "GET /v1/models", *(Reply([json.dumps(p).encode()], content_type=JSON) for p in pages)
    )
    assert provider.list_models(1) == ["claude-a", "claude-b"]
    assert server.requests[1].path == "/v1/models?limit=1000&after_id=claude-a"


def test_health_check_with_a_bad_key(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    server.api_key = "another-key"
    with pytest.raises(AuthError, match=KEY_ENV):
        provider.health_check(1)


def test_info_features_and_token_estimate(provider: AnthropicProvider) -> None:
    info = provider.info()
    assert (info.kind, info.requires_api_key, info.is_local) == ("anthropic", True, False)
    assert info.models == (MODEL,)
    assert {f: provider.supports_feature(f) for f in ("streaming", "tools", "vision")} == {
        "streaming": True,
        "tools": True,
        "vision": True,
    }
    assert provider.supports_feature("json_mode") is False
    assert provider.supports_feature("teleport") is False
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("x" * 35) == 10
    provider.validate_config()


@pytest.mark.parametrize(
    ("overrides", "text"),
    [({"base_url": "api.anthropic.com"}, "base_url"), ({"max_tokens": 0}, "max_tokens")],
)
def test_validate_config(overrides: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        AnthropicProvider("claude", api_key_env=KEY_ENV, **overrides)


def test_create_provider_from_config() -> None:
    config = load_config(
        {
            "provider": {
                "claude": {
                    "kind": "anthropic",
                    "api_key_env": KEY_ENV,
                    "model": MODEL,
                    "max_tokens": 2048,
                }
            }
        }
    )
    ((name, cfg),) = config.backends()
    provider = create_provider(name, cfg)
    try:
        assert isinstance(provider, AnthropicProvider)
        assert (provider.name, provider.kind, provider.default_model) == (
            "claude",
            "anthropic",
            MODEL,
        )
        assert provider.max_tokens == 2048
        assert provider.base_url == "https://api.anthropic.com"
    finally:
        provider.close()


def test_runtime_falls_back_from_an_overloaded_anthropic_backend() -> None:
    """Through the actors: a 529 before the first chunk moves the request on."""
    with FakeAnthropic(KEY) as busy, FakeAnthropic(KEY) as ok:
        busy.reply("POST /v1/messages", Reply([fixture("error_529.json")], 529, JSON))
        table = {"kind": "anthropic", "api_key_env": KEY_ENV, "model": MODEL, "timeout": 5}
        config = {
            "provider": {
                "claude": {**table, "base_url": busy.url},
                "backup": {**table, "base_url": ok.url},
            }
        }
        with Runtime.from_config(config) as rt:
            events = list(rt.stream_chat(MODEL, [{"role": "user", "content": "Hello"}]))
    assert events[:-1] == [Delta("Hello"), Delta("!")]
    final = events[-1]
    assert isinstance(final, Done)
    assert final.provider == "backup"
    assert final.usage == Usage(25, 15)
    assert len(final.fallbacks) == 1
    assert final.fallbacks[0].startswith("claude")
    assert [r.path for r in busy.requests if r.method == "POST"] == ["/v1/messages"]


# --- count_request_tokens: POST /v1/messages/count_tokens -----------------------------

COUNT = "POST /v1/messages/count_tokens"


def test_count_request_tokens(server: FakeAnthropic, provider: AnthropicProvider) -> None:
    history = [
        Message(role="system", content="You are a scientist"),
        Message(role="user", content="Hello, Claude"),
    ]
    options = {"temperature": 0.2, "top_k": 5, "num_predict": 100, "stop": ["END"]}
    request = chat(messages=history, tools=[WEATHER_TOOL], think="low", options=options)
    assert provider.count_request_tokens(request, timeout=2) == 2095
    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages/count_tokens")
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert (headers["x-api-key"], headers["anthropic-version"]) == (KEY, "2023-06-01")
    assert json.loads(sent.body) == {
        "model": MODEL,
        "system": "You are a scientist",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }


def test_count_request_tokens_of_a_generate_request(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    request = GenerateRequest(prompt="Hello", system="Be brief.", stream=False)
    assert provider.count_request_tokens(request, timeout=2) == 2095
    assert sent_json(server) == {
        "model": MODEL,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
    }


def test_fake_count_tokens_rejects_what_the_real_endpoint_rejects(server: FakeAnthropic) -> None:
    """The fake is strict, so the tests above would catch a stray field."""
    url = server.url + "/v1/messages/count_tokens"
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    for body, message in [
        ({"model": MODEL, "messages": [], "max_tokens": 5}, "max_tokens: Extra inputs"),
        ({"model": MODEL, "messages": [], "stream": True}, "stream: Extra inputs"),
        ({"messages": []}, "model: Field required"),
    ]:
        with requests.post(url, json=body, headers=headers, timeout=2) as resp:
            assert resp.status_code == 400
            assert message in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply([fixture("error_400.json")], 400, JSON), InvalidRequest),
        (Reply([fixture("error_404_model.json")], 404, JSON), ModelNotFound),
        (Reply([fixture("error_404.json")], 404, JSON), ProviderUnavailable),
        (Reply([fixture("error_429.json")], 429, JSON, {"retry-after": "3"}), ServerBusy),
        (Reply([fixture("error_529.json")], 529, JSON), ServerBusy),
        (Reply([fixture("error_500.json")], 500, JSON), ProviderUnavailable),
        (Reply([b'{"tokens": 12}'], content_type=JSON), ProtocolError),
        (Reply([b'{"input_tokens": 12'], end="drop", content_type=JSON), ProviderUnavailable),
    ],
    ids=["400", "404_model", "404_path", "429", "529", "500", "not_a_count", "dropped"],
)
def test_count_request_tokens_errors(
    server: FakeAnthropic,
    provider: AnthropicProvider,
    reply: Reply,
    error: type[RubberDuckError],
) -> None:
    server.reply(COUNT, reply)
    with pytest.raises(error) as info:
        provider.count_request_tokens(chat(), timeout=2)
    assert type(info.value) is error
    assert info.value.provider == "claude"
    if isinstance(info.value, ServerBusy) and reply.status == 429:
        assert info.value.retry_after_s == 3.0
    if isinstance(info.value, ModelNotFound):
        assert info.value.model == MODEL


def test_count_request_tokens_with_a_bad_key(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    server.api_key = "another-key"
    with pytest.raises(AuthError) as info:
        provider.count_request_tokens(chat(), timeout=2)
    assert KEY_ENV in info.value.message
    assert KEY not in str(info.value)


def test_count_request_tokens_checks_the_request_first(
    server: FakeAnthropic, make_provider: Callable[..., AnthropicProvider]
) -> None:
    provider = make_provider(default_model=None)
    with pytest.raises(InvalidRequest):
        provider.count_request_tokens(chat(model=None), timeout=2)
    with pytest.raises(InvalidRequest) as info:
        provider.count_request_tokens(chat(format="json"), timeout=2)
    assert info.value.fallback is True
    assert server.requests == []


def test_count_request_tokens_cancelled_while_waiting(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    server.reply(COUNT, Reply([fixture("count_tokens.json")], content_type=JSON, hold_headers=True))
    scope = CancelScope()
    timer = cancel_after(scope, 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            provider.count_request_tokens(chat(), timeout=5, scope=scope)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("where", ["headers", "body"])
def test_count_request_tokens_timeout(
    server: FakeAnthropic, provider: AnthropicProvider, where: str
) -> None:
    if where == "headers":
        reply = Reply([fixture("count_tokens.json")], content_type=JSON, hold_headers=True)
    else:
        reply = Reply([b'{"input_tokens": '], content_type=JSON, end="stall")
    server.reply(COUNT, reply)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        provider.count_request_tokens(chat(), timeout=0.3)
    assert time.monotonic() - started < 2


def test_count_request_tokens_reuses_the_connection(
    server: FakeAnthropic, provider: AnthropicProvider
) -> None:
    for _ in range(3):
        assert provider.count_request_tokens(chat(), timeout=2) == 2095
    assert len(server.client_ports) == 1


# --- property: any transcript, any chunking -----------------------------------------

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(name=st.sampled_from([*TRANSCRIPTS]), data=st.data())
def test_documented_transcripts_any_chunking(
    server: FakeAnthropic, provider: AnthropicProvider, name: str, data: st.DataObject
) -> None:
    body = fixture(name)
    chunks = data.draw(chunkings(body, max_cuts=20), label="chunks")
    server.reply("POST /v1/messages", Reply(chunks))
    assert run(provider, chat()) == TRANSCRIPTS[name]


@PROPERTY
@given(stream=anthropic_streams(), data=st.data())
def test_generated_streams_any_chunking(
    server: FakeAnthropic, provider: AnthropicProvider, stream: AnthropicStream, data: st.DataObject
) -> None:
    body = stream.to_sse()
    chunks = data.draw(chunkings(body), label="chunks")
    server.reply("POST /v1/messages", Reply(chunks))
    events = run(provider, chat())
    expected: list[Event] = [Delta(t) for t in stream.texts if t]
    if stream.tool_input is not None:
        expected.append(ToolCall(stream.TOOL_NAME, stream.tool_input, stream.TOOL_ID))
    reason = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop"}
    expected.append(
        done(
            reason.get(stream.stop_reason, "length"),
            stream.input_tokens,
            stream.output_tokens,
            model=stream.model,
        )
    )
    assert events == expected
