"""Load generation: a closed loop of ``concurrency`` callers, or an open loop of
Poisson arrivals at ``rate`` requests/s.

Closed loop (``--concurrency N``): N threads each send a request, wait for its
end, and send the next; the load adapts to the server's speed. Open loop
(``--rate R``): requests arrive at R per second whatever the server does, with
gaps drawn from a gamma distribution of shape ``burstiness`` and mean ``1/R``
(``burstiness`` 1 is a Poisson process; below 1 burstier, above 1 more regular:
vLLM's ``--burstiness``); ``concurrency`` then caps the requests in flight.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import msgspec

from rubberduck.bench.clients import Sender
from rubberduck.bench.metrics import RequestRecord
from rubberduck.bench.prompts import BenchPrompt
from rubberduck.errors import InvalidRequest

__all__ = ["LoadResult", "LoadSpec", "arrival_gaps", "run_load"]

#: Most requests in flight in an open loop when no concurrency is given.
OPEN_LOOP_CAP = 256


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How much load, and how it arrives.

    Attributes:
        concurrency: Callers of the closed loop; with ``rate``, the cap on
            requests in flight (``None``: :data:`OPEN_LOOP_CAP`).
        rate: Open-loop arrivals per second; ``None``: a closed loop.
        burstiness: Shape of the gamma distribution of arrival gaps (1: Poisson).
        requests: Measured requests to send; ``None``: until ``duration_s``.
        duration_s: Stop sending after this many seconds; ``None``: after ``requests``.
        warmup: Requests sent first, one at a time, and not measured.
        seed: Seed of the arrival gaps (``None``: unseeded).
    """

    concurrency: int | None = 1
    rate: float | None = None
    burstiness: float = 1.0
    requests: int | None = 100
    duration_s: float | None = None
    warmup: int = 0
    seed: int | None = None

    def check(self) -> LoadSpec:
        """Returns ``self``.

        Raises:
            InvalidRequest: a value is out of range, or neither ``requests`` nor
                ``duration_s`` bounds the run.
        """
        if self.concurrency is not None and self.concurrency < 1:
            raise InvalidRequest(f"--concurrency must be at least 1 (got {self.concurrency})")
        if self.rate is not None and not self.rate > 0:
            raise InvalidRequest(f"--rate must be above 0 requests/s (got {self.rate})")
        if not self.burstiness > 0:
            raise InvalidRequest(f"--burstiness must be above 0 (got {self.burstiness})")
        if self.requests is None and self.duration_s is None:
            raise InvalidRequest("give --requests or --duration")
        if self.requests is not None and self.requests < 1:
            raise InvalidRequest(f"--requests must be at least 1 (got {self.requests})")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InvalidRequest(f"--duration must be above 0 seconds (got {self.duration_s})")
        if self.warmup < 0:
            raise InvalidRequest(f"--warmup must be 0 or more (got {self.warmup})")
        return self


class LoadResult(msgspec.Struct, kw_only=True):
    """The measured requests and the wall time they took.

    Attributes:
        records: One per measured request, in completion order.
        duration_s: From the first measured send to the last end, seconds.
    """

    records: list[RequestRecord]
    duration_s: float


def arrival_gaps(rate: float, burstiness: float, rng: random.Random) -> Iterator[float]:
    """Endless gaps between open-loop arrivals, seconds: gamma-distributed with
    shape ``burstiness`` and mean ``1/rate``."""
    theta = 1.0 / (rate * burstiness)
    while True:
        yield rng.gammavariate(burstiness, theta)


def run_load(
    send: Sender,
    prompts: Iterable[BenchPrompt],
    spec: LoadSpec,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> LoadResult:
    """Send the warm-up, then the measured load; returns the measured records.

    Args:
        send: Sends one prompt (see :mod:`rubberduck.bench.clients`).
        prompts: Prompts, used in order (a finite list is cycled).
        spec: The load.
        on_record: Called with each measured record as it ends (progress).

    Raises:
        InvalidRequest: ``spec`` is invalid (see :meth:`LoadSpec.check`).
    """
    spec.check()
    source = _PromptSource(prompts, spec.requests)
    for _ in range(spec.warmup):
        send(source.warmup())
    records: list[RequestRecord] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + spec.duration_s if spec.duration_s is not None else None

    def one(prompt: BenchPrompt) -> None:
        record = send(prompt)
        with lock:
            records.append(record)
        if on_record is not None:
            on_record(record)

    if spec.rate is None:
        _closed_loop(one, source, spec.concurrency or 1, stop_at)
    else:
        rng = random.Random(spec.seed)
        gaps = arrival_gaps(spec.rate, spec.burstiness, rng)
        _open_loop(one, source, gaps, spec.concurrency or OPEN_LOOP_CAP, stop_at)
    return LoadResult(records=records, duration_s=max(time.monotonic() - start, 1e-9))


class _PromptSource:
    """Hands out the measured prompts, thread-safe, up to ``limit`` of them."""

    def __init__(self, prompts: Iterable[BenchPrompt], limit: int | None) -> None:
        items = prompts if isinstance(prompts, Iterator) else itertools.cycle(list(prompts))
        self._items: Iterator[BenchPrompt] = items
        self._left = limit
        self._lock = threading.Lock()

    def warmup(self) -> BenchPrompt:
        with self._lock:
            return next(self._items)

    def take(self, stop_at: float | None) -> BenchPrompt | None:
        """The next prompt, or ``None`` when the run is over."""
        with self._lock:
            if self._left == 0 or (stop_at is not None and time.monotonic() >= stop_at):
                return None
            if self._left is not None:
                self._left -= 1
            return next(self._items, None)


def _closed_loop(
    one: Callable[[BenchPrompt], None], source: _PromptSource, n: int, stop_at: float | None
) -> None:
    def caller() -> None:
        while (prompt := source.take(stop_at)) is not None:
            one(prompt)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _open_loop(
    one: Callable[[BenchPrompt], None],
    source: _PromptSource,
    gaps: Iterator[float],
    cap: int,
    stop_at: float | None,
) -> None:
    slots = threading.BoundedSemaphore(cap)

    def run(prompt: BenchPrompt) -> None:
        try:
            one(prompt)
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=cap) as pool:
        due = time.monotonic()
        while True:
            due += next(gaps)
            time.sleep(max(due - time.monotonic(), 0.0))
            prompt = source.take(stop_at)
            if prompt is None:
                break
            slots.acquire()  # at the cap: the arrival waits, as vLLM's --max-concurrency
            pool.submit(run, prompt)
