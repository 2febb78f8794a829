"""Bursts of callers on one backend with the default limits: how many fail.

``CALLERS`` threads each send one streamed ``/api/chat`` at the same moment to
one Ollama-protocol server on loopback (``tests/fake_ollama.py``), through a
Runtime with the default ``max_in_flight`` (4) and ``max_queue`` (64), ``ROUNDS``
times. Before requests waited for a slot, those past the 68 slots failed busy
once their retry rounds (~0.3 s) ran out.

Run: ``python benchmarks/burst.py [CALLERS] [ROUNDS] [--smoke]``. Prints failures, the
burst's wall time (median of the rounds) and the slowest caller's latency.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import smoke, together
from rubberduck import Runtime
from tests.fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def burst(rt: Runtime, callers: int) -> tuple[list[str], float, float]:
    """One burst: the error names, the wall time and the slowest latency (s)."""
    errors: list[str] = []
    latencies: list[float] = []

    def call() -> None:
        began = time.perf_counter()
        try:
            rt.chat(messages=MESSAGES, stream=True, timeout=60).result()
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - began)

    wall, _ = together(callers, call)
    return errors, wall, max(latencies)


def main(callers: int = 128, rounds: int = 10) -> None:
    with FakeOllama() as server:
        config = {"provider": {"ollama": {"base_url": server.url, "model": "llama3.2"}}}
        failed: Counter[str] = Counter()
        walls, slowest = [], []
        with Runtime.from_config(config) as rt:
            rt.chat(messages=MESSAGES)  # warm up
            for _ in range(rounds):
                errors, wall, worst = burst(rt, callers)
                failed.update(errors)
                walls.append(wall)
                slowest.append(worst)
    total = callers * rounds
    share = sum(failed.values()) / total
    print(f"{rounds} bursts of {callers} callers, one backend, default limits")
    print(f"failed: {sum(failed.values())} of {total} ({share:.1%}) {dict(failed)}")
    print(f"burst wall time: {statistics.median(walls) * 1e3:.0f} ms (median)")
    print(f"slowest caller: {statistics.median(slowest) * 1e3:.0f} ms (median of rounds)")


if __name__ == "__main__":
    tiny, rest = smoke(sys.argv[1:])
    main(*([8, 1] if tiny else [int(a) for a in rest[:2]]))
