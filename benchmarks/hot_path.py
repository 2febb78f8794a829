"""The request hot path against a fast upstream, every ratio in one run.

The upstream is ``benchmarks/canned_ollama.c`` (built here with gcc, see
:mod:`benchmarks._upstream`): canned Ollama answers from memory, so the clients'
own costs are what is measured. Contenders run interleaved, in rounds; each
figure is the median over rounds of the round's median (or total).

1. Non-streamed ``/api/chat``, one caller, p50: urllib3 pool + msgspec (floor),
   ``requests.Session`` + msgspec, ``ollama.Client``, ``Runtime.chat``,
   ``AsyncRuntime.chat``; ratios to ``ollama.Client``.
2. Streams of ``CHUNKS`` lines in one burst: µs per chunk over the floor
   (urllib3 ``read1`` + msgspec) and first-chunk latency vs ``ollama.Client``.
3. Throughput at 1, 8, 32, 128 callers: requests/s and process CPU time per
   request, ``Runtime.chat`` from threads and ``AsyncRuntime.chat`` from tasks on
   one loop, with ratios to a ``requests`` thread pool (one session). Like is
   compared with like: the same number of requests in flight to the upstream for
   every contender in a group. First group: as many as the callers (the
   ``requests`` pool keeps a connection per caller; the runtimes get
   ``max_in_flight`` = callers). Second group (from 8 callers): RubberDuck's
   default limits, 4 in flight (and up to 64 more admitted, waiting for a turn),
   beside a ``requests`` pool of 4 connections that makes the other callers wait
   (``pool_block=True``): there the callers past 4 wait, in both, and how a
   waiting caller is woken is part of what is measured.

Run: ``python benchmarks/hot_path.py`` (full), ``--smoke`` (tiny N: checks that
everything runs), ``--parts=12`` (only parts 1 and 2).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import together
from benchmarks._upstream import canned_ollama, ceiling
from benchmarks.async_runtime import timed as timed_calls
from rubberduck import AsyncRuntime, Delta, Runtime

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
CHUNKS = 200
#: A backend's ``max_in_flight`` when its configuration does not set one.
DEFAULT_IN_FLIGHT = 4


class _Line(msgspec.Struct):
    message: dict[str, Any] | None = None
    done: bool = False


DECODER = msgspec.json.Decoder(_Line)
BODY = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES, "stream": False})
STREAM_BODY = msgspec.json.encode({"model": "llama3.2", "messages": MESSAGES, "stream": True})
HEADERS = {"Content-Type": "application/json"}


def rounds_of(contenders: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, float]:
    """Run each contender once per round, interleaved; the median of its results."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            results[name].append(statistics.median(run()))
    return {name: statistics.median(values) for name, values in results.items()}


def timed(call: Callable[[], object], n: int) -> Callable[[], list[float]]:
    """A round of ``n`` timed calls, to run later (interleaved with the others)."""
    return functools.partial(timed_calls, call, n)


