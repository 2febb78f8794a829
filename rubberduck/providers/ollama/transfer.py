"""Ollama's transfers with progress: pull, push and create.

:class:`OllamaTransfers` is the part of
:class:`~rubberduck.providers.ollama.OllamaProvider` that moves models in and out
of a server. Request bodies are the ones the official ``ollama`` Python client
(0.6.x) sends for the same arguments.

Ollama reports progress as NDJSON lines (``status``, ``digest``, ``total`` and
``completed`` in bytes) ending with ``{"status": "success"}``; each becomes a
:class:`~rubberduck.ollama_types.Progress`, given to a callback
(:meth:`~OllamaTransfers.pull`) or yielded (:meth:`~OllamaTransfers.iter_pull`).
A line ``{"error": ...}`` ends the stream with a typed error. A
:class:`~rubberduck.providers.base.CancelScope` stops a transfer from another
thread, as it stops a generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import msgspec
import requests

from rubberduck.errors import (
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
    RubberDuckError,
)
from rubberduck.messages import Message
from rubberduck.ollama_types import Progress
from rubberduck.providers._http.body import iter_lines
from rubberduck.providers.base import CancelScope
from rubberduck.providers.ollama.connection import OllamaHTTP

__all__ = ["EmitProgress", "OllamaTransfers"]

EmitProgress = Callable[[Progress], None]


class _ProgressLine(msgspec.Struct):
    status: str = ""
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    error: str | None = None


_PROGRESS_DECODER = msgspec.json.Decoder(_ProgressLine)


class OllamaTransfers(OllamaHTTP):
    """Pull, push and create, with progress. Timeouts are the longest silence
    accepted between progress lines, seconds (``None``: the provider's read
    timeout); sizes are bytes."""

    def pull(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = True,
        emit_progress: EmitProgress | None = None,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Progress:
        """Download a model from its registry (ollama.com unless the name says
        otherwise); an interrupted pull resumes where it stopped. Ollama
        ``POST /api/pull``.

        Args:
            model: Model name, e.g. ``"llama3.2"`` or ``"qwen3:0.6b"``.
            insecure: Allow plain HTTP and unverified TLS to the registry.
            stream: Report progress line by line; ``False`` waits for the end and
                reports the final status only.
            emit_progress: Called with each :class:`Progress`, in this thread.
            scope: Lets another thread cancel the pull.
            timeout: Longest silence accepted between progress lines, seconds.

        Returns:
            The final progress line (``status == "success"``).

        Raises:
            ModelNotFound: the registry has no such model.
            InvalidRequest: HTTP 400 (e.g. an invalid name).
            ProviderUnavailable: not reachable, or an error reported by Ollama
                (HTTP 5xx, or an ``{"error"}`` line mid-stream).
            ProtocolError: a line that is not Ollama's JSON, or a stream that ends
                without ``"success"``.
            Cancelled: ``scope`` was cancelled.
        """
        body = {"model": model, "stream": stream, "insecure": insecure}
        return self._run_progress("/api/pull", body, model, stream, emit_progress, scope, timeout)

    def iter_pull(
        self,
        model: str,
        *,
        insecure: bool = False,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Iterator[Progress]:
        """:meth:`pull`, streamed, as an iterator of :class:`Progress`; the request
        is sent on the first ``next()``, and closing the iterator early closes the
        connection (the server stops the download; a later pull resumes it).

        Raises:
            As :meth:`pull`, from ``next()``.
        """
        body = {"model": model, "stream": True, "insecure": insecure}
        return self._progress("/api/pull", body, model, True, scope, timeout)

    def push(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = True,
        emit_progress: EmitProgress | None = None,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Progress:
        """Upload a model to a registry; the name says where
        (``"namespace/model:tag"`` for ollama.com, which needs the server's key
        registered there). Ollama ``POST /api/push``.

        Args, Returns and Raises are as for :meth:`pull` (``ModelNotFound`` is not
        raised: a missing local model is an error line).
        """
        body = {"model": model, "stream": stream, "insecure": insecure}
        return self._run_progress("/api/push", body, model, stream, emit_progress, scope, timeout)

    def iter_push(
        self,
        model: str,
        *,
        insecure: bool = False,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Iterator[Progress]:
        """:meth:`push` as an iterator of :class:`Progress` (see :meth:`iter_pull`)."""
        body = {"model": model, "stream": True, "insecure": insecure}
        return self._progress("/api/push", body, model, True, scope, timeout)

    def create(
        self,
        model: str,
        *,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        license: str | Sequence[str] | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        quantize: str | None = None,
        stream: bool = True,
        emit_progress: EmitProgress | None = None,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Progress:
        """Create a model from another one, or from uploaded GGUF/safetensors
        files, with a new system prompt, template, parameters, license or
        messages. Ollama ``POST /api/create`` (the current API: fields, not a
        Modelfile text).

        Args:
            model: Name of the new model.
            from_: An existing model to start from (sent as ``from``).
            files: File name → blob digest (``"sha256:..."``) of model weights,
                uploaded first with :meth:`create_blob`.
            adapters: File name → blob digest of LoRA adapters.
            template: Prompt template (Go template syntax).
            license: License text, or several.
            system: System prompt.
            parameters: Default options (``{"temperature": 0.2, "num_ctx": 8192}``).
            messages: Messages to put before every chat.
            quantize: Quantize non-quantized weights, e.g. ``"q4_K_M"``, ``"q8_0"``.
            stream, emit_progress, scope, timeout: As for :meth:`pull`.

        Returns:
            The final progress line (``status == "success"``).

        Raises:
            InvalidRequest: HTTP 400 (e.g. neither ``from_`` nor ``files``).
            ProviderUnavailable, ProtocolError, Cancelled: as for :meth:`pull`.
        """
        body = _create_body(
            model, stream, quantize, from_, files, adapters, template, license, system,
            parameters, messages,
        )  # fmt: skip
        return self._run_progress("/api/create", body, model, stream, emit_progress, scope, timeout)

    def iter_create(
        self,
        model: str,
        *,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        license: str | Sequence[str] | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        quantize: str | None = None,
        scope: CancelScope | None = None,
        timeout: float | None = None,
    ) -> Iterator[Progress]:
        """:meth:`create` as an iterator of :class:`Progress` (see :meth:`iter_pull`)."""
        body = _create_body(
            model, True, quantize, from_, files, adapters, template, license, system,
            parameters, messages,
        )  # fmt: skip
        return self._progress("/api/create", body, model, True, scope, timeout)

    def _run_progress(
        self,
        path: str,
        body: dict[str, Any],
        model: str,
        stream: bool,
        emit_progress: EmitProgress | None,
        scope: CancelScope | None,
        timeout: float | None,
    ) -> Progress:
        last: Progress | None = None
        with contextlib.closing(self._progress(path, body, model, stream, scope, timeout)) as lines:
            for last in lines:
                if emit_progress is not None:
                    emit_progress(last)
        assert last is not None  # _progress yields at least the final line or raises
        return last

    def _progress(
        self,
        path: str,
        body: dict[str, Any],
        model: str,
        stream: bool,
        scope: CancelScope | None,
        timeout: float | None,
    ) -> Generator[Progress, None, None]:
        """Send a pull/push/create and yield its progress lines, the last being
        ``"success"``."""
        scope = scope or CancelScope()
        what = path.rsplit("/", 1)[-1]  # "pull", "push", "create"
        resp = self._open(
            path,
            self._encode(body),
            scope,
            model,
            timeout=timeout,
            http_error=lambda r: self._progress_http_error(r, model, what),
        )
        with self._reading(resp, scope, f"the {what} of {model!r} was cancelled"):
            if not stream:  # one JSON object once the transfer is over
                yield self._progress_line(self._read_body(resp), model, what)
                return
            for raw in iter_lines(resp, max_line_bytes=self.max_line_bytes, provider=self.name):
                line = self._progress_line(raw, model, what)
                yield line
                if line.done:
                    return
            raise ProtocolError(
                f"the {what} stream ended before Ollama's final `success` line",
                provider=self.name,
            )

    def _progress_line(self, raw: bytes, model: str, what: str) -> Progress:
        line: _ProgressLine = self._decode(_PROGRESS_DECODER, raw)
        if line.error is not None:
            raise self._progress_error(self.secret.redact(line.error), model, what)
        if not line.status:
            raise ProtocolError(
                f"a {what} progress line without `status`: {self.secret.excerpt(raw, 120)!r}",
                provider=self.name,
            )
        return Progress(
            status=line.status, digest=line.digest, total=line.total, completed=line.completed
        )

    def _progress_error(self, message: str, model: str, what: str) -> RubberDuckError:
        if what == "pull" and ("file does not exist" in message or "manifest unknown" in message):
            return ModelNotFound(
                f"the registry has no model {model!r} ({message}) — check the name and tag "
                "(https://ollama.com/library lists the public models)",
                provider=self.name,
                model=model,
            )
        return ProviderUnavailable(
            f"Ollama reported an error during the {what} of {model!r}: {message}",
            provider=self.name,
        )

    def _progress_http_error(
        self, resp: requests.Response, model: str, what: str
    ) -> RubberDuckError:
        # A pull that fails before any progress (stream: false, or an early failure)
        # answers 500 with the same message an error line would carry.
        if resp.status_code == 500:
            return self._progress_error(self._error_text(resp), model, what)
        return self._http_error(resp, "")


def _create_body(
    model: str,
    stream: bool,
    quantize: str | None,
    from_: str | None,
    files: Mapping[str, str] | None,
    adapters: Mapping[str, str] | None,
    template: str | None,
    license: str | Sequence[str] | None,
    system: str | None,
    parameters: Mapping[str, Any] | None,
    messages: Sequence[Message | Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The ``/api/create`` body; unset fields are left out, as the official client
    leaves them out."""
    fields: dict[str, Any] = {
        "quantize": quantize,
        "from": from_,
        "files": dict(files) if files is not None else None,
        "adapters": dict(adapters) if adapters is not None else None,
        "template": template,
        "license": license if isinstance(license, (str, type(None))) else list(license),
        "system": system,
        "parameters": dict(parameters) if parameters is not None else None,
        "messages": list(messages) if messages is not None else None,
    }
    return {"model": model, "stream": stream, **{k: v for k, v in fields.items() if v is not None}}
