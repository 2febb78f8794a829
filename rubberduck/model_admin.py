"""Model management on an Ollama backend, with the official client's method names.

:class:`~rubberduck.runtime.Runtime` inherits these. They act on one named
backend (default: the first Ollama one) in the caller's thread, not through the
router: pulling a model onto *this* server is not something to fall back from.
Every call has a timeout: the longest silence accepted from the server, seconds
(``None``: the backend's configured read timeout).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from rubberduck.errors import InvalidRequest, ModelNotFound
from rubberduck.messages import Done, Message
from rubberduck.ollama_types import (
    EmbeddingsResponse,
    ModelList,
    ProcessList,
    Progress,
    ShowResponse,
    StatusResponse,
)
from rubberduck.providers.base import Provider
from rubberduck.providers.ollama import OllamaProvider

__all__ = ["ModelAdmin"]


class ModelAdmin:
    """``list``, ``show``, ``ps``, ``pull``, ``push``, ``create``, ``create_blob``, ``copy``,
    ``delete``, ``version``, ``embeddings`` (as ``ollama.Client``), plus
    ``ensure_model``, ``warm_up`` and ``unload``.

    Each takes ``backend=`` (a configured backend name; default: the first Ollama
    backend) and raises :class:`~rubberduck.errors.InvalidRequest` if that
    backend is not an Ollama server.
    """

    providers: dict[str, Provider]

    def ollama(self, backend: str | None = None) -> OllamaProvider:
        """The Ollama provider named ``backend``, or the first one.

        Raises:
            InvalidRequest: there is no such backend, or it is not Ollama.
        """
        if backend is None:
            for candidate in self.providers.values():
                if isinstance(candidate, OllamaProvider):
                    return candidate
            raise InvalidRequest("no Ollama backend is configured — add a [provider.ollama] table")
        found = self.providers.get(backend)
        if found is None:
            names = ", ".join(self.providers)
            raise InvalidRequest(f"no backend named {backend!r} — use one of: {names}")
        if not isinstance(found, OllamaProvider):
            raise InvalidRequest(
                f"backend {backend!r} is {found.kind}, not Ollama: model management is Ollama's API"
            )
        return found

    def list(self, *, backend: str | None = None, timeout: float | None = None) -> ModelList:
        """The models on the server (Ollama ``GET /api/tags``): name, size in
        bytes, digest, details."""
        return self.ollama(backend).list(timeout)

    def show(
        self,
        model: str,
        *,
        verbose: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> ShowResponse:
        """A model's template, parameters, details, capabilities and metadata
        (Ollama ``POST /api/show``).

        Raises:
            ModelNotFound: the server does not have it (the message says which
                ``ollama pull`` to run).
        """
        return self.ollama(backend).show(model, verbose=verbose, timeout=timeout)

    def ps(self, *, backend: str | None = None, timeout: float | None = None) -> ProcessList:
        """The models loaded in memory now (Ollama ``GET /api/ps``): size and VRAM
        in bytes, when each unloads."""
        return self.ollama(backend).ps(timeout)

    def version(self, *, backend: str | None = None, timeout: float | None = None) -> str:
        """The server's version, e.g. ``"0.12.6"`` (Ollama ``GET /api/version``)."""
        return self.ollama(backend).version(timeout)

    @overload
    def pull(
        self,
        model: str,
        *,
        insecure: bool = ...,
        stream: Literal[False] = ...,
        backend: str | None = ...,
        timeout: float | None = ...,
    ) -> Progress: ...

    @overload
    def pull(
        self,
        model: str,
        *,
        insecure: bool = ...,
        stream: Literal[True],
        backend: str | None = ...,
        timeout: float | None = ...,
    ) -> Iterator[Progress]: ...

    def pull(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | Iterator[Progress]:
        """Download a model (Ollama ``POST /api/pull``). With ``stream=True``, an
        iterator of :class:`~rubberduck.ollama_types.Progress` (``status``,
        ``digest``, ``total`` and ``completed`` bytes); closing it early stops the
        download (a later pull resumes). Otherwise the final status.

        Raises:
            ModelNotFound: the registry has no such model.
            ProviderUnavailable, ProtocolError, ...: see ``OllamaProvider.pull``.
        """
        ollama = self.ollama(backend)
        if stream:
            return ollama.iter_pull(model, insecure=insecure, timeout=timeout)
        return ollama.pull(model, insecure=insecure, stream=False, timeout=timeout)

    def push(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | Iterator[Progress]:
        """Upload a model to its registry (Ollama ``POST /api/push``); ``stream``
        as for :meth:`pull`."""
        ollama = self.ollama(backend)
        if stream:
            return ollama.iter_push(model, insecure=insecure, timeout=timeout)
        return ollama.push(model, insecure=insecure, stream=False, timeout=timeout)

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
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | Iterator[Progress]:
        """Create a model from another (``from_``) or from uploaded files (Ollama
        ``POST /api/create``); fields as in ``OllamaProvider.create``, ``stream``
        as for :meth:`pull`."""
        ollama = self.ollama(backend)
        fields: dict[str, Any] = {
            "from_": from_,
            "files": files,
            "adapters": adapters,
            "template": template,
            "license": license,
            "system": system,
            "parameters": parameters,
            "messages": messages,
            "quantize": quantize,
            "timeout": timeout,
        }
        if stream:
            return ollama.iter_create(model, **fields)
        return ollama.create(model, stream=False, **fields)

    def create_blob(
        self,
        path: str | os.PathLike[str],
        *,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Upload a file (model weights, an adapter) for :meth:`create`; returns
        its digest ``"sha256:..."`` (Ollama ``POST /api/blobs/:digest``)."""
        return self.ollama(backend).create_blob(path, timeout)

    def copy(
        self,
        source: str,
        destination: str,
        *,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> StatusResponse:
        """Copy a model under a new name (Ollama ``POST /api/copy``)."""
        return self.ollama(backend).copy(source, destination, timeout)

    def delete(
        self, model: str, *, backend: str | None = None, timeout: float | None = None
    ) -> StatusResponse:
        """Delete a model and the data only it uses (Ollama ``DELETE /api/delete``).

        Raises:
            ModelNotFound: the server does not have it.
        """
        return self.ollama(backend).delete(model, timeout)

    def embeddings(
        self,
        model: str | None = None,
        prompt: str | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: float | str | None = None,
        *,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> EmbeddingsResponse:
        """One embedding from Ollama's legacy ``POST /api/embeddings`` (not
        normalized, no fallback; prefer :meth:`Runtime.embed`). Returns an
        :class:`~rubberduck.ollama_types.EmbeddingsResponse`; ``.embedding`` is
        the vector, as from the official client."""
        return self.ollama(backend).embeddings(
            model, prompt, dict(options) if options else None, keep_alive, timeout
        )

    def ensure_model(
        self, model: str, *, backend: str | None = None, timeout: float | None = None
    ) -> None:
        """Check that the server has ``model`` before it is used.

        Raises:
            ModelNotFound: it does not; the message gives the ``ollama pull``
                command (or call :meth:`pull`).
        """
        if not self.ollama(backend).has_model(model, timeout):
            raise ModelNotFound(
                f"model {model!r} is not on the server — run `ollama pull {model}` or "
                f"rt.pull({model!r})",
                provider=self.ollama(backend).name,
                model=model,
            )

    def warm_up(
        self,
        model: str | None = None,
        *,
        keep_alive: float | str | None = None,
        backend: str | None = None,
    ) -> Done:
        """Load a model into memory now (a generate with no prompt; Ollama answers
        ``done_reason: "load"``), so the first request does not wait for it."""
        return self.ollama(backend).warm_up(model, keep_alive=keep_alive)

    def unload(self, model: str | None = None, *, backend: str | None = None) -> Done:
        """Unload a model from memory now (``keep_alive: 0``; Ollama answers
        ``done_reason: "unload"``)."""
        return self.ollama(backend).unload(model)
