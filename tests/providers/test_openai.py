"""OpenAIProvider: end to end on a real llama.cpp server (xllamacpp, SmolLM2-135M from
PyPI), and against a fake OpenAI server (the scripted fault server speaking SSE) for what a
real server cannot produce on demand: auth and rate-limit errors, broken streams,
split tool-call arguments."""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    Durations,
    EmbedRequest,
    Event,
    GenerateRequest,
    Message,
    ToolCall,
    Usage,
)
from rubberduck.providers import create_provider
from rubberduck.providers._http.sse import read_events
from rubberduck.providers.base import CancelScope
from rubberduck.providers.openai import OpenAIProvider, ProviderInfo
from tests.conftest import run, run_failing, wait_until
from tests.fake_ollama import free_port
from tests.fault_server import RawServer, http_chunk, read_request
from tests.providers.scripted_server import (
    Chunked,
    ScriptedServer,
    data_reply,
    json_reply,
)
from tests.strategies import OpenAIStream, chunkings, openai_chat_streams

SSE = "text/event-stream"
JSON = "application/json"
HI = [Message(role="user", content="hi")]
KEY_ENV = "RUBBERDUCK_TEST_OPENAI_KEY"
KEY = "sk-test-Zq8uY2c7Vh3kT9wB1xR5nL0pD4mF6gJ"

# --- helpers ------------------------------------------------------------------------


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest(**{"model": "gpt-4o-mini", "messages": HI, **fields})


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {**chunk(), "choices": [], "usage": {**usage, "total_tokens": prompt + completion}}


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"

TEXT_STREAM = [
    event(chunk({"role": "assistant", "content": "", "refusal": None})),
    event(chunk({"content": "The"})),
    event(chunk({"content": " sky"})),
    event(chunk({"content": " is blue."})),
    event(chunk({}, "stop")),
    event(usage_chunk(9, 12)),
    DONE_EVENT,
]


def without_durations(events: list[Event]) -> list[Event]:
    """Events with Done's durations cleared (``total_s`` is measured wall time here)."""
    return [
        msgspec.structs.replace(e, durations=Durations()) if isinstance(e, Done) else e
        for e in events
    ]


def streaming(chunks: Iterable[bytes], status: int = 200) -> Chunked:
    """An SSE answer written piece by piece, one HTTP chunk each."""
    return Chunked(tuple(chunks), content_type=SSE, status=status)


def sent(server: ScriptedServer) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON body and headers (names in lower case) of the one request received."""
    assert len(server.received) == 1, server.received
    return json.loads(server.received[0].body), server.received[0].headers


def assert_no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text), text


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


@pytest.fixture
def make_provider(server: ScriptedServer) -> Iterator[Callable[..., OpenAIProvider]]:
    made: list[OpenAIProvider] = []

    def make(**overrides: Any) -> OpenAIProvider:
        kwargs: dict[str, Any] = {
            "name": "openai",
            "base_url": server.url + "/v1",
            "default_model": "gpt-4o-mini",
            "timeout": 5,
            "connect_timeout": 1,
            **overrides,
        }
        made.append(OpenAIProvider(**kwargs))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., OpenAIProvider]) -> OpenAIProvider:
    return make_provider()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Holds a fake server's thread until the test ends."""
    event = threading.Event()
    yield event
    event.set()


# --- streaming chat -------------------------------------------------------------------


def test_chat_stream_events_and_usage(server: ScriptedServer, provider: OpenAIProvider) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM), "POST")
    events = run(provider, chat())
    assert without_durations(events) == [
        Delta("The"),
        Delta(" sky"),
        Delta(" is blue."),
        Done(
            done_reason="stop",
            usage=Usage(prompt_tokens=9, completion_tokens=12),
            model="gpt-4o-mini-2024-07-18",
            provider="openai",
            cost_usd=0.0,
        ),
    ]
    done = events[-1]
    assert isinstance(done, Done) and done.durations.total_s is not None
    assert 0 <= done.durations.total_s < 5  # measured here: OpenAI reports no timings


