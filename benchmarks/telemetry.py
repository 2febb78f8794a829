"""Per-request cost of the telemetry hooks, side by side in one run.

One request's whole telemetry path — the request's start on the caller's
thread, the Router's routing and fallback hooks, one attempt, three streamed
chunks (time to first chunk, time per chunk), the GenAI metrics, the request
span and its attempt's span — run on a real ``RequestState`` (events into a
real channel, no network), in these configurations, interleaved round by round:

- ``hooks off``: every telemetry hook replaced by a no-op (the floor);
- ``no API``: the OpenTelemetry API treated as not installed;
- ``API, no SDK``: the API installed, no provider set (the common default);
- ``SDK inline``: an SDK ``MeterProvider`` (in-memory reader) and
  ``TracerProvider`` (``BatchSpanProcessor``, an exporter that drops spans)
  set as the globals, the SDK calls made on the request path (as before the
  recorder thread; ``RECORDER.inline``);
- ``SDK``: the same SDK, the SDK calls made by the recorder thread;
- ``SDK, paused rec.``: the recorder's jobs wait for the flush that ends each
  measurement: the request path timed without the recorder sharing the GIL;
- ``SDK, DEBUG logs``: ``SDK`` with ``rubberduck`` logging at DEBUG to a
  handler that drops records; ``SDK metrics only``, ``SDK traces only``.

Three numbers per configuration, µs per request, and each one's cost (minus
``hooks off``): ``wall`` — the loop's elapsed time (the recorder thread, when
it runs, takes the GIL from it); ``thread CPU`` — CPU time of the requesting
thread (the request path's own work); ``total CPU`` — the process's CPU time
over the loop and the flush that records what it queued (every thread's: the
SDK's cost, wherever it is paid). Targets on the request path: ≤ 5 µs with no
SDK, ≤ 30 µs with one. Then end to end (``Runtime.chat``), hooks off vs SDK
inline vs SDK, on ``benchmarks/canned_ollama.c`` (built with gcc; out of process, so
that no server thread shares the GIL): mean, p50, p90, p99 latency and CPU
per request — scheduling noise (2 shared cores) weighs on the tail.

Run: ``python benchmarks/telemetry.py [N] [ROUNDS]`` (default 5000 requests ×
7 rounds; ``--smoke``: 50 × 2).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import rubberduck.request_state as request_state_module
from benchmarks._upstream import canned_ollama
from rubberduck import ChatRequest, Runtime
from rubberduck.actors.router import Route
from rubberduck.channels import ThreadChannel
from rubberduck.config import ProviderConfig
from rubberduck.messages import Delta, Done, Usage
from rubberduck.providers import create_provider
from rubberduck.request_state import RequestState
from rubberduck.telemetry import events, otel, recorder
from rubberduck.telemetry import requests as tr
from tests.telemetry.conftest import reset_globals

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
REQUEST = ChatRequest(model="llama3.2", messages=MESSAGES, stream=True)
ROUTES = [Route("primary", ("llama3.2",), kind="ollama")]
DELTAS = [Delta("The"), Delta(" sky"), Delta(" is blue.")]
DONE = Done(done_reason="stop", usage=Usage(26, 282), model="llama3.2", provider="primary")


class Drop(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def providers() -> tuple[MeterProvider, TracerProvider]:
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer_provider = TracerProvider()
    # A queue that never fills: a dropped span would make the SDK look cheaper.
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=1 << 20))
    return meter_provider, tracer_provider


@contextmanager
def sdk(
    debug_logs: bool = False, with_metrics: bool = True, with_traces: bool = True
) -> Iterator[None]:
    meter_provider, tracer_provider = providers()
    if with_metrics:
        metrics.set_meter_provider(meter_provider)
    if with_traces:
        trace.set_tracer_provider(tracer_provider)
    logger = logging.getLogger("rubberduck")
    handler = logging.NullHandler()
    if debug_logs:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)
        logger.removeHandler(handler)
        reset_globals()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@contextmanager
def no_api() -> Iterator[None]:
    saved = otel._metrics, otel._trace
    otel._metrics = otel._trace = None  # type: ignore[assignment]
    try:
        yield
    finally:
        otel._metrics, otel._trace = saved


@contextmanager
def hooks_off() -> Iterator[None]:
    """Every hook a request passes through, as a no-op."""
    saved: list[tuple[Any, str, Any]] = []

    def stub(module: Any, name: str, value: Any) -> None:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    stub(request_state_module, "request_started", lambda request: None)
    stub(request_state_module, "request_finished", lambda state, outcome: None)
    stub(tr, "attempt_started", lambda state, provider: None)
    stub(tr, "attempt_ended", lambda token, outcome, error: None)
    for name in ("routed", "taken"):
        stub(events, name, lambda *args: None)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


@contextmanager
def nothing() -> Iterator[None]:
    yield


def one_request(provider: Any) -> None:
    """A request's telemetry path (as the Router, worker and caller run it)."""
    channel = ThreadChannel(16)
    state = RequestState(REQUEST, channel, timeout=60.0)
    events.routed(state, ROUTES, {})
    state.tried.append("primary")
    events.taken(state, "primary")
    token = tr.attempt_started(state, provider)
    for delta in DELTAS:
        state.emit(delta)
    tr.attempt_ended(token, "ok", None)
    state.emit(DONE)


