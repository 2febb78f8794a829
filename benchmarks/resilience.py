"""Failover and faults, RubberDuck beside its peers, in one run.

1. **Failover under load**: 8 callers stream chats back to back from two fake
   Ollamas (``tests/fake_ollama.py``), "primary" first. After a third of the
   requests, primary is killed (its open streams reset, its port closed). Each
   client gets fresh servers and the same load: a plain ``requests`` client and
   the official ``ollama`` client, each with hand-written failover (on any error,
   the same request to the next server), LiteLLM's Router (both servers as
   deployments of one model, ``num_retries=2``; extra ``bench``) and a Runtime
   with both backends (default settings).
2. **Soak with faults**: three fake Ollamas each fail 10 % of requests with the
   fault mix of ``FakeOllama(fault_rate=...)`` (503, 500, TCP reset, an error line
   mid-stream, a stall past the 1 s read timeout); 16 callers; the same clients
   with a 1 s read timeout (RubberDuck with ``mid_stream="restart"``).

Reported: requests that ended with the whole answer, failures, median and p99
E2EL (ms), the slowest request (s). Run: ``python benchmarks/resilience.py
[requests] [--smoke]`` (default 400; ``--smoke``: 24).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import threading
from collections.abc import Callable
from typing import Any

from benchmarks._peers import (
    litellm_router,
    litellm_sender,
    official_ollama,
    ollama_sender,
    requests_sender,
    smoke,
    table,
    try_in_turn,
)
from rubberduck import Runtime
from rubberduck.bench import LoadSpec, RequestRecord, run_load, summarize, synthetic
from rubberduck.bench.clients import Sender, runtime_sender
from tests.fake_ollama import FakeOllama

CHUNKS = 3  # "The", " sky", " is blue." in tests/fixtures/ollama/chat_stream.ndjson
#: Makes a sender for a list of server URLs, with a read timeout (seconds).
Client = Callable[[list[str], float], Sender | None]


def _rubberduck(rt_box: list[Runtime]) -> Client:
    def make(urls: list[str], timeout: float) -> Sender:
        config: dict[str, Any] = {
            "provider": {
                f"s{i}": {
                    "kind": "ollama",
                    "base_url": u,
                    "model": "llama3.2",
                    "timeout": timeout,
                    "max_in_flight": 16,
                }
                for i, u in enumerate(urls)
            },
            "router": {"mid_stream": "restart"},
        }
        rt = Runtime.from_config(config)
        rt_box.append(rt)
        return runtime_sender(rt, "chat", "llama3.2")

    return make


def clients(rt_box: list[Runtime]) -> dict[str, Client]:
    out: dict[str, Client] = {
        "requests + failover": lambda urls, t: try_in_turn([requests_sender(u, t) for u in urls])
    }
    module = official_ollama()
    if module is not None:
        out["ollama client + failover"] = lambda urls, t: try_in_turn(
            [ollama_sender(module, u, t) for u in urls]
        )

    def litellm(urls: list[str], t: float) -> Sender | None:
        router = litellm_router(urls, num_retries=2, timeout=t)
        return None if router is None else litellm_sender(router)

    out["LiteLLM Router"] = litellm
    out["rubberduck Runtime"] = _rubberduck(rt_box)
    return out


def whole(record: RequestRecord) -> bool:
    return record.ok and len(record.chunk_times) == CHUNKS


def row(name: str, records: list[RequestRecord], duration_s: float) -> tuple[Any, ...]:
    s = summarize([r for r in records if whole(r)], duration_s, per_backend=False)
    slowest = max((r.e2el_s for r in records), default=0.0)
    return (name, s["completed"], len(records) - s["completed"], s["median_e2el_ms"],
            s["p99_e2el_ms"], slowest)  # fmt: skip


def failover(make: Client, requests: int) -> tuple[list[RequestRecord], float] | None:
    with FakeOllama() as primary, FakeOllama() as backup:
        send = make([primary.url, backup.url], 10.0)
        if send is None:
            return None
        done = 0
        lock = threading.Lock()

        def count(_: RequestRecord) -> None:
            nonlocal done
            with lock:
                done += 1
                kill = done == requests // 3
            if kill:
                primary.mode = "reset"
                threading.Thread(target=primary.stop, daemon=True).start()

        run = run_load(send, synthetic(8, None), LoadSpec(concurrency=8, requests=requests), count)
        return run.records, run.duration_s


def soak(make: Client, requests: int) -> tuple[list[RequestRecord], float] | None:
    servers = [FakeOllama(fault_rate=0.1, seed=i).start() for i in range(3)]
    try:
        send = make([s.url for s in servers], 1.0)
        if send is None:
            return None
        run = run_load(send, synthetic(8, None), LoadSpec(concurrency=16, requests=requests))
        return run.records, run.duration_s
    finally:
        for s in servers:
            s.stop()


def main(argv: list[str]) -> None:
    tiny, rest = smoke(argv)
    requests = 24 if tiny else int(rest[0]) if rest else 400
    rt_box: list[Runtime] = []
    header = ("client", "whole answers", "failed", "median E2EL ms", "p99 E2EL ms", "slowest s")
    try:
        for title, scenario in (
            ("failover: primary killed after a third of the requests, 8 callers", failover),
            ("soak: three servers, 10 % faults each, 1 s read timeout, 16 callers", soak),
        ):
            rows = []
            for name, make in clients(rt_box).items():
                result = scenario(make, requests)
                if result is not None:
                    rows.append(row(name, *result))
                while rt_box:
                    rt_box.pop().close()
            print(f"{title}, {requests} requests")
            print(table(rows, header))
            print()
    finally:
        for rt in rt_box:
            rt.close()


if __name__ == "__main__":
    main(sys.argv[1:])