def test_chat_body_maps_ollama_options_and_format(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    options = {
        "temperature": 0.2,
        "top_p": 0.9,
        "num_predict": 64,
        "stop": ["\n\n"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_ctx": 8192,  # Ollama-only: not sent
        "top_k": 40,
        "repeat_penalty": 1.1,
    }
    run(provider, chat(options=options, format="json", keep_alive="5m", think=True))
    body, headers = sent(server)
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["\n\n"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "response_format": {"type": "json_object"},
    }
    assert headers["accept"] == SSE
    assert headers["accept-encoding"] == "identity"
    assert "authorization" not in headers


def test_json_schema_format_and_unbounded_num_predict(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    run(provider, chat(format=schema, options={"num_predict": -1}))
    body, _ = sent(server)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert "max_tokens" not in body  # Ollama's -1 means no cap


def test_history_tool_calls_images_and_tool_results_are_converted(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"  # a PNG's first bytes
    messages = [
        Message("user", "What is in this picture, and the weather in Paris?", images=[png]),
        Message(
            "assistant",
            tool_calls=[
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_x", "function": {"name": "get_time", "arguments": {}}},
            ],
        ),
        Message("tool", "12:00", tool_name="get_time"),
        Message("tool", "sunny", tool_name="get_weather"),
    ]
    run(provider, chat(messages=messages, tools=[{"type": "function", "function": {"name": "f"}}]))
    body, _ = sent(server)
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_x",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "content": "12:00", "tool_call_id": "call_x"},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1_0"},
    ]


def test_request_without_model_uses_default_or_fails_before_sending(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    run(make_provider(default_model="local-model"), chat(model=None))
    assert sent(server)[0]["model"] == "local-model"
    _, exc = run_failing(make_provider(default_model=None), chat(model=None), InvalidRequest)
    assert exc.fallback is False and "model" in exc.message
    assert len(server.received) == 1


@pytest.mark.parametrize(
    "request_",
    [
        chat(options={"temperature": object()}),
        chat(format={"type": "object", "default": object()}),
        chat(messages=[Message("assistant", tool_calls=[{"function": {"name": "f",
             "arguments": {"when": object()}}}])]),
        chat(messages=[Message("assistant", tool_calls=["get_weather"])]),  # type: ignore[list-item]
        GenerateRequest(model="m", prompt="hi", options={"stop": object()}),
    ],
    ids=["option", "format", "tool_arguments", "tool_call_not_a_dict", "generate_option"],
)  # fmt: skip
def test_a_request_that_is_not_json_is_invalid_request_and_not_sent(
    server: ScriptedServer, provider: OpenAIProvider, request_: ChatRequest | GenerateRequest
) -> None:
    _, exc = run_failing(provider, request_, InvalidRequest)
    assert "JSON" in exc.message and exc.fallback is False and exc.provider == "openai"
    with pytest.raises(InvalidRequest, match="JSON"):
        provider.embed(EmbedRequest(model="m", input="x", dimensions=object()))  # type: ignore[arg-type]
    assert server.received == []


# --- tool calls ---------------------------------------------------------------------

# OpenAI's streaming shape for two parallel calls: id and name in each call's first
# fragment, then its arguments string cut anywhere, interleaved by index.
TOOL_STREAM = [
    event(chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]})),
    event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"lo'}}]})),
    event(chunk({"tool_calls": [{"index": 1, "id": "call_def", "type": "function",
                                 "function": {"name": "get_time", "arguments": ""}}]})),
    event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'cation": "Par'}}]})),
    event(chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]})),
    event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is, France"}'}}]})),
    event(chunk({}, "tool_calls")),
    event(usage_chunk(80, 40)),
    DONE_EVENT,
]  # fmt: skip


