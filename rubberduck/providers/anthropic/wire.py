"""The answer side of Anthropic's Messages API: the shapes of its answers and
stream events, and how they become RubberDuck events. Sources are listed in
:mod:`rubberduck.providers.anthropic`.

Answers are decoded with msgspec Structs (unknown fields ignored); the SSE events
are one tagged union on their ``type`` field, decoded by one reusable decoder.
"""

from __future__ import annotations

from typing import Any

import msgspec
import requests

from rubberduck.errors import ProtocolError
from rubberduck.messages import Delta, Done, ToolCall, Usage
from rubberduck.providers._http.body import decode_answer
from rubberduck.providers._http.sse import read_events
from rubberduck.providers.anthropic.errors import AnthropicErrors
from rubberduck.providers.base import Emit

__all__ = [
    "EVENT_DECODER",
    "EVENT_TYPES",
    "AnswerReader",
    "Block",
    "BlockDelta",
    "BlockStart",
    "BlockStop",
    "ErrorEvent",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "Ping",
    "TokenCount",
    "UsageCounter",
    "decode_message",
    "decode_models",
    "decode_token_count",
]


class UsageInfo(msgspec.Struct):
    """``usage`` of a message or a ``message_delta``, tokens."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Block(msgspec.Struct):
    """A content block of any type (``text``, ``thinking``, ``tool_use``, ...)."""

    type: str
    text: str = ""
    thinking: str = ""
    id: str | None = None
    name: str = ""
    input: Any = None


class MessageInfo(msgspec.Struct):
    """A Message object: the non-streamed answer, or ``message_start.message``."""

    model: str = ""
    content: list[Block] = []
    stop_reason: str | None = None
    usage: UsageInfo | None = None


class DeltaInfo(msgspec.Struct):
    """``content_block_delta.delta`` of any type."""

    type: str
    text: str = ""
    partial_json: str = ""
    thinking: str = ""


class StopInfo(msgspec.Struct):
    """``message_delta.delta``."""

    stop_reason: str | None = None


class ErrorInfo(msgspec.Struct):
    """``error`` of an error body or an ``error`` event."""

    type: str = ""
    message: str = ""


class MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: MessageInfo


class BlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: Block


class BlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: DeltaInfo


class BlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int


class MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: StopInfo
    usage: UsageInfo | None = None


class MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type"):
    error: ErrorInfo


StreamEvent = (
    MessageStart
    | BlockStart
    | BlockDelta
    | BlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)
EVENT_DECODER: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)
#: SSE event names this module decodes; others are skipped, as the docs ask.
EVENT_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


class ModelInfo(msgspec.Struct):
    id: str


class ModelList(msgspec.Struct):
    data: list[ModelInfo]
    has_more: bool = False
    last_id: str | None = None


class TokenCount(msgspec.Struct):
    """The answer of ``POST /v1/messages/count_tokens``."""

    input_tokens: int


decode_message = msgspec.json.Decoder(MessageInfo).decode
decode_token_count = msgspec.json.Decoder(TokenCount).decode
decode_models = msgspec.json.Decoder(ModelList).decode


class UsageCounter:
    """Token counts of one answer. The counts Anthropic sends are cumulative, so
    the latest value of each field wins."""

    __slots__ = ("cache_creation", "cache_read", "input", "output_tokens")

    def __init__(self) -> None:
        self.input = self.cache_creation = self.cache_read = self.output_tokens = 0

    def add(self, usage: UsageInfo | None) -> None:
        if usage is None:
            return
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.output_tokens is not None:
            self.output_tokens = usage.output_tokens

    @property
    def prompt_tokens(self) -> int:
        """Input tokens, cached ones (read or written) included."""
        return self.input + self.cache_creation + self.cache_read


#: ``stop_reason`` → ``Done.done_reason``. ``tool_use`` is "stop", as Ollama reports a
#: turn that ends in tool calls; running out of context is "length", as Ollama reports
#: it; reasons not listed (``refusal``, ``pause_turn``, ...) pass through unchanged.
_DONE_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}


class AnswerReader:
    """Turns one backend's answers into :class:`Delta`, :class:`ToolCall` and a
    final :class:`Done` (usage in tokens, cached input tokens counted as prompt).

    Args:
        provider: Configured backend name, for ``Done.provider`` and errors.
        max_event_bytes: Largest SSE event accepted, bytes.
        errors: Maps ``error`` events, and redacts excerpts.
    """

    __slots__ = ("_errors", "max_event_bytes", "provider")

    def __init__(self, provider: str, *, max_event_bytes: int, errors: AnthropicErrors) -> None:
        self.provider = provider
        self.max_event_bytes = max_event_bytes
        self._errors = errors

    def read_stream(self, resp: requests.Response, emit: Emit, model: str) -> None:
        """Emit the events of an SSE answer, ending with :class:`Done` at
        ``message_stop``.

        Raises:
            ProtocolError: a malformed or oversized event, a delta for a block that
                never started, tool input that is not a JSON object, or the end of
                the body before ``message_stop``.
            ServerBusy, ProviderUnavailable: an ``error`` event.
        """
        usage = UsageCounter()
        stop_reason: str | None = None
        tools: dict[int, tuple[Block, list[str]]] = {}
        events = read_events(resp.raw.read1, self.max_event_bytes, provider=self.provider)
        for sse in events:
            if sse.event not in EVENT_TYPES and sse.event != "message":
                continue  # a newer event type: Anthropic asks clients to skip them
            if len(sse.data) > self.max_event_bytes:  # characters <= bytes
                raise ProtocolError(
                    f"an SSE event is longer than {self.max_event_bytes} bytes",
                    provider=self.provider,
                )
            event = self.decode(EVENT_DECODER.decode, sse.data)
            kind = type(event)
            if kind is BlockDelta:
                delta = event.delta
                if delta.type == "text_delta":
                    if delta.text:
                        emit(Delta(delta.text))
                elif delta.type == "thinking_delta":
                    if delta.thinking:
                        emit(Delta("", delta.thinking))
                elif delta.type == "input_json_delta":
                    if event.index not in tools:
                        raise ProtocolError(
                            f"input_json_delta for block {event.index}, which is not a "
                            "started tool_use block",
                            provider=self.provider,
                        )
                    tools[event.index][1].append(delta.partial_json)
                # signature_delta and citations_delta carry nothing to emit
            elif kind is BlockStart:
                if event.content_block.type == "tool_use":
                    tools[event.index] = (event.content_block, [])
            elif kind is BlockStop:
                if event.index in tools:
                    block, parts = tools.pop(event.index)
                    emit(ToolCall(block.name, self._tool_input(block, "".join(parts)), block.id))
            elif kind is MessageStart:
                model = event.message.model or model
                usage.add(event.message.usage)
            elif kind is MessageDelta:
                stop_reason = event.delta.stop_reason or stop_reason
                usage.add(event.usage)
            elif kind is MessageStop:
                emit(self._done(stop_reason, usage, model))
                return
            elif kind is ErrorEvent:
                raise self._errors.stream_error(event.error.type, event.error.message)
            # ping: a keep-alive
        raise ProtocolError(
            "the stream ended before Anthropic's `message_stop` event", provider=self.provider
        )

    def read_message(self, raw: bytes, emit: Emit, model: str) -> None:
        """Emit the events of a non-streamed answer (a Message object), ending with
        :class:`Done`.

        Raises:
            ProtocolError: not a Message object, or tool input that is not a JSON
                object.
        """
        message = self.decode(decode_message, raw)
        for block in message.content:
            if block.type == "text" and block.text:
                emit(Delta(block.text))
            elif block.type == "thinking" and block.thinking:
                emit(Delta("", block.thinking))
            elif block.type == "tool_use":
                emit(ToolCall(block.name, self._tool_input(block, ""), block.id))
        usage = UsageCounter()
        usage.add(message.usage)
        emit(self._done(message.stop_reason, usage, message.model or model))

    def _done(self, stop_reason: str | None, usage: UsageCounter, model: str) -> Done:
        return Done(
            done_reason=_DONE_REASONS.get(stop_reason, stop_reason) if stop_reason else None,
            usage=Usage(usage.prompt_tokens, usage.output_tokens),
            model=model,
            provider=self.provider,
        )

    def _tool_input(self, block: Block, partial_json: str) -> dict[str, Any]:
        """A tool call's arguments: the joined ``partial_json`` fragments, else the
        block's own ``input``.

        Raises:
            ProtocolError: the input is not a JSON object.
        """
        value: Any = block.input
        if partial_json.strip():
            try:
                value = msgspec.json.decode(partial_json)
            except msgspec.DecodeError as exc:
                raise ProtocolError(
                    f"tool {block.name!r} input is not JSON ({exc}): "
                    f"{self._errors.excerpt(partial_json, 120)!r}",
                    provider=self.provider,
                ) from None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ProtocolError(
                f"tool {block.name!r} input is not a JSON object: "
                f"{self._errors.excerpt(repr(value), 120)}",
                provider=self.provider,
            )
        return value

    def decode(self, decode: Any, raw: bytes | str) -> Any:
        """``decode(raw)``, a msgspec decoder's ``decode`` (see :func:`decode_answer`)."""
        return decode_answer(
            decode, raw, what="Anthropic's JSON", provider=self.provider, secret=self._errors.secret
        )
