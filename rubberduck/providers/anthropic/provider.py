"""Anthropic's Messages API: ``POST /v1/messages`` (streamed as SSE) and ``GET /v1/models``.

Protocol, as Anthropic documents it:

- Requests (https://docs.anthropic.com/en/api/messages): headers ``x-api-key``,
  ``anthropic-version: 2023-06-01`` and ``content-type: application/json``; body
  ``model``, ``max_tokens`` (required), ``messages`` (roles ``user`` and
  ``assistant`` only; content a string or a list of content blocks), a top-level
  ``system``, ``stream``, ``temperature``, ``top_p``, ``top_k``,
  ``stop_sequences``, ``tools`` (``name``, ``description``, ``input_schema``) and
  ``thinking`` (``{"type": "enabled", "budget_tokens": N}``, N >= 1024 and below
  ``max_tokens``).
- Tool use (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use):
  an assistant ``tool_use`` block (``id``, ``name``, ``input``) is answered by a
  ``tool_result`` block (``tool_use_id``, ``content``), first in the next user turn.
- Streaming (https://docs.anthropic.com/en/docs/build-with-claude/streaming): SSE
  events ``message_start``; per content block ``content_block_start``,
  ``content_block_delta`` (``text_delta``; ``input_json_delta``, whose
  ``partial_json`` fragments are joined and parsed at ``content_block_stop``;
  ``thinking_delta``; ``signature_delta``) and ``content_block_stop``; then
  ``message_delta`` (``stop_reason``, cumulative ``usage``) and ``message_stop``.
  ``ping`` may come anywhere, an ``error`` event (``overloaded_error``, HTTP 529
  outside a stream) may come after the 200, and unknown event types are to be
  ignored.
- Errors (https://docs.anthropic.com/en/api/errors): ``{"type": "error", "error":
  {"type": ..., "message": ...}}`` with 400 ``invalid_request_error``, 401
  ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
  ``request_too_large``, 429 ``rate_limit_error`` (``retry-after`` in seconds,
  https://docs.anthropic.com/en/api/rate-limits), 500 ``api_error``, 529
  ``overloaded_error``.
- Models (https://docs.anthropic.com/en/api/models-list): ``GET /v1/models`` answers
  ``{"data": [{"id": ..., "type": "model", ...}], "has_more", "first_id",
  "last_id"}``, paged with ``limit`` (1-1000) and ``after_id``.

Not carried over: Anthropic offers no embeddings, no JSON mode and no
fill-in-the-middle (requests that need them raise :class:`InvalidRequest` with
``fallback = True``, so the router tries the next backend); Ollama's ``seed``,
``num_ctx`` and ``keep_alive`` have no counterpart and are dropped; thinking from
earlier assistant turns is dropped (Anthropic wants it back only with its
signature, which Ollama-shaped history does not keep). ``Done.cost_usd`` stays 0.0:
there is no price table here; ``Done.usage`` has the token counts.

Layout: this module holds the provider (configuration, calls, control plane);
``request`` builds the request bodies, ``wire`` decodes the answers and streams
into events, ``errors`` maps failures onto errors (with the shared status table).
"""

from __future__ import annotations

import os
import urllib.parse

import requests

from rubberduck.errors import (
    ConfigError,
    InvalidRequest,
    RubberDuckError,
)
from rubberduck.messages import EmbedRequest, EmbedResponse, Request
from rubberduck.providers._http.backend import HTTPBackend
from rubberduck.providers._http.body import (
    DEFAULT_MAX_LINE_BYTES,
)
from rubberduck.providers._http.checks import check_clear_text_key, check_no_credentials
from rubberduck.providers.anthropic.errors import DEFAULT_ANTHROPIC_URL, AnthropicErrors
from rubberduck.providers.anthropic.request import (
    CountTokensBody,
    NotOffered,
    RequestBody,
    build_body,
)
from rubberduck.providers.anthropic.wire import (
    AnswerReader,
    decode_models,
    decode_token_count,
)
from rubberduck.providers.base import CancelScope, Emit

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_ANTHROPIC_URL",
    "DEFAULT_API_KEY_ENV",
    "AnthropicProvider",
]

DEFAULT_API_KEY_ENV = "ANTHROPIC_API_KEY"
#: The ``anthropic-version`` header value (https://docs.anthropic.com/en/api/versioning).
ANTHROPIC_VERSION = "2023-06-01"

_HINT = "check the network, a proxy (`trust_env`) and `base_url` in the [provider] table"
#: ``GET /v1/models`` pages read at most (1000 models each).
_MAX_MODEL_PAGES = 10
#: Answers of :meth:`AnthropicProvider.supports_feature`.
_FEATURES = {
    "streaming": True,
    "tools": True,
    "vision": True,
    "thinking": True,
    "json_mode": False,  # only by asking for a tool call whose input_schema is the shape
    "embeddings": False,
}


