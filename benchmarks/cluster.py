"""What ``[cluster]`` costs per request: Redis on loopback against the same run
without it, every ratio in one run.

Two runtimes on the same fast upstream (``benchmarks/canned_ollama.c``), one
plain and one with ``[cluster]`` on a ``redis-server`` started here on a free
loopback port (no persistence). The clustered one takes a slot lease in Redis
per request (one Lua script, one round trip, on the request's path) and
releases it off the path (its cluster thread). Contenders run interleaved,
in rounds; each figure is the median over rounds.

1. Non-streamed ``/api/chat``, one caller: p50 and p99 per request, and what
   the cluster adds (µs and ratio).
2. Throughput at 8 and 32 caller threads: requests/s, ratio.
3. Redis commands per request on the request's path (``EVALSHA``, from
   ``INFO commandstats``) and off it (``ZREM`` of releases, pipelined).

Two clustered runtimes: as configured (a request takes back a lease released
by the previous one and not yet removed, with no round trip), and with that
reuse off, so that every request pays its one ``EVALSHA`` (the worst case: a
lightly loaded runtime, or slots moving between replicas).

Run: ``python benchmarks/cluster.py`` (full) or ``--smoke`` (tiny N).
"""

from __future__ import annotations

import functools
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import together
from benchmarks._upstream import canned_ollama
from rubberduck import Runtime

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A redis-server on a free loopback port; yields its URL (``None``: not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def latencies(rt: Runtime, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        rt.chat(model="llama3.2", messages=MESSAGES)
        samples.append(time.perf_counter() - started)
    return samples


def rate(rt: Runtime, callers: int, per_caller: int) -> float:
    """Requests per second with ``callers`` threads sending ``per_caller`` each."""

    def caller() -> None:
        for _ in range(per_caller):
            rt.chat(model="llama3.2", messages=MESSAGES)

    wall, _ = together(callers, caller)
    return callers * per_caller / wall


def interleaved(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def commands(client: object) -> dict[str, int]:
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    return {name: int(v["calls"]) for name, v in stats.items()}


def latency_table(runtimes: dict[str, Runtime], n: int, rounds: int) -> None:
    per_round: dict[str, list[list[float]]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, rt in runtimes.items():
            per_round[name].append(latencies(rt, n))
    print(f"\n1. non-streamed /api/chat, one caller: {n} calls, median of {rounds} rounds")
    print(f"{'runtime':<22}{'p50 µs':>10}{'p99 µs':>10}{'p50 ×':>8}{'added p50':>11}{'p99':>10}")
    b50 = b99 = 0.0
    for name, runs in per_round.items():
        p50 = statistics.median(p(r, 0.5) for r in runs) * 1e6
        p99 = statistics.median(p(r, 0.99) for r in runs) * 1e6
        b50, b99 = (b50, b99) if b50 else (p50, p99)
        added = f"{p50 - b50:+10.1f}{p99 - b99:+10.1f}"
        print(f"{name:<22}{p50:10.1f}{p99:10.1f}{p50 / b50:7.2f}x{added}")


def throughput_table(runtimes: dict[str, Runtime], per_caller: int, rounds: int) -> None:
    print(f"\n2. throughput, {per_caller} requests per caller thread, median of {rounds} rounds")
    names = list(runtimes)
    print(f"{'callers':>8}" + "".join(f"{n + ' req/s':>26}" for n in names))
    for callers in (8, 32):
        runs = {
            name: functools.partial(rate, rt, callers, per_caller) for name, rt in runtimes.items()
        }
        rates = list(interleaved(runs, rounds).values())
        cells = "".join(f"{r:17.0f} ({r / rates[0]:4.2f}x)" for r in rates)
        print(f"{callers:>8}{cells}")


def commands_table(clustered: dict[str, Runtime], redis_url: str, calls: int) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    print(f"\n3. Redis commands per request ({calls} requests, one caller)")
    print(f"{'runtime':<22}{'EVALSHA (request path)':>24}{'ZREM (cluster thread)':>24}")
    for name, rt in clustered.items():
        before = commands(client)
        latencies(rt, calls)
        time.sleep(0.2)  # the cluster thread's releases
        after = commands(client)
        per = {k: (after.get(k, 0) - before.get(k, 0)) / calls for k in after}
        evalsha, zrem = per.get("cmdstat_evalsha", 0), per.get("cmdstat_zrem", 0)
        print(f"{name:<22}{evalsha:24.2f}{zrem:24.2f}")


def main(smoke: bool) -> None:
    n, rounds = (20, 1) if smoke else (2000, 7)
    per_caller = 5 if smoke else 300
    calls = 20 if smoke else 200
    with canned_ollama(1) as url, redis_server() as redis_url:
        print(f"upstream: benchmarks/canned_ollama.c at {url}; redis-server at {redis_url}")
        if redis_url is None:
            print("redis-server is not installed (apt-get install redis-server): no comparison")
            return
        provider = {"ollama": {"base_url": url, "model": "llama3.2", "max_in_flight": 64}}
        plain = Runtime.from_config({"provider": provider})
        clustered = Runtime.from_config({"provider": provider, "cluster": {"redis_url": redis_url}})
        no_reuse = Runtime.from_config(
            {"provider": provider, "cluster": {"redis_url": redis_url, "key_prefix": "fresh"}}
        )
        assert no_reuse.cluster is not None
        no_reuse.cluster.leases.reuse = False  # every request takes a fresh lease: one EVALSHA
        runtimes = {"no cluster": plain, "[cluster]": clustered, "[cluster] no reuse": no_reuse}
        try:
            for rt in runtimes.values():
                latencies(rt, 50)  # warm up: connections, caches
            latency_table(runtimes, n, rounds)
            throughput_table(runtimes, per_caller, rounds)
            commands_table({k: v for k, v in runtimes.items() if v.cluster}, redis_url, calls)
        finally:
            for rt in runtimes.values():
                rt.close()


if __name__ == "__main__":
    main("--smoke" in sys.argv[1:])
