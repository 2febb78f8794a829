"""A fake Anthropic API that replays the documented transcripts in
``tests/fixtures/anthropic/`` over real HTTP/1.1: chunked bodies, keep-alive, SSE as
``text/event-stream``. Routes: ``POST /v1/messages``, ``POST
/v1/messages/count_tokens`` (which, like the real one, answers 400 to a body
without ``model``/``messages`` or with fields it does not take) and ``GET
/v1/models``; a request without the right ``x-api-key`` gets the documented 401.

Each reply is written as a list of pieces, one HTTP chunk (one TCP write, Nagle off)
each, so a test decides exactly where the bytes are cut. A reply can end cleanly,
drop the connection, or stall until the test ends. Bound to 127.0.0.1 on a free
port; ``stop()`` (or the ``with`` block) shuts it down.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
SSE = "text/event-stream"
JSON = "application/json"


def fixture(name: str) -> bytes:
    """Bytes of one transcript from ``tests/fixtures/anthropic``."""
    return (FIXTURES / name).read_bytes()


def sse_events(body: bytes) -> list[bytes]:
    """The events of an SSE body, each with its trailing blank line."""
    return [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]


@dataclass
class Reply:
    """What the server answers.

    Attributes:
        pieces: Body bytes, each piece written as its own HTTP chunk.
        status: HTTP status.
        content_type: ``Content-Type`` header.
        headers: More headers (``retry-after``, ...).
        end: ``"clean"`` (the closing chunk), ``"drop"`` (shut the socket down
            mid-body) or ``"stall"`` (send nothing more until the server stops).
        hold_headers: Send nothing at all, not even the status line, until the
            test sets ``release`` (at most 5 s), as a server that is slow to start.
    """

    pieces: list[bytes]
    status: int = 200
    content_type: str = SSE
    headers: dict[str, str] = field(default_factory=dict)
    end: str = "clean"
    hold_headers: bool = False


#: Top-level fields ``POST /v1/messages/count_tokens`` accepts
#: (https://docs.anthropic.com/en/api/messages-count-tokens); it answers any other,
#: ``max_tokens`` and ``stream`` included, with 400 "<field>: Extra inputs are not
#: permitted".
COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)


def invalid_request(message: str) -> Reply:
    """Anthropic's 400 ``invalid_request_error`` with ``message``."""
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return Reply([json.dumps(error).encode()], status=400, content_type=JSON)


def _count_problem(body: bytes) -> str | None:
    """What the real count_tokens endpoint would reject in ``body``, if anything."""
    try:
        fields = json.loads(body)
    except ValueError:
        return "There was an issue with your request body: invalid JSON"
    if not isinstance(fields, dict):
        return "Input should be an object"
    for name in ("model", "messages"):
        if name not in fields:
            return f"{name}: Field required"
    extra = sorted(set(fields) - COUNT_TOKENS_FIELDS)
    return f"{extra[0]}: Extra inputs are not permitted" if extra else None


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeAnthropic:
    """Args:
    api_key: The key requests must carry in ``x-api-key``; others get the
        documented 401.
    """

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.replies: dict[str, list[Reply]] = {
            "POST /v1/messages": [Reply([fixture("stream_text.sse")])],
            "GET /v1/models": [Reply([fixture("models.json")], content_type=JSON)],
            "POST /v1/messages/count_tokens": [
                Reply([fixture("count_tokens.json")], content_type=JSON)
            ],
        }
        self.requests: list[Received] = []
        self.client_ports: set[int] = set()  # one per TCP connection the client opened
        self.release = threading.Event()  # ends a "stall"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.partition("?")[0]
                fake.requests.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                fake.client_ports.add(self.client_address[1])
                if self.headers.get("x-api-key") != fake.api_key:
                    reply = Reply([fixture("error_401.json")], status=401, content_type=JSON)
                elif path == "/v1/messages/count_tokens" and (problem := _count_problem(body)):
                    reply = invalid_request(problem)
                else:
                    reply = fake._next_reply(f"{self.command} {path}")
                if reply.hold_headers:
                    fake.release.wait(5)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for piece in reply.pieces:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    if reply.end == "drop":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                    elif reply.end == "stall":
                        fake.release.wait(5)
                        self.close_connection = True
                    else:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                except OSError:  # the client went away (a cancel)
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def reply(self, route: str, *replies: Reply) -> None:
        """Answer ``route`` (``"POST /v1/messages"``) with ``replies`` in turn; the
        last one answers every request after it."""
        self.replies[route] = list(replies)

    def _next_reply(self, route: str) -> Reply:
        queue = self.replies.get(route)
        if not queue:
            return Reply([fixture("error_404.json")], status=404, content_type=JSON)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