class AnthropicProvider(HTTPBackend):
    """A backend speaking Anthropic's Messages API (requests, one pooled session).

    Args:
        name: Configured backend name.
        base_url: API URL, default ``https://api.anthropic.com``.
        api_key_env: Name of the environment variable holding the API key, default
            ``ANTHROPIC_API_KEY``. The key is read once, here.
        default_model: Model for requests that name none (e.g. ``"claude-sonnet-4-5"``).
        models: Model names reported by :meth:`info` before the catalogue is read.
        max_tokens: ``max_tokens`` sent when a request sets no ``num_predict``, tokens
            (the API requires one).
        timeout: Read timeout, seconds: the longest silence accepted between bytes
            (Anthropic sends ``ping`` events during long answers).
        connect_timeout: Seconds to wait for the TCP and TLS connection.
        pool_size: Connections kept open to the API.
        trust_env: Read proxies and .netrc from the environment.
        max_event_bytes: Largest SSE event, or non-streamed answer, accepted, bytes.

    Raises:
        ConfigError: see :meth:`validate_config`.
    """

    kind = "anthropic"
    is_local = False
    start_hint = _HINT
    wire_name = "Anthropic's JSON"

    def __init__(
        self,
        name: str = "anthropic",
        *,
        base_url: str | None = None,
        api_key_env: str | None = None,
        default_model: str | None = None,
        models: list[str] | tuple[str, ...] = (),
        max_tokens: int = 1024,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        pool_size: int = 8,
        trust_env: bool = False,
        max_event_bytes: int = DEFAULT_MAX_LINE_BYTES,
        allow_insecure_key: bool = False,
    ) -> None:
        self.name = name
        check_no_credentials(base_url or "", name)  # first: later messages quote the URL
        self.base_url = (base_url or DEFAULT_ANTHROPIC_URL).strip().rstrip("/")
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        self.default_model = default_model
        self.models = list(models)
        self.max_tokens = max_tokens
        self.max_event_bytes = self._max_body = max_event_bytes
        self._timeout = (connect_timeout, timeout)
        self.validate_config()
        check_clear_text_key(
            self.base_url, name, sends_key=True, allow_insecure_key=allow_insecure_key
        )
        key = os.environ[self.api_key_env].strip()
        self._errors = AnthropicErrors(
            name, base_url=self.base_url, api_key_env=self.api_key_env, api_key=key
        )
        self.secret = self._errors.secret
        self._connect(
            pool_size=pool_size,
            trust_env=trust_env,
            headers={"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
        )
        self._answers = AnswerReader(name, max_event_bytes=max_event_bytes, errors=self._errors)

    def __repr__(self) -> str:
        return (
            f"AnthropicProvider(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    # --- description ------------------------------------------------------------------

    def validate_config(self) -> None:
        """Check the settings and that the API key's variable is set.

        Raises:
            ConfigError: ``base_url`` is not an http(s) URL, ``max_tokens`` or a
                timeout is not positive, or the variable ``api_key_env`` names is
                unset, empty or not a header-safe key (the message names the
                variable, never its value).
        """
        where = f"[provider.{self.name}]"
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(
                f"{where} base_url {self.base_url!r} is not an http(s) URL — "
                f"use {DEFAULT_ANTHROPIC_URL}"
            )
        if self.max_tokens < 1:
            raise ConfigError(f"{where} needs max_tokens >= 1 (got {self.max_tokens})")
        if min(self._timeout) <= 0:
            raise ConfigError(f"{where} needs timeout and connect_timeout > 0")
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"{where} needs an Anthropic API key: set the environment variable "
                f"{self.api_key_env} (or name another one with api_key_env)"
            )
        if not (key.isascii() and key.isprintable()) or " " in key:
            # requests would put the value in its "invalid header" error message
            raise ConfigError(
                f"{where} the value of {self.api_key_env} is not an API key: it holds "
                "spaces, control or non-ASCII characters"
            )

    def _known_models(self) -> tuple[str, ...]:
        """The default and configured names (:meth:`list_models` reads the live
        catalogue)."""
        models = list(self.models)
        if self.default_model and self.default_model not in models:
            models.insert(0, self.default_model)
        return tuple(models)

    def _sends_key(self) -> bool:
        return True

    def supports_feature(self, name: str) -> bool:
        """Whether requests may use a feature.

        Args:
            name: ``"streaming"``, ``"tools"``, ``"vision"``, ``"thinking"``,
                ``"json_mode"`` (False: the API has none; ask for a tool call
                instead) or ``"embeddings"`` (False). Unknown names are False.
        """
        return _FEATURES.get(name, False)

    def count_tokens(self, text: str) -> int:
        """An estimate of the tokens in ``text``, without a network call.

        Not Claude's tokenizer, which is not published: Anthropic's glossary puts a
        token at about 3.5 English characters
        (https://docs.anthropic.com/en/docs/resources/glossary), so this is
        ``ceil(len(text) / 3.5)`` and may be off by tens of percent for code or
        other languages. The exact count is ``POST /v1/messages/count_tokens``,
        which :meth:`count_request_tokens` calls.

        Returns:
            Estimated tokens (0 for an empty text).
        """
        return -(-len(text) * 2 // 7)

    # --- requests ---------------------------------------------------------------------

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send a chat or generate request and emit its events (see :class:`Provider`).

        Raises:
            InvalidRequest: HTTP 400/413 or another 4xx, no model anywhere, a history
                that cannot be expressed in the Messages API; with ``fallback`` True
                for what Anthropic does not offer (``format``, ``suffix``, ...).
            AuthError: HTTP 401/402/403 (the message names the key's variable).
            ProviderUnavailable: connection refused or broken, HTTP 5xx, a 404 that
                does not name the model, or an ``error`` event other than
                ``overloaded_error`` mid-stream.
            ModelNotFound: HTTP 404 naming the model; another 404 (a wrong
                ``base_url``) is ProviderUnavailable.
            ServerBusy: HTTP 429/529, with ``retry_after_s`` from ``retry-after``, or
                an ``overloaded_error`` event mid-stream.
            RequestTimeout: the read timeout passed.
            ProtocolError: an event or answer that is not Anthropic's JSON, one over
                ``max_event_bytes``, or a stream that ends without ``message_stop``.
            Cancelled: ``scope`` was cancelled.
        """
        body = self._body(request)
        resp = self._open("/v1/messages", self._encode(body), scope, body.model)
        with self._reading(resp, scope):
            if body.stream:
                self._answers.read_stream(resp, emit, body.model)
            else:
                self._answers.read_message(self._read_body(resp), emit, body.model)

    def count_request_tokens(
        self, request: Request, timeout: float, scope: CancelScope | None = None
    ) -> int:
        """The exact input tokens of ``request`` for its model, as Anthropic counts
        them: ``POST /v1/messages/count_tokens``
        (https://docs.anthropic.com/en/api/messages-count-tokens), which is free
        and rate limited apart from messages. The body is the one :meth:`run`
        would send (system prompt, messages, images, tools, thinking) without
        ``max_tokens``, ``stream`` and sampling options, which the endpoint
        rejects. Unlike :meth:`count_tokens` this is not an estimate, but it
        costs a round trip.

        Args:
            request: A chat or generate request, as for :meth:`run`.
            timeout: Seconds to wait for the connection and between bytes of the
                answer.
            scope: Lets another thread cancel the call at any moment, as for
                :meth:`run`.

        Returns:
            Input tokens (``input_tokens``), system prompt and tools included.

        Raises:
            InvalidRequest, AuthError, ModelNotFound, ServerBusy,
            ProviderUnavailable, RequestTimeout, Cancelled: as for :meth:`run`.
            ProtocolError: the answer is not ``{"input_tokens": N}``.
        """
        scope = scope or CancelScope()
        body = self._body(request)
        encoded = self._encode(CountTokensBody.of(body))
        resp = self._open("/v1/messages/count_tokens", encoded, scope, body.model, timeout=timeout)
        with self._reading(resp, scope):
            raw = self._read_body(resp)
            count: int = self._answers.decode(decode_token_count, raw).input_tokens
        return count

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """Anthropic offers no embeddings endpoint.

        Raises:
            InvalidRequest: always, with ``fallback`` True so the router moves on.
        """
        raise self._errors.not_offered("embeddings")

    def _body(self, request: Request) -> RequestBody:
        """The Messages API body for ``request``.

        Raises:
            InvalidRequest: no model, an option of the wrong type, or history that
                does not map; ``fallback`` True for features Anthropic lacks.
        """
        model = self._model(request.model)
        try:
            return build_body(request, model=model, max_tokens=self.max_tokens)
        except NotOffered as exc:
            raise self._errors.not_offered(str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f"the request cannot be sent to Anthropic: {exc}", provider=self.name
            ) from None

    def _http_error(self, resp: requests.Response, model: str) -> RubberDuckError:
        return self._errors.http_error(resp, model)

    def _get(self, path: str, params: dict[str, str | int], timeout: float) -> bytes:
        return self._call("GET", path, params=params, timeout=timeout)

    def health_check(self, timeout: float) -> str:
        """``GET /v1/models?limit=1``: checks reachability and the API key at no cost.

        Returns:
            ``"anthropic API 2023-06-01"``.

        Raises:
            ProviderUnavailable: not reachable.
            AuthError: the key is rejected (401/403).
            ServerBusy: rate limited or overloaded.
            ProtocolError: the answer is not Anthropic's model list.
        """
        self._answers.decode(decode_models, self._get("/v1/models", {"limit": 1}, timeout))
        return f"anthropic API {ANTHROPIC_VERSION}"

    def list_models(self, timeout: float) -> list[str]:
        """``GET /v1/models``, following ``has_more``/``last_id`` for up to 10 pages
        of 1000; returns ids such as ``"claude-sonnet-4-5-20250929"``.

        Raises:
            ProviderUnavailable, ServerBusy, ProtocolError: as for :meth:`health_check`.
        """
        ids: list[str] = []
        params: dict[str, str | int] = {"limit": 1000}
        for _ in range(_MAX_MODEL_PAGES):
            page = self._answers.decode(decode_models, self._get("/v1/models", params, timeout))
            ids.extend(m.id for m in page.data)
            if not page.has_more or not page.last_id:
                break
            params = {"limit": 1000, "after_id": page.last_id}
        return ids
