"""A fault-injecting server that speaks Ollama's protocol, for what a real server
cannot do on demand: answer 503, drop the connection, break mid-stream, stall.

It serves every endpoint of Ollama's native API (chat, generate, embed, embeddings,
tags, ps, show, version, ``GET /``, pull, push, create, blobs, copy, delete). Its
healthy answers are the transcripts in ``tests/fixtures/ollama/`` (taken from
Ollama's docs and server code), streamed as
chunked NDJSON like Ollama's Go server does. Every request is recorded, its headers and raw
body too. Bound to 127.0.0.1 on a free port; ``stop()`` (or the ``with`` block)
shuts it down.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fault_server import FaultHandler, FaultServer

#: The Ollama protocol transcripts (sources in its README.md), inside the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ollama"

#: Fault modes. "ok": healthy; "busy": every POST answers 503 (the version probe
#: still works, as in Ollama); "drop": every connection is closed without an
#: answer; "midstream": two chunks, then the connection drops; "error_line": two
#: chunks, then an {"error"} line with status 200; "stall": headers, one chunk,
#: then silence; "hang": no answer at all (not even headers) until released or the
#: client goes away; "not_found": POSTs and DELETEs answer 404; "bad_request": POSTs
#: answer 400; "unauthorized": POSTs answer 401, as Ollama does for a cloud model
#: before `ollama signin`; "rate_limited": POSTs answer 429 (with ``retry_after``);
#: "server_error": POSTs answer 500; "reset": the connection is reset (TCP RST)
#: without an answer; "silent": headers, one chunk, then nothing at all (no
#: keep-alive newlines) until the client hangs up or ``release`` is set, so that
#: the client's read timeout fires. Faults apply to POST answers (and "drop" to
#: every request).
MODES = (
    "ok",
    "busy",
    "drop",
    "midstream",
    "error_line",
    "stall",
    "hang",
    "not_found",
    "bad_request",
    "unauthorized",
    "rate_limited",
    "server_error",
    "reset",
    "silent",
)

#: The fault mix of :class:`FakeOllama`'s ``fault_rate``: what an overloaded or
#: flaky Ollama does now and then (503, 500, a reset, an error line mid-stream, a
#: stall past the client's read timeout).
FAULT_MIX = ("busy", "server_error", "reset", "error_line", "silent")


def fixture(name: str) -> bytes:
    """Bytes of one protocol transcript from ``tests/fixtures/ollama``."""
    return (FIXTURES / name).read_bytes()


#: The content type of Ollama's JSON answers (gin's ``c.JSON``), errors included.
JSON_TYPE = "application/json; charset=utf-8"

#: GET path → transcript.
_GET_ANSWERS = {"/api/version": "version.json", "/api/tags": "tags.json", "/api/ps": "ps.json"}
#: POST path → streamed transcript (progress endpoints).
_PROGRESS = {
    "/api/pull": "pull_progress.ndjson",
    "/api/push": "push_progress.ndjson",
    "/api/create": "create_progress.ndjson",
}
#: POST path → one JSON answer.
_JSON_ANSWERS = {
    "/api/embed": "embed.json",
    "/api/embeddings": "embeddings.json",
    "/api/show": "show.json",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeOllama(FaultServer):
    """Args:
    mode: One of :data:`MODES`; may be changed while running.
    script: Modes for the next POSTs, one each, in order; ``mode`` after them.
    fault_rate: Probability (0–1) that a POST which would be answered in mode
        "ok" gets one of ``faults`` instead, drawn independently per request.
    faults: The faults to draw from, uniformly (default :data:`FAULT_MIX`).
    seed: Seed of the fault draws (``None``: unseeded).
    port: Port to listen on (0: a free one); a stopped server's port can be
        given to a new one, as when Ollama restarts.
    """

    def __init__(
        self,
        mode: str = "ok",
        script: tuple[str, ...] = (),
        *,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULT_MIX,
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        self.mode = mode
        self.script: deque[str] = deque(script)
        self.fault_rate = fault_rate
        self.faults = faults
        self.faults_injected: list[str] = []  # each fault drawn by ``fault_rate``, in order
        self._rng = random.Random(seed)
        self._script_lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, body)
        self.raw_bodies: list[bytes] = []  # the bytes of each request's body, in order
        self.headers: list[dict[str, str]] = []  # each request's headers, names in lower case
        self.blobs: set[str] = set()  # digests uploaded to /api/blobs
        self.post_times: list[float] = []  # time.monotonic() of each POST
        self.retry_after: str | None = None  # a Retry-After header on 503 and 429 answers
        self.client_ports: set[int] = set()  # one per TCP connection the client opened
        self.disconnects = 0  # streams the client closed before the end
        self.release = threading.Event()  # ends a "stall"
        self.get_delay = 0.0  # seconds every GET waits before its answer (a slow probe)
        #: Every POST waits for this before its answer (clear it to hold them all).
        self.gate = threading.Event()
        self.gate.set()
        #: The models /api/tags lists (names); ``None``: the transcript's. May be
        #: changed while running (a model pulled or deleted meanwhile).
        self.models: list[str] | None = None
        #: The models /api/ps lists as loaded; ``None``: the transcript's. When a
        #: list, a chat/generate/embed for a model not in it loads it (appended,
        #: its answer's ``load_duration`` 3 s, else 1 ms), as Ollama does.
        self.loaded: list[str] | None = None
        #: Model → POSTs for it the server holds now, and the most it held at once.
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self._active_lock = threading.Lock()
        fake = self

        class Handler(FaultHandler):  # HTTP/1.1, TCP_NODELAY as Go's net/http, quiet
            _body = FaultHandler.read_body

            def _send(
                self,
                status: int,
                body: bytes,
                ctype: str = JSON_TYPE,
                headers: dict[str, str] | None = None,
            ) -> None:
                self._answered()
                self.send_body(status, body, ctype, headers)

            def _answered(self) -> None:
                """A POST's answer is about to be complete: it no longer counts
                as held (before the write, so that a client that starts its next
                request on reading it never sees two held at once)."""
                if getattr(self, "_holding", None) is not None:
                    fake._hold(self._holding, -1)
                    self._holding = None

            _drop = FaultHandler.drop
            _chunk = FaultHandler.chunk

            def do_GET(self) -> None:
                fake._record(self, b"")
                if fake.get_delay:
                    time.sleep(fake.get_delay)
                if fake.mode == "drop":
                    return self._drop()
                if self.path == "/":
                    return self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
                name = _GET_ANSWERS.get(self.path)
                if name is None:
                    return self._send(404, b'{"error":"not found"}')
                if self.path == "/api/tags" and fake.models is not None:
                    return self._send(200, _tags(fake.models))
                if self.path == "/api/ps" and fake.loaded is not None:
                    return self._send(200, _ps(fake.loaded))
                self._send(200, fixture(name))

            def do_HEAD(self) -> None:
                fake._record(self, b"")
                digest = self.path.removeprefix("/api/blobs/")
                found = self.path == "/" or digest in fake.blobs
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self) -> None:
                fake._record(self, self._body())
                mode = fake.next_mode()
                if mode == "drop":
                    return self._drop()
                if mode == "not_found" or self.path != "/api/delete":
                    return self._send(404, fixture("error_model_not_found.json"))
                self._send(200, b"")

            def do_POST(self) -> None:
                raw = self._body()
                fake._record(self, raw)
                model = str(fake.requests[-1][2].get("model", ""))
                fake._hold(model, 1)
                self._holding: str | None = model
                try:
                    self._post(raw, fake.requests[-1][2])
                finally:
                    self._answered()

            def _post(self, raw: bytes, body: dict[str, Any]) -> None:
                fake.gate.wait()
                mode = fake.next_mode()
                if mode == "hang":
                    return self._hang()
                if mode == "drop":
                    return self._drop()
                if mode == "reset":
                    return self._reset()
                headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                if mode == "busy":
                    return self._send(503, fixture("error_server_busy.json"), headers=headers)
                if mode == "rate_limited":
                    return self._send(429, b'{"error":"too many requests"}', headers=headers)
                if mode == "unauthorized":
                    return self._send(401, b'{"error":"unauthorized"}')
                if mode == "not_found":
                    return self._send(404, fixture("error_model_not_found.json"))
                if mode == "server_error":
                    return self._send(500, b'{"error":"llama runner process has terminated"}')
                if mode == "bad_request":
                    return self._send(400, b'{"error":"invalid options: num_ctx"}')
                if self.path.startswith("/api/blobs/"):
                    digest = self.path.removeprefix("/api/blobs/")
                    if digest != "sha256:" + hashlib.sha256(raw).hexdigest():
                        return self._send(400, b'{"error":"digest mismatch"}')
                    created = digest not in fake.blobs
                    fake.blobs.add(digest)
                    return self._send(201 if created else 200, b"")
                if self.path == "/api/copy":
                    source = str(body.get("source", ""))
                    if not {source, f"{source}:latest"} & set(fake.model_names()):
                        # routes.go CopyHandler: fmt.Sprintf("model %q not found", r.Source)
                        missing = {"error": f"model {json.dumps(source)} not found"}
                        return self._send(404, json.dumps(missing).encode())
                    return self._send(200, b"")
                load_ns = fake._load(self.path, body)
                if self.path in _JSON_ANSWERS:
                    answer = json.loads(fixture(_JSON_ANSWERS[self.path]))
                    if load_ns is not None and "load_duration" in answer:
                        answer["load_duration"] = load_ns
                    if "model" in answer:
                        answer["model"] = body.get("model", answer["model"])
                    return self._send(200, json.dumps(answer).encode())
                if self.path == "/api/generate" and not body.get("prompt") and mode == "ok":
                    name = (
                        "generate_unload.json"
                        if body.get("keep_alive") == 0
                        else "generate_load.json"
                    )
                    return self._send(200, fixture(name))
                lines = _answer_lines(self.path, body)
                if load_ns is not None:
                    final = json.loads(lines[-1])
                    lines[-1] = json.dumps({**final, "load_duration": load_ns}).encode()
                if not body.get("stream", True) and mode == "ok":
                    return self._send(200, _non_streamed(self.path, lines))
                self._stream(lines, mode)

            def _hang(self) -> None:
                if self.hang(fake.release):
                    fake.disconnects += 1  # the client closed the connection

            def _reset(self) -> None:
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
                self.close_connection = True

            def _stream(self, lines: list[bytes], mode: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if mode in ("midstream", "error_line"):
                        for line in lines[:2]:
                            self._chunk(line + b"\n")
                        if mode == "error_line":
                            self._chunk(
                                b'{"error":"an error was encountered while running the model"}\n'
                            )
                            self._chunk(b"")
                        else:
                            self._drop()
                        return
                    if mode == "silent":
                        self._chunk(lines[0] + b"\n")
                        return self._hang()
                    if mode == "stall":
                        self._chunk(lines[0] + b"\n")
                        # Ollama notices a closed client on its next write: so do we.
                        while not fake.release.wait(0.02):
                            self._chunk(b"\n")
                        return
                    for line in lines[:-1]:
                        self._chunk(line + b"\n")
                        time.sleep(0.001)
                    self._answered()
                    self._chunk(lines[-1] + b"\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    fake.disconnects += 1
                    self.close_connection = True

        self._serve(Handler, port)  # start, stop and the `with` block: FaultServer

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}  # a blob upload: see raw_bodies
        self.raw_bodies.append(raw)
        self.headers.append({k.lower(): v for k, v in handler.headers.items()})
        self.requests.append((handler.command, handler.path, body))
        if handler.command == "POST":
            self.post_times.append(time.monotonic())
        self.client_ports.add(handler.client_address[1])

    def _hold(self, model: str, n: int) -> None:
        """A POST for ``model`` arrived (``n=1``) or was answered (``n=-1``)."""
        with self._active_lock:
            now = self.active[model] = self.active.get(model, 0) + n
            self.max_active[model] = max(self.max_active.get(model, 0), now)

    def _load(self, path: str, body: dict[str, Any]) -> int | None:
        """For a chat/generate/embed with :attr:`loaded` set: load the model if
        it is not loaded; its ``load_duration``, nanoseconds (``None``: leave
        the transcript's)."""
        if self.loaded is None or path not in ("/api/chat", "/api/generate", "/api/embed"):
            return None
        model = str(body.get("model", ""))
        names = {m.removesuffix(":latest") for m in self.loaded}
        if model.removesuffix(":latest") in names:
            return 1_000_000
        self.loaded.append(model if ":" in model else f"{model}:latest")
        return 3_000_000_000

    def model_names(self) -> list[str]:
        """The models /api/tags lists (``models``, else the transcript's)."""
        return self.models if self.models is not None else _transcript_models()

    def next_mode(self) -> str:
        """The mode for the next POST: the script's next entry, else ``mode``
        (for "ok", with probability ``fault_rate`` one of ``faults``)."""
        with self._script_lock:
            if self.script:
                return self.script.popleft()
            if self.mode == "ok" and self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
                self.faults_injected.append(fault)
                return fault
            return self.mode

    def posts(self) -> list[dict[str, Any]]:
        """Bodies of the POST requests received so far."""
        return [body for method, _, body in self.requests if method == "POST"]


def _transcript_models() -> list[str]:
    return [m["name"] for m in json.loads(fixture("tags.json"))["models"]]


def _tags(names: list[str]) -> bytes:
    """An /api/tags answer listing ``names`` (the transcript's first entry for the rest)."""
    template = json.loads(fixture("tags.json"))["models"][0]
    return json.dumps({"models": [{**template, "name": n, "model": n} for n in names]}).encode()


def _ps(names: list[str]) -> bytes:
    """An /api/ps answer listing ``names`` (the transcript's entry for the rest)."""
    template = json.loads(fixture("ps.json"))["models"][0]
    return json.dumps({"models": [{**template, "name": n, "model": n} for n in names]}).encode()


def _answer_lines(path: str, body: dict[str, Any]) -> list[bytes]:
    """The fixture transcript for the endpoint, with the requested model's name."""
    if path in _PROGRESS:
        return [line for line in fixture(_PROGRESS[path]).splitlines() if line.strip()]
    name = "chat_stream.ndjson" if path == "/api/chat" else "generate_stream.ndjson"
    lines = []
    for raw in fixture(name).splitlines():
        if raw.strip():
            obj = json.loads(raw)
            obj["model"] = body.get("model", obj["model"])
            lines.append(json.dumps(obj).encode())
    return lines


def _non_streamed(path: str, lines: list[bytes]) -> bytes:
    """What Ollama sends for ``stream: false``: the final line, with the whole text
    (for a transfer, the final status)."""
    objs = [json.loads(line) for line in lines]
    final = objs[-1]
    if path in _PROGRESS:
        return json.dumps(final).encode()
    if "message" in final:
        final["message"]["content"] = "".join(o["message"]["content"] for o in objs)
    else:
        final["response"] = "".join(o["response"] for o in objs)
    return json.dumps(final).encode()