def test_streamed_tool_calls_with_split_arguments(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/chat/completions", streaming(TOOL_STREAM))
    assert without_durations(run(provider, chat())) == [
        ToolCall("get_weather", {"location": "Paris, France"}, "call_abc"),
        ToolCall("get_time", {"tz": "CET"}, "call_def"),
        Done(
            done_reason="stop",  # Ollama's done_reason after tool calls
            usage=Usage(80, 40),
            model="gpt-4o-mini-2024-07-18",
            provider="openai",
        ),
    ]


def test_parallel_calls_sharing_index_zero_stay_apart(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    """Ollama's /v1 sends each parallel call whole, all with index 0."""
    calls = [
        {"index": 0, "id": f"call_{n}", "type": "function",
         "function": {"name": "add", "arguments": json.dumps({"a": n})}}
        for n in (1, 2)
    ]  # fmt: skip
    body = [event(chunk({"tool_calls": [call]})) for call in calls]
    body += [event(chunk({}, "tool_calls")), DONE_EVENT]
    server.on("/v1/chat/completions", streaming(body))
    events = run(provider, chat())
    assert events[:2] == [ToolCall("add", {"a": 1}, "call_1"), ToolCall("add", {"a": 2}, "call_2")]


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "not json"])
def test_tool_call_arguments_not_a_json_object_is_protocol_error(
    server: ScriptedServer, provider: OpenAIProvider, arguments: str
) -> None:
    call = {"index": 0, "id": "c", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip
    body = [event(chunk({"tool_calls": [call]})), event(chunk({}, "tool_calls")), DONE_EVENT]
    server.on("/v1/chat/completions", streaming(body))
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert "get_weather" in exc.message and exc.provider == "openai"
    assert events == []


def test_non_streamed_answer_with_tool_calls(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    answer = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1699896916,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_abc123",
                            "type": "function",
                            "function": {
                                "name": "get_current_weather",
                                "arguments": '{\n"location": "Boston, MA"\n}',
                            },
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
    }
    server.on("/v1/chat/completions", json_reply(answer))
    events = without_durations(run(provider, chat(stream=False)))
    assert events == [
        ToolCall("get_current_weather", {"location": "Boston, MA"}, "call_abc123"),
        Done(done_reason="stop", usage=Usage(82, 17), model="gpt-4o-mini", provider="openai"),
    ]
    body, headers = sent(server)
    assert body["stream"] is False and "stream_options" not in body
    assert headers["accept"] == JSON


# --- /completions ---------------------------------------------------------------------


def test_generate_goes_to_completions(server: ScriptedServer, provider: OpenAIProvider) -> None:
    def text(piece: str, finish: str | None = None, **extra: Any) -> bytes:
        choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
        return event({"object": "text_completion", "model": "m", "choices": [choice], **extra})

    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    body = [text(" Paris"), text(".", "length", usage=usage), DONE_EVENT]
    server.on("/v1/completions", streaming(body), "POST")
    request = GenerateRequest(
        model="m", prompt="The capital of France is", suffix="!", system="ignored", raw=False
    )
    events = without_durations(run(provider, request))
    assert events == [
        Delta(" Paris"),
        Delta("."),
        Done(done_reason="length", usage=Usage(5, 2), model="m", provider="openai"),
    ]
    assert sent(server)[0] == {
        "model": "m",
        "prompt": "The capital of France is",
        "suffix": "!",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


# --- HTTP errors before any output --------------------------------------------------


def test_401_is_a_config_error_that_falls_back_and_hides_the_key(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider], api_key: str
) -> None:
    # OpenAI echoes (part of) a rejected key; a server may echo all of it.
    error = {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error",
             "param": None, "code": "invalid_api_key"}  # fmt: skip
    server.on("/v1/chat/completions", json_reply({"error": error}, status=401))
    provider = make_provider(api_key_env=api_key)
    events, exc = run_failing(provider, chat(), AuthError)
    assert exc.fallback is True
    assert f"check the API key in ${KEY_ENV}" in exc.message
    assert "Incorrect API key provided" in exc.message
    assert_no_key(exc, exc.message, repr(exc), provider, repr(provider), vars(provider))
    assert events == []
    _, headers = sent(server)
    assert headers["authorization"] == f"Bearer {KEY}"


def test_403_without_api_key_env_says_how_to_set_one(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on(
        "/v1/chat/completions",
        json_reply(
            {"error": {"message": "Forbidden", "type": "permission_error", "code": 403}}, status=403
        ),
    )
    _, exc = run_failing(provider, chat(), AuthError)
    assert exc.fallback is True and "api_key_env" in exc.message


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({}, None), ({"Retry-After": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5)],
    ids=["plain", "seconds", "ms"],
)
@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_server_busy(
    server: ScriptedServer,
    provider: OpenAIProvider,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    error = {"message": "Rate limit reached for requests", "type": "requests",
             "param": None, "code": "rate_limit_exceeded"}  # fmt: skip
    server.on("/v1/chat/completions", json_reply({"error": error}, status=status, headers=headers))
    events, exc = run_failing(provider, chat(), ServerBusy)
    assert "Rate limit reached" in exc.message and f"HTTP {status}" in exc.message
    assert exc.retry_after_s == retry_after
    assert exc.fallback is True and events == []


def test_429_insufficient_quota_is_a_config_error(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    error = {"message": "You exceeded your current quota.", "type": "insufficient_quota",
             "param": None, "code": "insufficient_quota"}  # fmt: skip
    server.on("/v1/chat/completions", json_reply({"error": error}, status=429))
    _, exc = run_failing(provider, chat(), AuthError)
    assert exc.fallback is True and "quota" in exc.message


def test_404_model_is_model_not_found(server: ScriptedServer, provider: OpenAIProvider) -> None:
    error = {"message": "The model `gpt-9` does not exist or you do not have access to it.",
             "type": "invalid_request_error", "param": None, "code": "model_not_found"}  # fmt: skip
    server.on("/v1/chat/completions", json_reply({"error": error}, status=404))
    _, exc = run_failing(provider, chat(model="gpt-9"), ModelNotFound)
    assert exc.model == "gpt-9" and exc.fallback is True
    assert "does not exist" in exc.message


def test_404_without_a_model_means_a_wrong_base_url(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    # llama.cpp's answer to a path it does not serve
    not_found = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
    server.on("/chat/completions", json_reply(not_found, status=404))
    provider = make_provider(base_url=server.url + "/")  # no /v1
    _, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert "base_url" in exc.message and "/v1" in exc.message


@pytest.mark.parametrize(
    ("error", "remedy"),
    [
        ({"code": 400, "message": "request (3031 tokens) exceeds the available context size "
          "(1024 tokens), try increasing it", "type": "exceed_context_size_error"},
         "shorten the prompt"),
        ({"message": "Invalid value for 'temperature'", "type": "invalid_request_error",
          "param": "temperature", "code": None}, ""),
    ],
    ids=["llamacpp_context", "openai_param"],
)  # fmt: skip
def test_400_is_invalid_request(
    server: ScriptedServer, provider: OpenAIProvider, error: dict[str, Any], remedy: str
) -> None:
    server.on("/v1/chat/completions", json_reply({"error": error}, status=400))
    _, exc = run_failing(provider, chat(), InvalidRequest)
    assert type(exc) is InvalidRequest and exc.fallback is False
    assert error["message"] in exc.message and remedy in exc.message


@pytest.mark.parametrize(
    ("body", "text"),
    [(json.dumps({"error": {"message": "The server had an error", "type": "server_error"}}),
      "The server had an error"),
     ("Internal Server Error", "Internal Server Error")],
    ids=["json", "plain"],
)  # fmt: skip
def test_500_is_provider_unavailable(
    server: ScriptedServer, provider: OpenAIProvider, body: str, text: str
) -> None:
    server.on("/v1/chat/completions", data_reply(body, status=500, content_type=JSON))
    events, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert text in exc.message and exc.refused is False and events == []


def test_402_payment_required_is_an_auth_error(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider], api_key: str
) -> None:
    """OpenRouter and other gateways answer 402 when the account's credits are gone."""
    error = {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
             "code": 402}  # fmt: skip
    server.on("/v1/chat/completions", json_reply({"error": error}, status=402))
    _, exc = run_failing(make_provider(api_key_env=api_key), chat(), AuthError)
    assert exc.fallback is True and "Insufficient credits" in exc.message
    assert f"${KEY_ENV}" in exc.message


def test_an_endpoint_the_server_does_not_offer_falls_back_without_blaming_it(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    """llama.cpp started without --embeddings answers /embeddings with 501: another
    backend may embed, and this one is healthy (kind "invalid" does not count
    against it, "unavailable" would)."""
    message = "This server does not support embeddings. Start it with `--embeddings`"
    error = {"code": 501, "message": message, "type": "not_supported_error"}
    server.on("/v1/embeddings", json_reply({"error": error}, status=501))
    with pytest.raises(InvalidRequest) as info:
        provider.embed(EmbedRequest(input="hi"), 1)
    assert info.value.fallback is True and info.value.kind == "invalid"
    assert "--embeddings" in info.value.message


def test_408_is_a_timeout_not_an_invalid_request(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/chat/completions", data_reply("Request Timeout", status=408))
    _, exc = run_failing(provider, chat(), RequestTimeout)
    assert exc.fallback is True and "HTTP 408" in exc.message


def test_connection_refused() -> None:
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{free_port()}/v1", default_model="m")
    try:
        _, exc = run_failing(provider, chat(), ProviderUnavailable)
        assert exc.refused is True and "not reachable" in exc.message
        with pytest.raises(ProviderUnavailable) as info:
            provider.health_check(1)
        assert info.value.refused is True
    finally:
        provider.close()


# --- the API key ----------------------------------------------------------------------


def test_missing_key_fails_before_sending(
    server: ScriptedServer,
    make_provider: Callable[..., OpenAIProvider],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=rf"\${KEY_ENV} is not set"):
        make_provider(api_key_env=KEY_ENV)
    assert server.received == []


def test_key_with_control_characters_is_refused_without_showing_it(
    server: ScriptedServer,
    make_provider: Callable[..., OpenAIProvider],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, f"  {KEY[:10]}\n{KEY[10:]}\n")  # surrounding blanks are stripped
    with pytest.raises(ConfigError) as info:
        make_provider(api_key_env=KEY_ENV)
    exc = info.value
    assert "control characters" in exc.message
    assert KEY[:10] not in str(exc) and KEY[10:] not in str(exc)
    assert server.received == []


def test_key_is_stripped_and_sent_as_bearer(
    server: ScriptedServer,
    make_provider: Callable[..., OpenAIProvider],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, f"{KEY}\n")
    server.on("/v1/models", json_reply({"object": "list", "data": []}))
    provider = make_provider(api_key_env=KEY_ENV)
    provider.validate_config()  # local http is fine
    provider.list_models(1)
    (request,) = server.received
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_errors_never_show_the_key(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider], api_key: str
) -> None:
    """Every failure mode's message, repr and the provider's repr are free of the key,
    even when the server echoes it back."""
    echo = {"error": {"message": f"bad key {KEY}", "type": "x", "code": None}}
    for status in (400, 401, 404, 429, 500, 503):
        server.once("/v1/chat/completions", json_reply(echo, status=status))
    server.once("/v1/chat/completions", streaming([event(chunk({"content": "a"})), event(echo)]))
    server.once("/v1/chat/completions", streaming([f"data: {{not json {KEY}\n\n".encode()]))
    provider = make_provider(api_key_env=api_key)
    for _ in range(8):
        with pytest.raises(RubberDuckError) as info:
            provider.run(chat(), lambda e: None, CancelScope())
        assert_no_key(info.value, repr(info.value), info.value.args)
    assert_no_key(repr(provider), provider.info())


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, f"data: {'x' * 100}{KEY}\n\n"),  # not JSON: the message quotes its start
        (200, f"event: error\ndata: {'x' * 280}{KEY}\n\n"),
        (500, "y" * 180 + KEY),  # a plain-text error body
    ],
    ids=["bad_event", "error_event", "plain_500"],
)
def test_a_key_cut_by_a_length_limit_is_still_hidden(
    server: ScriptedServer,
    make_provider: Callable[..., OpenAIProvider],
    api_key: str,
    status: int,
    body: str,
) -> None:
    """The key is removed before a message is shortened, so no prefix of it
    survives at the cut."""
    server.on("/v1/chat/completions", data_reply(body, status=status, content_type=SSE))
    _, exc = run_failing(make_provider(api_key_env=api_key), chat(), RubberDuckError)
    assert KEY[:12] not in str(exc), str(exc)


def test_validate_config_refuses_a_key_in_clear_text_to_a_remote_host(api_key: str) -> None:
    with pytest.raises(ConfigError, match="https"):
        OpenAIProvider(base_url="http://api.example.com/v1", api_key_env=api_key)
    OpenAIProvider(base_url="https://api.example.com/v1", api_key_env=api_key).validate_config()


# --- malformed and broken streams ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        [event(chunk({"content": "ok"})), b"data: {not json}\n\n", DONE_EVENT],
        [b'data: {"choices": "nope"}\n\n', DONE_EVENT],
        [b"data: [1, 2]\n\n", DONE_EVENT],
        [b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n', DONE_EVENT],
    ],
    ids=["not_json", "wrong_type", "not_object", "not_utf8"],
)
def test_malformed_data_is_protocol_error(
    server: ScriptedServer, provider: OpenAIProvider, body: list[bytes]
) -> None:
    server.on("/v1/chat/completions", streaming(body))
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert exc.provider == "openai"
    assert "JSON" in exc.message or "UTF-8" in exc.message
    assert not any(isinstance(e, Done) for e in events)


