"""Hypothesis strategies for wire traffic and fault schedules.

``ollama_chat_streams()`` draws the content of a streamed ``/api/chat`` answer plus
its final metrics; :meth:`ChatStream.to_ndjson` serializes it the way Ollama's Go
server does (one compact JSON object per line, ``\\n``-terminated, UTF-8 left
unescaped, ``<``/``>``/``&`` and U+2028/U+2029 escaped as ``encoding/json`` does).
``openai_chat_streams()`` draws a streamed ``/v1/chat/completions`` answer (text,
tool calls with arguments cut into fragments, usage); :meth:`OpenAIStream.to_sse`
serializes it as Server-Sent Events.
``anthropic_streams()`` draws a streamed Anthropic Messages answer (text deltas, an
optional tool call whose input JSON arrives in fragments); :meth:`AnthropicStream.to_sse`
writes it as the SSE events Anthropic documents.
``ollama_progress_streams()`` draws a ``/api/pull`` (or push/create) progress stream:
status lines, layer transfers with growing ``completed`` byte counts, and the final
``success``; :meth:`ProgressStream.to_ndjson` writes it as Ollama does.
``chunkings(body)`` cuts a body at arbitrary byte offsets (including inside a
multi-byte UTF-8 character or a JSON token), as TCP or HTTP chunking may.
``fault_schedules()`` draws backend faults, requests, actor crashes and an early
close for the runtime's property test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "AnthropicStream",
    "BackendFaults",
    "ChatStream",
    "FaultSchedule",
    "OpenAIStream",
    "ProgressStream",
    "RequestPlan",
    "StreamedToolCall",
    "anthropic_streams",
    "chunkings",
    "fault_schedules",
    "go_json",
    "ollama_chat_streams",
    "ollama_progress_streams",
    "openai_chat_streams",
    "split_at",
    "streamed_tool_calls",
]

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

_CREATED_AT = "2025-10-26T17:15:24.097767Z"


def go_json(obj: Any) -> str:
    """``json.dumps`` shaped like Go's ``encoding/json`` output (compact, raw UTF-8)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text


@dataclass(frozen=True)
class ChatStream:
    """A streamed ``/api/chat`` answer: per-chunk contents, then the final metrics.

    ``final_content`` is the content of the ``done: true`` line (usually ``""``).
    Durations are nanoseconds, as on the wire.
    """

    model: str
    contents: tuple[str, ...]
    final_content: str
    done_reason: str
    prompt_eval_count: int
    eval_count: int
    total_duration: int
    load_duration: int
    prompt_eval_duration: int
    eval_duration: int

    @property
    def text(self) -> str:
        """Everything the model said, in order."""
        return "".join(self.contents) + self.final_content

    @property
    def nonempty_pieces(self) -> list[str]:
        """The contents that should each produce one Delta."""
        return [c for c in (*self.contents, self.final_content) if c]

    def lines(self) -> list[dict[str, Any]]:
        """The JSON objects Ollama sends, in order, with its field order."""
        out: list[dict[str, Any]] = [
            {
                "model": self.model,
                "created_at": _CREATED_AT,
                "message": {"role": "assistant", "content": content},
                "done": False,
            }
            for content in self.contents
        ]
        out.append(
            {
                "model": self.model,
                "created_at": _CREATED_AT,
                "message": {"role": "assistant", "content": self.final_content},
                "done": True,
                "done_reason": self.done_reason,
                "total_duration": self.total_duration,
                "load_duration": self.load_duration,
                "prompt_eval_count": self.prompt_eval_count,
                "prompt_eval_duration": self.prompt_eval_duration,
                "eval_count": self.eval_count,
                "eval_duration": self.eval_duration,
            }
        )
        return out

    def to_ndjson(self) -> bytes:
        """The HTTP body: one JSON object per line, each ending in ``\\n``."""
        return "".join(go_json(line) + "\n" for line in self.lines()).encode("utf-8")


_durations_ns = st.integers(min_value=0, max_value=10**12)


