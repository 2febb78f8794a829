"""The provider layer's shared rules, each checked against every HTTP provider:
secrets redacted before they are cut, settings validated when a provider is built,
no redirect that changes host or re-sends a POST, errors built complete, and
messages that say the right thing."""

from __future__ import annotations

import email.utils
import json
import pathlib
from collections.abc import Callable

import pytest

import rubberduck.providers
from rubberduck.config import ProviderConfig
from rubberduck.errors import (
    AuthError,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.messages import ChatRequest, Delta, EmbedRequest, Event, Message
from rubberduck.providers import (
    AnthropicProvider,
    LocalProvider,
    OllamaProvider,
    OpenAIProvider,
    create_provider,
)
from rubberduck.providers._http.retry_after import retry_after
from rubberduck.providers._http.secret import Secret
from rubberduck.providers.base import CancelScope, Provider
from tests.fault_server import NDJSON, SSE, StreamProtocol
from tests.providers.scripted_server import Reply, ScriptedServer, Stream

KEY = "sk-live-0123456789abcdefXYZ"
KEY_ENV = "RD_LAYER_TEST_KEY"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    return KEY


def ollama(url: str, **kw: object) -> OllamaProvider:
    return OllamaProvider("ollama", base_url=url, api_key_env=KEY_ENV, default_model="m", **kw)  # type: ignore[arg-type]


def openai(url: str, **kw: object) -> OpenAIProvider:
    return OpenAIProvider(
        "openai",
        base_url=url + "/v1",
        api_key_env=KEY_ENV,
        default_model="m",
        **kw,  # type: ignore[arg-type]
    )


def anthropic(url: str, **kw: object) -> AnthropicProvider:
    return AnthropicProvider(
        "anthropic", base_url=url, api_key_env=KEY_ENV, default_model="m", **kw
    )  # type: ignore[arg-type]


MAKERS: dict[str, Callable[..., Provider]] = {
    "ollama": ollama,
    "openai": openai,
    "anthropic": anthropic,
}
CHAT_PATH = {"ollama": "/api/chat", "openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def chat(model: str | None = None, stream: bool = True) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", "hi")], stream=stream)


def run(provider: Provider, request: ChatRequest) -> list[Event]:
    events: list[Event] = []
    provider.run(request, events.append, CancelScope())
    return events


# --- secrets ------------------------------------------------------------------------------


def test_secret_redacts_before_it_cuts() -> None:
    secret = Secret(KEY)
    text = "x" * 95 + " bad key " + KEY
    excerpt = secret.excerpt(text, 110)
    assert KEY[:8] not in excerpt and "***" in excerpt
    assert "hidden" in repr(secret) and KEY not in repr(secret)


def test_secret_redacts_every_copy_before_it_cuts() -> None:
    # Redacting the first copy pulls the second in front of the cut.
    text = "a" * 90 + KEY + "b" * 5 + KEY
    assert KEY[:5] not in Secret(KEY).excerpt(text, 110)


def test_an_ollama_error_body_cut_through_the_key_leaks_nothing(
    server: ScriptedServer, key: str
) -> None:
    # Not JSON, so the body itself is quoted: the key straddles character 200.
    body = ("y" * 186 + " bad key " + KEY).encode()
    server.replies[("POST", "/api/chat")] = Reply(500, body, {"Content-Type": "text/plain"})
    with pytest.raises(ProviderUnavailable) as info:
        run(ollama(server.url), chat())
    assert KEY[:5] not in str(info.value)


def test_a_pull_line_that_echoes_the_key_is_redacted(server: ScriptedServer, key: str) -> None:
    line = json.dumps({"digest": KEY}).encode() + b"\n"
    server.replies[("POST", "/api/pull")] = Reply(
        200, line, {"Content-Type": "application/x-ndjson"}
    )
    with pytest.raises(ProtocolError) as info:
        list(ollama(server.url).iter_pull("m"))
    assert KEY not in str(info.value) and info.value.provider == "ollama"


@pytest.mark.parametrize("kind", ["ollama", "anthropic", "openai"])
def test_a_base_url_with_credentials_is_refused_without_quoting_it(key: str, kind: str) -> None:
    url = f"http://user:{KEY}@127.0.0.1:9"
    with pytest.raises(ConfigError) as info:
        if kind == "openai":
            OpenAIProvider("openai", base_url=url + "/v1")
        else:
            MAKERS[kind](url)
    assert KEY not in str(info.value) and "credentials" in str(info.value)


# --- validation ---------------------------------------------------------------------------


def test_openai_validates_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        OpenAIProvider("openai", base_url="https://api.example.com/v1", api_key_env=KEY_ENV)


