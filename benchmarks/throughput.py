"""Throughput at 1, 8, 32 and 128 concurrent callers, RubberDuck beside its peers.

A closed loop of ``C`` caller threads (``rubberduck.bench.run_load``) streams
chats from one fake Ollama in a child process (``tests/fake_ollama.py``: four
chunks, 1 ms apart, so its threads and CPU are not this process's), through:
a plain ``requests`` client, the official ``ollama`` client, LiteLLM's Router
(one ``ollama_chat/`` deployment; extra ``bench``) and ``Runtime.stream_chat``
(``max_in_flight`` = 128, so that RubberDuck's admission limit does not cap
what the others are not capped at). Reported per client and concurrency:
completed requests/s, median and p99 E2EL (ms), failures, and the ratio of
requests/s to the plain client's. The server is the same for all, so the ratio
is what each client's own work costs at that concurrency.

Run: ``python benchmarks/throughput.py [requests_per_caller] [--smoke]``
(default 20 requests per caller, at least 100 per step; ``--smoke``: 2, and
concurrencies 1 and 8 only).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import (
    litellm_router,
    litellm_sender,
    official_ollama,
    ollama_sender,
    requests_sender,
    smoke,
    table,
)
from benchmarks.async_runtime import Upstream
from rubberduck import Runtime
from rubberduck.bench import LoadSpec, run_load, summarize, synthetic
from rubberduck.bench.clients import runtime_sender


def main(argv: list[str]) -> None:
    tiny, rest = smoke(argv)
    per_caller = 2 if tiny else int(rest[0]) if rest else 20
    steps = (1, 8) if tiny else (1, 8, 32, 128)
    upstream = Upstream("ok")
    config = {
        "provider": {
            "ollama": {"base_url": upstream.url, "model": "llama3.2", "max_in_flight": 128}
        }
    }
    try:
        with Runtime.from_config(config) as rt:
            senders = {"requests (direct)": requests_sender(upstream.url)}
            module = official_ollama()
            if module is not None:
                senders["official ollama client"] = ollama_sender(module, upstream.url)
            router = litellm_router([upstream.url])
            if router is not None:
                senders["LiteLLM Router"] = litellm_sender(router)
            senders["rubberduck stream_chat"] = runtime_sender(rt, "chat", "llama3.2")
            rows = []
            for concurrency in steps:
                requests = max(per_caller * concurrency, 10 if tiny else 100)
                spec = LoadSpec(concurrency=concurrency, requests=requests, warmup=1)
                base = None
                for name, send in senders.items():
                    run = run_load(send, synthetic(16, None), spec)
                    s = summarize(run.records, run.duration_s, per_backend=False)
                    base = base or s["request_throughput"]
                    rows.append(
                        (
                            name,
                            concurrency,
                            s["request_throughput"],
                            s["median_e2el_ms"],
                            s["p99_e2el_ms"],
                            s["failed"],
                            s["request_throughput"] / base,
                        )
                    )
    finally:
        upstream.stop()
    print("streamed /api/chat, closed loop, fake Ollama in a child process, loopback")
    header = ("client", "callers", "req/s", "median E2EL ms", "p99 E2EL ms", "failed", "× direct")
    print(table(rows, header))


if __name__ == "__main__":
    main(sys.argv[1:])
