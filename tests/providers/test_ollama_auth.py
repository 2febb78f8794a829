"""OllamaProvider's credentials: the API key from ``api_key_env`` (default
``OLLAMA_API_KEY``, as the official client), extra ``headers``, and where the key
must never show (repr, ``vars()``, error messages). What is sent is compared with
the official client in ``test_ollama_client_parity.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rubberduck.config import ProviderConfig
from rubberduck.errors import AuthError, ConfigError, ProtocolError, ProviderUnavailable
from rubberduck.messages import ChatRequest, Message
from rubberduck.providers import create_provider
from rubberduck.providers.ollama import OllamaProvider
from tests.conftest import run, run_failing
from tests.providers.scripted_server import Received, Reply, ScriptedServer

KEY = "sk-ollama-0123456789abcdef"
NO_KEY_REMEDY = (
    "run `ollama signin` for cloud models, or check the credentials a proxy in front "
    "of Ollama expects"
)
CHAT = ChatRequest(model="llama3.2", messages=[Message("user", "hi")], stream=False)
DONE = {"model": "llama3.2", "message": {"role": "assistant", "content": "hi"}, "done": True}


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.delenv("PROXY_KEY", raising=False)


@pytest.fixture
def url(server: ScriptedServer) -> str:
    return server.url


@pytest.fixture
def make(url: str) -> Iterator[Any]:
    made: list[OllamaProvider] = []

    def build(**kwargs: Any) -> OllamaProvider:
        provider = OllamaProvider(base_url=url, timeout=5, **kwargs)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        provider.close()


def _answer(server: ScriptedServer, status: int = 200, body: Any = DONE) -> list[dict[str, str]]:
    """Answer /api/chat; return the list the request headers are recorded in."""
    seen: list[dict[str, str]] = []

    def handler(request: Received) -> Reply:
        seen.append(request.headers)
        return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    server.replies[("POST", "/api/chat")] = handler
    return seen


def test_no_key_sends_no_authorization(server: ScriptedServer, make: Any) -> None:
    seen = _answer(server)
    provider = make()
    run(provider, CHAT)
    assert "authorization" not in seen[0]
    assert provider.info().requires_api_key is False


def test_ollama_api_key_is_sent_as_a_bearer_token(
    server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", f" {KEY}\n")  # as pasted: spaces trimmed
    seen = _answer(server)
    provider = make()
    run(provider, CHAT)
    assert seen[0]["authorization"] == f"Bearer {KEY}"
    assert provider.info().requires_api_key is True


def test_api_key_env_names_another_variable(
    server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "not-this-one-0000")
    monkeypatch.setenv("PROXY_KEY", KEY)
    seen = _answer(server)
    run(make(api_key_env="PROXY_KEY"), CHAT)
    assert seen[0]["authorization"] == f"Bearer {KEY}"


def test_extra_headers_are_sent_and_an_authorization_among_them_wins(
    server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)
    seen = _answer(server)
    provider = make(headers={"X-Proxy-Token": "abc", "Authorization": "Basic dXNlcjpwdw=="})
    run(provider, CHAT)
    assert seen[0]["x-proxy-token"] == "abc"
    assert seen[0]["authorization"] == "Basic dXNlcjpwdw=="
    assert provider.info().requires_api_key is True


def test_the_key_is_in_no_repr_vars_or_message(
    server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)
    # A proxy that echoes the credentials it refused, in the body and mid-stream.
    _answer(server, 401, {"error": f"invalid token Bearer {KEY}"})
    provider = make()
    assert KEY not in repr(provider)
    assert KEY not in repr(vars(provider))
    assert KEY not in repr(provider.info())
    _, exc = run_failing(provider, CHAT, AuthError)
    assert KEY not in str(exc) and "invalid token Bearer ***" in exc.message
    _answer(server, 200, {"error": f"upstream refused {KEY}"})
    _, line_error = run_failing(provider, CHAT, ProviderUnavailable)
    assert KEY not in str(line_error)
    server.replies[("POST", "/api/chat")] = Reply(200, f"<html>{KEY}</html>".encode())
    _, garbage = run_failing(provider, CHAT, ProtocolError)
    assert KEY not in str(garbage)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_names_the_variable_when_a_key_is_sent(
    server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setenv("PROXY_KEY", KEY)
    _answer(server, status, {"error": "unauthorized"})
    _, exc = run_failing(make(api_key_env="PROXY_KEY"), CHAT, AuthError)
    assert exc.message.startswith(f"HTTP {status}: unauthorized — check the API key in $PROXY_KEY")
    assert exc.fallback is True


def test_auth_error_without_a_key_keeps_its_text(server: ScriptedServer, make: Any) -> None:
    _answer(server, 401, {"error": "unauthorized"})
    _, exc = run_failing(make(), CHAT, AuthError)
    assert exc.message == f"HTTP 401: unauthorized — {NO_KEY_REMEDY}"


def test_auth_error_with_an_authorization_header_points_at_it(
    server: ScriptedServer, make: Any
) -> None:
    _answer(server, 403, {"error": "forbidden"})
    _, exc = run_failing(make(headers={"Authorization": "Bearer x"}), CHAT, AuthError)
    assert "Authorization header in this provider's `headers`" in exc.message


def test_a_named_variable_that_is_not_set_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"\$PROXY_KEY is not set"):
        OllamaProvider(api_key_env="PROXY_KEY")


@pytest.mark.parametrize("value", ["sk-with space-0000", "sk-line\nbreak-0000", "sk-\x7f-del-0000"])
def test_a_malformed_key_fails_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", value)
    with pytest.raises(ConfigError, match=r"API key in \$OLLAMA_API_KEY") as info:
        OllamaProvider()
    assert value.strip() not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "secret\r\nX-Injected: 1"}, {"Bad Name": "v"}, {"X-Token": " padded"}],
)
def test_a_malformed_header_fails_without_showing_its_value(headers: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="not a valid HTTP header") as info:
        OllamaProvider(headers=headers)
    assert "secret" not in str(info.value) and "padded" not in str(info.value)


def test_create_provider_passes_the_key_and_headers(
    server: ScriptedServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXY_KEY", KEY)
    seen = _answer(server)
    cfg = ProviderConfig(base_url=url, api_key_env="PROXY_KEY", headers={"X-Team": "duck"})
    provider = create_provider("ollama", cfg)
    try:
        run(provider, CHAT)
    finally:
        provider.close()
    assert seen[0]["authorization"] == f"Bearer {KEY}" and seen[0]["x-team"] == "duck"
    with pytest.raises(ConfigError, match="only for kind"):
        create_provider("gpu", ProviderConfig(kind="openai", base_url=url, headers={"X": "y"}))