@pytest.mark.parametrize(
    "error_event",
    [
        # OpenAI / vLLM / llama.cpp: a data event with an error object
        event({"error": {"message": "The server had an error while processing your request.",
                         "type": "server_error", "code": None}}),
        # a named SSE event
        b'event: error\ndata: {"message": "The server had an error while processing"}\n\n',
    ],
    ids=["data_error", "error_event"],
)  # fmt: skip
def test_error_event_mid_stream_is_provider_unavailable(
    server: ScriptedServer, provider: OpenAIProvider, error_event: bytes
) -> None:
    body = [*TEXT_STREAM[:3], error_event, DONE_EVENT]
    server.on("/v1/chat/completions", streaming(body))
    events, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert events == [Delta("The"), Delta(" sky")]
    assert "The server had an error while processing" in exc.message and exc.fallback is True


@pytest.mark.parametrize("cut", [0, 3, 6], ids=["empty", "mid_answer", "before_done"])
def test_stream_cut_before_done_is_protocol_error(
    server: ScriptedServer, provider: OpenAIProvider, cut: int
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM[:cut]))
    started = time.monotonic()
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert "[DONE]" in exc.message
    assert time.monotonic() - started < 2
    assert not any(isinstance(e, Done) for e in events)


@pytest.mark.parametrize(
    "body",
    [
        [event(chunk({"content": "x" * 2000})), DONE_EVENT],  # a whole event, too long
        [b"data: " + b"x" * 700, b"x" * 700],  # an event that never ends
        [b"data: {}\n", *[b"data: xxxxxxxxxx\n"] * 100],  # many lines, no blank one
    ],
    ids=["long_event", "unterminated", "many_lines"],
)
def test_event_over_max_event_bytes_is_protocol_error(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider], body: list[bytes]
) -> None:
    server.on("/v1/chat/completions", streaming(body))
    events, exc = run_failing(make_provider(max_event_bytes=1024), chat(), ProtocolError)
    assert "1024" in exc.message and events == []


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A TCP server (:class:`tests.fault_server.RawServer`); each test passes what
    to do with each connection."""
    servers: list[RawServer] = []

    def start(serve: Callable[[socket.socket], None]) -> str:
        servers.append(RawServer(serve).start())
        return servers[-1].url + "/v1"

    yield start
    for server in servers:
        server.stop()


def sse_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n"
    )


def test_connection_dropped_mid_stream_is_provider_unavailable(
    raw_server: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    def serve(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(sse_head() + http_chunk(TEXT_STREAM[1]) + b"ff\r\ndata: {")
        conn.shutdown(socket.SHUT_RDWR)

    provider = OpenAIProvider(base_url=raw_server(serve), default_model="m", timeout=5)
    try:
        events, exc = run_failing(provider, chat(), ProviderUnavailable)
    finally:
        provider.close()
    assert events == [Delta("The")]
    assert "broke" in exc.message


def test_a_pooled_connection_closed_by_the_server_is_retried_once(
    raw_server: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    """llama.cpp closes the connection after each streamed answer although it sends
    ``Keep-Alive``; the next request must not fail for it."""
    requests_seen: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        requests_seen.append(read_request(conn))
        conn.sendall(sse_head() + b"".join(http_chunk(e) for e in TEXT_STREAM) + http_chunk(b""))
        if len(requests_seen) < 5:
            # The next request on this connection gets no answer: the server closes.
            requests_seen.append(read_request(conn))

    provider = OpenAIProvider(base_url=raw_server(serve), default_model="m", timeout=5)
    try:
        for _ in range(3):
            assert isinstance(run(provider, chat())[-1], Done)
    finally:
        provider.close()
    posts = [r for r in requests_seen if r.startswith(b"POST /v1/chat/completions")]
    assert len(posts) == 5  # 3 answered, 2 sent again after the server's close


# --- cancellation -------------------------------------------------------------------


def test_cancel_mid_stream_returns_promptly(
    server: ScriptedServer, provider: OpenAIProvider, release: threading.Event
) -> None:
    def body() -> Iterator[bytes]:
        yield TEXT_STREAM[1]
        release.wait(5)  # a model that goes quiet

    handler = Chunked(body, content_type=SSE)

    server.on("/v1/chat/completions", handler)
    scope, events = CancelScope(), []
    timer = threading.Timer(0.2, scope.cancel)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        provider.run(chat(), events.append, scope)
    timer.cancel()
    assert time.monotonic() - started < 2
    assert events == [Delta("The")]


def test_cancel_before_run_emits_nothing(server: ScriptedServer, provider: OpenAIProvider) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    scope = CancelScope()
    scope.cancel()
    events: list[Event] = []
    with pytest.raises(Cancelled):
        provider.run(chat(), events.append, scope)
    assert events == []


# --- property: any stream, any chunking -------------------------------------------------


def sse_events(chunks: Iterable[bytes]) -> list[tuple[str, str]]:
    """(event name, data) of each event read from ``chunks``, one read per chunk."""
    pieces = iter(chunks)
    return [(e.event, e.data) for e in read_events(lambda _n: next(pieces, b""), 1 << 20)]


@settings(max_examples=300, deadline=None, database=None)
@given(stream=openai_chat_streams(), data=st.data())
def test_sse_framing_does_not_depend_on_how_the_bytes_are_cut(
    stream: OpenAIStream, data: st.DataObject
) -> None:
    body = stream.to_sse()
    whole = sse_events([body])
    datas = [json.dumps(c, ensure_ascii=False) for c in stream.chunks()] + ["[DONE]"]
    assert whole == [("message", d) for d in datas]
    assert sse_events(data.draw(chunkings(body, max_cuts=40), label="chunks")) == whole
    assert sse_events(body[i : i + 1] for i in range(len(body))) == whole


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stream=openai_chat_streams(), data=st.data())
def test_any_split_of_an_sse_stream_gives_the_same_events(
    server: ScriptedServer, provider: OpenAIProvider, stream: OpenAIStream, data: st.DataObject
) -> None:
    body = stream.to_sse()
    chunks = data.draw(chunkings(body), label="chunks")
    assert b"".join(chunks) == body
    server.on("/v1/chat/completions", streaming(chunks))

    events = without_durations(run(provider, chat(model=stream.model)))

    expected: list[Event] = [Delta(text) for text in stream.contents if text]
    expected += [ToolCall(c.name, c.arguments, c.id) for c in stream.tool_calls]
    expected.append(
        Done(
            done_reason="stop" if stream.finish_reason == "tool_calls" else stream.finish_reason,
            usage=Usage(stream.prompt_tokens, stream.completion_tokens),
            model=stream.model,
            provider="openai",
        )
    )
    assert events == expected


# --- control plane ------------------------------------------------------------------------

MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
        {"id": "text-embedding-3-small", "object": "model", "created": 1705948997,
         "owned_by": "system"},
    ],
}  # fmt: skip


def test_list_models_health_check_and_info(
    server: ScriptedServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    server.on("/v1/models", json_reply(MODELS), "GET")
    provider = make_provider(default_model="gpt-4o-mini")
    assert provider.info().models == ("gpt-4o-mini",)
    assert provider.list_models(1) == ["gpt-4o-mini", "text-embedding-3-small"]
    assert provider.health_check(1) == "OpenAI-compatible API, 2 models"
    assert provider.info() == ProviderInfo(
        name="openai",
        kind="openai",
        base_url=server.url + "/v1",
        models=("gpt-4o-mini", "text-embedding-3-small"),
        requires_api_key=False,
        is_local=True,
    )


def test_health_check_on_something_else_is_protocol_error(
    server: ScriptedServer, provider: OpenAIProvider
) -> None:
    server.on("/v1/models", data_reply("<html>hi</html>"))
    with pytest.raises(ProtocolError):
        provider.health_check(1)


def test_embed(server: ScriptedServer, provider: OpenAIProvider) -> None:
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    server.on("/v1/embeddings", json_reply(answer), "POST")
    request = EmbedRequest(model="text-embedding-3-small", input=["a", "b"], dimensions=2)
    assert provider.embed(request, 1).embeddings == [[0.1, 0.2], [0.3, 0.4]]
    assert sent(server)[0] == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    with pytest.raises(ProtocolError, match="asked for 1"):
        provider.embed(EmbedRequest(model="m", input="one text"), 1)


def test_features_and_token_estimate(provider: OpenAIProvider) -> None:
    for feature in ("streaming", "tools", "vision", "embeddings", "json_mode"):
        assert provider.supports_feature(feature)
    assert not provider.supports_feature("audio")
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("abcd") == 1
    assert provider.count_tokens("abcde") == 2
    assert provider.count_tokens("héllo") == 2  # 6 UTF-8 bytes


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:1234/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://192.168.1.20:8000/v1", True),
        ("http://10.0.0.5/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://8.8.8.8/v1", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert OpenAIProvider(base_url=url).is_local is local


@pytest.mark.parametrize(
    "url", [None, "", "127.0.0.1:8080/v1", "ftp://host/v1", "https://user:pw@api.example.com/v1"]
)
def test_bad_base_url_is_config_error(url: str | None) -> None:
    with pytest.raises(ConfigError, match="base_url") as info:
        OpenAIProvider(base_url=url)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/v1",  # was: "connection ... broke mid-response (InvalidURL)"
        "http://127.0.0.1:port/v1",
        "https://example.openai.azure.com/openai?api-version=2024-06-01",  # paths go after it
        "http://127.0.0.1:8080/v1#models",
    ],
)
def test_a_base_url_requests_cannot_use_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIProvider(base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:s3cr3t@api.example.com/v1",
        "http://user:s3cr3t@api.example.com:99999/v1",
        "https://user:s3cr3t@api.example.com/v1?x=1",
    ],
)
def test_credentials_in_a_bad_base_url_are_not_quoted(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url") as info:
        OpenAIProvider(base_url=url)
    assert "s3cr3t" not in str(info.value)


def test_config_builds_an_openai_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    config = load_config(
        {
            "provider": {
                "llamacpp": {"kind": "openai", "base_url": "http://127.0.0.1:8080/v1/"},
                "openai": {
                    "base_url": "https://api.openai.com/v1",
                    "model": "gpt-4o-mini",
                    "api_key_env": KEY_ENV,
                },
            }
        }
    )
    (_, local_cfg), (_, remote_cfg) = config.backends()
    local = create_provider("llamacpp", local_cfg)
    remote = create_provider("openai", remote_cfg)
    assert isinstance(local, OpenAIProvider) and isinstance(remote, OpenAIProvider)
    assert (local.base_url, local.is_local, local.info().requires_api_key) == (
        "http://127.0.0.1:8080/v1",
        True,
        False,
    )
    assert (remote.is_local, remote.default_model, remote.info().requires_api_key) == (
        False,
        "gpt-4o-mini",
        True,
    )
    assert_no_key(repr(remote), remote.info())
    remote.close()
    local.close()


# --- end to end: a real llama.cpp server ---------------------------------------------------

LLAMACPP_MODEL = "smollm2-135m-instruct"
LLAMACPP_KEY_ENV = "RUBBERDUCK_TEST_LLAMACPP_KEY"
QUESTION = [Message("user", "What is the capital of France? Answer in one word.")]


@pytest.fixture(scope="module")
def llamacpp() -> Iterator[str]:
    """llama.cpp's HTTP server (xllamacpp) on a free 127.0.0.1 port, serving the
    packaged SmolLM2-135M with embeddings on and an API key; yields the base URL
    and stops the server (and checks the port is closed) at the end."""
    xllamacpp = pytest.importorskip("xllamacpp", reason="needs the `local` extra")
    from rubberduck.providers.local import find_packaged_model

    key = "sk-llamacpp-" + os.urandom(8).hex()
    params = xllamacpp.CommonParams()
    params.model.path = find_packaged_model()
    params.model_alias = {LLAMACPP_MODEL}  # else the model is named by its file path
    params.hostnames = ["127.0.0.1"]
    params.port = port = free_port()
    params.n_ctx = 2048
    params.n_parallel = 2
    params.embedding = True
    params.endpoint_metrics = True  # /metrics: llamacpp:n_decode_total (and /slots, on by default)
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    params.api_keys = [key]
    params.verbosity = -1
    server = xllamacpp.Server(params)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LLAMACPP_KEY_ENV, key)
        yield f"http://127.0.0.1:{port}/v1"
    del server  # Server's destructor stops the HTTP server and the model loop
    gc.collect()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


@pytest.fixture
def real(llamacpp: str) -> Iterator[OpenAIProvider]:
    provider = OpenAIProvider(
        "llamacpp",
        base_url=llamacpp,
        default_model=LLAMACPP_MODEL,
        api_key_env=LLAMACPP_KEY_ENV,
        timeout=60,
    )
    yield provider
    provider.close()


slow = pytest.mark.slow


@slow
def test_llamacpp_models_and_health(real: OpenAIProvider) -> None:
    assert real.list_models(5) == [LLAMACPP_MODEL]
    assert real.health_check(5) == "OpenAI-compatible API, 1 model"
    assert real.is_local is True


@slow
def test_llamacpp_non_streamed_chat(real: OpenAIProvider) -> None:
    request = ChatRequest(
        messages=QUESTION, stream=False, options={"temperature": 0, "num_predict": 24}
    )
    events = run(real, request)
    assert len(events) == 2
    delta, done = events
    assert isinstance(delta, Delta) and "paris" in delta.text.lower()
    assert isinstance(done, Done) and done.provider == "llamacpp" and done.cost_usd == 0.0
    assert done.usage.prompt_tokens > 0 and 0 < done.usage.completion_tokens <= 24
    assert done.durations.eval_s and done.durations.prompt_eval_s  # llama.cpp's timings


@slow
def test_llamacpp_streamed_chat_reports_usage(real: OpenAIProvider) -> None:
    events = run(
        real, ChatRequest(messages=QUESTION, options={"temperature": 0, "num_predict": 16})
    )
    *deltas, done = events
    assert len(deltas) >= 2 and all(isinstance(d, Delta) for d in deltas)
    assert "paris" in "".join(d.text for d in deltas if isinstance(d, Delta)).lower()
    assert isinstance(done, Done) and done.done_reason in ("stop", "length")
    # include_usage: llama.cpp sends a last chunk with choices: [] and usage
    assert done.usage.prompt_tokens > 0
    assert done.usage.completion_tokens == pytest.approx(len(deltas), abs=2)
    assert done.tokens_per_second and done.tokens_per_second > 0


@slow
def test_llamacpp_num_predict_caps_the_answer(real: OpenAIProvider) -> None:
    request = ChatRequest(
        messages=[Message("user", "Write a long story about a duck.")], options={"num_predict": 5}
    )
    done = run(real, request)[-1]
    assert isinstance(done, Done)
    assert done.done_reason == "length" and done.usage.completion_tokens == 5


@slow
def test_llamacpp_completions(real: OpenAIProvider) -> None:
    request = GenerateRequest(
        prompt="The capital of France is", options={"temperature": 0, "num_predict": 4}
    )
    events = run(real, request)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert "paris" in text.lower()
    done = events[-1]
    assert isinstance(done, Done) and done.usage == Usage(5, 4)  # usage on the finish chunk


@slow
def test_llamacpp_json_schema_is_honoured(real: OpenAIProvider) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = ChatRequest(
        messages=[Message("user", "Give me a JSON object.")],
        format=schema,
        options={"temperature": 0, "num_predict": 40},
    )
    text = "".join(e.text for e in run(real, request) if isinstance(e, Delta))
    assert isinstance(json.loads(text)["a"], int)


@slow
def test_llamacpp_embeddings(real: OpenAIProvider) -> None:
    answer = real.embed(EmbedRequest(input=["hello", "a duck on a pond"]), 10)
    assert answer.provider == "llamacpp" and answer.usage.prompt_tokens > 0
    vectors = answer.embeddings
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) == 576  # SmolLM2's n_embd
    assert vectors[0] != vectors[1]
    (single,) = real.embed(EmbedRequest(input="hello"), 10).embeddings
    assert single == pytest.approx(vectors[0], abs=1e-5)


def llamacpp_get(base_url: str, path: str) -> requests.Response:
    """GET one of llama.cpp's own endpoints (beside /v1), with the test's key."""
    headers = {"Authorization": f"Bearer {os.environ[LLAMACPP_KEY_ENV]}"}
    answer = requests.get(base_url.removesuffix("/v1") + path, headers=headers, timeout=10)
    answer.raise_for_status()
    return answer


def llamacpp_decodes(base_url: str) -> int:
    """llama.cpp's ``llamacpp:n_decode_total`` (its Prometheus /metrics): one per
    decode step, so a generation that goes on after a cancel keeps raising it."""
    text = llamacpp_get(base_url, "/metrics").text
    (line,) = (ln for ln in text.splitlines() if ln.startswith("llamacpp:n_decode_total "))
    return int(float(line.split()[1]))


def llamacpp_busy_slots(base_url: str) -> int:
    """How many of llama.cpp's slots are generating now (its /slots)."""
    slots = llamacpp_get(base_url, "/slots").json()
    return sum(1 for slot in slots if slot["is_processing"])


