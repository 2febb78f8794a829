"""How requests in flight end when the supervisor gives up (escalation).

Three Ollama-protocol backends on loopback (``tests/fake_ollama.py``) that never
answer hold requests: ``max_in_flight`` running on each and more queued. The
HealthMonitor is then made to crash (``Crash``) past the restart intensity, so
the supervisor escalates. Measured, from the crash that escalates: when the first
and the last request ended, and how many ended with the escalation's reason
rather than another cause.

Run: ``python benchmarks/escalation.py [requests_per_backend] [--smoke]``.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import smoke
from rubberduck import RubberDuckError, Runtime
from rubberduck.handle import RequestHandle
from rubberduck.messages import Crash
from tests.fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def main(per_backend: int = 5) -> None:
    fakes = [FakeOllama("hang").start() for _ in range(3)]
    config = {
        "provider": {
            f"b{i}": {
                "kind": "ollama",
                "base_url": fake.url,
                "model": "llama3.2",
                "priority": 0,
                "max_in_flight": 2,
            }
            for i, fake in enumerate(fakes)
        },
        "health": {"interval": 60.0},
        # Fewest in flight first, deterministically: every backend gets its
        # max_in_flight running before any queues (the wait below counts on it;
        # "warm" draws two hosts at random once each holds the model).
        "router": {"balance": "priority"},
    }
    try:
        with Runtime.from_config(config) as rt:
            handles = [
                rt.stream_chat("llama3.2", MESSAGES, timeout=120) for _ in range(3 * per_backend)
            ]
            give_up = time.monotonic() + 60
            while sum(len(f.posts()) for f in fakes) < 6:
                if time.monotonic() > give_up:
                    raise SystemExit("the backends never held 2 requests each")
                time.sleep(0.005)
            ended: list[float] = []
            causes: list[str] = []
            lock = threading.Lock()

            def wait(handle: RequestHandle) -> None:
                try:
                    handle.result()
                    cause = "answered"
                except RubberDuckError as exc:
                    cause = str(exc)
                with lock:
                    ended.append(time.monotonic())
                    causes.append(cause)

            waiters = [threading.Thread(target=wait, args=(h,)) for h in handles]
            for t in waiters:
                t.start()
            for _ in range(4):  # the default intensity allows 3 restarts in 5 s
                old = rt._registry.get("health")
                if old is None:
                    break
                triggered = time.monotonic()  # the last one escalates
                old.tell(Crash("benchmark"))
                while rt._registry.get("health") is old:
                    time.sleep(0.001)
            for t in waiters:
                t.join()
            reason = rt.escalation
    finally:
        for fake in fakes:
            fake.release.set()
            fake.stop()
    with_reason = sum(reason in c for c in causes)
    print(f"{len(handles)} requests in flight on 3 backends (2 running + queued each)")
    print(f"first request ended {min(ended) - triggered:8.3f} s after the crash that escalates")
    print(f"last request ended  {max(ended) - triggered:8.3f} s after it")
    print(f"ended with the escalation's reason: {with_reason}/{len(handles)}")
    for cause in sorted(set(causes) - {c for c in causes if reason in c})[:5]:
        print(f"  other cause: {cause[:110]}")


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(2 if tiny else int(rest[0]) if rest else 5)
