"""The OpenAI wire format's answers, without HTTP: the shapes of answers and
chunks, and their assembly into events (for the OpenAI-compatible provider and the
embedded llama.cpp alike). Request bodies are in
:mod:`rubberduck.providers.openai.request`; :mod:`rubberduck.providers.openai`
does the HTTP.

Format source: the OpenAI API reference ("Chat Completions", "Completions",
"Embeddings", "Models"; streaming as Server-Sent Events), as llama.cpp's server,
vLLM, LM Studio and Ollama's ``/v1`` speak it. Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rubberduck.errors import ProtocolError
from rubberduck.messages import (
    Delta,
    Done,
    Durations,
    ToolCall,
    Usage,
)
from rubberduck.providers.base import Emit

__all__ = [
    "CHUNK_DECODER",
    "EMBEDDINGS_DECODER",
    "ERROR_DECODER",
    "MODELS_DECODER",
    "Answer",
    "Chunk",
    "ErrorInfo",
    "error_text",
]


#: OpenAI ``finish_reason`` → Ollama ``done_reason``. Ollama ends a tool-calling
#: answer with "stop"; other values ("content_filter", ...) pass through.
_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}
# --- wire shapes (unknown fields are ignored) ---------------------------------------


class _FunctionPart(msgspec.Struct):
    name: str | None = None
    # A JSON string per the spec; a few servers send the object itself.
    arguments: str | dict[str, Any] | None = None


class _ToolCallPart(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _FunctionPart | None = None


class _MessagePart(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # llama.cpp, vLLM, DeepSeek
    reasoning: str | None = None  # Ollama /v1, OpenRouter
    tool_calls: list[_ToolCallPart] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _MessagePart | None = None  # streamed chat
    message: _MessagePart | None = None  # non-streamed chat
    text: str | None = None  # /completions
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Timings(msgspec.Struct):  # llama.cpp's extension, milliseconds
    prompt_ms: float | None = None
    predicted_ms: float | None = None


class ErrorInfo(msgspec.Struct):
    """OpenAI's error object: ``{"message", "type", "code"}`` (``code`` is a string
    at OpenAI, the HTTP status at llama.cpp)."""

    message: str = ""
    type: str | None = None
    code: str | int | None = None


class Chunk(msgspec.Struct):
    """A ``chat.completion.chunk`` / ``text_completion`` chunk, or a whole
    non-streamed answer (the same fields; ``choices[].message`` instead of
    ``choices[].delta``). ``timings`` (milliseconds) is llama.cpp's extension;
    ``error`` is set on a failure mid-stream."""

    model: str | None = None
    choices: list[_Choice] = []
    usage: _Usage | None = None
    timings: _Timings | None = None
    error: ErrorInfo | str | None = None


class ErrorBody(msgspec.Struct):
    """The body of an HTTP error answer: ``{"error": {...}}`` (or a bare string)."""

    error: ErrorInfo | str | None = None
    message: str | None = None  # some proxies answer {"message": ...}


class _Model(msgspec.Struct):
    id: str


class ModelList(msgspec.Struct):
    """``GET /models``: ``{"object": "list", "data": [{"id": ...}, ...]}``."""

    data: list[_Model]


class _Embedding(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int = 0


class Embeddings(msgspec.Struct):
    """``POST /embeddings``: ``{"data": [{"index": i, "embedding": [floats]}],
    "model": ..., "usage": {"prompt_tokens": n}}``."""

    data: list[_Embedding]
    model: str = ""
    usage: _EmbeddingsUsage | None = None


# One reusable decoder per shape: building a Decoder costs far more than a decode.
CHUNK_DECODER = msgspec.json.Decoder(Chunk)
ERROR_DECODER = msgspec.json.Decoder(ErrorBody)
MODELS_DECODER = msgspec.json.Decoder(ModelList)
EMBEDDINGS_DECODER = msgspec.json.Decoder(Embeddings)
_ARGUMENTS_DECODER = msgspec.json.Decoder()


# --- answers ------------------------------------------------------------------------


class _CallParts:
    """One tool call being assembled from streamed fragments."""

    __slots__ = ("arguments", "id", "name", "whole")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name = ""
        self.arguments: list[str] = []
        self.whole: dict[str, Any] | None = None


class Answer:
    """Turns chunks into events; keeps what the final :class:`Done` needs.

    Text and reasoning are emitted as they arrive; tool calls are joined per
    ``index`` and emitted by :meth:`finish`, when their arguments are whole.

    Args:
        model: The requested model, reported if the server names none.
        provider: The backend's configured name, for ``Done`` and errors.
    """

    __slots__ = ("by_index", "calls", "finish_reason", "model", "provider", "timings", "usage")

    def __init__(self, model: str, provider: str) -> None:
        self.model = model
        self.provider = provider
        self.finish_reason: str | None = None
        self.usage: _Usage | None = None
        self.timings: _Timings | None = None
        self.calls: list[_CallParts] = []
        self.by_index: dict[int, _CallParts] = {}

    def add(self, chunk: Chunk, emit: Emit, *, whole: bool) -> None:
        """Emit the text in ``chunk``; keep its tool-call fragments, finish reason,
        usage and timings.

        Args:
            chunk: A decoded chunk (or whole answer).
            emit: Where :class:`Delta` events go.
            whole: ``chunk`` is a non-streamed answer (tool calls have no ``index``).
        """
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.timings is not None:
            self.timings = chunk.timings
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # n > 1 is never asked for
            part = choice.delta or choice.message
            if part is not None:
                thinking = part.reasoning_content or part.reasoning or ""
                if part.content or thinking:
                    emit(Delta(part.content or "", thinking))
                if part.tool_calls:
                    self._add_calls(part.tool_calls, whole)
            elif choice.text:
                emit(Delta(choice.text))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def _add_calls(self, parts: list[_ToolCallPart], whole: bool) -> None:
        for position, part in enumerate(parts):
            index = position if whole or part.index is None else part.index
            fn = part.function or _FunctionPart()
            call = self.by_index.get(index)
            # Ollama's /v1 gives parallel calls all index 0, each whole with its own id.
            if call is not None and part.id and call.id and part.id != call.id and fn.name:
                call = None
            if call is None:
                call = self.by_index[index] = _CallParts()
                self.calls.append(call)
            call.id = call.id or part.id
            call.name = call.name or fn.name or ""
            if isinstance(fn.arguments, dict):
                call.whole = fn.arguments
            elif fn.arguments:
                call.arguments.append(fn.arguments)

    def finish(self, emit: Emit, elapsed_s: float | None) -> None:
        """Emit the tool calls, then :class:`Done`.

        Args:
            emit: Where the events go.
            elapsed_s: Seconds since the request was sent: ``durations.total_s``
                when the server reports no timings.

        Raises:
            ProtocolError: a tool call has no name, or arguments that are not a
                JSON object.
        """
        for call in self.calls:
            emit(ToolCall(call.name, _arguments(call, self.provider), call.id))
        usage, timings = self.usage or _Usage(), self.timings or _Timings()
        prompt_s = timings.prompt_ms / 1e3 if timings.prompt_ms is not None else None
        eval_s = timings.predicted_ms / 1e3 if timings.predicted_ms is not None else None
        emit(
            Done(
                done_reason=_DONE_REASONS.get(self.finish_reason or "", self.finish_reason),
                usage=Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0),
                model=self.model,
                provider=self.provider,
                cost_usd=0.0,
                durations=Durations(
                    total_s=prompt_s + eval_s
                    if prompt_s is not None and eval_s is not None
                    else elapsed_s,
                    prompt_eval_s=prompt_s,
                    eval_s=eval_s,
                ),
            )
        )


def _arguments(call: _CallParts, provider: str) -> dict[str, Any]:
    """A tool call's arguments as an object (OpenAI streams them as a JSON string).

    Raises:
        ProtocolError: no function name, or arguments that are not a JSON object
            (the message does not quote them: they are the model's output).
    """
    if not call.name:
        raise ProtocolError("a streamed tool call has no function name", provider=provider)
    if call.whole is not None:
        return call.whole
    text = "".join(call.arguments)
    if not text.strip():
        return {}
    try:
        value = _ARGUMENTS_DECODER.decode(text)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"tool call {call.name!r} has arguments that are not a JSON object "
            f"({len(text)} characters)",
            provider=provider,
        )
    return value


def error_text(error: ErrorInfo | str) -> str:
    """The human-readable part of an error object or string."""
    if isinstance(error, str):
        return error
    return error.message or error.type or ("" if error.code is None else str(error.code))
