"""Restart latency and failover time, side by side with a hand-written client.

Two Ollama-protocol servers on loopback (``tests/fake_ollama.py``):

- **restart latency**: a ProviderActor is made to crash (``Crash``); the time
  until the Supervisor has a new actor under the same name, and until that actor
  has answered a request.
- **failover**: requests run back to back against "primary"; primary dies (its
  listening socket closes, so connections are refused). Measured: the time from
  the death to the first request answered by "backup" (open keep-alive
  connections are dropped, new ones refused). The baseline is a
  hand-written client (requests, try primary, on ``ConnectionError`` try backup)
  in the same run: the least a caller must pay.

Run: ``python benchmarks/supervision.py [rounds] [--smoke]``. Prints medians in ms.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import smoke
from rubberduck import Runtime
from rubberduck.messages import Crash
from tests.fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def config(primary: str, backup: str) -> dict[str, Any]:
    return {
        "provider": {
            "primary": {"kind": "ollama", "base_url": primary, "model": "llama3.2"},
            "backup": {"kind": "ollama", "base_url": backup, "model": "llama3.2"},
        },
        "supervisor": {"max_restarts": 1000, "within": 1.0},
    }


def restart_latency(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from a crash to a new actor, and to its first answer."""
    registered, served = [], []
    with FakeOllama() as primary, FakeOllama() as backup:
        with Runtime.from_config(config(primary.url, backup.url)) as rt:
            rt.chat("llama3.2", MESSAGES)
            registry = rt._registry
            for _ in range(rounds):
                old = registry.get("provider:primary")
                assert old is not None
                started = time.perf_counter()
                old.tell(Crash("benchmark"))
                while (ref := registry.get("provider:primary")) is old or ref is None:
                    time.sleep(0)
                registered.append(time.perf_counter() - started)
                reply = rt.chat("llama3.2", MESSAGES)
                served.append(time.perf_counter() - started)
                assert reply.provider == "primary", reply.fallbacks
    return registered, served


def failover(call: Callable[[], str], primary: FakeOllama) -> float:
    """Run ``call`` back to back, kill ``primary`` mid-way; seconds from the
    death to the first answer from "backup"."""
    for _ in range(20):
        assert call() == "primary"
    died = threading.Event()
    killed_at = 0.0

    def kill() -> None:
        nonlocal killed_at
        time.sleep(0.01)
        killed_at = time.perf_counter()
        primary.mode = "drop"  # open keep-alive connections die with the process, too
        primary.stop()
        died.set()

    threading.Thread(target=kill).start()
    while True:
        try:
            who = call()
        except Exception:  # noqa: BLE001 - a request lost in the moment of death
            continue
        if who == "backup":
            answered_at = time.perf_counter()
            died.wait()  # killed_at is set by then
            return answered_at - killed_at


def runtime_failover() -> float:
    with FakeOllama() as backup:
        primary = FakeOllama().start()
        with Runtime.from_config(config(primary.url, backup.url)) as rt:
            rt.wait_for_probes()
            return failover(lambda: rt.chat("llama3.2", MESSAGES).provider, primary)


def direct_failover() -> float:
    with FakeOllama() as backup:
        primary = FakeOllama().start()
        session = requests.Session()
        session.trust_env = False
        body = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES, "stream": False})

        def call() -> str:
            try:
                session.post(primary.url + "/api/chat", data=body, timeout=5).raise_for_status()
                return "primary"
            except requests.ConnectionError:
                session.post(backup.url + "/api/chat", data=body, timeout=5).raise_for_status()
                return "backup"

        try:
            return failover(call, primary)
        finally:
            session.close()


def main(rounds: int = 20) -> None:
    registered, served = restart_latency(rounds)
    ours = [runtime_failover() for _ in range(rounds)]
    direct = [direct_failover() for _ in range(rounds)]
    rows = [
        ("ProviderActor crash → new actor registered", registered),
        ("ProviderActor crash → new actor answered a request", served),
        ("backend dies → first answer elsewhere: RubberDuck", ours),
        ("backend dies → first answer elsewhere: try/except", direct),
    ]
    print(f"{'measure, ' + str(rounds) + ' rounds':<54}{'median ms':>10}{'p90 ms':>9}")
    for label, samples in rows:
        ordered = sorted(samples)
        p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
        print(f"{label:<54}{statistics.median(ordered) * 1e3:10.2f}{p90 * 1e3:9.2f}")


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(2 if tiny else int(rest[0]) if rest else 20)
