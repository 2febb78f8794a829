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

import json
import select
import socket
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self

__all__ = [
    "NDJSON",
    "SSE",
    "FaultHandler",
    "FaultServer",
    "StreamProtocol",
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
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
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


class FaultServer:
    """Lifecycle of a fake server; a subclass calls :meth:`_serve` with its
    handler class in ``__init__``.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        port: The port.
        release: Set by :meth:`stop` (and by tests) to end a stall or a hang.
    """

    url: str
    port: int

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.release = getattr(self, "release", None) or threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End stalls and hangs, stop serving and close the socket."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
