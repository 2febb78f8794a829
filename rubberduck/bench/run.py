"""One benchmark: the load through a Runtime (optionally a sweep of concurrencies),
the runtime's circuit openings, and the same load straight to the backend."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from rubberduck.bench.circuits import CircuitWatch
from rubberduck.bench.clients import Endpoint, direct_sender, runtime_sender
from rubberduck.bench.load import LoadSpec, run_load
from rubberduck.bench.metrics import RequestRecord, summarize
from rubberduck.bench.prompts import BenchPrompt
from rubberduck.errors import InvalidRequest
from rubberduck.runtime import Runtime

__all__ = ["BenchPlan", "benchmark", "parse_goodput"]


class BenchPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to benchmark, and how.

    Attributes:
        endpoint: ``"chat"``, ``"generate"`` or ``"embed"``.
        model: Model name; ``None``: each backend's default.
        backend: Send only to this backend (no fallback elsewhere); ``None``: all.
        fallback: ``False``: each request to its first candidate only.
        load: The load (for a sweep, its ``concurrency`` is replaced per step).
        sweep: Concurrencies to run one after another; ``()``: one run.
        goodput_ms: SLOs in milliseconds (``ttft``, ``tpot``, ``e2el``).
        compare_direct: Also send the same load straight to the backend.
    """

    endpoint: Endpoint = "chat"
    model: str | None = None
    backend: str | None = None
    fallback: bool = True
    load: LoadSpec = LoadSpec()
    sweep: tuple[int, ...] = ()
    goodput_ms: dict[str, float] | None = None
    compare_direct: bool = False


def parse_goodput(items: Iterable[str]) -> dict[str, float]:
    """``["ttft:500", "tpot:50"]`` → ``{"ttft": 500.0, "tpot": 50.0}`` (milliseconds).

    Raises:
        InvalidRequest: an item is not ``NAME:MS`` with NAME one of ttft, tpot, e2el
            and MS a number above 0.
    """
    slos: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition(":")
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if name not in ("ttft", "tpot", "e2el") or not ms > 0:
            raise InvalidRequest(
                f"--goodput takes NAME:MS with NAME ttft, tpot or e2el (got {item!r})"
            )
        slos[name] = ms
    return slos


def benchmark(
    rt: Runtime,
    plan: BenchPlan,
    prompts: Callable[[], Iterable[BenchPrompt]],
    on_record: Callable[[RequestRecord], None] | None = None,
) -> dict[str, Any]:
    """Run ``plan`` against ``rt``; returns the figures (see
    :func:`rubberduck.bench.metrics.summarize`) plus ``circuit_openings`` (per
    backend), ``concurrency``/``rate``, and with a sweep ``sweep`` (one result per
    concurrency; the top-level figures are the last step's), with
    ``compare_direct`` ``direct`` (the plain client's figures) and
    ``overhead_ratio`` (RubberDuck's figure over the direct one).

    Args:
        rt: The runtime whose setup is measured.
        plan: What to run.
        prompts: The prompts of each run (called once per run; an iterator it
            returns again goes on where the last run stopped, so that no run
            resends a prompt whose prefix the server has cached).
        on_record: Called with each measured record (progress).

    Raises:
        InvalidRequest: the plan is invalid (an unknown backend, a bad load);
            nothing was sent.
    """
    plan.load.check()
    if plan.backend is not None and plan.backend not in rt.providers:
        raise InvalidRequest(
            f"--backend {plan.backend!r} is not configured — the backends are: "
            f"{', '.join(rt.providers)}"
        )
    direct = _direct(rt, plan) if plan.compare_direct else None
    send = runtime_sender(
        rt,
        plan.endpoint,
        plan.model,
        backends=[plan.backend] if plan.backend else None,
        fallback=plan.fallback and plan.backend is None,
    )
    steps = plan.sweep or (plan.load.concurrency,)
    points = []
    for concurrency in steps:
        spec = msgspec.structs.replace(plan.load, concurrency=concurrency)
        with CircuitWatch(rt) as watch:
            run = run_load(send, prompts(), spec, on_record)
        point = summarize(run.records, run.duration_s, plan.goodput_ms)
        point |= {"concurrency": concurrency, "rate": spec.rate}
        point["circuit_openings"] = watch.openings
        if direct is not None:
            base = run_load(direct, prompts(), spec, on_record)
            point |= _compared(point, summarize(base.records, base.duration_s, plan.goodput_ms))
        points.append(point)
    result = dict(points[-1])
    if plan.sweep:
        result["sweep"] = points
    return result


def _direct(rt: Runtime, plan: BenchPlan) -> Any:
    """The plain client for ``--backend``, else for the first HTTP backend."""
    names = [plan.backend] if plan.backend else list(rt.config.provider)
    for name in names:
        cfg = rt.config.provider[name]
        if (cfg.kind or name) in ("ollama", "openai") or plan.backend:
            url = getattr(rt.providers[name], "base_url", None)
            return direct_sender(cfg, plan.endpoint, plan.model, name, url)
    raise InvalidRequest("--compare-direct needs an Ollama or OpenAI-compatible backend")


def _compared(ours: Mapping[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    def ratio(key: str) -> float | None:
        a, b = ours.get(key), theirs.get(key)
        return a / b if a is not None and b else None

    theirs.pop("per_backend", None)
    return {
        "direct": theirs,
        "overhead_ratio": {
            key: ratio(key)
            for key in ("mean_ttft_ms", "mean_e2el_ms", "mean_itl_ms", "output_throughput")
        },
    }
