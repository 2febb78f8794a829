"""AsyncRuntime side by side with the sync clients, in one run.

1. Non-streamed ``/api/chat``, one caller: ``ollama.Client.chat`` (extra
   ``bench``, if installed), ``Runtime.chat`` and ``AsyncRuntime.chat`` (one event
   loop), interleaved in rounds; medians in ms and ratios to the official client.
2. Many concurrent streams on one event loop: ``N`` streams held open (the
   server sends one token, then keep-alive newlines), then the memory (RSS) and
   threads they cost, per stream; then every task is cancelled and the server
   must see every connection close.

The upstream is ``tests/fake_ollama.py`` in a child process (so its threads and
memory are not counted here); it is the bottleneck in part 1, which is why the
calls are interleaved and compared by ratio.

Run: ``python benchmarks/async_runtime.py [calls] [streams] [--smoke]`` (default 400, 1000).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rubberduck import AsyncRuntime, Delta, RubberDuckError, Runtime  # noqa: E402

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests import fake_ollama, fault_server
fault_server._QuietServer.request_queue_size = 4096  # a burst of connects, as Go's server takes
fake = fake_ollama.FakeOllama({mode!r}).start()
print(fake.url, flush=True)
for line in sys.stdin:
    print(fake.disconnects, flush=True)
"""


class Upstream:
    """A fake Ollama in a child process; ``disconnects()`` asks it how many
    streams the client closed."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(root=str(ROOT), mode=mode)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def disconnects(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


async def timed_async(call: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


def one_caller(url: str, calls: int, rounds: int = 5) -> None:
    config = {"provider": {"ollama": {"base_url": url, "model": "llama3.2"}}}
    samples: dict[str, list[float]] = {}
    try:
        import ollama

        client: Any = ollama.Client(host=url)
    except ImportError:
        client = None
    rt = Runtime.from_config(config)
    art = AsyncRuntime.from_config(config)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(art.start())
    contenders: list[tuple[str, Callable[[int], list[float]]]] = []
    if client is not None:
        contenders.append(
            ("ollama.Client.chat", lambda n: timed(lambda: client.chat("llama3.2", MESSAGES), n))
        )
    contenders.append(("Runtime.chat", lambda n: timed(lambda: rt.chat("llama3.2", MESSAGES), n)))
    contenders.append(
        (
            "AsyncRuntime.chat",
            lambda n: loop.run_until_complete(
                timed_async(lambda: art.chat("llama3.2", MESSAGES), n)
            ),
        )
    )
    try:
        for _name, run in contenders:
            run(max(10, calls // 10))  # warm up connections
        for _ in range(rounds):
            for name, run in contenders:
                samples.setdefault(name, []).extend(run(calls // rounds))
    finally:
        loop.run_until_complete(art.close())
        loop.close()
        rt.close()
    base = statistics.median(samples[contenders[0][0]])
    print(f"1. non-streamed /api/chat, one caller, {calls} calls each, {rounds} rounds interleaved")
    print(f"{'client':<22} {'p50 ms':>8} {'ratio':>7}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"{name:<22} {p50 * 1e3:>8.3f} {p50 / base:>7.2f}")


def many_streams(url: str, streams: int, upstream: Upstream) -> None:
    config = {
        "provider": {
            "ollama": {
                "base_url": url,
                "model": "llama3.2",
                "max_in_flight": streams,
                "max_queue": 0,
            }
        },
        "router": {"request_timeout": 600},
    }

    async def main() -> None:
        async with AsyncRuntime.from_config(config) as rt:
            first = await rt.chat("llama3.2", MESSAGES, stream=True)  # warm-up
            await first.next_event()
            first.cancel()
            threads_before, rss_before = threading.active_count(), rss_kib()
            started = asyncio.Event()
            ready = 0

            failed: list[RubberDuckError] = []

            async def stream() -> None:
                nonlocal ready
                try:
                    async for event in await rt.chat("llama3.2", MESSAGES, stream=True):
                        if isinstance(event, Delta):
                            ready += 1
                            if ready + len(failed) == streams:
                                started.set()
                except RubberDuckError as exc:
                    failed.append(exc)
                    if ready + len(failed) == streams:
                        started.set()

            began = time.perf_counter()
            tasks = [asyncio.create_task(stream()) for _ in range(streams)]
            await asyncio.wait_for(started.wait(), 120)
            took = time.perf_counter() - began
            threads, rss = threading.active_count(), rss_kib()
            workers = sum(t.name.startswith("rubberduck-ollama") for t in threading.enumerate())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            give_up = time.monotonic() + 10
            while upstream.disconnects() < streams + 1 and time.monotonic() < give_up:
                await asyncio.sleep(0.05)
            closed = upstream.disconnects() - 1
            per_stream = (rss - rss_before) / streams
            print(
                f"2. {streams} concurrent streams on one event loop (all streaming in {took:.2f} s)"
            )
            if failed:
                print(f"   {len(failed)} failed, first: {failed[0]}")
            print(f"   RSS +{(rss - rss_before) / 1024:.1f} MiB: {per_stream:.1f} KiB per stream")
            print(
                f"   threads +{threads - threads_before}: {workers} HTTP workers "
                f"(max_in_flight = {streams}), {threads - threads_before - workers + 1} "
                "others; none waits for the loop"
            )
            print(f"   cancelled: the server saw {closed} of {streams} connections close")

    asyncio.run(main())


def main(calls: int = 400, streams: int = 1000) -> None:
    ok, stall = Upstream("ok"), Upstream("stall")
    try:
        one_caller(ok.url, calls)
        many_streams(stall.url, streams, stall)
    finally:
        ok.stop()
        stall.stop()


if __name__ == "__main__":
    from benchmarks._peers import smoke

    tiny, rest = smoke(sys.argv[1:])
    main(*([10, 20] if tiny else [int(a) for a in rest[:2]]))
