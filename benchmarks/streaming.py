"""Per-chunk cost and time to first chunk of a streamed ``/api/chat``, side by side
in one run.

A loopback server answers every request with the same long NDJSON stream
(``CHUNKS`` lines shaped like Ollama's, written at once), so the time per chunk is
the client's own cost of reading, decoding and handing over one chunk:

- requests ``iter_lines`` + ``msgspec`` decode (the floor for a requests client);
- the official ``ollama`` client, ``stream=True`` (extra ``bench``), if installed;
- LiteLLM's Router, one ``ollama_chat/`` deployment (extra ``bench``), if it imports;
- ``Runtime.stream_chat``: provider → the request's queue → the caller's thread.

TTFT is from the call to the first chunk with text: the client's cost of sending
the request and handing over the first chunk (the server answers at once).

Run: ``python benchmarks/streaming.py [requests] [--smoke]``. Prints µs per chunk,
the difference to the direct client, and the median TTFT in ms.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import litellm_router, official_ollama, smoke, table
from rubberduck import Delta, Runtime

CHUNKS = 2000
MESSAGES = [{"role": "user", "content": "Tell me a long story."}]


def ndjson_body() -> bytes:
    base = {"model": "llama3.2", "created_at": "2025-10-26T17:15:24.097767Z"}
    lines = [
        json.dumps({**base, "message": {"role": "assistant", "content": f" w{i}"}, "done": False})
        for i in range(CHUNKS)
    ]
    final = {
        **base,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1,
        "prompt_eval_count": 1,
        "eval_count": CHUNKS,
    }
    return ("\n".join([*lines, json.dumps(final)]) + "\n").encode()


class StreamServer:
    """Answers every POST with :func:`ndjson_body`, chunked, in one write."""

    def __init__(self) -> None:
        body = ndjson_body()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                payload = (
                    b'{"version":"0.12.6"}'
                    if self.path == "/api/version"
                    else b'{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"}]}'
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(chunked)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measured(chunks: Callable[[], Iterable[object]], n: int) -> tuple[float, float]:
    """Median µs per chunk and median ms to the first chunk over ``n`` streamed
    requests (after a warm-up); ``chunks`` yields each text chunk of one answer."""
    for _ in range(3):
        assert sum(1 for _ in chunks()) == CHUNKS
    per_chunk, ttft = [], []
    for _ in range(n):
        started = time.perf_counter()
        count, first = 0, 0.0
        for _ in chunks():
            if not count:
                first = time.perf_counter() - started
            count += 1
        per_chunk.append((time.perf_counter() - started) / count)
        ttft.append(first)
    return statistics.median(per_chunk) * 1e6, statistics.median(ttft) * 1e3


class _Chunk(msgspec.Struct):
    message: dict[str, Any] | None = None
    done: bool = False


def main(n: int = 30) -> None:
    server = StreamServer()
    try:
        session = requests.Session()
        session.trust_env = False
        body = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES})
        decoder = msgspec.json.Decoder(_Chunk)

        def direct() -> Iterator[object]:
            with session.post(server.url + "/api/chat", data=body, stream=True) as resp:
                for line in resp.iter_lines():
                    if line and not (chunk := decoder.decode(line)).done:
                        yield chunk

        rows = [("requests + msgspec (direct)", *measured(direct, n))]
        module = official_ollama()
        if module is not None:
            client = module.Client(host=server.url)

            def official() -> Iterator[object]:
                stream = client.chat(model="llama3.2", messages=MESSAGES, stream=True)
                return (part for part in stream if not part.done)

            rows.append(("official ollama client", *measured(official, n)))
        router = litellm_router([server.url])
        if router is not None:

            def litellm() -> Iterator[object]:
                stream = router.completion(model="llama3.2", messages=MESSAGES, stream=True)
                return (c for c in stream if c.choices and c.choices[0].delta.content)

            rows.append(("LiteLLM Router", *measured(litellm, n)))
        config = {"provider": {"ollama": {"base_url": server.url, "model": "llama3.2"}}}
        with Runtime.from_config(config) as rt:

            def ours() -> Iterator[object]:
                stream = rt.stream_chat("llama3.2", MESSAGES)
                return (event for event in stream if type(event) is Delta)

            rows.append(("rubberduck Runtime.stream_chat", *measured(ours, n)))
    finally:
        server.stop()

    floor = rows[0][1]
    print(f"streamed /api/chat, {CHUNKS} chunks per answer, median of {n} answers, loopback")
    header = ("client", "µs/chunk", "vs direct", "TTFT ms")
    print(table([(label, us, us - floor, ttft) for label, us, ttft in rows], header))


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(3 if tiny else int(rest[0]) if rest else 30)
