"""Ollama's NDJSON lines and JSON answers for inference, as msgspec Structs that
one reusable decoder each reads (unknown fields are ignored). Durations on the
wire are nanoseconds; :func:`seconds` converts.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rubberduck.ollama_types import EmbeddingsResponse

__all__ = [
    "CHAT_DECODER",
    "EMBEDDING_DECODER",
    "EMBED_DECODER",
    "GENERATE_DECODER",
    "TAGS_DECODER",
    "VERSION_DECODER",
    "ChatLine",
    "EmbedAnswer",
    "GenerateLine",
    "Tags",
    "VersionAnswer",
    "seconds",
]


class Function(msgspec.Struct):
    name: str
    arguments: dict[str, Any] = {}


class WireToolCall(msgspec.Struct):
    function: Function
    id: str | None = None


class WireMessage(msgspec.Struct):
    role: str = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[WireToolCall] | None = None


class Metrics(msgspec.Struct):
    model: str = ""
    done: bool = False
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    error: str | None = None


class ChatLine(Metrics):
    message: WireMessage | None = None


class GenerateLine(Metrics):
    response: str = ""
    thinking: str | None = None


class EmbedAnswer(msgspec.Struct):
    embeddings: list[list[float]]
    model: str = ""
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class VersionAnswer(msgspec.Struct):
    version: str


class TagModel(msgspec.Struct):
    name: str = ""
    model: str = ""


class Tags(msgspec.Struct):
    models: list[TagModel] = []


CHAT_DECODER = msgspec.json.Decoder(ChatLine)
GENERATE_DECODER = msgspec.json.Decoder(GenerateLine)
EMBED_DECODER = msgspec.json.Decoder(EmbedAnswer)
EMBEDDING_DECODER = msgspec.json.Decoder(EmbeddingsResponse)
VERSION_DECODER = msgspec.json.Decoder(VersionAnswer)
TAGS_DECODER = msgspec.json.Decoder(Tags)


def seconds(ns: int | None) -> float | None:
    """Nanoseconds → seconds; ``None`` stays ``None``."""
    return ns / 1e9 if ns is not None else None