@pytest.mark.parametrize("kind", ["ollama", "anthropic", "openai"])
def test_a_key_in_clear_text_to_another_host_is_refused_unless_allowed(key: str, kind: str) -> None:
    with pytest.raises(ConfigError, match="allow_insecure_key"):
        MAKERS[kind]("http://10.0.0.7:8080")
    MAKERS[kind]("http://10.0.0.7:8080", allow_insecure_key=True).close()
    MAKERS[kind]("http://127.0.0.1:8080").close()  # loopback: fine
    MAKERS[kind]("https://10.0.0.7:8080").close()  # TLS: fine


def test_allow_insecure_key_is_a_provider_config_key(key: str) -> None:
    cfg = ProviderConfig(kind="openai", base_url="http://10.0.0.7:8080/v1", api_key_env=KEY_ENV)
    with pytest.raises(ConfigError):
        create_provider("gpu", cfg)
    allowed = ProviderConfig(
        kind="openai",
        base_url="http://10.0.0.7:8080/v1",
        api_key_env=KEY_ENV,
        allow_insecure_key=True,
    )
    create_provider("gpu", allowed).close()


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "anthropic", "openai"])
def test_no_redirect_to_another_host_is_followed(key: str, kind: str) -> None:
    with ScriptedServer() as origin, ScriptedServer() as other:
        other.default = Reply(200, b"{}", JSON)
        path = CHAT_PATH[kind]
        origin.default = Reply(307, b"", {"Location": other.url + path})
        provider = MAKERS[kind](origin.url)
        with pytest.raises(ProviderUnavailable) as info:
            run(provider, chat())
        assert info.value.fallback and "127.0.0.1" in info.value.message
        with pytest.raises(ProviderUnavailable):
            provider.health_check(5)  # a GET: not to another host either
        provider.close()
        assert other.received == []  # neither the prompt nor the key went there


def test_a_post_is_not_re_sent_on_a_same_host_redirect(server: ScriptedServer, key: str) -> None:
    server.replies[("POST", "/api/chat")] = Reply(307, b"", {"Location": "/api/chat2"})
    with pytest.raises(ProviderUnavailable):
        run(ollama(server.url), chat())
    assert [r.path for r in server.received] == ["/api/chat"]


def test_a_get_redirect_on_the_same_host_is_followed(server: ScriptedServer, key: str) -> None:
    server.replies[("GET", "/api/version")] = Reply(301, b"", {"Location": "/api/v2"})
    server.replies[("GET", "/api/v2")] = Reply(200, b'{"version": "0.12.6"}', JSON)
    assert ollama(server.url).version(5) == "0.12.6"


# --- cost ---------------------------------------------------------------------------------


def test_cloud_ollama_is_not_local() -> None:
    assert OllamaProvider(base_url="https://ollama.com").is_local is False
    assert OllamaProvider(base_url="http://127.0.0.1:11434").is_local is True


# --- errors -------------------------------------------------------------------------------


def test_an_auth_error_is_not_a_config_error() -> None:
    assert not issubclass(AuthError, ConfigError)


def test_retry_after_reads_seconds_dates_and_milliseconds() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after({"retry-after": "7"}) == 7.0
    assert retry_after({"retry-after": date}, now=now) == 30.0
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "soon"}) is None


