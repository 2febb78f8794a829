"""OpenAI-compatible servers: ``/chat/completions``, ``/completions``, ``/embeddings``,
``/models`` under a ``base_url`` that includes the version (``.../v1``).

Protocol (OpenAI API reference, "Chat Completions" / "Completions" / "Embeddings" /
"Models"; llama.cpp's ``tools/server``, vLLM, LM Studio and Ollama's ``/v1`` follow it):

- A streamed answer is Server-Sent Events (``text/event-stream``): one
  ``data: {chunk}`` event per piece, each ended by a blank line, and a last
  ``data: [DONE]``. With ``stream_options.include_usage`` a chunk near the end
  carries ``usage`` (OpenAI and llama.cpp's chat: its own chunk with
  ``choices: []``; llama.cpp's ``/completions``: the chunk with ``finish_reason``).
- Tool calls stream as ``delta.tool_calls[]`` fragments keyed by ``index``; the
  first fragment has ``id`` and ``function.name``, and ``function.arguments`` is
  a JSON *string* cut into pieces, whole only at the end.
- Errors before output are an HTTP status with
  ``{"error": {"message", "type", "code"}}``; errors after output has started are
  one more event ``data: {"error": {...}}`` (OpenAI, vLLM, llama.cpp).

The wire format (bodies, chunk shapes, one reusable msgspec decoder per shape) is
in :mod:`rubberduck.providers.openai.wire`, the API key and
the mapping of HTTP errors in :mod:`rubberduck.providers.openai.errors`; this
module does the HTTP.

Units: timeouts and durations are seconds, token counts are tokens. llama.cpp
reports server timings (``timings.prompt_ms``/``predicted_ms``); other servers do
not, and ``Done.durations.total_s`` is then the time from sending the request to
the end of the answer, measured here. ``cost_usd`` is always 0.0: prices are not
modelled.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import requests
import urllib3.exceptions

from rubberduck.errors import (
    ProtocolError,
    ProviderUnavailable,
    RubberDuckError,
)
from rubberduck.messages import ChatRequest, EmbedRequest, EmbedResponse, Request, Usage
from rubberduck.providers._http.backend import HTTPBackend
from rubberduck.providers._http.body import (
    DEFAULT_MAX_LINE_BYTES,
)
from rubberduck.providers._http.cancellable import current_scope
from rubberduck.providers._http.checks import check_clear_text_key, is_local_host
from rubberduck.providers._http.sse import read_events
from rubberduck.providers.base import (
    CancelScope,
    Emit,
    ProviderInfo,
)
from rubberduck.providers.openai.errors import ApiKey, check_base_url, http_error
from rubberduck.providers.openai.request import request_body
from rubberduck.providers.openai.wire import (
    CHUNK_DECODER,
    EMBEDDINGS_DECODER,
    MODELS_DECODER,
    Answer,
    Chunk,
    error_text,
)

__all__ = ["FEATURES", "OpenAIProvider", "ProviderInfo"]

#: Features :meth:`OpenAIProvider.supports_feature` knows. Whether a given model
#: honours them (vision, tools) is up to the server and the model.
FEATURES = frozenset({"streaming", "tools", "vision", "embeddings", "json_mode"})

_START_HINT = "start the server, or fix `base_url` for this provider"


class OpenAIProvider(HTTPBackend):
    """A backend speaking the OpenAI-compatible HTTP API (requests, one pooled session).

    Args:
        name: Configured backend name.
        base_url: API root including the version, e.g. ``"http://127.0.0.1:8080/v1"``
            (llama.cpp) or ``"https://api.openai.com/v1"``.
        default_model: Model for requests that name none.
        api_key_env: Name of the environment variable holding the API key (e.g.
            ``"OPENAI_API_KEY"``), read once here and sent as
            ``Authorization: Bearer ...``; ``None`` for servers that need none.
        timeout: Read timeout in seconds: the longest silence accepted between bytes.
        connect_timeout: Seconds to wait for the TCP connection.
        pool_size: Connections kept open to the server.
        trust_env: Read proxies and .netrc from the environment (costs ~0.2 ms a call).
        max_event_bytes: Longest SSE event, and longest non-streamed body, accepted.

    Raises:
        ConfigError: ``base_url`` is missing, not http(s), has a bad port, a query
            or a fragment, or carries credentials.
    """

    kind = "openai"
    #: Features whose request fields are sent (vision: ``image_url`` parts;
    #: json_mode: ``response_format``); whether a model honours them is up to it.
    features = FEATURES
    start_hint = _START_HINT
    wire_name = "OpenAI-format JSON"

    def __init__(
        self,
        name: str = "openai",
        *,
        base_url: str | None = None,
        default_model: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 3.0,
        pool_size: int = 8,
        trust_env: bool = False,
        max_event_bytes: int = DEFAULT_MAX_LINE_BYTES,
        allow_insecure_key: bool = False,
    ) -> None:
        self.name = name
        self.base_url = check_base_url(base_url, name)
        self.default_model = default_model
        self.api_key_env = api_key_env or None
        self.max_event_bytes = self._max_body = max_event_bytes
        self.is_local = is_local_host(urllib.parse.urlsplit(self.base_url).hostname or "")
        self._timeout = (connect_timeout, timeout)
        self._key = ApiKey(self.api_key_env)
        self.secret = self._key.secret
        self.allow_insecure_key = allow_insecure_key
        self.validate_config()
        self._connect(pool_size=pool_size, trust_env=trust_env, headers=self._key.header)

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    # --- requests ---------------------------------------------------------------

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send a chat (``POST /chat/completions``) or generate (``POST /completions``)
        request and emit its events (see :class:`~rubberduck.providers.base.Provider`).

        Format: OpenAI /v1/chat/completions and /v1/completions; SSE
        (``data: {chunk}`` ... ``data: [DONE]``) when ``request.stream``, one JSON
        body otherwise. Emits a :class:`Delta` per content piece, then one
        :class:`ToolCall` per call (arguments parsed once the call is whole), then
        :class:`Done` with ``usage`` in tokens and ``durations`` in seconds.

        A generate request's prompt goes to the model as-is (Ollama's ``raw=True``):
        ``/completions`` has no ``system``, ``template`` or ``images``, so those are
        not sent; neither are ``keep_alive`` and ``think``.

        Raises:
            AuthError: HTTP 401/402/403, a missing API key, or an exhausted quota;
                ``fallback`` is ``True`` and the message names the key's variable.
            ModelNotFound: HTTP 404 naming the model.
            ServerBusy: HTTP 429 or 503 (``retry_after_s`` from ``Retry-After``).
            InvalidRequest: HTTP 400/4xx, no model named and no default, or a
                request value that is not JSON (nothing is sent); with ``fallback``
                ``True`` for HTTP 501 or llama.cpp's ``not_supported_error`` (a
                feature the server was not started with).
            ProviderUnavailable: connection refused or broken, HTTP 5xx, a 404 that
                is not about a model (wrong ``base_url``), or an ``error`` event
                mid-stream.
            RequestTimeout: the read timeout passed, or HTTP 408.
            ProtocolError: an event that is not OpenAI's JSON, an event over
                ``max_event_bytes``, tool-call arguments that are not a JSON
                object, or a stream that ends before ``data: [DONE]``.
            Cancelled: ``scope`` was cancelled.
        """
        started = time.monotonic()
        model = self._model(request.model)
        path = "/chat/completions" if isinstance(request, ChatRequest) else "/completions"
        try:
            built = request_body(request, model)
        except TypeError as exc:  # a tool call in the history that is not one
            raise self._not_json(exc) from None
        headers = {"Accept": "text/event-stream"} if request.stream else None
        resp = self._open(path, self._encode(built), scope, model, headers=headers)
        answer = Answer(model, self.name)
        with self._reading(resp, scope):
            ctype = resp.headers.get("Content-Type", "")
            if not request.stream or ctype.startswith("application/json"):
                answer.add(self._decode_chunk(self._read_body(resp)), emit, whole=True)
            else:
                self._read_stream(resp, answer, emit)
            answer.finish(emit, time.monotonic() - started)

    def _read_stream(self, resp: requests.Response, answer: Answer, emit: Emit) -> None:
        """Feed the SSE events of a streamed answer to ``answer`` up to ``[DONE]``.

        Raises:
            ProviderUnavailable: an ``error`` event.
            ProtocolError: the stream ended before ``data: [DONE]``.
        """
        for event in read_events(resp.raw.read1, self.max_event_bytes, provider=self.name):
            if event.data == "[DONE]":
                return
            if event.event == "error":
                raise ProviderUnavailable(
                    f"the server sent an error event: {self.secret.excerpt(event.data, 300)}",
                    provider=self.name,
                )
            answer.add(self._decode_chunk(event.data), emit, whole=False)
        raise ProtocolError("the stream ended before `data: [DONE]`", provider=self.name)

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """``POST /embeddings``: one vector per input, in input order (the
        semantics of Ollama's ``/api/embed``; OpenAI embeddings are unit length).

        Format: OpenAI /v1/embeddings with ``encoding_format: "float"``.

        Args:
            request: ``input`` is one text or a list; ``dimensions`` is passed on;
                ``truncate``, ``options`` and ``keep_alive`` have no OpenAI
                equivalent and are not sent.
            timeout: Read timeout, seconds.

        Returns:
            One vector per input (floats, the model's dimension), with the model,
            this backend's name and the prompt tokens where the server says.

        Raises:
            InvalidRequest: no model, a value that is not JSON, or HTTP 400 (e.g.
                an empty input).
            ProtocolError: the answer has a vector count that differs from the inputs.
            ProviderUnavailable, ModelNotFound, ServerBusy, AuthError: as for :meth:`run`.
        """
        model = self._model(request.model)
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        raw = self._call(
            "POST", "/embeddings", body=self._encode(body), timeout=timeout, model=model
        )
        answer = self._decode(EMBEDDINGS_DECODER, raw)
        data = answer.data
        if len(data) != len(texts):
            raise ProtocolError(
                f"asked for {len(texts)} embeddings, got {len(data)}", provider=self.name
            )
        return EmbedResponse(
            embeddings=[item.embedding for item in sorted(data, key=lambda item: item.index)],
            model=answer.model or model,
            provider=self.name,
            usage=Usage(answer.usage.prompt_tokens if answer.usage else 0, 0),
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``Session.request``, sent once more if a pooled connection turns out to
        be closed before any answer arrived.

        llama.cpp's server closes the connection after every streamed answer while
        still advertising keep-alive; a request sent on it in that moment gets no
        answer at all, so sending it again cannot run it twice.
        """
        try:
            return self._session.request(method, url, **kwargs)
        except requests.ConnectionError as exc:
            scope = current_scope()
            if not _closed_before_answer(exc) or (scope is not None and scope.cancelled):
                raise
        return self._session.request(method, url, **kwargs)

    def _decode_chunk(self, data: str | bytes) -> Chunk:
        chunk: Chunk = self._decode(CHUNK_DECODER, data)
        if chunk.error is not None:
            raise ProviderUnavailable(
                "the server reported an error: "
                f"{self.secret.excerpt(error_text(chunk.error), 300)}",
                provider=self.name,
            )
        return chunk

    # --- errors -------------------------------------------------------------------

    def _sends_key(self) -> bool:
        return self.api_key_env is not None

    def _http_error(self, resp: requests.Response, model: str) -> RubberDuckError:
        return http_error(
            resp, model=model, key=self._key, provider=self.name, base_url=self.base_url
        )

    # --- control-plane calls ------------------------------------------------------

    def list_models(self, timeout: float) -> list[str]:
        """``GET /models`` (OpenAI /v1/models); returns the ``data[].id`` values
        (``"gpt-4o-mini"``; llama.cpp: its ``--alias``, else the GGUF file path).

        Args:
            timeout: Connect and read timeout, seconds.

        Raises:
            ProviderUnavailable: not reachable or not answering 200.
            AuthError: HTTP 401/403 (``fallback`` is ``True``).
            ProtocolError: the answer is not OpenAI's model list.
        """
        models = self._decode(MODELS_DECODER, self._call("GET", "/models", timeout=timeout))
        names = [m.id for m in models.data]
        self._catalogue = tuple(names)
        return names

    def health_check(self, timeout: float) -> str:
        """``GET /models`` (OpenAI /v1/models), which costs no tokens.

        Args:
            timeout: Connect and read timeout, seconds.

        Returns:
            A short description, e.g. ``"OpenAI-compatible API, 1 model"``.

        Raises:
            ProviderUnavailable, AuthError, ProtocolError: as for :meth:`list_models`.
        """
        count = len(self.list_models(timeout))
        return f"OpenAI-compatible API, {count} model{'' if count == 1 else 's'}"

    # --- description --------------------------------------------------------------

    def validate_config(self) -> None:
        """Check what can be checked without a network call (the ``base_url`` was
        checked at construction).

        Raises:
            ConfigError: the API key variable is named but unset or unusable, or a
                key would be sent in clear text to a host other than this machine
                without ``allow_insecure_key``.
        """
        self._key.check(self.name)
        check_clear_text_key(
            self.base_url,
            self.name,
            sends_key=bool(self._key.header),
            allow_insecure_key=self.allow_insecure_key,
        )


# --- helpers ------------------------------------------------------------------------


def _closed_before_answer(exc: requests.ConnectionError) -> bool:
    """The server dropped a reused connection without a status line (urllib3's
    ``ProtocolError("Connection aborted.", RemoteDisconnected | ConnectionResetError)``)."""
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, urllib3.exceptions.ProtocolError) and isinstance(
        cause.args[-1] if cause.args else None, (ConnectionResetError, BrokenPipeError)
    )
