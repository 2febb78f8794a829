"""The base of the fake servers the provider tests run against (FakeOllama,
FakeAnthropic, ScriptedServer): one lifecycle, one set of faults, and protocol
plug-ins that frame a streamed answer as NDJSON (Ollama) or SSE (OpenAI,
Anthropic).

A server binds 127.0.0.1 on a free port, serves each connection in a daemon
thread, stays quiet about clients that hang up (tests do it on purpose), and
``stop()`` (or the ``with`` block) releases whatever a fault holds and shuts it
down. Faults of a streamed answer (:func:`stream`): ``"ok"``; ``"midstream"``,
two items then the connection drops; ``"error"``, two items then the protocol's
error item; ``"stall"``, one item then silence until ``release`` is set.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self

__all__ = [
    "NDJSON",
    "SSE",
    "FaultHandler",
    "FaultServer",
    "RawServer",
    "StreamProtocol",
    "http_chunk",
    "read_request",
    "stream",
]

STREAM_FAULTS = ("ok", "midstream", "error", "stall")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is what these tests do on purpose


class FaultHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive and Nagle off (as Go's net/http and Anthropic's
    front end), no request log, and the writes the faults need."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        """The request body (``Content-Length`` bytes)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_body(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """A whole answer with ``Content-Length`` (nothing for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_chunks(self, status: int, ctype: str, headers: dict[str, str] | None = None) -> None:
        """The headers of a chunked answer."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        """One HTTP chunk, one TCP write; ``b""`` ends the body."""
        self.wfile.write(http_chunk(data))
        self.wfile.flush()

    def drop(self) -> None:
        """Close the connection at once, mid-answer."""
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def hang(self, release: threading.Event) -> bool:
        """Send nothing until ``release`` is set or the client goes away; returns
        ``True`` if the client went away."""
        conn = self.connection
        self.close_connection = True
        while not release.wait(0.01):
            readable, _, _ = select.select([conn], [], [], 0)
            if readable and not conn.recv(1, socket.MSG_PEEK):
                return True
        return False


class _Lifecycle:
    """Start, stop and the ``with`` block of a server serving in ``_thread``.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        port: The port.
        release: Set by :meth:`stop` (and by tests) to end a stall or a hang.
    """

    url: str
    port: int
    release: threading.Event
    _thread: threading.Thread

    def _bound(self, port: int, target: Callable[[], None]) -> None:
        self.release = getattr(self, "release", None) or threading.Event()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=target, daemon=True)

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End stalls and hangs, stop serving and close the socket."""
        self.release.set()
        self._close()
        self._thread.join(5)

    def _close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FaultServer(_Lifecycle):
    """An HTTP fake server; a subclass calls :meth:`_serve` with its handler class
    in ``__init__``."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        """Bind ``port`` (0: a free one; a stopped server's port may be bound
        again, to restart a backend in place) and prepare to serve ``handler``."""
        self._server = _QuietServer(("127.0.0.1", port), handler)
        self._bound(
            self._server.server_address[1],
            lambda: self._server.serve_forever(poll_interval=0.02),
        )

    def _close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RawServer(_Lifecycle):
    """A TCP server for faults below what an HTTP server library lets a handler
    do (a reused connection closed before its answer, an HTTP/1.0 body that ends
    with the connection, a response cut inside a chunk). Connections are served
    one after another in the server's thread.

    Args:
        serve: What to do with each connection (it is closed afterwards; an
            ``OSError`` from a client that went away is ignored).
    """

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)
        self._stopping = threading.Event()
        self._bound(self._listener.getsockname()[1], lambda: self._loop(serve))

    def _loop(self, serve: Callable[[socket.socket], None]) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                serve(conn)

    def _close(self) -> None:
        self._stopping.set()

    def stop(self) -> None:
        super().stop()
        self._listener.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers and a ``Content-Length`` body) from a raw
    connection; returns the head, ``b""`` at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return b""
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(h.split(b":")[1])
            for h in head.split(b"\r\n")
            if h.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class StreamProtocol(Protocol):
    """How a streamed answer is framed."""

    content_type: str

    def frame(self, item: bytes) -> bytes:
        """One item (a JSON document) as it goes on the wire."""
        ...

    def error(self, message: str) -> bytes:
        """The protocol's error item after output has started."""
        ...


class _NDJSON:
    """Ollama's streams: one JSON object a line; an error is ``{"error": ...}``."""

    content_type = "application/x-ndjson"

    def frame(self, item: bytes) -> bytes:
        return item + b"\n"

    def error(self, message: str) -> bytes:
        return json.dumps({"error": message}).encode() + b"\n"


class _SSE:
    """OpenAI's and Anthropic's streams: ``data:`` events; an error is an
    ``error`` event (Anthropic's shape, which OpenAI-compatible servers also send)."""

    content_type = "text/event-stream"

    def frame(self, item: bytes) -> bytes:
        return b"data: " + item + b"\n\n"

    def error(self, message: str) -> bytes:
        body = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


NDJSON: StreamProtocol = _NDJSON()
SSE: StreamProtocol = _SSE()


def stream(
    handler: FaultHandler,
    protocol: StreamProtocol,
    items: Sequence[bytes],
    fault: str,
    release: threading.Event,
    *,
    error: str = "an error was encountered while running the model",
) -> bool:
    """Write ``items`` as a chunked 200 answer, one item a chunk, with ``fault``
    (one of :data:`STREAM_FAULTS`). Returns ``False`` if the client went away."""
    handler.start_chunks(200, protocol.content_type)
    try:
        if fault in ("midstream", "error"):
            for item in items[:2]:
                handler.chunk(protocol.frame(item))
            if fault == "error":
                handler.chunk(protocol.error(error))
                handler.chunk(b"")
            else:
                handler.drop()
            return True
        if fault == "stall":
            handler.chunk(protocol.frame(items[0]))
            return not handler.hang(release)
        for item in items:
            handler.chunk(protocol.frame(item))
        handler.chunk(b"")
        return True
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True
        return False
