"""A local HTTP server that answers each request as a test scripts it, and
records what it received: for faults no real server gives on demand (a redirect
to another host, a proxy's HTML 502, a body cut short, a TLS mismatch, a stream
that breaks in a given protocol). Built on :class:`tests.fault_server.FaultServer`.

Set ``server.replies[(method, path)]`` or ``server.default`` (which answers 404
until set) to a :class:`Reply`, a :class:`Stream`, or a callable taking the
:class:`Received` request.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.fault_server import FaultHandler, FaultServer, StreamProtocol, stream

__all__ = ["Chunked", "Received", "Reply", "ScriptedServer", "Stream", "data_reply", "json_reply"]


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers, body (bytes, sent with Content-Length)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    ctype = {"Content-Type": "application/json"}
    return Reply(status, json.dumps(body).encode(), {**(headers or {}), **ctype})


def data_reply(
    body: str | bytes,
    status: int = 200,
    content_type: str = "text/plain",
    headers: dict[str, str] | None = None,
) -> Reply:
    """An answer with ``body`` as given."""
    raw = body.encode() if isinstance(body, str) else body
    return Reply(status, raw, {**(headers or {}), "Content-Type": content_type})


@dataclass(frozen=True)
class Chunked:
    """A chunked answer written as the given pieces, one HTTP chunk (one TCP
    write) each, so a test decides where the bytes are cut; ``pieces`` may be a
    function returning a fresh iterator per request (a body that waits between
    pieces)."""

    pieces: tuple[bytes, ...] | Callable[[], Iterable[bytes]]
    content_type: str = "application/x-ndjson"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """A streamed 200 answer: ``items`` framed by ``protocol`` (NDJSON or SSE),
    with a fault (see :func:`tests.fault_server.stream`)."""

    protocol: StreamProtocol
    items: tuple[bytes, ...]
    fault: str = "ok"
    error: str = "an error was encountered while running the model"


@dataclass(frozen=True)
class Received:
    """One request as the server saw it (header names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Reply | Chunked | Stream | Callable[[Received], Reply | Chunked | Stream]


class ScriptedServer(FaultServer):
    """Serves scripted answers on 127.0.0.1 (a free port) in a thread.

    Attributes:
        replies: ``(method, path)`` → an answer; method ``"*"`` matches any.
        default: The answer for anything else.
        received: Every request, in order.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], Answer] = {}
        self.default: Answer = Reply(404, b'{"error": "not scripted"}')
        self.received: list[Received] = []
        self._once: dict[tuple[str, str], deque[Answer]] = {}
        server = self

        class Handler(FaultHandler):
            def _answer(self) -> None:
                got = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.read_body(),
                )
                server.received.append(got)
                path = self.path.split("?")[0]
                once = server._once.get((self.command, path)) or server._once.get(("*", path))
                reply = (
                    once.popleft()
                    if once
                    else server.replies.get(
                        (self.command, path), server.replies.get(("*", path), server.default)
                    )
                )
                if callable(reply):
                    reply = reply(got)
                if isinstance(reply, Stream):
                    stream(
                        self, reply.protocol, reply.items, reply.fault, server.release,
                        error=reply.error,
                    )  # fmt: skip
                    return
                if isinstance(reply, Chunked):
                    self.start_chunks(reply.status, reply.content_type, reply.headers)
                    pieces = reply.pieces() if callable(reply.pieces) else reply.pieces
                    try:
                        for piece in pieces:
                            if piece:
                                self.chunk(piece)
                        self.chunk(b"")
                    except OSError:  # the client went away (a cancel)
                        self.close_connection = True
                    return
                ctype = reply.headers.get("Content-Type", "application/octet-stream")
                headers = {k: v for k, v in reply.headers.items() if k != "Content-Type"}
                self.send_body(reply.status, reply.body, ctype, headers)

            do_GET = do_POST = do_HEAD = do_DELETE = _answer

        self._serve(Handler)

    def on(self, path: str, answer: Answer, method: str = "*") -> None:
        """Answer requests for ``path`` (any method unless given) with ``answer``."""
        self.replies[(method, path)] = answer

    def once(self, path: str, answer: Answer, method: str = "*") -> None:
        """Answer the next request for ``path`` with ``answer``, before what
        :meth:`on` set; several answers queue in order."""
        self._once.setdefault((method, path), deque()).append(answer)
