"""Every error path of every HTTP provider, with keys set and servers that echo
them: no key in any message, repr or log record."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from rubberduck.errors import RubberDuckError
from rubberduck.messages import ChatRequest, EmbedRequest, Event, Message
from rubberduck.providers import AnthropicProvider, OllamaProvider, OpenAIProvider
from rubberduck.providers.base import CancelScope, Provider
from tests.fake_ollama import free_port
from tests.providers.scripted_server import Reply, ScriptedServer

KEY = "sk-proj-LEAKCHECK0123456789abcdefghij"
HEADER_SECRET = "Basic cHJveHk6c2VjcmV0LXByb3h5LXBhc3M="
KEY_ENV = "RD_LEAK_TEST_KEY"
JSON = {"Content-Type": "application/json"}

MAKERS: dict[str, Callable[[str], Provider]] = {
    "ollama": lambda url: OllamaProvider(
        "ollama",
        base_url=url,
        api_key_env=KEY_ENV,
        headers={"X-Proxy-Auth": HEADER_SECRET},
        default_model="m",
        timeout=2.0,
    ),
    "openai": lambda url: OpenAIProvider(
        "openai", base_url=url + "/v1", api_key_env=KEY_ENV, default_model="m", timeout=2.0
    ),
    "anthropic": lambda url: AnthropicProvider(
        "anthropic", base_url=url, api_key_env=KEY_ENV, default_model="m", timeout=2.0
    ),
}

ECHO = f"invalid credentials: {KEY} / {HEADER_SECRET}"
# The key straddles the usual cut points (120, 200, 300 characters).
LONG = "x" * 110 + ECHO + "y" * 70 + ECHO + "z" * 80 + ECHO

#: Answers to every request: statuses with bodies that echo the key, answers that
#: are not the protocol, streams that carry an error after output started.
FAULTS: dict[str, Reply] = {
    **{
        f"{status}-json": Reply(status, json.dumps({"error": {"message": LONG}}).encode(), JSON)
        for status in (400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 529)
    },
    "401-ollama-json": Reply(401, json.dumps({"error": LONG}).encode(), JSON),
    "401-anthropic-json": Reply(
        401, json.dumps({"type": "error", "error": {"type": "x", "message": LONG}}).encode(), JSON
    ),
    "500-text": Reply(500, LONG.encode(), {"Content-Type": "text/plain"}),
    "502-html": Reply(502, f"<html>{LONG}</html>".encode(), {"Content-Type": "text/html"}),
    "307-redirect": Reply(307, b"", {"Location": f"http://198.51.100.7/x?key={KEY}"}),
    "200-not-json": Reply(200, LONG.encode(), JSON),
    "200-truncated": Reply(200, ('{"model": "m", "text": "' + LONG).encode(), JSON),
    "200-ndjson-error": Reply(
        200,
        b'{"model":"m","message":{"role":"assistant","content":"a"},"done":false}\n'
        + json.dumps({"error": LONG}).encode()
        + b"\n",
        {"Content-Type": "application/x-ndjson"},
    ),
    "200-sse-error": Reply(
        200,
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        + b"event: error\ndata: "
        + json.dumps({"type": "error", "error": {"type": "api_error", "message": LONG}}).encode()
        + b"\n\n",
        {"Content-Type": "text/event-stream"},
    ),
    "200-sse-bad-event": Reply(
        200, b"data: " + LONG.encode() + b"\n\n", {"Content-Type": "text/event-stream"}
    ),
}


def chat(stream: bool) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", "hi")], stream=stream)


def calls(provider: Provider) -> Iterator[Callable[[], object]]:
    """Every call a provider makes to its server."""
    events: list[Event] = []
    yield lambda: provider.run(chat(True), events.append, CancelScope())
    yield lambda: provider.run(chat(False), events.append, CancelScope())
    yield lambda: provider.embed(EmbedRequest(model="m", input="hi"), timeout=2.0)
    yield lambda: provider.health_check(2.0)
    yield lambda: provider.list_models(2.0)


def assert_no_secret(kind: str, *texts: object) -> None:
    secrets = [KEY, KEY[:12], KEY[-12:]]
    if kind == "ollama":  # the only one configured with the header
        secrets += [HEADER_SECRET, HEADER_SECRET[:12]]
    for text in texts:
        for secret in secrets:
            assert secret not in str(text), text


def errors_of(provider: Provider) -> list[RubberDuckError]:
    seen = []
    for call in calls(provider):
        try:
            call()
        except RubberDuckError as exc:
            seen.append(exc)
    return seen


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_no_key_in_any_error_repr_or_log(
    kind: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedServer() as server:
        server.default = FAULTS[fault]
        provider = MAKERS[kind](server.url)
        seen = errors_of(provider)
        provider.close()
    assert seen  # every fault fails some call
    for exc in seen:
        chain = [exc, exc.__cause__, exc.__context__]
        assert_no_secret(kind, *chain, *map(repr, chain), exc.message, exc.provider)
    assert_no_secret(kind, repr(provider), provider.info(), vars(provider), caplog.text)
    assert_no_secret(kind, *(record.getMessage() for record in caplog.records))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_no_key_when_nothing_answers_or_tls_fails(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = MAKERS[kind](f"http://127.0.0.1:{free_port()}")
    with ScriptedServer() as server:
        tls = MAKERS[kind](server.url.replace("http://", "https://"))
        seen = errors_of(refused) + errors_of(tls)
    assert len(seen) >= 8
    for exc in seen:
        assert_no_secret(kind, exc, repr(exc), exc.__cause__, repr(exc.__cause__))
    assert_no_secret(kind, caplog.text, repr(refused), repr(tls))
