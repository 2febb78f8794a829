"""A local HTTP server that answers each request as a test scripts it, and
records what it received: for faults no real server gives on demand (a redirect
to another host, a proxy's HTML 502, a body cut short, a TLS mismatch).

``ScriptedServer.answer(method, path)`` returns :class:`Reply`; the default answers
404. Set ``server.replies[(method, path)]`` or ``server.default``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Reply", "ScriptedServer"]


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers, body (bytes, sent with Content-Length)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it (header names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Serves :class:`Reply` values on 127.0.0.1 (a free port) in a thread.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        replies: ``(method, path)`` → a reply, or a callable taking the request.
        default: The reply for anything else.
        received: Every request, in order.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], Reply | Callable[[Received], Reply]] = {}
        self.default: Reply = Reply(404, b'{"error": "not scripted"}')
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(size) if size else b"",
                )
                server.received.append(got)
                reply = server.replies.get((self.command, self.path.split("?")[0]), server.default)
                if callable(reply):
                    reply = reply(got)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_HEAD = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