@st.composite
def ollama_chat_streams(draw: st.DrawFn, max_chunks: int = 20) -> ChatStream:
    """A streamed chat answer: unicode contents (some empty) plus final metrics."""
    return ChatStream(
        model=draw(st.sampled_from(["llama3.2", "llama3.2:latest", "qwen3:0.6b", "gemma4"])),
        contents=tuple(draw(st.lists(st.text(max_size=30), max_size=max_chunks))),
        final_content=draw(st.just("") | st.text(min_size=1, max_size=10)),
        done_reason=draw(st.sampled_from(["stop", "length"])),
        prompt_eval_count=draw(st.integers(min_value=0, max_value=200_000)),
        eval_count=draw(st.integers(min_value=0, max_value=200_000)),
        total_duration=draw(_durations_ns),
        load_duration=draw(_durations_ns),
        prompt_eval_duration=draw(_durations_ns),
        eval_duration=draw(_durations_ns),
    )


@dataclass(frozen=True)
class ProgressStream:
    """A streamed pull: ``lines`` are the JSON objects Ollama sends, in order, the
    last being ``{"status": "success"}``. Sizes are bytes."""

    lines: tuple[dict[str, Any], ...]

    def to_ndjson(self) -> bytes:
        """The HTTP body: one JSON object per line, each ending in ``\\n``."""
        return "".join(go_json(line) + "\n" for line in self.lines).encode("utf-8")


_digests = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@st.composite
def _layer(draw: st.DrawFn) -> list[dict[str, Any]]:
    """The lines of one layer download: ``total`` first, then ``completed`` growing
    to ``total`` (absent until the first bytes, as Ollama sends it)."""
    digest = draw(_digests)
    total = draw(st.integers(min_value=1, max_value=50 * 2**30))
    status = f"pulling {digest[7:19]}"
    steps = sorted(draw(st.lists(st.integers(min_value=0, max_value=total), max_size=5)))
    lines: list[dict[str, Any]] = [{"status": status, "digest": digest, "total": total}]
    lines += [
        {"status": status, "digest": digest, "total": total, "completed": done}
        for done in [*steps, total]
    ]
    return lines