@contextmanager
def inline() -> Iterator[None]:
    """The SDK calls made on the request path, as before the recorder."""
    with sdk():
        recorder.RECORDER.inline = True
        try:
            yield
        finally:
            recorder.RECORDER.inline = False


class Paused(recorder.Recorder):
    """A recorder whose thread never starts: the jobs wait for the flush."""

    def _start(self) -> None:
        pass


@contextmanager
def paused() -> Iterator[None]:
    """The recorder's jobs run only at the flush that ends each measurement,
    so that the request path is timed alone."""
    saved = recorder.RECORDER
    recorder.RECORDER = Paused(capacity=1 << 22)
    try:
        with sdk():
            yield
    finally:
        recorder.RECORDER = saved


CONFIGS: dict[str, Callable[[], Any]] = {
    "hooks off": hooks_off,
    "no API": no_api,
    "API, no SDK": nothing,
    "SDK inline": inline,
    "SDK": sdk,
    "SDK, paused rec.": paused,
    "SDK, DEBUG logs": lambda: sdk(debug_logs=True),
    "SDK metrics only": lambda: sdk(with_traces=False),
    "SDK traces only": lambda: sdk(with_metrics=False),
}


def sdk_calls_alone(n: int) -> float:
    """The SDK's own cost for the same signals, called directly (µs/request):
    two spans, five histogram records and one counter add, same attributes."""
    meter_provider, tracer_provider = providers()
    meter, tracer = meter_provider.get_meter("bench"), tracer_provider.get_tracer("bench")
    histogram, counter = meter.create_histogram("h", "s"), meter.create_counter("c")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "llama3.2",
        "gen_ai.response.model": "llama3.2",
        "gen_ai.provider.name": "ollama",
        "server.address": "127.0.0.1",
        "rubberduck.backend": "primary",
    }
    tokens = {**attrs, "gen_ai.token.type": "input"}

    def signals() -> None:
        request = tracer.start_span("chat llama3.2", attributes=attrs)
        attempt = tracer.start_span("attempt primary", attributes=attrs)
        attempt.set_attribute("rubberduck.outcome", "ok")
        attempt.end()
        counter.add(1, {"rubberduck.backend": "primary", "rubberduck.outcome": "ok"})
        for _ in range(3):
            histogram.record(0.5, attrs)
        histogram.record(26, tokens)
        histogram.record(282, tokens)
        request.set_attributes(attrs)
        request.end()

    per_request_us(signals, max(10, n // 10))
    value = per_request_us(signals, n)
    meter_provider.shutdown()
    tracer_provider.shutdown()
    return value


def per_request_us(call: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


def measure(call: Callable[[], None], n: int) -> tuple[float, float, float]:
    """µs per request: the loop's wall time (the request path; the recorder
    thread, when it runs, shares the GIL), the CPU time of the requesting
    thread, and the process's CPU time over the loop and the flush that
    records what it queued (every thread's)."""
    wall, on_thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(n):
        call()
    wall, on_thread = time.perf_counter() - wall, time.thread_time() - on_thread
    recorder.flush()
    process = time.process_time() - process
    return wall / n * 1e6, on_thread / n * 1e6, process / n * 1e6


COLUMNS = ("wall", "thread CPU", "total CPU")


def hooks(n: int, rounds: int) -> dict[str, tuple[float, ...]]:
    provider = create_provider("primary", ProviderConfig(kind="ollama", model="llama3.2"))
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
    for _ in range(rounds):
        for name, config in CONFIGS.items():
            with config():
                measure(lambda: one_request(provider), max(10, n // 10))  # warm up
                samples[name].append(measure(lambda: one_request(provider), n))
    provider.close()
    return {
        name: tuple(statistics.median(v[i] for v in values) for i in range(len(COLUMNS)))
        for name, values in samples.items()
    }


E2E = ("mean", "p50", "p90", "p99", "CPU")


def end_to_end(n: int, rounds: int) -> dict[str, tuple[float, ...]]:
    """``Runtime.chat`` on the C upstream (out of process, so that no server
    thread shares the GIL): mean, p50, p90 and p99 latency (µs), and the
    process's CPU time per request (µs, the recorder's flush included)."""
    names = ("hooks off", "SDK inline", "SDK")
    latencies: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    count = n // 5 or 1
    with canned_ollama(3) as url:
        config = {"provider": {"primary": {"kind": "ollama", "base_url": url}}}
        with Runtime.from_config(config) as rt:
            for _ in range(rounds):
                for name in names:
                    with CONFIGS[name]():
                        for _ in range(max(5, n // 20)):
                            rt.chat("llama3.2", MESSAGES)
                        started = time.process_time()
                        for _ in range(count):
                            t = time.perf_counter()
                            rt.chat("llama3.2", MESSAGES)
                            latencies[name].append(time.perf_counter() - t)
                        recorder.flush()
                        cpu[name].append((time.process_time() - started) / count)
    out = {}
    for name in names:
        ordered = sorted(latencies[name])

        def at(q: float, ordered: list[float] = ordered) -> float:
            return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6

        mean = statistics.fmean(ordered) * 1e6
        out[name] = (mean, at(0.5), at(0.9), at(0.99), statistics.median(cpu[name]) * 1e6)
    return out


def main(n: int = 5000, rounds: int = 7) -> None:
    print(f"telemetry hooks, one request's path, median of {rounds} rounds × {n} requests")
    print("cost = configuration − hooks off, µs per request")
    results = hooks(n, rounds)
    floor = results["hooks off"]
    header = "".join(f" {c:>11} {'cost':>7}" for c in COLUMNS)
    print(f"{'configuration':<18}{header}")
    for name, values in results.items():
        cells = "".join(f" {v:>11.2f} {v - f:>7.2f}" for v, f in zip(values, floor, strict=True))
        print(f"{name:<18}{cells}")
    alone = sdk_calls_alone(n)
    print(f"the SDK's own cost of these signals, called directly: {alone:.2f} µs/request")
    count = n // 5 or 1
    print(f"\nend to end, Runtime.chat on the C upstream, {rounds} rounds × {count} requests, µs")
    e2e = end_to_end(n, rounds)
    print(f"{'configuration':<18}" + "".join(f" {c:>9}" for c in E2E))
    for name, values in e2e.items():
        print(f"{name:<18}" + "".join(f" {v:>9.1f}" for v in values))


if __name__ == "__main__":
    from benchmarks._peers import smoke

    tiny, rest = smoke(sys.argv[1:])
    main(*([50, 2] if tiny else [int(a) for a in rest[:2]]))
