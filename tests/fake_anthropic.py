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
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.fault_server import FaultHandler, FaultServer

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


class FakeAnthropic(FaultServer):
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

        class Handler(FaultHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.read_body()
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
                self.start_chunks(reply.status, reply.content_type, reply.headers)
                try:
                    for piece in reply.pieces:
                        self.chunk(piece)
                    if reply.end == "drop":
                        self.drop()
                    elif reply.end == "stall":
                        fake.release.wait(5)
                        self.close_connection = True
                    else:
                        self.chunk(b"")
                except OSError:  # the client went away (a cancel)
                    self.close_connection = True

        self._serve(Handler)

    def reply(self, route: str, *replies: Reply) -> None:
        """Answer ``route`` (``"POST /v1/messages"``) with ``replies`` in turn; the
        last one answers every request after it."""
        self.replies[route] = list(replies)

    def _next_reply(self, route: str) -> Reply:
        queue = self.replies.get(route)
        if not queue:
            return Reply([fixture("error_404.json")], status=404, content_type=JSON)
        return queue.pop(0) if len(queue) > 1 else queue[0]
