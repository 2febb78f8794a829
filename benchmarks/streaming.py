"""Per-chunk cost of a streamed ``/api/chat``, side by side in one run.

A loopback server answers every request with the same long NDJSON stream
(``CHUNKS`` lines shaped like Ollama's, written at once), so the time per chunk is
the client's own cost of reading, decoding and handing over one chunk:

- requests ``iter_lines`` + ``msgspec`` decode (the floor for a requests client);
- the official ``ollama`` client, ``stream=True`` (extra ``bench``), if installed;
- ``Runtime.stream_chat``: provider → the request's queue → the caller's thread.

Run: ``python benchmarks/streaming.py [requests]``. Prints µs per chunk and the
difference to the direct client.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def per_chunk_us(stream_once: Callable[[], int], n: int) -> float:
    """Median µs per chunk over ``n`` streamed requests (after a warm-up)."""
    for _ in range(3):
        assert stream_once() == CHUNKS
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        chunks = stream_once()
        samples.append((time.perf_counter() - started) / chunks)
    return statistics.median(samples) * 1e6


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

        def direct() -> int:
            count = 0
            with session.post(server.url + "/api/chat", data=body, stream=True) as resp:
                for line in resp.iter_lines():
                    if line and not decoder.decode(line).done:
                        count += 1
            return count

        rows = [("requests + msgspec (direct)", per_chunk_us(direct, n))]
        try:
            import ollama

            client = ollama.Client(host=server.url)

            def official() -> int:
                stream = client.chat(model="llama3.2", messages=MESSAGES, stream=True)
                return sum(1 for part in stream if not part.done)

            rows.append(("official ollama client", per_chunk_us(official, n)))
        except ImportError:
            print("(official ollama client not installed: pip install -e '.[bench]')")

        config = {"provider": {"ollama": {"base_url": server.url, "model": "llama3.2"}}}
        with Runtime.from_config(config) as rt:

            def ours() -> int:
                stream = rt.stream_chat("llama3.2", MESSAGES)
                return sum(1 for event in stream if type(event) is Delta)

            rows.append(("rubberduck Runtime.stream_chat", per_chunk_us(ours, n)))
    finally:
        server.stop()

    floor = rows[0][1]
    print(f"streamed /api/chat, {CHUNKS} chunks per answer, median of {n} answers, loopback")
    print(f"{'client':<34}{'µs/chunk':>10}{'vs direct':>11}")
    for label, us in rows:
        print(f"{label:<34}{us:10.2f}{us - floor:+10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
