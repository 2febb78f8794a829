"""The request side of Anthropic's Messages API: the bodies of ``POST /v1/messages``
and ``POST /v1/messages/count_tokens``, and the conversion of Ollama-shaped requests
into them. Sources are listed in :mod:`rubberduck.providers.anthropic`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rubberduck.messages import ChatRequest, Message, Request

__all__ = [
    "CountTokensBody",
    "NotOffered",
    "RequestBody",
    "Tool",
    "Turn",
    "build_body",
    "messages_to_turns",
    "tools_to_anthropic",
]


class Turn(msgspec.Struct):
    """One entry of ``messages``: ``role`` is ``"user"`` or ``"assistant"``."""

    role: str
    content: str | list[dict[str, Any]]


class Tool(msgspec.Struct, omit_defaults=True):
    """One entry of ``tools``."""

    name: str
    input_schema: dict[str, Any]
    description: str | None = None


class RequestBody(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The body of ``POST /v1/messages``; unset fields are left out."""

    model: str
    max_tokens: int
    messages: list[Turn]
    system: str | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    thinking: dict[str, Any] | None = None


class CountTokensBody(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The body of ``POST /v1/messages/count_tokens``: the fields of
    :class:`RequestBody` that shape the prompt. The endpoint rejects the others
    (``max_tokens``, ``stream``, sampling options) with 400 "Extra inputs are not
    permitted"."""

    model: str
    messages: list[Turn]
    system: str | None = None
    tools: list[Tool] | None = None
    thinking: dict[str, Any] | None = None

    @classmethod
    def of(cls, body: RequestBody) -> CountTokensBody:
        """The count request for the prompt of ``body``."""
        return cls(
            model=body.model,
            messages=body.messages,
            system=body.system,
            tools=body.tools,
            thinking=body.thinking,
        )


#: Base64 prefixes of the image formats the API accepts, and their media types.
_IMAGE_MAGIC = (
    ("/9j/", "image/jpeg"),
    ("iVBORw0KGgo", "image/png"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)


def _image_block(data: str) -> dict[str, Any]:
    for prefix, media_type in _IMAGE_MAGIC:
        if data.startswith(prefix):
            source = {"type": "base64", "media_type": media_type, "data": data}
            return {"type": "image", "source": source}
    raise ValueError("an image is not base64 JPEG, PNG, GIF or WebP")


def _tool_call(call: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """(name, arguments, id) of an Ollama ``{"function": {"name", "arguments"}}`` or
    OpenAI ``{"id", "function": {"name", "arguments": "<json>"}}`` tool call."""
    if not isinstance(call, dict):
        raise ValueError(f"a tool call is not an object: {call!r:.120}")
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError(f"a tool call has no function name: {call!r:.120}")
    args = fn.get("arguments")
    if isinstance(args, str):
        args = msgspec.json.decode(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"tool call {fn['name']!r} has arguments that are not an object")
    call_id = call.get("id")
    return fn["name"], args, call_id if isinstance(call_id, str) and call_id else None


def messages_to_turns(messages: list[Message]) -> tuple[str | None, list[Turn]]:
    """Ollama-shaped chat history → Anthropic's ``system`` and ``messages``.

    System messages are joined into ``system``. An assistant's ``tool_calls``
    become ``tool_use`` blocks (with a made-up id where the history has none);
    each ``role: "tool"`` message becomes a ``tool_result`` block for the earliest
    unanswered call of the same ``tool_name`` (else the earliest unanswered call).
    Consecutive turns of one role are merged, so tool results sit together at the
    start of one user turn, as the API requires. Earlier thinking is dropped, and
    a message left with no content is not sent (Anthropic answers 400 to a turn
    without content).

    Raises:
        ValueError: an unknown role, a tool result with no call to answer, a
            malformed tool call or an image in an unknown format.
    """
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    unanswered: list[tuple[str, str]] = []  # (id, name)
    made_up = 0
    for msg in messages:
        blocks: list[dict[str, Any]] = []
        if msg.role == "system":
            system.append(msg.content)
            continue
        if msg.role == "tool":
            role = "user"
            match = next((c for c in unanswered if c[1] == msg.tool_name), None)
            if match is None and unanswered:
                match = unanswered[0]
            if match is None:
                raise ValueError("a `tool` message answers no earlier assistant tool call")
            unanswered.remove(match)
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": match[0]}
            if msg.content:
                result["content"] = msg.content
            blocks.append(result)
        elif msg.role in ("user", "assistant"):
            role = msg.role
            blocks.extend(_image_block(image) for image in msg.images or ())
            if msg.content:
                blocks.append({"type": "text", "text": msg.content})
            if role == "assistant" and msg.tool_calls:
                unanswered = []
                for call in msg.tool_calls:
                    name, args, call_id = _tool_call(call)
                    if call_id is None:
                        made_up += 1
                        call_id = f"toolu_rubberduck_{made_up}"
                    unanswered.append((call_id, name))
                    blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
        else:
            raise ValueError(
                f"unknown message role {msg.role!r} — use system, user, assistant or tool"
            )
        if not blocks:
            continue  # the API rejects a turn without content; an empty message says nothing
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return ("\n\n".join(system) if system else None), [
        Turn(
            role, blocks[0]["text"] if len(blocks) == 1 and blocks[0]["type"] == "text" else blocks
        )
        for role, blocks in turns
    ]


def tools_to_anthropic(tools: list[dict[str, Any]] | None) -> list[Tool] | None:
    """Ollama/OpenAI function tools (``{"type": "function", "function": {"name",
    "description", "parameters"}}``) → Anthropic tools (``name``, ``description``,
    ``input_schema``). Tools already in Anthropic's shape pass through.

    Raises:
        ValueError: a tool that is not an object or has no name.
    """
    if not tools:
        return None
    out = []
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError(f"a tool has no name: {tool!r:.120}")
        schema = fn.get("input_schema", fn.get("parameters")) or {
            "type": "object",
            "properties": {},
        }
        out.append(Tool(name=fn["name"], input_schema=schema, description=fn.get("description")))
    return out


#: ``thinking.budget_tokens`` for each ``think`` value; Anthropic's minimum is 1024.
_THINK_BUDGETS: dict[bool | str, int] = {True: 4096, "low": 1024, "medium": 4096, "high": 16384}
#: Ollama ``GenerateRequest`` fields the Messages API has no counterpart for.
_GENERATE_ONLY = ("suffix", "template", "raw")


class NotOffered(Exception):
    """The request needs a feature the Messages API lacks; another backend may
    have it."""


def build_body(request: Request, *, model: str, max_tokens: int) -> RequestBody:
    """The ``POST /v1/messages`` body for an Ollama-shaped request.

    Options map as ``num_predict`` → ``max_tokens`` (``max_tokens`` when unset or
    <= 0, Ollama's "no limit"), ``temperature``, ``top_p``, ``top_k``, ``stop`` →
    ``stop_sequences``; the rest (``seed``, ``num_ctx``, ...) have no counterpart.
    ``think`` asks for extended thinking with a budget of 1024 (``"low"``), 4096
    (``True``, ``"medium"``) or 16384 (``"high"``) tokens; ``max_tokens`` grows by
    the budget when it is not above it, so the answer keeps its room.

    Args:
        request: A chat (see :func:`messages_to_turns`) or a generate request (one
            user message, ``system`` as is).
        model: The model to ask.
        max_tokens: The default completion cap, tokens.

    Raises:
        NotOffered: ``format`` (JSON mode), or a generate ``suffix``, ``template`` or
            ``raw``.
        ValueError, TypeError: an option of the wrong type, an unknown ``think``
            value, or history that does not map.
    """
    if request.format is not None:
        raise NotOffered("JSON mode (`format`)")
    opts = request.options or {}
    fields: dict[str, Any] = {"max_tokens": max_tokens}
    if (n := opts.get("num_predict")) is not None and int(n) > 0:
        fields["max_tokens"] = int(n)
    for key in ("temperature", "top_p"):
        if opts.get(key) is not None:
            fields[key] = float(opts[key])
    if opts.get("top_k") is not None:
        fields["top_k"] = int(opts["top_k"])
    if stop := opts.get("stop"):
        fields["stop_sequences"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    if request.think:
        budget = _THINK_BUDGETS.get(request.think)
        if budget is None:
            raise ValueError(f"think={request.think!r} — use true, 'low', 'medium' or 'high'")
        if fields["max_tokens"] <= budget:
            fields["max_tokens"] += budget
        fields["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if isinstance(request, ChatRequest):
        system, turns = messages_to_turns(request.messages)
        tools = tools_to_anthropic(request.tools)
    else:
        for name in _GENERATE_ONLY:
            if getattr(request, name) is not None:
                raise NotOffered(f"generate with `{name}`")
        prompt = Message(role="user", content=request.prompt, images=request.images)
        system, turns = request.system, messages_to_turns([prompt])[1]
        tools = None
    return RequestBody(
        model=model, messages=turns, system=system, stream=request.stream, tools=tools, **fields
    )
