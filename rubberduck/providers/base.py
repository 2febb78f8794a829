"""The provider contract: what the actors need from a backend.

A provider is a plain class (no actors): it builds the request for its backend,
parses the answer into events, and maps every failure onto
:mod:`rubberduck.errors`. Output is pushed, not pulled: ``run`` calls ``emit``
once per event, in the calling thread, so a chunk costs one function call here and
one queue hand-off to the caller.

The HTTP pieces the HTTP providers share are in :mod:`rubberduck.providers._http`;
:class:`CancelScope` and :func:`sending` are re-exported here for the actors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import msgspec

from rubberduck.errors import InvalidRequest
from rubberduck.messages import EmbedRequest, EmbedResponse, Event, Request
from rubberduck.providers._http.cancellable import sending
from rubberduck.providers.cancel import CancelScope

__all__ = [
    "CancelScope",
    "Emit",
    "Provider",
    "ProviderInfo",
    "estimate_tokens",
    "resolve_model",
    "sending",
]

Emit = Callable[[Event], None]


@runtime_checkable
class Provider(Protocol):
    """What the actors need from a backend.

    Attributes:
        name: Configured backend name (``"ollama"``, ``"local"``, ...).
        kind: Backend kind (``"ollama"``, ``"local"``).
        default_model: Model used when a request names none, or ``None``.
        is_local: ``True`` when requests cost nothing (``cost_usd`` is 0.0).
    """

    name: str
    kind: str
    default_model: str | None
    is_local: bool

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send ``request``; call ``emit`` with each :class:`Delta`/:class:`ToolCall`
        and finally one :class:`Done`.

        Raises:
            RubberDuckError: a subclass saying what failed; ``fallback`` tells
                whether another backend may serve the request.
        """
        ...

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """One vector per input (Ollama ``/api/embed`` semantics).

        Raises:
            InvalidRequest: with ``fallback`` True where the backend has no
                embeddings (the router moves on).
            RubberDuckError: as for :meth:`run`.
        """
        ...

    def health_check(self, timeout: float) -> str:
        """Cheap liveness probe; returns a short description (e.g. the version).

        Raises:
            RubberDuckError: the backend is not usable.
        """
        ...

    def list_models(self, timeout: float) -> list[str]:
        """Names of the models this backend can serve now.

        Raises:
            RubberDuckError: the catalogue could not be read.
        """
        ...

    def close(self) -> None:
        """Release connections and loaded models."""
        ...

    def info(self) -> ProviderInfo:
        """What this backend is (name, kind, URL, known models), without a network
        call."""
        ...

    def supports_feature(self, name: str) -> bool:
        """Whether this provider implements ``name`` (``"streaming"``, ``"tools"``,
        ``"vision"``, ``"embeddings"``, ``"json_mode"``, ``"thinking"``); other
        names give ``False``."""
        ...

    def validate_config(self) -> None:
        """Check the settings without a network call; construction runs it.

        Raises:
            ConfigError: a setting is invalid; the message names it and the fix.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (exact where a tokenizer is loaded, else an estimate,
        see :func:`estimate_tokens`)."""
        ...


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider's ``info()`` reports, without a network call.

    Attributes:
        name: Configured backend name.
        kind: ``"ollama"``, ``"local"``, ``"openai"``, ...
        base_url: The server's URL (``"http://127.0.0.1:11434"``,
            ``"http://127.0.0.1:8080/v1"``); ``""`` for an in-process backend.
        models: The catalogue from the last ``list_models`` or health check, else
            the default model alone, else empty.
        requires_api_key: Requests carry an API key.
        is_local: The host is loopback or a private address (an in-process
            backend is local).
    """

    name: str
    kind: str
    base_url: str
    models: tuple[str, ...]
    requires_api_key: bool
    is_local: bool


def estimate_tokens(text: str) -> int:
    """An *estimate* of the tokens in ``text``: one token per 4 bytes of UTF-8,
    rounded up (the usual rule of thumb for English with BPE vocabularies of
    32k–200k entries; code and other languages come out higher). For providers
    that load no tokenizer.

    Returns:
        Estimated tokens (0 for ``""``).
    """
    return math.ceil(len(text.encode("utf-8")) / 4)


def resolve_model(model: str | None, default: str | None, provider: str) -> str:
    """The model a request goes to: its own, else the backend's default. A blank
    name (``""``) counts as none, the same in every provider.

    Raises:
        InvalidRequest: neither names a model.
    """
    if model and model.strip():
        return model
    if default and default.strip():
        return default
    raise InvalidRequest(
        "the request names no model and this backend has no default — pass "
        "model=... or set `model` in its [provider] table",
        provider=provider,
    )
