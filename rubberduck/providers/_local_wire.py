"""llama.cpp's OpenAI-format answers, as xllamacpp hands them over, turned into
RubberDuck's events and errors (for :class:`~rubberduck.providers.local.LocalProvider`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from rubberduck.errors import InvalidRequest, ProviderUnavailable, RubberDuckError
from rubberduck.messages import Delta, Done, Durations, ToolCall, Usage
from rubberduck.providers.base import CancelScope, Emit

__all__ = ["DONE_REASONS", "OPTION_FIELDS", "StreamState", "map_error", "shorten"]

#: Ollama option name → llama.cpp (OpenAI-style) request field.
OPTION_FIELDS = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


class StreamState:
    """Turns OpenAI-format chunks from llama.cpp into events."""

    __slots__ = (
        "emit",
        "failure",
        "finish_reason",
        "model",
        "provider",
        "scope",
        "timings",
        "usage",
    )

    def __init__(self, provider: str, model: str, emit: Emit, scope: CancelScope) -> None:
        self.provider, self.model, self.emit, self.scope = provider, model, emit, scope
        self.failure: RubberDuckError | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}

    def on_chunk(self, chunk: dict[str, Any]) -> bool:
        """Handle one chunk; return True to make llama.cpp stop generating."""
        try:
            if "error" in chunk:
                self.failure = map_error(chunk["error"], self.provider)
                return True
            for choice in chunk.get("choices") or ():
                part = choice.get("delta") or choice.get("message") or {}
                text = part.get("content") if part else choice.get("text")
                if text:
                    self.emit(Delta(text))
                for call in part.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    self.emit(
                        ToolCall(
                            fn.get("name", ""), _arguments(fn.get("arguments")), call.get("id")
                        )
                    )
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            self.usage = chunk.get("usage") or self.usage
            self.timings = chunk.get("timings") or self.timings
        except RubberDuckError as exc:
            self.failure = exc
        except Exception as exc:  # noqa: BLE001 - an exception must not unwind through C++
            self.failure = ProviderUnavailable(
                f"bad chunk from llama.cpp: {exc!r}", provider=self.provider
            )
        return self.failure is not None or self.scope.cancelled

    def finish(self) -> None:
        prompt_ms, predicted_ms = self.timings.get("prompt_ms"), self.timings.get("predicted_ms")
        self.emit(
            Done(
                done_reason=DONE_REASONS.get(self.finish_reason or "stop", self.finish_reason),
                usage=Usage(
                    self.usage.get("prompt_tokens", 0), self.usage.get("completion_tokens", 0)
                ),
                model=self.model,
                provider=self.provider,
                cost_usd=0.0,
                durations=Durations(
                    total_s=(prompt_ms + predicted_ms) / 1e3
                    if prompt_ms and predicted_ms
                    else None,
                    prompt_eval_s=prompt_ms / 1e3 if prompt_ms is not None else None,
                    eval_s=predicted_ms / 1e3 if predicted_ms is not None else None,
                ),
            )
        )


def _arguments(value: Any) -> dict[str, Any]:
    """OpenAI sends tool arguments as a JSON string; Ollama as an object."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            decoded = json.loads(value)
        except ValueError:
            return {"_raw": value}
        return decoded if isinstance(decoded, dict) else {"_raw": value}
    return {}


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """The first ``dimensions`` values, normalized again to unit length (what
    Ollama does for ``dimensions``, server/routes.go ``EmbedHandler``)."""
    if not dimensions or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def map_error(error: Any, provider: str) -> RubberDuckError:
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
