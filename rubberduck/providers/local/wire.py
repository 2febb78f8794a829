"""llama.cpp's OpenAI-format answers, as xllamacpp hands them over (dicts, to a
callback running inside llama.cpp), fed through the same translation as the
OpenAI-compatible provider's (:class:`~rubberduck.providers.openai.wire.Answer`),
for :class:`~rubberduck.providers.local.LocalProvider`.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from rubberduck.errors import InvalidRequest, ProviderUnavailable, RubberDuckError
from rubberduck.providers.base import CancelScope, Emit
from rubberduck.providers.openai.wire import Answer, Chunk

__all__ = ["ChunkRelay", "map_error", "shorten"]


class ChunkRelay:
    """Turns llama.cpp's chunks into events through :class:`Answer`, and keeps the
    first failure instead of raising it (an exception must not unwind through
    llama.cpp's C++).

    Args:
        provider: The backend's configured name.
        model: The model reported in ``Done`` (llama.cpp names its GGUF path).
        emit: Where events go.
        scope: Its cancel makes llama.cpp stop generating.
    """

    __slots__ = ("answer", "emit", "failure", "provider", "scope")

    def __init__(self, provider: str, model: str, emit: Emit, scope: CancelScope) -> None:
        self.provider, self.emit, self.scope = provider, emit, scope
        self.answer = Answer(model, provider)
        self.failure: RubberDuckError | None = None

    def on_chunk(self, chunk: dict[str, Any], *, whole: bool = False) -> bool:
        """Handle one chunk (``whole``: a non-streamed answer); return True to make
        llama.cpp stop generating."""
        try:
            if "error" in chunk:
                self.failure = map_error(chunk["error"], self.provider)
                return True
            fields = {k: v for k, v in chunk.items() if k != "model"}
            self.answer.add(msgspec.convert(fields, Chunk), self.emit, whole=whole)
        except RubberDuckError as exc:
            self.failure = exc
        except Exception as exc:  # noqa: BLE001 - an exception must not unwind through C++
            self.failure = ProviderUnavailable(
                f"bad chunk from llama.cpp: {type(exc).__name__}: {exc}", provider=self.provider
            )
        return self.failure is not None or self.scope.cancelled

    def finish(self, elapsed_s: float) -> None:
        """Emit the tool calls and ``Done`` (see :meth:`Answer.finish`).

        Raises:
            ProtocolError: a tool call with no name or arguments that are not a
                JSON object.
        """
        self.answer.finish(self.emit, elapsed_s)


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """The first ``dimensions`` values, normalized again to unit length (what
    Ollama does for ``dimensions``, server/routes.go ``EmbedHandler``)."""
    if not dimensions or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def map_error(error: Any, provider: str) -> RubberDuckError:
    """The typed error for llama.cpp's error object (``{"message", "type", "code"}``)."""
    if not isinstance(error, dict):
        return ProviderUnavailable(f"llama.cpp error: {error}", provider=provider)
    message = str(error.get("message", error))
    if error.get("type") == "exceed_context_size_error":
        return InvalidRequest(
            f"{message} — shorten the prompt or raise `n_ctx` for this provider", provider=provider
        )
    if error.get("code") in (400, 501):
        return InvalidRequest(f"llama.cpp rejected the request: {message}", provider=provider)
    return ProviderUnavailable(f"llama.cpp error: {message}", provider=provider)