class Loop:
    """One event loop on its own thread, for the async contenders."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def non_streamed(url: str, rt: Runtime, art: AsyncRuntime, loop: Loop, n: int, rounds: int) -> None:
    import ollama

    pool = urllib3.HTTPConnectionPool(url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]))
    session = requests.Session()
    session.trust_env = False
    client = ollama.Client(host=url)

    def floor() -> object:
        return DECODER.decode(pool.request("POST", "/api/chat", body=BODY, headers=HEADERS).data)

    def direct() -> object:
        return DECODER.decode(session.post(url + "/api/chat", data=BODY).content)

    async def async_batch() -> list[float]:
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await art.chat(model="llama3.2", messages=MESSAGES)
            samples.append(time.perf_counter() - started)
        return samples

    contenders = {
        "urllib3 pool + msgspec (floor)": timed(floor, n),
        "requests.Session + msgspec": timed(direct, n),
        "ollama.Client (0.6.3)": timed(lambda: client.chat(model="llama3.2", messages=MESSAGES), n),
        "Runtime.chat": timed(lambda: rt.chat(model="llama3.2", messages=MESSAGES), n),
        "AsyncRuntime.chat": lambda: loop.run(async_batch()),
    }
    for run in contenders.values():
        run()  # warm up
    medians = rounds_of(contenders, rounds)
    official = medians["ollama.Client (0.6.3)"]
    print(f"\n1. non-streamed /api/chat, one caller: p50 of {n} calls, median of {rounds} rounds")
    print(f"{'client':<34}{'p50 ms':>9}{'vs ollama.Client':>18}")
    for name, value in medians.items():
        print(f"{name:<34}{value * 1e3:9.3f}{value / official:17.2f}x")


def streams(url: str, rt: Runtime, art: AsyncRuntime, loop: Loop, n: int, rounds: int) -> None:
    import ollama

    pool = urllib3.HTTPConnectionPool(url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]))
    client = ollama.Client(host=url)

    def floor() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        resp = pool.urlopen(
            "POST", "/api/chat", body=STREAM_BODY, headers=HEADERS, preload_content=False
        )
        buf = b""
        while data := resp.read1(65536):
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not DECODER.decode(line).done and not first:
                    first = time.perf_counter() - started
        resp.release_conn()
        return first, time.perf_counter() - started

    def official() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        for _part in client.chat(model="llama3.2", messages=MESSAGES, stream=True):
            if not first:
                first = time.perf_counter() - started
        return first, time.perf_counter() - started

    def ours() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        for event in rt.stream_chat("llama3.2", MESSAGES):
            if not first and type(event) is Delta:
                first = time.perf_counter() - started
        return first, time.perf_counter() - started

    async def ours_async() -> list[tuple[float, float]]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            first = 0.0
            async for event in await art.chat(model="llama3.2", messages=MESSAGES, stream=True):
                if not first and type(event) is Delta:
                    first = time.perf_counter() - started
            out.append((first, time.perf_counter() - started))
        return out

    def many(one: Callable[[], tuple[float, float]]) -> Callable[[], list[tuple[float, float]]]:
        return lambda: [one() for _ in range(n)]

    contenders = {
        "urllib3 read1 + msgspec (floor)": many(floor),
        "ollama.Client (0.6.3)": many(official),
        "Runtime.stream_chat": many(ours),
        "AsyncRuntime.chat(stream=True)": lambda: loop.run(ours_async()),
    }
    firsts: dict[str, list[float]] = {name: [] for name in contenders}
    per_chunk: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():
        run()
    for _ in range(rounds):
        for name, run in contenders.items():
            samples = run()
            firsts[name].append(statistics.median(f for f, _ in samples))
            per_chunk[name].append(statistics.median(t / CHUNKS for _, t in samples))
    floor_us = statistics.median(per_chunk["urllib3 read1 + msgspec (floor)"]) * 1e6
    official_first = statistics.median(firsts["ollama.Client (0.6.3)"]) * 1e3
    print(
        f"\n2. streamed /api/chat, {CHUNKS} chunks in one burst: medians of {n} streams x {rounds}"
    )
    print(f"{'client':<34}{'µs/chunk':>9}{'vs floor':>10}{'1st chunk ms':>14}{'vs official':>13}")
    for name in contenders:
        us = statistics.median(per_chunk[name]) * 1e6
        first = statistics.median(firsts[name]) * 1e3
        print(
            f"{name:<34}{us:9.2f}{us - floor_us:+10.2f}{first:14.3f}{first - official_first:+13.3f}"
        )


def throughput(
    url: str,
    config: dict[str, Any],
    loop: Loop,
    per_caller: int,
    rounds: int,
    levels: tuple[int, ...],
) -> None:
    def threads(callers: int, call: Callable[[], object]) -> tuple[float, float]:
        def work() -> None:
            for _ in range(per_caller):
                call()

        wall, cpu = together(callers, work)
        total = callers * per_caller
        return total / wall, cpu / total

    def on_loop(art: AsyncRuntime, callers: int) -> tuple[float, float]:
        async def caller() -> None:
            for _ in range(per_caller):
                await art.chat(model="llama3.2", messages=MESSAGES)

        async def all_of() -> tuple[float, float]:
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(callers)))
            total = callers * per_caller
            return total / (time.perf_counter() - wall), (time.process_time() - cpu) / total

        result: tuple[float, float] = loop.run(all_of())
        return result

    def session_of(connections: int, block: bool) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=connections, pool_block=block)
        session.mount("http://", adapter)
        return session

    def runtimes(max_in_flight: int | None) -> tuple[Runtime, AsyncRuntime]:
        limited = {
            name: dict(cfg, max_in_flight=max_in_flight) if max_in_flight else dict(cfg)
            for name, cfg in config["provider"].items()
        }
        return Runtime.from_config({"provider": limited}), AsyncRuntime.from_config(
            {"provider": limited}
        )

    def group(callers: int, title: str, connections: int, max_in_flight: int | None) -> None:
        session = session_of(connections, block=connections < callers)
        rt, art = runtimes(max_in_flight)

        def direct() -> object:
            return DECODER.decode(session.post(url + "/api/chat", data=BODY).content)

        def ours() -> object:
            return rt.chat(model="llama3.2", messages=MESSAGES)

        contenders: dict[str, Callable[[], tuple[float, float]]] = {
            "requests thread pool": lambda: threads(callers, direct),
            "Runtime.chat, threads": lambda: threads(callers, ours),
            "AsyncRuntime.chat, one loop": lambda: on_loop(art, callers),
        }
        try:
            for run in contenders.values():
                run()
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            cpus: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(rounds):
                for name, run in contenders.items():
                    rate, cpu = run()
                    rates[name].append(rate)
                    cpus[name].append(cpu)
        finally:
            rt.close()
            loop.run(art.close())
            session.close()
        base_rate = statistics.median(rates["requests thread pool"])
        base_cpu = statistics.median(cpus["requests thread pool"])
        for name in contenders:
            rate, cpu = statistics.median(rates[name]), statistics.median(cpus[name])
            print(
                f"{callers:>7}  {title:<12}{name:<28}{rate:9.0f}{rate / base_rate:10.2f}x"
                f"{cpu * 1e6:12.1f}{cpu / base_cpu:10.2f}x"
            )

    print(
        f"\n3. throughput, non-streamed /api/chat, {per_caller} calls per caller, "
        f"median of {rounds}; in flight: as many as the callers, or 4 (the default limits)"
    )
    print(
        f"{'callers':>7}  {'in flight':<12}{'contender':<28}{'req/s':>9}{'x requests':>11}"
        f"{'CPU µs/req':>12}{'x requests':>11}"
    )
    for callers in levels:
        group(callers, f"{callers}", callers, callers)
        if callers > DEFAULT_IN_FLIGHT:
            group(callers, f"{DEFAULT_IN_FLIGHT} (default)", DEFAULT_IN_FLIGHT, None)


def main(smoke: bool, parts: str = "123") -> None:
    n, rounds = (5, 1) if smoke else (300, 7)
    with canned_ollama(CHUNKS) as url:
        print(
            f"upstream: benchmarks/canned_ollama.c at {url}; its ceiling, bare socket, one "
            f"caller: p50 {ceiling(url, 50 if smoke else 3000):.1f} µs per non-streamed call"
        )
        config = {"provider": {"ollama": {"base_url": url, "model": "llama3.2"}}}
        loop = Loop()
        try:
            with Runtime.from_config(config) as rt:
                art = AsyncRuntime.from_config(config)
                try:
                    if "1" in parts:
                        non_streamed(url, rt, art, loop, n, rounds)
                    if "2" in parts:
                        streams(url, rt, art, loop, 3 if smoke else 40, rounds)
                    if "3" in parts:
                        throughput(
                            url,
                            config,
                            loop,
                            2 if smoke else 40,
                            1 if smoke else 5,
                            (1, 8, 32, 128) if not smoke else (1, 8),
                        )
                finally:
                    loop.run(art.close())
        finally:
            loop.close()


if __name__ == "__main__":
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--parts=")]
    main("--smoke" in sys.argv[1:], only[0] if only else "123")
