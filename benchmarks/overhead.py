"""Per-request overhead of a non-streamed ``/api/chat``, side by side in one run.

Every client talks to the same Ollama-protocol server on loopback
(``tests/fake_ollama.py``, replaying Ollama's documented answer), so the
differences are the clients' own costs:

- ``requests.Session`` (``trust_env = False``) + ``msgspec`` decode: the floor for
  a requests-based client;
- the official ``ollama`` client (extra ``bench``), if installed;
- LiteLLM's Router, one ``ollama_chat/`` deployment (extra ``bench``), if it imports;
- ``Runtime.chat`` through the whole actor path (Router → ProviderActor → worker →
  reply queue).

Run: ``python benchmarks/overhead.py [N] [--smoke]``. Prints medians in ms and ratios.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import litellm_router, official_ollama, smoke
from rubberduck import Runtime
from tests.fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def median_ms(call: Callable[[], object], n: int) -> float:
    for _ in range(max(10, n // 10)):  # warm up connections and caches
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def main(n: int = 2000) -> None:
    with FakeOllama() as server:
        session = requests.Session()
        session.trust_env = False
        body = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES, "stream": False})
        url = server.url + "/api/chat"

        def direct() -> object:
            return msgspec.json.decode(session.post(url, data=body).content)

        rows = [("requests + msgspec (direct)", median_ms(direct, n))]
        module = official_ollama()
        if module is not None:
            client = module.Client(host=server.url)
            rows.append(
                ("official ollama client", median_ms(lambda: client.chat("llama3.2", MESSAGES), n))
            )
        router = litellm_router([server.url])
        if router is not None:
            call = lambda: router.completion(model="llama3.2", messages=MESSAGES)  # noqa: E731
            rows.append(("LiteLLM Router", median_ms(call, n)))
        config = {"provider": {"ollama": {"base_url": server.url, "model": "llama3.2"}}}
        with Runtime.from_config(config) as rt:
            rows.append(
                ("rubberduck Runtime.chat", median_ms(lambda: rt.chat(messages=MESSAGES), n))
            )
    base = rows[0][1]
    print(f"non-streamed /api/chat, median of {n} calls, loopback")
    print(f"{'client':<30} {'ms':>8} {'× direct':>9}")
    for name, ms in rows:
        print(f"{name:<30} {ms:>8.3f} {ms / base:>9.2f}")
    mine = rows[-1][1]
    print(f"rubberduck overhead over direct: {(mine - base) * 1e3:+.0f} µs per request")


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(5 if tiny else int(rest[0]) if rest else 2000)
