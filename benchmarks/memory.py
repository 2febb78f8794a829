"""Memory kept after requests end: RubberDuck beside a direct client, one run.

Both stream ``N`` chat answers of ``CHUNKS`` chunks each from the same canned
Ollama-protocol server on loopback, read them to the end and drop them. What
is still allocated afterwards (``tracemalloc``, after ``gc.collect()``) is what
each keeps of requests that are over: the direct client its connection pool,
RubberDuck its actors and pools — and, before the request core kept nothing
of a finished request, up to 1,024 finished handles with every event.

The official ``ollama`` client and LiteLLM's Router (extra ``bench``) are measured
the same way when installed.

Run: ``python benchmarks/memory.py [N] [CHUNKS] [--smoke]``. Prints KiB kept, bytes
per request, and the ratio to the direct client.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import tracemalloc
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import litellm_router, official_ollama, smoke
from rubberduck import Runtime

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def canned_server(chunks: int) -> ThreadingHTTPServer:
    """An Ollama-protocol server that streams ``chunks`` chat chunks, then Done."""
    # Distinct chunks: LiteLLM stops a stream that repeats one chunk too often.
    body = b"".join(
        json.dumps(
            {
                "model": "llama3.2",
                "message": {"role": "assistant", "content": f"w{i} "},
                "done": False,
            }
        ).encode()
        + b"\n"
        for i in range(chunks)
    )
    final = {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 10, "eval_count": chunks}  # fmt: skip
    body += json.dumps(final).encode() + b"\n"
    tags = json.dumps({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, payload: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == "/api/tags":
                self._send(tags.encode(), "application/json")
            else:
                self._send(b'{"version":"0.12.6"}', "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(body, "application/x-ndjson")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def kept_bytes(run_one: Callable[[], object], n: int) -> int:
    """Bytes still allocated after ``n`` calls of ``run_one`` (results dropped)."""
    run_one()  # warm up: connections, pools, caches
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        run_one()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def main(n: int = 300, chunks: int = 200) -> None:
    server = canned_server(chunks)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    tracemalloc.start()
    session = requests.Session()
    session.trust_env = False
    payload = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES, "stream": True})

    def direct() -> object:
        with session.post(url + "/api/chat", data=payload, stream=True) as response:
            return [msgspec.json.decode(line) for line in response.iter_lines() if line]

    rows = [("requests + msgspec (direct)", kept_bytes(direct, n))]
    module = official_ollama()
    if module is not None:
        client = module.Client(host=url)
        official = lambda: list(client.chat("llama3.2", MESSAGES, stream=True))  # noqa: E731
        rows.append(("official ollama client", kept_bytes(official, n)))
    router = litellm_router([url])
    if router is not None:
        litellm = lambda: list(router.completion("llama3.2", MESSAGES, stream=True))  # noqa: E731
        rows.append(("LiteLLM Router", kept_bytes(litellm, n)))
    config = {"provider": {"ollama": {"base_url": url, "model": "llama3.2"}}}
    with Runtime.from_config(config) as rt:
        rows.append(
            (
                "rubberduck stream_chat",
                kept_bytes(lambda: list(rt.stream_chat(messages=MESSAGES, timeout=600)), n),
            )
        )
    tracemalloc.stop()
    server.shutdown()
    print(f"memory kept after {n} streamed answers of {chunks} chunks (tracemalloc)")
    print(f"{'client':<30} {'KiB kept':>9} {'B/request':>10}")
    for name, kept in rows:
        print(f"{name:<30} {kept / 1024:>9.1f} {kept / n:>10.0f}")
    direct_kept, mine = rows[0][1], rows[-1][1]
    print(f"rubberduck keeps {(mine - direct_kept) / n:+.0f} B per finished request over direct")


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(*([5, 20] if tiny else [int(a) for a in rest[:2]]))
