"""OllamaProvider against a fake Ollama (the scripted fault server) serving exact transcripts."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubberduck.errors import (
    AuthError,
    Cancelled,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.messages import (
    ChatRequest,
    Delta,
    Done,
    Durations,
    Event,
    GenerateRequest,
    Message,
    ToolCall,
    Usage,
)
from rubberduck.providers.base import CancelScope
from rubberduck.providers.ollama import OllamaProvider
from tests import fake_ollama
from tests.conftest import load_fixture, run, run_failing, wait_until
from tests.fault_server import RawServer, http_chunk, read_request
from tests.providers.scripted_server import (
    Chunked,
    Received,
    Reply,
    ScriptedServer,
    data_reply,
)
from tests.strategies import ChatStream, chunkings, go_json, ollama_chat_streams

NDJSON = "application/x-ndjson"
JSON = "application/json"
HI = [Message(role="user", content="hi")]
BUSY_TEXT = "server busy, please try again.  maximum pending requests exceeded"
MIDSTREAM_TEXT = "an error was encountered while running the model"

# --- helpers ------------------------------------------------------------------------


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest(**{"model": "llama3.2", "messages": HI, **fields})


def generate(**fields: Any) -> GenerateRequest:
    return GenerateRequest(**{"model": "gemma4", "prompt": "Hi", **fields})


def chat_line(content: str, *, done: bool = False, **extra: Any) -> bytes:
    """One /api/chat NDJSON line as Ollama writes it."""
    obj = {
        "model": "llama3.2",
        "created_at": "2025-10-26T17:15:24.097767Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
        **extra,
    }
    return (go_json(obj) + "\n").encode()


DONE_LINE = chat_line("", done=True, done_reason="stop", prompt_eval_count=1, eval_count=2)


def streaming(chunks: Iterable[bytes], status: int = 200) -> Chunked:
    """An answer whose body is written piece by piece, one HTTP chunk each."""
    return Chunked(tuple(chunks), status=status)


def sent_json(server: ScriptedServer) -> dict[str, Any]:
    """The JSON body of the one request the server received."""
    assert len(server.received) == 1, server.received
    body: dict[str, Any] = json.loads(server.received[0].body)
    return body


def seconds(ns: int) -> float:
    return ns / 1e9


@pytest.fixture
def make_provider(server: ScriptedServer) -> Iterator[Callable[..., OllamaProvider]]:
    made: list[OllamaProvider] = []

    def make(**overrides: Any) -> OllamaProvider:
        kwargs: dict[str, Any] = {
            "name": "ollama",
            "base_url": server.url,
            "default_model": "llama3.2",
            "timeout": 5,
            "connect_timeout": 1,
            **overrides,
        }
        provider = OllamaProvider(**kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., OllamaProvider]) -> OllamaProvider:
    return make_provider()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Holds a fake server's thread until the test ends."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def free_port() -> int:
    """A local port nobody listens on."""
    return fake_ollama.free_port()


# --- streaming chat -----------------------------------------------------------------

CHAT_STREAM_EVENTS: list[Event] = [
    Delta("The"),
    Delta(" sky"),
    Delta(" is blue."),
    Done(
        done_reason="stop",
        usage=Usage(prompt_tokens=26, completion_tokens=282),
        model="llama3.2",
        provider="ollama",
        cost_usd=0.0,
        durations=Durations(
            total_s=4883583458 / 1e9,
            load_s=1334875 / 1e9,
            prompt_eval_s=342546000 / 1e9,
            eval_s=4535599000 / 1e9,
        ),
    ),
]


def test_fixtures_dir_holds_the_transcripts(fixtures_dir: Path) -> None:
    assert (fixtures_dir / "chat_stream.ndjson").read_bytes() == load_fixture("chat_stream.ndjson")


def test_chat_stream_events(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on(
        "/api/chat", data_reply(load_fixture("chat_stream.ndjson"), content_type=NDJSON), "POST"
    )
    events = run(provider, chat())
    assert events == CHAT_STREAM_EVENTS
    done = events[-1]
    assert isinstance(done, Done)
    assert done.done_reason == "stop"
    assert done.usage == Usage(prompt_tokens=26, completion_tokens=282)
    assert done.durations.total_s == pytest.approx(4.883583458)
    assert done.durations.eval_s == pytest.approx(4.535599)
    assert (done.model, done.provider) == ("llama3.2", "ollama")
    assert done.cost_usd == 0.0


@pytest.mark.parametrize("split", ["per_line", "per_byte"])
def test_chat_stream_any_chunking(
    server: ScriptedServer, provider: OllamaProvider, split: str
) -> None:
    body = load_fixture("chat_stream.ndjson")
    if split == "per_line":
        chunks = body.splitlines(keepends=True)
    else:
        chunks = [body[i : i + 1] for i in range(len(body))]
    server.on("/api/chat", streaming(chunks), "POST")
    assert run(provider, chat()) == CHAT_STREAM_EVENTS


@pytest.mark.parametrize("path", ["/api/chat", "/api/pull"])
def test_streams_are_read_even_behind_a_compressing_proxy(
    server: ScriptedServer, provider: OllamaProvider, path: str
) -> None:
    # A proxy in front of Ollama (nginx `gzip on`, a CDN) compresses what the
    # client accepts; lines read as they arrive cannot be gzip.
    name = "chat_stream.ndjson" if path == "/api/chat" else "pull_progress.ndjson"
    body = load_fixture(name)

    def handler(request: Received) -> Reply:
        if "gzip" in request.headers.get("accept-encoding", ""):
            return data_reply(
                gzip.compress(body), content_type=NDJSON, headers={"Content-Encoding": "gzip"}
            )
        return data_reply(body, content_type=NDJSON)

    server.on(path, handler, "POST")
    if path == "/api/chat":
        assert run(provider, chat()) == CHAT_STREAM_EVENTS
    else:
        assert provider.pull("llama3.2").done


def test_chat_stream_emits_each_line_as_it_arrives(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    """The first Delta reaches ``emit`` while the server still withholds the rest."""
    first_seen = threading.Event()
    seen_in_time: list[bool] = []
    lines = load_fixture("chat_stream.ndjson").splitlines(keepends=True)

    def body() -> Iterator[bytes]:
        yield lines[0]
        seen_in_time.append(first_seen.wait(2))
        yield from lines[1:]

    handler = Chunked(body)

    def emit(event: Event) -> None:
        events.append(event)
        first_seen.set()

    events: list[Event] = []
    server.on("/api/chat", handler, "POST")
    provider.run(chat(), emit, CancelScope())
    assert seen_in_time == [True]
    assert events == CHAT_STREAM_EVENTS


# --- the request body ---------------------------------------------------------------


def test_body_stream_false_sends_stream_key(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    server.on(
        "/api/chat", data_reply(load_fixture("chat_tool_calls.json"), content_type=JSON), "POST"
    )
    run(provider, chat(stream=False))
    assert sent_json(server) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "tools": [],  # as the official client sends it
    }
    assert server.received[0].headers["content-type"] == "application/json"


def test_body_stream_true_sends_stream_key(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    # Ollama streams when the key is absent too; the official client always sends
    # it, and so do we (tests/providers/test_ollama_client_parity.py).
    server.on(
        "/api/chat", data_reply(load_fixture("chat_stream.ndjson"), content_type=NDJSON), "POST"
    )
    run(provider, chat(stream=True))
    assert sent_json(server) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "tools": [],
    }


def test_generate_body_goes_to_api_generate(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    answer = {
        "model": "llama3.2",
        "created_at": "2025-10-26T17:15:24.166576Z",
        "response": "Hello there!",
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 18,
    }
    server.on("/api/generate", data_reply(go_json(answer), content_type=JSON), "POST")
    events = run(provider, generate(model=None, prompt="Why is the sky blue?", stream=False))
    assert sent_json(server) == {
        "model": "llama3.2",
        "prompt": "Why is the sky blue?",
        "stream": False,
    }
    assert events == [
        Delta("Hello there!"),
        Done(done_reason="stop", usage=Usage(11, 18), model="llama3.2", provider="ollama"),
    ]


@pytest.mark.parametrize(
    ("provider_keep_alive", "request_keep_alive", "expected"),
    [
        ("5m", None, "5m"),  # the backend's default fills the gap
        (-1, None, -1),
        ("5m", "10m", "10m"),  # the request's own value wins
        ("5m", 0, 0),  # ... even when it is falsy (0 = unload now)
        (None, 30, 30),
        (None, None, "<absent>"),
    ],
)
def test_body_keep_alive(
    server: ScriptedServer,
    make_provider: Callable[..., OllamaProvider],
    provider_keep_alive: Any,
    request_keep_alive: Any,
    expected: Any,
) -> None:
    server.on(
        "/api/chat", data_reply(load_fixture("chat_stream.ndjson"), content_type=NDJSON), "POST"
    )
    provider = make_provider(keep_alive=provider_keep_alive)
    run(provider, chat(keep_alive=request_keep_alive))
    assert sent_json(server).get("keep_alive", "<absent>") == expected


@pytest.mark.parametrize(
    ("request_model", "expected"), [(None, "llama3.2"), ("qwen3:0.6b", "qwen3:0.6b")]
)
def test_body_model_defaults_to_backend_model(
    server: ScriptedServer, provider: OllamaProvider, request_model: str | None, expected: str
) -> None:
    server.on(
        "/api/chat", data_reply(load_fixture("chat_stream.ndjson"), content_type=NDJSON), "POST"
    )
    run(provider, chat(model=request_model))
    assert sent_json(server)["model"] == expected


@pytest.mark.parametrize("req", [chat(model=None), generate(model=None)], ids=["chat", "gen"])
def test_no_model_anywhere_is_invalid_request(
    server: ScriptedServer,
    make_provider: Callable[..., OllamaProvider],
    req: ChatRequest | GenerateRequest,
) -> None:
    provider = make_provider(default_model=None)
    events, exc = run_failing(provider, req, InvalidRequest)
    assert exc.fallback is False
    assert exc.provider == "ollama"
    assert "model" in exc.message
    assert events == []
    assert server.received == []  # nothing was sent


# --- non-streamed answers -----------------------------------------------------------


def test_non_streamed_tool_calls(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on(
        "/api/chat", data_reply(load_fixture("chat_tool_calls.json"), content_type=JSON), "POST"
    )
    events = run(provider, chat(stream=False))
    assert events == [
        ToolCall(name="get_weather", arguments={"city": "Tokyo"}, id="call_ab12cd34"),
        Done(
            done_reason="stop",
            usage=Usage(prompt_tokens=169, completion_tokens=18),
            model="llama3.2",
            provider="ollama",
            cost_usd=0.0,
            durations=Durations(
                total_s=seconds(3244883583),
                load_s=seconds(2969184542),
                prompt_eval_s=seconds(141656333),
                eval_s=seconds(133293625),
            ),
        ),
    ]


def test_non_streamed_text_answer(server: ScriptedServer, provider: OllamaProvider) -> None:
    body = chat_line("The sky is blue.", done=True, done_reason="length", eval_count=5)
    server.on("/api/chat", data_reply(body, content_type=JSON), "POST")
    events = run(provider, chat(stream=False))
    assert events == [
        Delta("The sky is blue."),
        Done(
            done_reason="length",
            usage=Usage(prompt_tokens=0, completion_tokens=5),
            model="llama3.2",
            provider="ollama",
        ),
    ]


def test_non_streamed_answer_without_done_is_protocol_error(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    server.on("/api/chat", data_reply(chat_line("half"), content_type=JSON), "POST")
    _, exc = run_failing(provider, chat(stream=False), ProtocolError)
    assert exc.provider == "ollama"


def test_non_streamed_answer_over_limit_is_protocol_error(
    server: ScriptedServer, make_provider: Callable[..., OllamaProvider]
) -> None:
    body = chat_line("x" * 2000, done=True, done_reason="stop")
    server.on("/api/chat", data_reply(body, content_type=JSON), "POST")
    events, _ = run_failing(make_provider(max_line_bytes=1024), chat(stream=False), ProtocolError)
    assert events == []


def test_streamed_tool_calls_and_thinking(server: ScriptedServer, provider: OllamaProvider) -> None:
    """Thinking-only chunks give Deltas with empty text; a streamed tool call (no id)
    gives a ToolCall event."""
    thinking = {"role": "assistant", "content": "", "thinking": "User wants weather."}
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    body = b"".join(
        [
            (go_json({"model": "qwen3", "message": thinking, "done": False}) + "\n").encode(),
            (go_json({"model": "qwen3", "message": call, "done": False}) + "\n").encode(),
            (go_json({"model": "qwen3", "done": True, "done_reason": "stop"}) + "\n").encode(),
        ]
    )
    server.on("/api/chat", data_reply(body, content_type=NDJSON), "POST")
    events = run(provider, chat(model="qwen3", think=True))
    assert events == [
        Delta("", thinking="User wants weather."),
        ToolCall(name="get_weather", arguments={"city": "Paris"}, id=None),
        Done(done_reason="stop", model="qwen3", provider="ollama"),
    ]
    assert sent_json(server)["think"] is True


# --- streaming generate -------------------------------------------------------------


def test_generate_stream_events(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on(
        "/api/generate",
        data_reply(load_fixture("generate_stream.ndjson"), content_type=NDJSON),
        "POST",
    )
    events = run(provider, generate())
    assert events == [
        Delta("Hello"),
        Delta(" there"),
        Delta("!"),
        Done(
            done_reason="stop",
            usage=Usage(prompt_tokens=11, completion_tokens=18),
            model="gemma4",
            provider="ollama",
            cost_usd=0.0,
            durations=Durations(
                total_s=seconds(174560334),
                load_s=seconds(101397084),
                prompt_eval_s=seconds(13074791),
                eval_s=seconds(52479709),
            ),
        ),
    ]


def test_generate_midstream_error(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on(
        "/api/generate",
        data_reply(
            load_fixture("generate_midstream_error.ndjson"), status=200, content_type=NDJSON
        ),
        "POST",
    )
    events, exc = run_failing(provider, generate(), ProviderUnavailable)
    assert events == [Delta(" Yes"), Delta("."), Delta("I"), Delta("can")]
    assert MIDSTREAM_TEXT in exc.message
    assert exc.provider == "ollama"
    assert exc.refused is False


# --- HTTP errors before any output --------------------------------------------------


@pytest.mark.parametrize("request_model", ["llama3.2", None])
def test_404_is_model_not_found(
    server: ScriptedServer, provider: OllamaProvider, request_model: str | None
) -> None:
    server.on(
        "/api/chat",
        data_reply(load_fixture("error_model_not_found.json"), status=404, content_type=JSON),
        "POST",
    )
    events, exc = run_failing(provider, chat(model=request_model), ModelNotFound)
    assert "ollama pull llama3.2" in exc.message
    assert exc.model == "llama3.2"
    assert exc.fallback is True
    assert exc.provider == "ollama"
    assert events == []


@pytest.mark.parametrize(
    ("headers", "retry_after"), [({}, None), ({"Retry-After": "3"}, 3.0)], ids=["plain", "retry"]
)
def test_503_is_server_busy(
    server: ScriptedServer,
    provider: OllamaProvider,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    server.on(
        "/api/chat",
        data_reply(
            load_fixture("error_server_busy.json"), status=503, headers=headers, content_type=JSON
        ),
        "POST",
    )
    events, exc = run_failing(provider, chat(), ServerBusy)
    assert BUSY_TEXT in exc.message  # the server's own words, two spaces and all
    assert exc.retry_after_s == retry_after
    assert exc.fallback is True
    assert events == []


def test_429_is_server_busy_with_its_retry_after(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    server.on("/api/chat", data_reply(
        b'{"error":"too many requests"}', status=429, headers={"Retry-After": "7"},
        content_type=JSON,
    ), "POST")  # fmt: skip
    events, exc = run_failing(provider, chat(), ServerBusy)
    assert (exc.retry_after_s, exc.fallback) == (7.0, True)
    assert "too many requests" in exc.message and events == []


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors(
    server: ScriptedServer, provider: OllamaProvider, status: int
) -> None:
    server.on(
        "/api/chat",
        data_reply(b'{"error":"unauthorized"}', status=status, content_type=JSON),
        "POST",
    )
    events, exc = run_failing(provider, chat(), AuthError)
    assert exc.kind == "auth" and exc.fallback is True
    assert f"HTTP {status}: unauthorized" in exc.message and "ollama signin" in exc.message
    assert events == []


def test_400_is_invalid_request(server: ScriptedServer, provider: OllamaProvider) -> None:
    text = 'invalid format: expected "json" or a valid JSON schema'
    server.on(
        "/api/chat", data_reply(json.dumps({"error": text}), status=400, content_type=JSON), "POST"
    )
    events, exc = run_failing(provider, chat(), InvalidRequest)
    assert type(exc) is InvalidRequest
    assert exc.fallback is False
    assert text in exc.message
    assert events == []


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"error":"llama runner process has terminated: exit status 2"}', "exit status 2"),
        (b"Internal Server Error", "Internal Server Error"),
    ],
    ids=["json", "plain"],
)
def test_500_is_provider_unavailable(
    server: ScriptedServer, provider: OllamaProvider, body: bytes, text: str
) -> None:
    server.on("/api/chat", data_reply(body, status=500, content_type=JSON), "POST")
    events, exc = run_failing(provider, chat(), ProviderUnavailable)
    assert text in exc.message
    assert exc.refused is False
    assert exc.fallback is True
    assert events == []


def test_connection_refused(free_port: int) -> None:
    provider = OllamaProvider(
        name="ollama",
        base_url=f"http://127.0.0.1:{free_port}",
        default_model="llama3.2",
        timeout=5,
        connect_timeout=1,
    )
    try:
        events, exc = run_failing(provider, chat(), ProviderUnavailable)
        assert exc.refused is True
        assert "ollama serve" in exc.message
        assert exc.provider == "ollama"
        assert events == []
        with pytest.raises(ProviderUnavailable) as info:
            provider.health_check(1)
        assert info.value.refused is True
    finally:
        provider.close()


# --- malformed streams --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "x", "message": \n',
        chat_line("ok") + b"not json at all\n" + DONE_LINE,
        b'{"model": "x", "done": "yes"}\n',  # wrong type
        b"[1, 2, 3]\n",
    ],
    ids=["truncated", "garbage_line", "wrong_type", "not_object"],
)
def test_malformed_line_is_protocol_error(
    server: ScriptedServer, provider: OllamaProvider, body: bytes
) -> None:
    server.on("/api/chat", data_reply(body, content_type=NDJSON), "POST")
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert exc.provider == "ollama"
    assert not any(isinstance(e, Done) for e in events)


@pytest.mark.parametrize("lines", [3, 0], ids=["three_chunks", "empty_body"])
def test_stream_without_done_is_protocol_error(
    server: ScriptedServer, provider: OllamaProvider, lines: int
) -> None:
    chunks = load_fixture("chat_stream.ndjson").splitlines(keepends=True)[:lines]
    server.on("/api/chat", data_reply(b"".join(chunks), content_type=NDJSON), "POST")
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert events == CHAT_STREAM_EVENTS[:lines]
    assert "done" in exc.message


@pytest.mark.parametrize(
    "body",
    [
        chat_line("x" * 2000) + DONE_LINE,  # a complete line, newline and all
        chat_line("x" * 2000).rstrip(b"\n"),  # a line that never ends
    ],
    ids=["complete_long_line", "unterminated_long_line"],
)
def test_line_over_max_line_bytes_is_protocol_error(
    server: ScriptedServer, make_provider: Callable[..., OllamaProvider], body: bytes
) -> None:
    server.on("/api/chat", data_reply(body, content_type=NDJSON), "POST")
    provider = make_provider(max_line_bytes=1024)
    events, exc = run_failing(provider, chat(), ProtocolError)
    assert "1024" in exc.message
    assert events == []


# --- control plane ------------------------------------------------------------------


def test_health_check_reports_version(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on("/api/version", data_reply(load_fixture("version.json"), content_type=JSON), "GET")
    assert provider.health_check(1) == "ollama 0.12.6"


def test_list_models(server: ScriptedServer, provider: OllamaProvider) -> None:
    server.on("/api/tags", data_reply(load_fixture("tags.json"), content_type=JSON), "GET")
    assert provider.list_models(1) == ["llama3.2:latest", "nomic-embed-text:latest"]


def test_health_check_http_500_keeps_server_message(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    server.on("/api/version", data_reply(b'{"error":"boom"}', status=500, content_type=JSON), "GET")
    with pytest.raises(ProviderUnavailable, match="boom"):
        provider.health_check(1)


def test_health_check_not_ollama_is_protocol_error(
    server: ScriptedServer, provider: OllamaProvider
) -> None:
    server.on(
        "/api/version",
        data_reply(b"<html>some other server</html>", content_type="text/html"),
        "GET",
    )
    with pytest.raises(ProtocolError):
        provider.health_check(1)


# --- cancellation -------------------------------------------------------------------


def _run_cancelled_after(
    provider: OllamaProvider, delay: float
) -> tuple[list[Event], float, CancelScope]:
    """Run a chat, cancel it from another thread after ``delay`` seconds."""
    scope = CancelScope()
    events: list[Event] = []
    timer = threading.Timer(delay, scope.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with contextlib.suppress(RubberDuckError):  # returning or raising are both fine
            provider.run(chat(), events.append, scope)
    finally:
        elapsed = time.monotonic() - started
        timer.cancel()
    return events, elapsed, scope


def test_cancel_mid_stream_returns_promptly(
    server: ScriptedServer, provider: OllamaProvider, release: threading.Event
) -> None:
    def body() -> Iterator[bytes]:
        yield chat_line("The")
        release.wait(3)  # a model that goes quiet

    handler = Chunked(body)

    server.on("/api/chat", handler, "POST")
    events, elapsed, scope = _run_cancelled_after(provider, 0.2)
    assert scope.cancelled
    assert events == [Delta("The")]
    assert elapsed < 2, f"run() waited {elapsed:.2f}s for the server after cancel()"


@pytest.fixture
def keep_alive_server(release: threading.Event) -> Iterator[str]:
    """A one-shot server that answers like Ollama's Go net/http: HTTP/1.1, chunked,
    connection kept alive (werkzeug always sends ``Connection: close``). It sends one
    chat line, then goes quiet until the test ends."""

    def serve(conn: socket.socket) -> None:
        read_request(conn)
        line = chat_line("The")
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + http_chunk(line)
        )
        release.wait(3)

    with RawServer(serve) as server:
        yield server.url
        release.set()


def test_cancel_mid_stream_keep_alive_connection(keep_alive_server: str) -> None:
    provider = OllamaProvider(
        name="ollama", base_url=keep_alive_server, default_model="llama3.2", timeout=5
    )
    try:
        events, elapsed, scope = _run_cancelled_after(provider, 0.2)
    finally:
        provider.close()
    assert scope.cancelled
    assert events == [Delta("The")]
    assert elapsed < 2


def test_a_stream_that_ends_after_cancel_is_cancelled_not_truncated() -> None:
    # cancel() marks the scope, then shuts the socket down: the reading thread may
    # see a clean end of stream (a body that ends with the connection, as HTTP/1.0
    # and some proxies send) before anything raises. That end is the cancel, not a
    # truncated answer (ProtocolError, which would let the router try the next
    # backend). Setting the flag from emit() pins the race deterministically.
    def serve(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n" + chat_line("The")
        )

    server = RawServer(serve).start()
    provider = OllamaProvider(base_url=server.url, default_model="m", timeout=5)
    scope = CancelScope()
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        scope.cancelled = True  # cancel() has begun; its closer has not run yet

    try:
        with pytest.raises(Cancelled):
            provider.run(chat(), emit, scope)
    finally:
        provider.close()
        server.stop()
    assert events == [Delta("The")]


def test_cancel_before_run_emits_nothing(
    server: ScriptedServer, provider: OllamaProvider, release: threading.Event
) -> None:
    def body() -> Iterator[bytes]:
        yield chat_line("The")
        release.wait(3)

    handler = Chunked(body)

    server.on("/api/chat", handler, "POST")
    scope = CancelScope()
    scope.cancel()
    events: list[Event] = []
    started = time.monotonic()
    with pytest.raises(RubberDuckError):
        provider.run(chat(), events.append, scope)
    assert time.monotonic() - started < 2
    assert events == []


# --- property: any chat stream, any chunking ----------------------------------------


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stream=ollama_chat_streams(), data=st.data())
def test_chat_stream_round_trip(
    server: ScriptedServer, provider: OllamaProvider, stream: ChatStream, data: st.DataObject
) -> None:
    body = stream.to_ndjson()
    chunks = data.draw(chunkings(body), label="chunks")
    assert b"".join(chunks) == body
    server.on("/api/chat", streaming(chunks), "POST")

    events = run(provider, chat(model=stream.model))

    *head, done = events
    deltas = [e for e in head if type(e) is Delta]
    assert deltas == head, events  # only Deltas before the end
    assert [d.text for d in deltas] == stream.nonempty_pieces  # empty contents emit nothing
    assert "".join(d.text for d in deltas) == stream.text
    assert sum(isinstance(e, Done) for e in events) == 1
    assert done == Done(
        done_reason=stream.done_reason,
        usage=Usage(prompt_tokens=stream.prompt_eval_count, completion_tokens=stream.eval_count),
        model=stream.model,
        provider="ollama",
        cost_usd=0.0,
        durations=Durations(
            total_s=seconds(stream.total_duration),
            load_s=seconds(stream.load_duration),
            prompt_eval_s=seconds(stream.prompt_eval_duration),
            eval_s=seconds(stream.eval_duration),
        ),
    )


# --- connection reuse -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_complete_answers_leave_the_connection_for_the_next_request(stream: bool) -> None:
    # Ollama's Go server keeps connections alive; a new TCP connection per request
    # would cost every call a handshake.
    with fake_ollama.FakeOllama() as server:
        provider = OllamaProvider(base_url=server.url)
        for _ in range(5):
            events: list[Any] = []
            request = ChatRequest(model="llama3.2", messages=[Message("user", "hi")], stream=stream)
            provider.run(request, events.append, CancelScope())
            assert isinstance(events[-1], Done)
        provider.run(request, events.append, CancelScope())
        assert len(server.client_ports) == 1
        provider.close()


def test_a_broken_stream_does_not_leave_its_connection_in_the_pool() -> None:
    with fake_ollama.FakeOllama("midstream") as server:
        provider = OllamaProvider(base_url=server.url)
        request = ChatRequest(model="llama3.2", messages=[Message("user", "hi")])
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                provider.run(request, lambda e: None, CancelScope())
        server.mode = "ok"
        events: list[Any] = []
        provider.run(request, events.append, CancelScope())
        assert isinstance(events[-1], Done)
        assert len(server.client_ports) == 3
        provider.close()


def test_close_closes_idle_keep_alive_connections() -> None:
    # urllib3 2.8's PoolManager.clear() forgets pools without closing them.
    def serving() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "process_request" in t.name]

    with fake_ollama.FakeOllama("busy") as fake:
        provider = OllamaProvider("ollama", base_url=fake.url)
        provider.health_check(1.0)
        request = ChatRequest(model="m", messages=[Message("user", "hi")])
        # A kept error holds its response, which holds the connection pool.
        with pytest.raises(ServerBusy) as kept:
            provider.run(request, lambda event: None, CancelScope())
        assert serving(), "the server holds the idle keep-alive connection"
        provider.close()
        assert wait_until(lambda: not serving(), 2), kept