@slow
def test_llamacpp_cancel_mid_stream_frees_the_slot(real: OpenAIProvider, llamacpp: str) -> None:
    scope, events = CancelScope(), []

    def emit(event: Event) -> None:
        events.append(event)
        if len(events) == 3:
            threading.Thread(target=scope.cancel).start()

    request = ChatRequest(
        messages=[Message("user", "Write a long story about a duck.")],
        options={"num_predict": 1500},
    )
    before = llamacpp_decodes(llamacpp)
    with pytest.raises(Cancelled):
        real.run(request, emit, scope)
    assert 3 <= len(events) < 100
    # The server stopped generating: both slots are idle, and it decoded a few
    # steps past the cancel, not the hundreds of tokens the story runs to.
    assert wait_until(lambda: llamacpp_busy_slots(llamacpp) == 0, 60)
    assert llamacpp_decodes(llamacpp) - before < 100
    assert isinstance(
        run(real, ChatRequest(messages=QUESTION, options={"num_predict": 8}))[-1], Done
    )


@slow
def test_llamacpp_answers_any_model_name_with_its_own(real: OpenAIProvider) -> None:
    """llama.cpp serves one model and ignores the requested name (no 404)."""
    done = run(
        real, ChatRequest(model="no-such-model", messages=QUESTION, options={"num_predict": 4})
    )[-1]
    assert isinstance(done, Done) and done.model == LLAMACPP_MODEL