@pytest.mark.parametrize("kind", ["ollama", "anthropic"])
def test_an_http_date_retry_after_reaches_server_busy(
    server: ScriptedServer, key: str, kind: str
) -> None:
    date = email.utils.formatdate(2_000_000_000, usegmt=True)  # 2033: in the future
    server.default = Reply(429, b"{}", {**JSON, "Retry-After": date})
    with pytest.raises(ServerBusy) as info:
        run(MAKERS[kind](server.url), chat())
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_embed_keeps_the_read_timeout_within_the_deadline(
    key: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = MAKERS[kind]("http://127.0.0.1:9", timeout=2.0, connect_timeout=1.0)
    seen: list[object] = []

    def request(*args: object, timeout: object = None, **kwargs: object) -> None:
        seen.append(timeout)
        raise RuntimeError("not sent")

    monkeypatch.setattr(provider._session, "request", request)  # type: ignore[attr-defined]
    with pytest.raises(RubberDuckError):
        provider.embed(EmbedRequest(model="m", input="hi"), timeout=60.0)
    assert seen == [(1.0, 2.0)]  # not (1.0, 60.0): a stalled backend fails over


def test_a_non_streamed_answer_without_done_emits_nothing(server: ScriptedServer, key: str) -> None:
    body = {"model": "m", "message": {"role": "assistant", "content": "hello"}, "done": False}
    server.replies[("POST", "/api/chat")] = Reply(200, json.dumps(body).encode(), JSON)
    events: list[Event] = []
    with pytest.raises(ProtocolError) as info:
        ollama(server.url).run(chat(stream=False), events.append, CancelScope())
    assert events == [] and info.value.fallback


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_an_empty_model_name_means_the_default(server: ScriptedServer, key: str, kind: str) -> None:
    server.default = Reply(500, b"{}", JSON)
    with pytest.raises(ProviderUnavailable):
        run(MAKERS[kind](server.url), chat(model=""))
    assert json.loads(server.received[-1].body)["model"] == "m"


# --- messages -----------------------------------------------------------------------------


def test_a_tls_failure_does_not_say_start_ollama(server: ScriptedServer, key: str) -> None:
    provider = OllamaProvider(base_url=server.url.replace("http://", "https://"))
    with pytest.raises(ProviderUnavailable) as info:
        provider.version(5)
    assert "ollama serve" not in info.value.message and "TLS" in info.value.message


def test_deleting_a_missing_model_does_not_say_pull_it(server: ScriptedServer, key: str) -> None:
    server.replies[("DELETE", "/api/delete")] = Reply(404, b'{"error": "model not found"}', JSON)
    with pytest.raises(ModelNotFound) as info:
        ollama(server.url).delete("nope")
    assert "ollama pull" not in info.value.message


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_a_proxy_502_page_is_not_quoted(server: ScriptedServer, key: str, kind: str) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    server.default = Reply(502, page, {"Content-Type": "text/html"})
    with pytest.raises(ProviderUnavailable) as info:
        run(MAKERS[kind](server.url), chat())
    assert "<" not in info.value.message and "502" in info.value.message


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_a_truncated_answer_is_not_quoted(server: ScriptedServer, key: str, kind: str) -> None:
    text = "The private diagnosis is"
    bodies = {
        "ollama": '{"model": "m", "message": {"role": "assistant", "content": "' + text,
        "openai": '{"choices": [{"index": 0, "message": {"content": "' + text,
        "anthropic": '{"type": "message", "content": [{"type": "text", "text": "' + text,
    }
    server.default = Reply(200, bodies[kind].encode(), JSON)
    with pytest.raises(ProtocolError) as info:
        run(MAKERS[kind](server.url), chat(stream=False))
    assert "diagnosis" not in info.value.message and info.value.provider == kind


# --- layout -------------------------------------------------------------------------------


def test_no_provider_module_imports_the_package_root() -> None:
    root = pathlib.Path(rubberduck.providers.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "from rubberduck import" not in text and "\nimport rubberduck\n" not in text, path


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (401, AuthError),
        (402, AuthError),
        (403, AuthError),
        (408, RequestTimeout),
        (422, InvalidRequest),
        (429, ServerBusy),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ServerBusy),
        (529, ServerBusy),
    ],
)
def test_one_status_table_for_every_provider(
    server: ScriptedServer, key: str, kind: str, status: int, error: type[RubberDuckError]
) -> None:
    server.default = Reply(status, b'{"error": "no"}', JSON)
    with pytest.raises(RubberDuckError) as info:
        run(MAKERS[kind](server.url), chat())
    assert type(info.value) is error and info.value.provider == kind


def test_no_provider_module_is_over_400_lines() -> None:
    root = pathlib.Path(rubberduck.providers.__file__).parent
    long = {p.name: n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


# --- faults in a stream, through the protocol plug-ins ------------------------------------

WORDS = ("Hel", "lo", "!")


def _items(make: Callable[[str], object], *last: bytes) -> tuple[bytes, ...]:
    return (*(json.dumps(make(w)).encode() for w in WORDS), *last)


STREAMS: dict[str, tuple[StreamProtocol, tuple[bytes, ...]]] = {
    "ollama": (
        NDJSON,
        _items(
            lambda w: {"model": "m", "message": {"role": "assistant", "content": w}},
            b'{"model": "m", "done": true, "done_reason": "stop"}',
        ),
    ),
    "openai": (
        SSE,
        _items(lambda w: {"choices": [{"index": 0, "delta": {"content": w}}]}, b"[DONE]"),
    ),
    "anthropic": (
        SSE,
        _items(
            lambda w: {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": w},
            },
            b'{"type": "message_stop"}',
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(STREAMS))
@pytest.mark.parametrize(
    ("fault", "error"),
    [("midstream", ProviderUnavailable), ("error", ProviderUnavailable), ("stall", RequestTimeout)],
)
def test_a_stream_that_breaks_is_a_typed_error_after_its_first_text(
    server: ScriptedServer, key: str, kind: str, fault: str, error: type[RubberDuckError]
) -> None:
    protocol, items = STREAMS[kind]
    server.default = Stream(protocol, items, fault, error=f"overloaded {KEY}")
    events: list[Event] = []
    provider = MAKERS[kind](server.url, timeout=0.5)
    with pytest.raises(RubberDuckError) as info:
        provider.run(chat(), events.append, CancelScope())
    assert type(info.value) is error and info.value.provider == kind
    assert events and KEY not in str(info.value)


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_a_whole_stream_through_the_plug_ins(server: ScriptedServer, key: str, kind: str) -> None:
    protocol, items = STREAMS[kind]
    server.default = Stream(protocol, items)
    events = run(MAKERS[kind](server.url), chat())
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Hello!"


def test_the_embedded_provider_checks_its_sizes_when_built() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        LocalProvider("local", n_ctx=512, n_parallel=4, max_tokens=256)
