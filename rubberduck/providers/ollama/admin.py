"""Ollama's server state and model catalogue: is_running, version, the health
check, list, show, ps, has_model, blobs, copy, delete.

:class:`OllamaAdmin` is the part of
:class:`~rubberduck.providers.ollama.OllamaProvider` that reads and edits the
models on a server; transfers with progress (pull, push, create) are in
:mod:`rubberduck.providers.ollama.transfer`, inference in
:mod:`rubberduck.providers.ollama`. Request bodies are the ones the official
``ollama`` Python client (0.6.x) sends for the same arguments
(``tests/providers/test_ollama_client_parity.py`` checks this).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import msgspec

from rubberduck.errors import ModelNotFound, RubberDuckError
from rubberduck.ollama_types import ModelList, ProcessList, ShowResponse, StatusResponse
from rubberduck.providers.ollama.connection import OllamaHTTP
from rubberduck.providers.ollama.wire import TAGS_DECODER, VERSION_DECODER, Tags, VersionAnswer

__all__ = ["OllamaAdmin"]

#: Bytes read at a time when hashing a file for a blob.
_HASH_CHUNK = 1024 * 1024

_LIST_DECODER = msgspec.json.Decoder(ModelList)
_PS_DECODER = msgspec.json.Decoder(ProcessList)
_SHOW_DECODER = msgspec.json.Decoder(ShowResponse)


class OllamaAdmin(OllamaHTTP):
    """State and catalogue calls of an Ollama server. Timeouts are read timeouts
    in seconds (``None``: the provider's); sizes are bytes."""

    # --- the server ---------------------------------------------------------------

    def is_running(self, timeout: float | None = None) -> bool:
        """Whether an Ollama server answers at ``base_url``. Ollama ``GET /``
        (``"Ollama is running"``). Never raises.

        Args:
            timeout: Connect and read timeout, seconds (``None``: the provider's).
        """
        try:
            return self._call("GET", "/", timeout=timeout).startswith(b"Ollama is running")
        except RubberDuckError:
            return False

    def version(self, timeout: float | None = None) -> str:
        """The server's version, e.g. ``"0.12.6"``. Ollama ``GET /api/version``.

        Raises:
            ProviderUnavailable: not reachable or not answering 200.
            ProtocolError: the answer is not Ollama's version JSON.
        """
        answer: VersionAnswer = self._decode(
            VERSION_DECODER, self._call("GET", "/api/version", timeout=timeout)
        )
        return answer.version

    def health_check(self, timeout: float) -> str:
        """``GET /api/version``; returns ``"ollama 0.12.6"``.

        Raises:
            ProviderUnavailable: not reachable or not answering 200.
            ProtocolError: the answer is not Ollama's version JSON.
        """
        return f"ollama {self.version(timeout)}"

    def list_models(self, timeout: float) -> list[str]:
        """``GET /api/tags``; returns model names such as ``"llama3.2:latest"``
        (:meth:`list` gives the whole entries).

        Raises:
            ProviderUnavailable, ProtocolError: as for :meth:`health_check`.
        """
        # Names only: the health probe calls this, and a date Ollama might one
        # day format differently must not take the backend down.
        tags: Tags = self._decode(TAGS_DECODER, self._call("GET", "/api/tags", timeout=timeout))
        names = [m.name or m.model for m in tags.models]
        self._catalogue = tuple(names)
        return names

    # --- reading the catalogue -------------------------------------------------

    def list(self, timeout: float | None = None) -> ModelList:
        """The models on disk, with name, size (bytes), digest, modification time
        and details. Ollama ``GET /api/tags``.

        Raises:
            ProviderUnavailable: not reachable, or HTTP 5xx/404 (not Ollama).
            ProtocolError: the answer is not Ollama's model list.
        """
        models: ModelList = self._decode(
            _LIST_DECODER, self._call("GET", "/api/tags", timeout=timeout)
        )
        self._catalogue = tuple(models.names)
        return models

    def show(
        self, model: str | None = None, *, verbose: bool = False, timeout: float | None = None
    ) -> ShowResponse:
        """Everything about one model: Modelfile, parameters, template, details,
        GGUF metadata (``model_info``), capabilities. Ollama ``POST /api/show``.

        Args:
            model: Model name; ``None`` for the backend's default model.
            verbose: Include long metadata arrays (the tokenizer's vocabulary:
                megabytes) and tensor information.
            timeout: Read timeout, seconds.

        Raises:
            ModelNotFound: the server does not have the model (the message gives
                the ``ollama pull`` command).
            InvalidRequest: HTTP 400 (e.g. an invalid name).
            ProviderUnavailable, ProtocolError: as for :meth:`list`.
        """
        name = self._model(model)
        body: dict[str, Any] = {"model": name}
        if verbose:
            body["verbose"] = True
        raw = self._call("POST", "/api/show", body=self._encode(body), timeout=timeout, model=name)
        info: ShowResponse = self._decode(_SHOW_DECODER, raw)
        return info

    def has_model(self, model: str | None = None, timeout: float | None = None) -> bool:
        """Whether the server has ``model`` on disk, resolving names as Ollama does
        (``"llama3.2"`` is ``"llama3.2:latest"``; case does not matter). Ollama
        ``POST /api/show``.

        Raises:
            InvalidRequest: the name is invalid.
            ProviderUnavailable, ProtocolError: as for :meth:`list`.
        """
        try:
            self.show(model, timeout=timeout)
        except ModelNotFound:
            return False
        return True

    def ps(self, timeout: float | None = None) -> ProcessList:
        """The models loaded in memory now, with memory use (bytes, ``size_vram``
        on the GPU), expiry and context length (tokens). Ollama ``GET /api/ps``.

        Raises:
            ProviderUnavailable, ProtocolError: as for :meth:`list`.
        """
        running: ProcessList = self._decode(
            _PS_DECODER, self._call("GET", "/api/ps", timeout=timeout)
        )
        return running

    # --- blobs --------------------------------------------------------------------

    def create_blob(self, path: str | os.PathLike[str], timeout: float | None = None) -> str:
        """Upload a file (model weights, an adapter) for :meth:`create`, named by
        its SHA-256. Ollama ``POST /api/blobs/sha256:<hex>``; a blob the server
        already has is not stored twice.

        Args:
            path: The file; read twice (to hash, then to send), never whole in memory.
            timeout: Read timeout, seconds (the upload itself is not limited).

        Returns:
            The digest, ``"sha256:<64 hex digits>"``, to use in ``files`` or
            ``adapters``.

        Raises:
            InvalidRequest: HTTP 400 (the server computed another digest).
            ProviderUnavailable: not reachable, or HTTP 5xx.
            OSError: the file cannot be read.
        """
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                sha.update(chunk)
        digest = f"sha256:{sha.hexdigest()}"
        with open(path, "rb") as f:
            self._call(
                "POST",
                f"/api/blobs/{digest}",
                body=f,
                timeout=timeout,
                ok=(200, 201),
                headers={"Content-Type": "application/octet-stream"},
            )
        return digest

    def blob_exists(self, digest: str, timeout: float | None = None) -> bool:
        """Whether the server has a blob. Ollama ``HEAD /api/blobs/<digest>``.

        Raises:
            InvalidRequest: HTTP 400 (not a ``sha256:<hex>`` digest).
            ProviderUnavailable: not reachable, or HTTP 5xx.
        """
        return self._exists(f"/api/blobs/{digest}", timeout)

    # --- copy and delete ------------------------------------------------------------

    def copy(self, source: str, destination: str, timeout: float | None = None) -> StatusResponse:
        """Copy a model under another name (the layers are shared, not duplicated).
        Ollama ``POST /api/copy``.

        Raises:
            ModelNotFound: ``source`` does not exist.
            InvalidRequest: HTTP 400 (an invalid name).
            ProviderUnavailable: not reachable, or HTTP 5xx.
        """
        body = self._encode({"source": source, "destination": destination})
        self._call("POST", "/api/copy", body=body, timeout=timeout, model=source)
        return StatusResponse(status="success")

    def delete(self, model: str, timeout: float | None = None) -> StatusResponse:
        """Delete a model from disk (layers other models use are kept). Ollama
        ``DELETE /api/delete`` with a JSON body.

        Raises:
            ModelNotFound: the model does not exist.
            InvalidRequest: HTTP 400 (an invalid name).
            ProviderUnavailable: not reachable, or HTTP 5xx.
        """
        body = self._encode({"model": model})
        self._call(
            "DELETE",
            "/api/delete",
            body=body,
            timeout=timeout,
            model=model,
            http_error=lambda r: self._http_error(
                r, model, missing="`rubberduck models` lists the ones it has"
            ),
        )
        return StatusResponse(status="success")
