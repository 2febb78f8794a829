"""Ollama-shaped requests as OpenAI-format request bodies, for the
OpenAI-compatible provider and the embedded llama.cpp alike: one option map, one
``response_format``, one conversion of messages."""

from __future__ import annotations

import json
from typing import Any

from rubberduck.messages import ChatRequest, Message, Request

__all__ = ["LLAMA_CPP_ONLY", "OPTION_FIELDS", "add_common_fields", "request_body"]

#: Ollama option → OpenAI-format request field, for the OpenAI-compatible and the
#: embedded llama.cpp providers alike. Other Ollama options (num_ctx, ...) have no
#: equivalent and are not sent: OpenAI itself rejects unknown fields.
OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "num_predict": "max_tokens",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
}
#: Fields of :data:`OPTION_FIELDS` that llama.cpp reads but OpenAI's API rejects:
#: sent only to the embedded llama.cpp.
LLAMA_CPP_ONLY = frozenset({"top_k", "min_p", "repeat_penalty"})
#: First bytes of base64-encoded images → MIME type, for ``data:`` URLs.
_IMAGE_MAGIC = {"iVBORw0KGgo": "image/png", "/9j/": "image/jpeg", "R0lGOD": "image/gif"}


def request_body(request: Request, model: str) -> dict[str, Any]:
    """The body of ``POST /chat/completions`` (a chat) or ``POST /completions``
    (a generate request), with :func:`add_common_fields` applied.

    A chat's messages are converted by the rules of :func:`_messages`, its
    ``tools`` passed as they are (Ollama already uses OpenAI's function schema). A
    generate request sends ``prompt`` and ``suffix`` only: ``/completions`` has no
    ``system``, ``template`` or ``images``.

    Args:
        request: An Ollama-shaped chat or generate request.
        model: The model to name.

    Returns:
        A dict for the JSON encoder (values are not checked here).

    Raises:
        TypeError: a tool call in the history is not a dict, or its arguments
            are not JSON.
    """
    body: dict[str, Any]
    if isinstance(request, ChatRequest):
        body = {"model": model, "messages": _messages(request.messages), "stream": request.stream}
        if request.tools:
            body["tools"] = request.tools
    else:
        body = {"model": model, "prompt": request.prompt, "stream": request.stream}
        if request.suffix is not None:
            body["suffix"] = request.suffix
    add_common_fields(body, request.stream, request.options, request.format)
    return body


def add_common_fields(
    body: dict[str, Any],
    stream: bool,
    options: dict[str, Any] | None,
    format: str | dict[str, Any] | None,
    *,
    llama_cpp: bool = False,
) -> None:
    """Add usage reporting, Ollama options and ``format`` to ``body`` as OpenAI
    fields: ``stream_options.include_usage`` when streaming; ``temperature``,
    ``top_p``, ``num_predict`` (tokens) → ``max_tokens``, ``stop``, ``seed``,
    ``presence_penalty``, ``frequency_penalty``; ``format="json"`` →
    ``response_format: {"type": "json_object"}``, a schema →
    ``{"type": "json_schema", "json_schema": {"name": "response", "schema": ...}}``.

    Args:
        body: The request body, changed in place.
        stream: The answer will be streamed.
        options: Ollama options; the others (``num_ctx``, ...) are not sent.
        format: ``"json"``, a JSON schema, or ``None``.
        llama_cpp: Also send ``top_k``, ``min_p`` and ``repeat_penalty``
            (:data:`LLAMA_CPP_ONLY`), for the embedded llama.cpp.
    """
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in (options or {}).items():
        field = OPTION_FIELDS.get(key)
        if field is None or value is None or (field in LLAMA_CPP_ONLY and not llama_cpp):
            continue
        if field == "max_tokens" and isinstance(value, (int, float)) and value < 0:
            continue  # Ollama's -1/-2 mean "no cap": send none
        body[field] = value
    if format == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(format, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": format},
        }


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Ollama messages → OpenAI messages: tool-call arguments become JSON strings,
    images become ``image_url`` parts, tool results get the ``tool_call_id`` of the
    call they answer (matched by ``tool_name``, else in order)."""
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not yet answered
    for number, msg in enumerate(messages):
        item: dict[str, Any] = {"role": msg.role, "content": msg.content}
        if msg.images:
            item["content"] = [
                *([{"type": "text", "text": msg.content}] if msg.content else []),
                *({"type": "image_url", "image_url": {"url": _image_url(i)}} for i in msg.images),
            ]
        if msg.tool_calls:
            calls = [
                _tool_call(call, f"call_{number}_{i}") for i, call in enumerate(msg.tool_calls)
            ]
            item["tool_calls"] = calls
            item["content"] = msg.content or None
            pending = [(c["id"], c["function"]["name"]) for c in calls]
        if msg.role == "tool":
            match = next((p for p in pending if p[1] == msg.tool_name), None)
            if match is None and pending and msg.tool_name is None:
                match = pending[0]
            if match is not None:
                pending.remove(match)
                item["tool_call_id"] = match[0]
        out.append(item)
    return out


def _tool_call(call: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    function = (call.get("function") or {}) if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise TypeError(f"a tool call is {{'function': {{'name', 'arguments'}}}}, not {call!r:.80}")
    arguments = function.get("arguments", {})
    return {
        "id": call.get("id") or fallback_id,
        "type": "function",
        "function": {
            "name": function.get("name", ""),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def _image_url(image: str) -> str:
    if image.startswith(("data:", "http://", "https://")):
        return image
    mime = next((m for magic, m in _IMAGE_MAGIC.items() if image.startswith(magic)), "image/png")
    return f"data:{mime};base64,{image}"