@slow
def test_llamacpp_prompt_over_the_context_is_invalid_request(real: OpenAIProvider) -> None:
    request = ChatRequest(messages=[Message("user", "hi " * 3000)], options={"num_predict": 4})
    _, exc = run_failing(real, request, InvalidRequest)
    assert "exceeds the available context size" in exc.message
    assert "shorten the prompt" in exc.message


@slow
def test_llamacpp_wrong_key_is_an_auth_error(
    llamacpp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-" + os.urandom(8).hex()
    monkeypatch.setenv(KEY_ENV, wrong)
    provider = OpenAIProvider(base_url=llamacpp, default_model="m", api_key_env=KEY_ENV)
    try:
        _, exc = run_failing(provider, chat(), AuthError)
        with pytest.raises(AuthError):
            provider.health_check(5)  # llama.cpp guards /v1/models with the key too
    finally:
        provider.close()
    assert exc.fallback is True and "Invalid API Key" in exc.message
    assert f"${KEY_ENV}" in exc.message and wrong not in str(exc)


@slow
def test_llamacpp_back_to_back_requests_on_one_pool(real: OpenAIProvider) -> None:
    """llama.cpp closes the connection after each streamed answer: the next request,
    streamed or not, still goes through."""
    for stream in (True, True, False, True, False):
        request = ChatRequest(messages=QUESTION, stream=stream, options={"num_predict": 2})
        assert isinstance(run(real, request)[-1], Done)


@slow
def test_runtime_falls_back_past_a_refused_and_an_unauthorized_backend(
    llamacpp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the actors: a dead backend and one with a wrong key are skipped."""
    from rubberduck import ChatResponse, Runtime

    monkeypatch.setenv(KEY_ENV, "sk-wrong-" + os.urandom(8).hex())
    common = {"kind": "openai", "model": LLAMACPP_MODEL, "timeout": 60}
    config = load_config(
        {
            "provider": {
                "down": {**common, "base_url": f"http://127.0.0.1:{free_port()}/v1"},
                "badkey": {**common, "base_url": llamacpp, "api_key_env": KEY_ENV},
                "llamacpp": {**common, "base_url": llamacpp, "api_key_env": LLAMACPP_KEY_ENV},
            }
        }
    )
    with Runtime(config) as rt:
        reply = rt.chat(messages=QUESTION, options={"temperature": 0, "num_predict": 24})
    assert isinstance(reply, ChatResponse)
    assert reply.provider == "llamacpp" and "paris" in reply.message.content.lower()
    assert [f.split(":")[0] for f in reply.fallbacks] == ["down", "badkey"]
    assert "check the API key" in reply.fallbacks[1], reply.fallbacks


def test_the_key_never_reaches_the_logs(
    server: ScriptedServer,
    make_provider: Callable[..., OpenAIProvider],
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.on("/v1/chat/completions", streaming(TEXT_STREAM))
    server.on("/v1/models", json_reply({"error": {"message": KEY}}, 401))
    caplog.set_level("DEBUG")
    provider = make_provider(api_key_env=api_key)
    run(provider, chat())
    with pytest.raises(AuthError):
        provider.health_check(1)
    assert caplog.records and KEY not in caplog.text
