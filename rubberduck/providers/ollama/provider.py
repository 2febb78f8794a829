"""Ollama's native HTTP API: inference (``/api/chat``, ``/api/generate``,
``/api/embed``, ``/api/embeddings``), the server's state (``GET /``,
``/api/version``) and, through
:class:`~rubberduck.providers.ollama.admin.OllamaAdmin` and
:class:`~rubberduck.providers.ollama.transfer.OllamaTransfers`, model management
(``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/blobs``, ``/api/copy``,
``/api/delete``, ``/api/pull``, ``/api/push``, ``/api/create``).

Protocol (ollama/ollama ``docs/api.md``, ``server/routes.go``):

- Streaming answers are NDJSON (``application/x-ndjson``), one JSON object per
  line; the last has ``"done": true`` with ``done_reason`` and metrics
  (durations in nanoseconds, ``prompt_eval_count`` / ``eval_count`` in tokens).
- A generate with no prompt only loads the model (``done_reason: "load"``); with
  ``keep_alive: 0`` as well it unloads it (``done_reason: "unload"``).
- Errors: see :mod:`rubberduck.providers.ollama.connection`.

Request bodies are what the official ``ollama`` Python client (0.6.x) sends for the
same arguments; ``tests/providers/test_ollama_client_parity.py`` compares them and
lists the deliberate differences.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from rubberduck.errors import (
    InvalidRequest,
    ProtocolError,
    ProviderUnavailable,
)
from rubberduck.messages import (
    ChatRequest,
    Delta,
    Done,
    Durations,
    EmbedRequest,
    EmbedResponse,
    Event,
    GenerateRequest,
    Request,
    ToolCall,
    Usage,
)
from rubberduck.ollama_types import EmbeddingsResponse
from rubberduck.providers._http.body import iter_lines
from rubberduck.providers.base import CancelScope, Emit
from rubberduck.providers.ollama.admin import OllamaAdmin
from rubberduck.providers.ollama.connection import FEATURES
from rubberduck.providers.ollama.settings import DEFAULT_OLLAMA_HOST, parse_ollama_host
from rubberduck.providers.ollama.transfer import OllamaTransfers
from rubberduck.providers.ollama.wire import (
    CHAT_DECODER,
    EMBED_DECODER,
    EMBEDDING_DECODER,
    GENERATE_DECODER,
    EmbedAnswer,
    seconds,
)

__all__ = ["DEFAULT_OLLAMA_HOST", "FEATURES", "OllamaProvider", "parse_ollama_host"]

_R = TypeVar("_R", bound=ChatRequest | GenerateRequest | EmbedRequest)


class OllamaProvider(OllamaTransfers, OllamaAdmin):
    """A backend speaking Ollama's native API over HTTP (requests, one pooled session).

    Inference and the provider contract are here; the catalogue (``list``,
    ``show``, ``has_model``, ``ps``, ``create_blob``, ``blob_exists``, ``copy``,
    ``delete``) comes from :class:`~rubberduck.providers.ollama.admin.OllamaAdmin`,
    transfers with progress (``pull``, ``push``, ``create`` and their ``iter_``
    forms) from :class:`~rubberduck.providers.ollama.transfer.OllamaTransfers`.

    Args:
        name: Configured backend name.
        base_url: Server URL; ``None`` reads ``OLLAMA_HOST`` (default
            ``http://127.0.0.1:11434``). Parsed by :func:`parse_ollama_host`.
        default_model: Model for requests that name none (e.g. ``"llama3.2"``).
        api_key_env: Name of the environment variable holding an API key, read
            once here and sent as ``Authorization: Bearer <key>`` (for ollama.com
            cloud models, or a server behind an authenticating proxy). ``None``
            does what the official client does: ``OLLAMA_API_KEY`` if it is set,
            else no key. A variable named here must be set. The key never
            appears in a repr, ``vars()``, a log or an error message.
        headers: Extra HTTP headers for every request, as the official client's
            ``headers``: names are sent in lower case; ``Content-Type``,
            ``Accept`` and ``User-Agent`` stay the provider's; an
            ``Authorization`` here wins over the key.
        timeout: Read timeout in seconds: the longest silence accepted between
            bytes, which covers a model load before the first chunk.
        connect_timeout: Seconds to wait for the TCP connection.
        keep_alive: Default ``keep_alive`` sent with requests that set none.
        pool_size: Connections kept open to the server.
        trust_env: Read proxies and .netrc from the environment (costs ~0.2 ms a
            call; off by default, since Ollama is usually local).
        max_line_bytes: Longest NDJSON line, and longest non-streamed answer,
            accepted, bytes.

    Raises:
        ConfigError: the host's port is not a number, a setting is out of range
            (see :meth:`validate_config`), ``api_key_env`` names a variable that
            is not set or holds spaces, or a header is malformed.
    """

    # --- inference ----------------------------------------------------------------

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send a chat (Ollama ``POST /api/chat``) or generate (``POST
        /api/generate``) request and emit its events (see :class:`Provider`):
        a :class:`Delta` per text piece, a :class:`ToolCall` per call, then one
        :class:`Done` with usage in tokens and durations in seconds.

        Raises:
            ModelNotFound: HTTP 404 — the message says which ``ollama pull`` to run.
            ServerBusy: HTTP 503 (Ollama's queue is full) or 429, with
                ``retry_after_s`` from ``Retry-After``.
            AuthError: HTTP 401/403 (a cloud model before ``ollama signin``, a
                missing or wrong API key, or a proxy in front of Ollama that wants
                credentials); the message names the key's variable when one is sent.
            InvalidRequest: HTTP 400, or the request names no model and the backend
                has no default.
            ProviderUnavailable: connection refused or broken, HTTP 5xx, or an
                ``{"error"}`` line mid-stream.
            RequestTimeout: the read timeout passed.
            ProtocolError: a line that is not Ollama's JSON, or a stream that ends
                without its ``done`` line.
            Cancelled: ``scope`` was cancelled while the answer was being read.
        """
        request = self._complete(request)
        is_chat = isinstance(request, ChatRequest)
        path = "/api/chat" if is_chat else "/api/generate"
        decoder: msgspec.json.Decoder[Any] = CHAT_DECODER if is_chat else GENERATE_DECODER
        resp = self._open(path, self._encode(request), scope, str(request.model))
        with self._reading(resp, scope):
            if not request.stream:
                line = self._decode(decoder, self._read_body(resp))
                if line.error is None and not line.done:
                    # Checked before anything is emitted: the caller saw nothing,
                    # so another backend may still answer.
                    raise ProtocolError("the answer has no `done: true`", provider=self.name)
                self._emit_line(line, emit, is_chat)
                return
            for raw in iter_lines(resp, max_line_bytes=self.max_line_bytes, provider=self.name):
                if self._emit_line(self._decode(decoder, raw), emit, is_chat):
                    return
            raise ProtocolError(
                "the stream ended before Ollama's final `done` line", provider=self.name
            )

    def _complete(self, request: _R) -> _R:
        """Fill in the backend's default model and keep_alive; a chat without tools
        gets ``tools: []``, the body the official client sends (Ollama reads it as
        no tools)."""
        changes: dict[str, Any] = {}
        if not request.model or not request.model.strip():
            changes["model"] = self._model(request.model)
        if request.keep_alive is None and self.keep_alive is not None:
            changes["keep_alive"] = self.keep_alive
        if isinstance(request, ChatRequest) and request.tools is None:
            changes["tools"] = []
        return msgspec.structs.replace(request, **changes) if changes else request

    def _emit_line(self, line: Any, emit: Emit, is_chat: bool) -> bool:
        """Emit one decoded line's events; return True after the final ``done`` line."""
        if line.error is not None:
            raise ProviderUnavailable(
                f"Ollama reported an error: {self.secret.redact(line.error)}",
                provider=self.name,
            )
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
                    total_s=seconds(line.total_duration),
                    load_s=seconds(line.load_duration),
                    prompt_eval_s=seconds(line.prompt_eval_duration),
                    eval_s=seconds(line.eval_duration),
                ),
            )
        )
        return True

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """One vector per input, in input order, unit length. Ollama ``POST
        /api/embed``.

        Args:
            request: ``input`` is one text or a list; ``truncate`` (default on
                the server: cut inputs to the context), ``dimensions`` (shorter
                vectors, for models trained for it), ``options`` and
                ``keep_alive`` are sent as given.
            timeout: Read timeout, seconds (``None``: the provider's).

        Returns:
            An :class:`EmbedResponse`: vectors, ``usage.prompt_tokens`` (tokens
            read), ``durations.total_s`` / ``load_s`` in seconds.

        Raises:
            ModelNotFound: HTTP 404, with the ``ollama pull`` command.
            InvalidRequest: HTTP 400 (e.g. the model cannot embed, or an input is
                over the context with ``truncate=False``), or no model anywhere.
            ServerBusy: HTTP 503 or 429.
            AuthError: HTTP 401/403.
            ProviderUnavailable: not reachable, or HTTP 5xx.
            ProtocolError: the answer is not Ollama's, or has a vector count that
                differs from the inputs.
        """
        request = self._complete(request)
        model = str(request.model)
        raw = self._call(
            "POST", "/api/embed", body=self._encode(request), timeout=timeout, model=model
        )
        answer: EmbedAnswer = self._decode(EMBED_DECODER, raw)
        inputs = 1 if isinstance(request.input, str) else len(request.input)
        if len(answer.embeddings) != inputs and request.input != "":
            raise ProtocolError(
                f"asked for {inputs} embeddings, got {len(answer.embeddings)}", provider=self.name
            )
        return EmbedResponse(
            embeddings=answer.embeddings,
            model=answer.model or model,
            provider=self.name,
            usage=Usage(prompt_tokens=answer.prompt_eval_count or 0),
            durations=Durations(
                total_s=seconds(answer.total_duration), load_s=seconds(answer.load_duration)
            ),
        )

    def embeddings(
        self,
        model: str | None = None,
        prompt: str | None = None,
        options: dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        timeout: float | None = None,
    ) -> EmbeddingsResponse:
        """One embedding, from the legacy endpoint Ollama keeps for old clients
        (prefer :meth:`embed`: batches, truncation, unit-length vectors). Ollama
        ``POST /api/embeddings``.

        Args:
            model: Model name; ``None`` for the backend's default.
            prompt: The text; ``None`` only loads the model (the answer is ``[]``).
            options: Model options.
            keep_alive: Seconds or a duration string; ``None`` for the backend's
                default.
            timeout: Read timeout, seconds.

        Returns:
            An :class:`~rubberduck.ollama_types.EmbeddingsResponse`: ``.embedding``
            is the vector (not normalized).

        Raises:
            ModelNotFound, InvalidRequest, ServerBusy, ProviderUnavailable,
            ProtocolError: as for :meth:`embed`.
        """
        name = self._model(model)
        fields = {
            "prompt": prompt,
            "options": options,
            "keep_alive": keep_alive if keep_alive is not None else self.keep_alive,
        }
        body = {"model": name, **{k: v for k, v in fields.items() if v is not None}}
        raw = self._call(
            "POST", "/api/embeddings", body=self._encode(body), timeout=timeout, model=name
        )
        answer: EmbeddingsResponse = self._decode(EMBEDDING_DECODER, raw)
        return answer

    def warm_up(self, model: str | None = None, *, keep_alive: float | str | None = None) -> Done:
        """Load a model into memory now, so the first real request does not wait.
        Ollama ``POST /api/generate`` with no prompt (for a model that only
        embeds, ``POST /api/embed`` with no input).

        Args:
            model: Model name; ``None`` for the backend's default.
            keep_alive: How long to keep it loaded: seconds, ``"30m"``, negative for
                ever; ``None`` for the backend's default (the server's is 5 minutes).

        Returns:
            The :class:`Done` of the load: ``done_reason == "load"``,
            ``durations.load_s`` in seconds.

        Raises:
            ModelNotFound: the server does not have the model.
            ProviderUnavailable, ServerBusy, RequestTimeout: as for :meth:`run`.
        """
        request = GenerateRequest(model=model, keep_alive=keep_alive, stream=False)
        try:
            return self._done(request)
        except InvalidRequest as exc:
            if "does not support generate" not in exc.message:
                raise
        # An embedding model: an empty /api/embed loads it (server/routes.go).
        self.embed(EmbedRequest(model=self._model(model), input=[], keep_alive=keep_alive))
        return Done(done_reason="load", model=self._model(model), provider=self.name)

    def unload(self, model: str | None = None) -> Done:
        """Unload a model from memory now (for any kind of model). Ollama ``POST
        /api/generate`` with no prompt and ``keep_alive: 0``.

        Returns:
            The :class:`Done` of the unload (``done_reason == "unload"``).

        Raises:
            ModelNotFound: the server does not have the model.
            ProviderUnavailable, ServerBusy, RequestTimeout: as for :meth:`run`.
        """
        return self._done(GenerateRequest(model=model, keep_alive=0, stream=False))

    def _done(self, request: GenerateRequest) -> Done:
        events: list[Event] = []
        self.run(request, events.append, CancelScope())
        done = events[-1]
        assert isinstance(done, Done)  # run() ends with a Done or raises
        return done
