"""Ollama's native API: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/version``.

Protocol (ollama/ollama ``docs/api.md``, ``server/routes.go``):

- Streaming answers are NDJSON (``application/x-ndjson``), one JSON object per
  line; the last has ``"done": true`` with ``done_reason`` and metrics
  (durations in nanoseconds, ``prompt_eval_count`` / ``eval_count`` in tokens).
- Errors before output are an HTTP status with ``{"error": "..."}``: 404 for an
  unknown model, 400 for a bad request, 503 when the queue is full
  (``OLLAMA_MAX_QUEUE``), 500 for a failed load.
- Errors after output has started are one more line ``{"error": "..."}`` with the
  status still 200.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from typing import Any

import msgspec
import requests

from rubberduck.errors import (
    Cancelled,
    ConfigError,
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
    Request,
    ToolCall,
    Usage,
)
from rubberduck.providers.base import (
    DEFAULT_MAX_LINE_BYTES,
    CancelScope,
    Emit,
    close_session,
    end_response,
    iter_lines,
    new_session,
    open_stream,
    read_body,
    read_ok_body,
    transport_error,
)

__all__ = ["DEFAULT_OLLAMA_HOST", "OllamaProvider", "parse_ollama_host"]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
_START_HINT = "start it with `ollama serve`, or set OLLAMA_HOST to where it runs"
#: Bodies of error responses are read up to this many bytes.
_MAX_ERROR_BYTES = 64 * 1024


def parse_ollama_host(host: str | None) -> str:
    """Turn an ``OLLAMA_HOST``-style value into a base URL, as Ollama's clients do.

    Accepts ``host``, ``host:port``, ``:port``, ``scheme://host[:port][/path]`` and
    bracketed IPv6. A missing port is 11434 (80/443 with an explicit http/https
    scheme). ``0.0.0.0`` and ``::`` are addresses a server listens on, not ones to
    connect to, so they map to loopback.

    Args:
        host: The value, or ``None``/``""`` for the default.

    Returns:
        A URL such as ``"http://127.0.0.1:11434"``, without a trailing slash.

    Raises:
        ConfigError: the port is not a number in 0–65535.
    """
    text, port = (host or "").strip(), DEFAULT_PORT
    scheme, _, hostport = text.partition("://")
    if not hostport:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    try:
        port = split.port or port
    except ValueError as exc:
        raise ConfigError(f"bad port in Ollama host {host!r} — use host:port") from exc
    name = split.hostname or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        name = "127.0.0.1" if ip.version == 4 else "::1"
        ip = ipaddress.ip_address(name)
    if ip is not None and ip.version == 6:
        name = f"[{name}]"
    path = split.path.strip("/")
    return f"{scheme}://{name}:{port}/{path}" if path else f"{scheme}://{name}:{port}"


# --- wire shapes of Ollama's answers (unknown fields are ignored) -------------------


class _Function(msgspec.Struct):
    name: str
    arguments: dict[str, Any] = {}


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    role: str = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Metrics(msgspec.Struct):
    model: str = ""
    done: bool = False
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    error: str | None = None


class _ChatLine(_Metrics):
    message: _Message | None = None


class _GenerateLine(_Metrics):
    response: str = ""
    thinking: str | None = None


class _ErrorBody(msgspec.Struct):
    error: str = ""


class _Version(msgspec.Struct):
    version: str


class _TagModel(msgspec.Struct):
    name: str = ""
    model: str = ""


class _Tags(msgspec.Struct):
    models: list[_TagModel] = []


_CHAT_DECODER = msgspec.json.Decoder(_ChatLine)
_GENERATE_DECODER = msgspec.json.Decoder(_GenerateLine)
_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)
_VERSION_DECODER = msgspec.json.Decoder(_Version)
_TAGS_DECODER = msgspec.json.Decoder(_Tags)
_ENCODER = msgspec.json.Encoder()


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns is not None else None


class OllamaProvider:
    """A backend speaking Ollama's native API over HTTP (requests, one pooled session).

    Args:
        name: Configured backend name.
        base_url: Server URL; ``None`` reads ``OLLAMA_HOST`` (default
            ``http://127.0.0.1:11434``). Parsed by :func:`parse_ollama_host`.
        default_model: Model for requests that name none (e.g. ``"llama3.2"``).
        timeout: Read timeout in seconds: the longest silence accepted between
            bytes, which covers a model load before the first chunk.
        connect_timeout: Seconds to wait for the TCP connection.
        keep_alive: Default ``keep_alive`` sent with requests that set none.
        pool_size: Connections kept open to the server.
        trust_env: Read proxies and .netrc from the environment (costs ~0.2 ms a
            call; off by default, since Ollama is usually local).
        max_line_bytes: Longest NDJSON line accepted, bytes.
    """

    kind = "ollama"
    is_local = True

    def __init__(
        self,
        name: str = "ollama",
        *,
        base_url: str | None = None,
        default_model: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 3.0,
        keep_alive: float | str | None = None,
        pool_size: int = 8,
        trust_env: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.name = name
        self.base_url = parse_ollama_host(
            base_url if base_url is not None else os.environ.get("OLLAMA_HOST")
        )
        self.default_model = default_model
        self.keep_alive = keep_alive
        self.max_line_bytes = max_line_bytes
        self._timeout = (connect_timeout, timeout)
        self._session = new_session(pool_size=pool_size, trust_env=trust_env)

    def __repr__(self) -> str:
        return f"OllamaProvider(name={self.name!r}, base_url={self.base_url!r})"

    # --- requests ---------------------------------------------------------------

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send a chat or generate request and emit its events (see :class:`Provider`).

        Raises:
            ModelNotFound: HTTP 404 — the message says which ``ollama pull`` to run.
            ServerBusy: HTTP 503 (Ollama's queue is full).
            InvalidRequest: HTTP 400, or the request names no model and the backend
                has no default.
            ProviderUnavailable: connection refused or broken, HTTP 5xx, or an
                ``{"error"}`` line mid-stream.
            RequestTimeout: the read timeout passed.
            ProtocolError: a line that is not Ollama's JSON, or a stream that ends
                without its ``done`` line.
        """
        request = self._complete(request)
        is_chat = isinstance(request, ChatRequest)
        path = "/api/chat" if is_chat else "/api/generate"
        decoder: msgspec.json.Decoder[Any] = _CHAT_DECODER if is_chat else _GENERATE_DECODER
        resp = self._post(path, _ENCODER.encode(request), scope, str(request.model))
        complete = False
        try:
            if not request.stream:
                body = read_body(resp, max_bytes=self.max_line_bytes)
                complete = self._emit_line(self._decode(decoder, body), emit, is_chat)
                if complete:
                    return
                raise ProtocolError("the answer has no `done: true`", provider=self.name)
            for raw in iter_lines(resp, max_line_bytes=self.max_line_bytes):
                complete = self._emit_line(self._decode(decoder, raw), emit, is_chat)
                if complete:
                    return
            raise ProtocolError(
                "the stream ended before Ollama's final `done` line", provider=self.name
            )
        except RubberDuckError as exc:
            exc.provider = exc.provider or self.name
            raise
        except Exception as exc:
            if scope.cancelled:
                raise Cancelled("the request was cancelled", provider=self.name) from None
            raise transport_error(
                exc, provider=self.name, base_url=self.base_url, hint=_START_HINT
            ) from exc
        finally:
            scope.detach()
            end_response(resp, complete=complete)

    def _complete(self, request: Request) -> Request:
        """Fill in the backend's default model and keep_alive."""
        changes: dict[str, Any] = {}
        if request.model is None:
            if self.default_model is None:
                raise InvalidRequest(
                    "the request names no model and this backend has no default — pass "
                    "model=... or set `model` in its [provider] table",
                    provider=self.name,
                )
            changes["model"] = self.default_model
        if request.keep_alive is None and self.keep_alive is not None:
            changes["keep_alive"] = self.keep_alive
        return msgspec.structs.replace(request, **changes) if changes else request

    def _post(self, path: str, body: bytes, scope: CancelScope, model: str) -> requests.Response:
        return open_stream(
            lambda: self._session.post(
                self.base_url + path, data=body, stream=True, timeout=self._timeout
            ),
            scope,
            http_error=lambda resp: self._http_error(resp, model),
            transport=lambda exc: transport_error(
                exc, provider=self.name, base_url=self.base_url, hint=_START_HINT
            ),
            provider=self.name,
        )

    def _http_error(self, resp: requests.Response, model: str) -> RubberDuckError:
        try:
            raw = resp.raw.read(_MAX_ERROR_BYTES, decode_content=True) or b""
        except Exception:  # noqa: BLE001 - the status alone still says enough
            raw = b""
        try:
            message = _ERROR_DECODER.decode(raw).error
        except msgspec.DecodeError:
            message = raw[:200].decode("utf-8", "replace").strip()
        status = resp.status_code
        message = message or resp.reason or f"HTTP {status}"
        if status == 404:
            return ModelNotFound(
                f"model {model!r} not found at {self.base_url} — run `ollama pull {model}`",
                provider=self.name,
                model=model,
            )
        if status == 503:
            return ServerBusy(
                f"{message} (HTTP 503) — raise OLLAMA_MAX_QUEUE or retry later",
                provider=self.name,
                retry_after_s=_retry_after(resp.headers.get("Retry-After")),
            )
        if status >= 500 or status in (401, 403, 429):
            return ProviderUnavailable(f"HTTP {status}: {message}", provider=self.name)
        return InvalidRequest(f"HTTP {status}: {message}", provider=self.name)

    def _decode(self, decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError as exc:
            snippet = raw[:120].decode("utf-8", "replace")
            raise ProtocolError(
                f"not an Ollama JSON line ({exc}): {snippet!r}", provider=self.name
            ) from None

    def _emit_line(self, line: Any, emit: Emit, is_chat: bool) -> bool:
        """Emit one decoded line's events; return True after the final ``done`` line."""
        if line.error is not None:
            raise ProviderUnavailable(f"Ollama reported an error: {line.error}", provider=self.name)
        if is_chat:
            msg = line.message
            if msg is not None:
                if msg.content or msg.thinking:
                    emit(Delta(msg.content, msg.thinking or ""))
                for call in msg.tool_calls or ():
                    emit(ToolCall(call.function.name, call.function.arguments, call.id))
        elif line.response or line.thinking:
            emit(Delta(line.response, line.thinking or ""))
        if not line.done:
            return False
        emit(
            Done(
                done_reason=line.done_reason,
                usage=Usage(line.prompt_eval_count or 0, line.eval_count or 0),
                model=line.model,
                provider=self.name,
                cost_usd=0.0,
                durations=Durations(
                    total_s=_seconds(line.total_duration),
                    load_s=_seconds(line.load_duration),
                    prompt_eval_s=_seconds(line.prompt_eval_duration),
                    eval_s=_seconds(line.eval_duration),
                ),
            )
        )
        return True

    # --- control-plane calls ------------------------------------------------------

    def _get(self, path: str, timeout: float) -> bytes:
        try:
            # stream=True leaves an error body unread, for _http_error to read.
            resp = self._session.get(self.base_url + path, stream=True, timeout=(timeout, timeout))
            return read_ok_body(
                resp, max_bytes=self.max_line_bytes, http_error=lambda r: self._http_error(r, "")
            )
        except RubberDuckError as exc:
            exc.provider = exc.provider or self.name
            raise
        except Exception as exc:
            raise transport_error(
                exc, provider=self.name, base_url=self.base_url, hint=_START_HINT
            ) from exc

    def health_check(self, timeout: float) -> str:
        """``GET /api/version``; returns ``"ollama 0.12.6"``.

        Raises:
            ProviderUnavailable: not reachable or not answering 200.
            ProtocolError: the answer is not Ollama's version JSON.
        """
        version = self._decode(_VERSION_DECODER, self._get("/api/version", timeout))
        return f"ollama {version.version}"

    def list_models(self, timeout: float) -> list[str]:
        """``GET /api/tags``; returns model names such as ``"llama3.2:latest"``.

        Raises:
            ProviderUnavailable, ProtocolError: as for :meth:`health_check`.
        """
        tags = self._decode(_TAGS_DECODER, self._get("/api/tags", timeout))
        return [m.name or m.model for m in tags.models]

    def close(self) -> None:
        """Close the connection pool."""
        close_session(self._session)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