@st.composite
def ollama_progress_streams(draw: st.DrawFn, max_layers: int = 3) -> ProgressStream:
    """A pull's progress: the manifest line, 0–``max_layers`` layer downloads,
    status lines with any unicode text, and the final ``success``."""
    lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    for _ in range(draw(st.integers(0, max_layers))):
        lines += draw(_layer())
    extra = draw(
        st.lists(st.text(min_size=1, max_size=20).filter(lambda t: t != "success"), max_size=3)
    )
    lines += [{"status": text} for text in extra]
    lines += [{"status": "verifying sha256 digest"}, {"status": "success"}]
    return ProgressStream(tuple(lines))


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    """``body`` cut at the given byte offsets, without empty pieces."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    return [body[a:b] for a, b in pairwise(bounds) if b > a]


def chunkings(body: bytes, max_cuts: int = 12) -> st.SearchStrategy[list[bytes]]:
    """Ways to deliver ``body`` in pieces; joined, the pieces are ``body`` again."""
    return st.lists(st.integers(min_value=0, max_value=len(body)), max_size=max_cuts).map(
        lambda cuts: split_at(body, cuts)
    )


# --- fault schedules for the runtime's property test ---------------------------------

#: Fake Ollama modes that end on their own (see tests/fake_ollama.py).
QUICK_FAULTS = ("busy", "drop", "midstream", "error_line", "not_found", "bad_request")
#: Modes that end only by a cancel or the request's deadline.
SLOW_FAULTS = ("stall", "hang")
ACTORS = ("router", "health", "provider:b0", "provider:b1", "provider:b2")


@dataclass(frozen=True)
class BackendFaults:
    """One fake backend: ``down`` (nothing listens), else the modes of its next
    POSTs (``script``) and its mode after them."""

    down: bool
    script: tuple[str, ...]
    mode: str

    @property
    def healthy(self) -> bool:
        return not self.down and self.mode == "ok" and set(self.script) <= {"ok"}


@dataclass(frozen=True)
class RequestPlan:
    """One request: streamed or not, its mid-stream policy, and whether the caller
    cancels it after reading ``cancel_after`` events."""

    stream: bool
    mid_stream: str
    cancel_after: int | None


@dataclass(frozen=True)
class FaultSchedule:
    """Backends, requests, actor crashes (``(after request i is submitted, actor)``)
    and whether the runtime is closed while requests are in flight."""

    backends: tuple[BackendFaults, ...]
    requests: tuple[RequestPlan, ...]
    crashes: tuple[tuple[int, str], ...]
    close_early: bool

    def modes(self) -> set[str]:
        return {m for b in self.backends if not b.down for m in (*b.script, b.mode)}


@st.composite
def fault_schedules(draw: st.DrawFn, max_requests: int = 8) -> FaultSchedule:
    """Random faults across 2–3 backends for up to ``max_requests`` requests.

    Slow faults (a stalled stream, a server that never answers) are drawn less
    often: each costs a whole request deadline.
    """
    mode = st.sampled_from(("ok",) * 4 + QUICK_FAULTS + SLOW_FAULTS)
    n_backends = draw(st.integers(2, 3))
    backends = tuple(
        BackendFaults(
            down=draw(st.integers(0, 3)) == 0,
            script=tuple(draw(st.lists(mode, max_size=4))),
            mode=draw(mode),
        )
        for _ in range(n_backends)
    )
    n = draw(st.integers(1, max_requests))
    requests = tuple(
        RequestPlan(
            stream=draw(st.booleans()),
            mid_stream=draw(st.sampled_from(("error", "restart"))),
            cancel_after=draw(st.none() | st.integers(0, 3)),
        )
        for _ in range(n)
    )
    actors = ACTORS[: 2 + n_backends]
    crashes = tuple(
        draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(actors)), max_size=4))
    )
    return FaultSchedule(backends, requests, crashes, close_early=draw(st.booleans()))


@dataclass(frozen=True)
class AnthropicStream:
    """A streamed ``POST /v1/messages`` answer: text deltas in block 0, then (if
    ``tool_input`` is set) a ``tool_use`` block whose input JSON is cut into
    ``input_json_delta`` fragments at ``json_cuts`` (character offsets)."""

    model: str
    texts: tuple[str, ...]
    tool_input: dict[str, Any] | None
    json_cuts: tuple[int, ...]
    input_tokens: int
    output_tokens: int
    stop_reason: str

    TOOL_ID = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    TOOL_NAME = "get_weather"

    def events(self) -> list[dict[str, Any]]:
        """The JSON objects of the SSE events, in order."""
        out: list[dict[str, Any]] = [
            {
                "type": "message_start",
                "message": {
                    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
        ]
        out += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in self.texts
        ]
        out.append({"type": "content_block_stop", "index": 0})
        if self.tool_input is not None:
            block = {"type": "tool_use", "id": self.TOOL_ID, "name": self.TOOL_NAME, "input": {}}
            out.append({"type": "content_block_start", "index": 1, "content_block": block})
            text = json.dumps(self.tool_input, ensure_ascii=False)
            bounds = [0, *sorted({c for c in self.json_cuts if 0 < c < len(text)}), len(text)]
            out += [
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": text[a:b]},
                }
                for a, b in pairwise(bounds)
            ]
            out.append({"type": "content_block_stop", "index": 1})
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": self.output_tokens},
            }
        )
        out.append({"type": "message_stop"})
        return out

    def to_sse(self) -> bytes:
        """The HTTP body: ``event: TYPE`` and ``data: JSON`` lines, a blank line after each."""
        return "".join(
            f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n"
            for e in self.events()
        ).encode("utf-8")


_json_values = st.none() | st.booleans() | st.integers() | st.text(max_size=10)


@st.composite
def anthropic_streams(draw: st.DrawFn, max_deltas: int = 15) -> AnthropicStream:
    """A streamed Anthropic answer: unicode text deltas (some empty), maybe a tool call."""
    tool_input = draw(st.none() | st.dictionaries(st.text(max_size=6), _json_values, max_size=4))
    return AnthropicStream(
        model=draw(st.sampled_from(["claude-3-7-sonnet-20250219", "claude-sonnet-4-5"])),
        texts=tuple(draw(st.lists(st.text(max_size=20), max_size=max_deltas))),
        tool_input=tool_input,
        json_cuts=tuple(draw(st.lists(st.integers(min_value=0, max_value=80), max_size=6))),
        input_tokens=draw(st.integers(min_value=0, max_value=200_000)),
        output_tokens=draw(st.integers(min_value=0, max_value=200_000)),
        stop_reason=draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use"])),
    )


# --- OpenAI-compatible SSE streams (OpenAI /v1/chat/completions, stream=true) --------


@dataclass(frozen=True)
class StreamedToolCall:
    """One tool call as OpenAI streams it: ``arguments`` (a JSON object) serialized,
    then cut into ``fragments`` that arrive one chunk each."""

    id: str
    name: str
    arguments: dict[str, Any]
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class OpenAIStream:
    """A streamed ``/v1/chat/completions`` answer with ``include_usage``.

    ``line_end`` is the SSE line terminator (``"\\n"`` as OpenAI and llama.cpp
    write it, ``"\\r\\n"`` or ``"\\r"``); ``comments`` puts ``: keep-alive`` comment lines
    between events, as some proxies do.
    """

    model: str
    contents: tuple[str, ...]
    tool_calls: tuple[StreamedToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    line_end: str
    comments: bool

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": self.model,
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def chunks(self) -> list[dict[str, Any]]:
        """The chunk objects, in order: role, contents, tool-call fragments, the
        finish reason, then the usage chunk (``choices: []``)."""
        out = [self._chunk({"role": "assistant", "content": ""})]
        out += [self._chunk({"content": text}) for text in self.contents]
        for index, call in enumerate(self.tool_calls):
            head = {"index": index, "id": call.id, "type": "function"}
            out.append(
                self._chunk(
                    {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}
                )
            )
            out += [
                self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in call.fragments
            ]
        out.append(self._chunk({}, self.finish_reason))
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        out.append({**self._chunk({}), "choices": [], "usage": usage})
        return out

    def to_sse(self) -> bytes:
        """The HTTP body: ``data: {json}`` events, each ended by a blank line, then
        ``data: [DONE]``."""
        end = self.line_end
        events = [json.dumps(chunk, ensure_ascii=False) for chunk in self.chunks()] + ["[DONE]"]
        comment = f": keep-alive{end}" if self.comments else ""
        return "".join(f"{comment}data: {data}{end}{end}" for data in events).encode("utf-8")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def streamed_tool_calls(draw: st.DrawFn, number: int) -> StreamedToolCall:
    """A tool call whose JSON arguments are cut at arbitrary character offsets."""
    arguments = draw(st.dictionaries(st.text(max_size=8), _json_values, max_size=4))
    text = json.dumps(arguments)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=6))))
    bounds = [0, *cuts, len(text)]
    fragments = tuple(text[a:b] for a, b in pairwise(bounds) if b > a)
    name = draw(st.sampled_from(["get_weather", "search", "add"]))
    return StreamedToolCall(f"call_{number}", name, arguments, fragments)


@st.composite
def openai_chat_streams(draw: st.DrawFn, max_chunks: int = 20) -> OpenAIStream:
    """A streamed chat answer: unicode contents (some empty), maybe tool calls."""
    n_calls = draw(st.integers(0, 2))
    return OpenAIStream(
        model=draw(st.sampled_from(["gpt-4o-mini", "smollm2-135m-instruct", "qwen3:0.6b"])),
        contents=tuple(draw(st.lists(st.text(max_size=30), max_size=max_chunks))),
        tool_calls=tuple(draw(streamed_tool_calls(i)) for i in range(n_calls)),
        finish_reason="tool_calls" if n_calls else draw(st.sampled_from(["stop", "length"])),
        prompt_tokens=draw(st.integers(min_value=0, max_value=200_000)),
        completion_tokens=draw(st.integers(min_value=0, max_value=200_000)),
        line_end=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        comments=draw(st.booleans()),
    )
