"""Benchmark figures, with vLLM's names and definitions (``vllm bench serve``,
``vllm/benchmarks/serve.py``).

Per request, measured by the client:

- **TTFT** (time to first token): from sending the request to the first streamed
  chunk that carries text (for a non-streamed request: to the answer).
- **E2EL** (end-to-end latency): from sending the request to its last event.
- **TPOT** (time per output token, excluding the first): ``(E2EL − TTFT) /
  (output tokens − 1)``, for requests with more than one output token.
- **ITL** (inter-token latency): each gap between two successive streamed chunks
  of one request. A chunk may carry several tokens, so ITL is per chunk, not per
  token; TPOT is the per-token figure.

Over the run (``duration_s`` is the wall time of the measured requests):
``request_throughput`` (completed requests/s), ``output_throughput`` (output
tokens/s), ``total_token_throughput`` (input + output tokens/s) and
``request_goodput`` (requests/s that met every SLO given: TTFT, TPOT, E2EL,
milliseconds). Statistics are mean, median, population std and percentiles by
linear interpolation (numpy's default), in milliseconds.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "LATENCIES",
    "PERCENTILES",
    "RequestRecord",
    "percentile",
    "summarize",
    "tpot",
]

#: The latency figures, in vLLM's names.
LATENCIES = ("ttft", "tpot", "itl", "e2el")
#: The percentiles reported besides mean, median and std.
PERCENTILES = (90, 95, 99)


class RequestRecord(msgspec.Struct, kw_only=True):
    """What one benchmark request did, as the client saw it.

    Attributes:
        ok: The request completed (a ``Done`` or an answer arrived).
        start: Monotonic time the request was sent, seconds.
        ttft_s: Seconds to the first text chunk (the answer, if not streamed);
            ``None`` if none came (a failure, an embedding).
        e2el_s: Seconds to the last event (or to the failure).
        chunk_times: Monotonic arrival time of each text chunk, seconds.
        output_tokens: Generated tokens (Ollama ``eval_count``; the chunk count
            where the backend reports none).
        input_tokens: Prompt tokens (Ollama ``prompt_eval_count``; the
            prompt's nominal length where the backend reports none).
        prompt_tokens_sent: The prompt's nominal length in tokens, to set against
            ``prompt_eval_count`` (a smaller count means a cached prompt prefix).
        prompt_eval_count: Ollama's ``prompt_eval_count``, ``None`` if not reported.
        provider: The backend that answered (``""`` for a failure).
        tried: Backends attempted, in order (repeats are retry rounds).
        causes: ``backend: reason`` for each backend skipped or failed.
        restarts: Mid-stream restarts (``Restart`` events) during the request.
        substituted: Another model answered (``Done.substituted_for``).
        load_s, prompt_eval_s, eval_s: Ollama's ``load_duration``,
            ``prompt_eval_duration``, ``eval_duration`` in seconds, ``None`` where
            the backend does not report them.
        error: Why the request failed, ``""`` if it did not.
    """

    ok: bool
    start: float = 0.0
    ttft_s: float | None = None
    e2el_s: float = 0.0
    chunk_times: list[float] = []
    output_tokens: int = 0
    input_tokens: int = 0
    prompt_tokens_sent: int = 0
    prompt_eval_count: int | None = None
    provider: str = ""
    tried: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    restarts: int = 0
    substituted: bool = False
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    error: str = ""

    @property
    def itl_s(self) -> list[float]:
        """Gaps between successive text chunks, seconds."""
        t = self.chunk_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def fell_back(self) -> bool:
        """Answered by a backend other than the first one attempted."""
        return self.ok and bool(self.tried) and self.tried[0] != self.provider

    @property
    def retries(self) -> int:
        """Attempts on a backend already attempted (the Router's retry rounds)."""
        return len(self.tried) - len(set(self.tried))

    @property
    def skipped_open_circuit(self) -> bool:
        """Some backend was skipped because its circuit was open."""
        return any("skipped, circuit open" in c for c in self.causes)


def tpot(record: RequestRecord) -> float | None:
    """``(E2EL − TTFT) / (output_tokens − 1)`` seconds, ``None`` with fewer than two
    output tokens or no TTFT."""
    if record.ttft_s is None or record.output_tokens < 2:
        return None
    return (record.e2el_s - record.ttft_s) / (record.output_tokens - 1)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) by linear interpolation between the closest
    ranks, as ``numpy.percentile``'s default.

    Raises:
        ValueError: ``values`` is empty or ``p`` is outside 0–100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0–100 (got {p})")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _stats(name: str, seconds: Sequence[float]) -> dict[str, float | None]:
    """``{mean,median,std,p90,p95,p99}_{name}_ms``; ``None`` for no values."""
    ms = [s * 1000 for s in seconds]
    out: dict[str, float | None] = {
        f"mean_{name}_ms": statistics.fmean(ms) if ms else None,
        f"median_{name}_ms": statistics.median(ms) if ms else None,
        f"std_{name}_ms": statistics.pstdev(ms) if ms else None,
    }
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = percentile(ms, p) if ms else None
    return out


def _good(record: RequestRecord, slo_ms: Mapping[str, float]) -> bool:
    """The request met every SLO (an undefined figure, such as TPOT of a
    one-token answer, counts as 0, as vLLM counts it)."""
    figures = {"ttft": record.ttft_s or 0.0, "tpot": tpot(record) or 0.0, "e2el": record.e2el_s}
    return all(figures[k] * 1000 <= limit for k, limit in slo_ms.items())


def _rate(tokens: float, seconds: float | None) -> float | None:
    return tokens / seconds if seconds else None


def summarize(
    records: Iterable[RequestRecord],
    duration_s: float,
    goodput_ms: Mapping[str, float] | None = None,
    *,
    per_backend: bool = True,
) -> dict[str, Any]:
    """The run's figures under the names ``--json`` prints.

    Args:
        records: The measured requests (not the warm-up).
        duration_s: Wall time of the measured requests, seconds (> 0).
        goodput_ms: SLOs in milliseconds by figure (``ttft``, ``tpot``,
            ``e2el``); ``None``: ``request_goodput`` is ``None``.
        per_backend: Add ``per_backend``: these figures per answering backend.

    Returns:
        A flat dict: ``completed``, ``failed``, throughputs, the latency
        statistics, ``request_goodput``, Ollama's rates (``None`` where no
        backend reported them), the runtime's counts (``fallbacks``,
        ``skipped_open_circuit``, ``retries``, ``restarts``, ``substitutions``)
        and ``errors`` (the ten commonest reasons of failed requests, with counts).

    Raises:
        ValueError: ``duration_s`` is not above 0, or an SLO names an unknown figure.
    """
    if not duration_s > 0:
        raise ValueError(f"duration_s must be above 0 (got {duration_s})")
    unknown = set(goodput_ms or ()) - {"ttft", "tpot", "e2el"}
    if unknown:
        raise ValueError(f"goodput SLOs are ttft, tpot, e2el (got {sorted(unknown)})")
    records = list(records)
    done = [r for r in records if r.ok]
    out_tokens = sum(r.output_tokens for r in done)
    in_tokens = sum(r.input_tokens for r in done)
    result: dict[str, Any] = {
        "completed": len(done),
        "failed": len(records) - len(done),
        "duration_s": duration_s,
        "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens,
        "request_throughput": len(done) / duration_s,
        "output_throughput": out_tokens / duration_s,
        "total_token_throughput": (in_tokens + out_tokens) / duration_s,
        "request_goodput": (
            sum(_good(r, goodput_ms) for r in done) / duration_s if goodput_ms else None
        ),
    }
    result |= _stats("ttft", [r.ttft_s for r in done if r.ttft_s is not None])
    result |= _stats("tpot", [t for r in done if (t := tpot(r)) is not None])
    result |= _stats("itl", [gap for r in done for gap in r.itl_s])
    result |= _stats("e2el", [r.e2el_s for r in done])
    result |= _ollama_figures(done)
    result |= {
        "fallbacks": sum(r.fell_back for r in done),
        "skipped_open_circuit": sum(r.skipped_open_circuit for r in records),
        "retries": sum(r.retries for r in records),
        "restarts": sum(r.restarts for r in records),
        "substitutions": sum(r.substituted for r in done),
        "errors": dict(Counter(r.error[:200] for r in records if not r.ok).most_common(10)),
    }
    if per_backend:
        names = sorted({r.provider for r in done})
        result["per_backend"] = {
            name: summarize(
                [r for r in done if r.provider == name], duration_s, goodput_ms, per_backend=False
            )
            for name in names
        }
    return result


def _ollama_figures(done: list[RequestRecord]) -> dict[str, Any]:
    """Rates from Ollama's own fields, over the requests that reported them."""
    timed = [r for r in done if r.eval_s]
    prompt_timed = [r for r in done if r.prompt_eval_s and r.prompt_eval_count]
    counted = [r for r in done if r.prompt_eval_count is not None]
    loads = [r.load_s for r in done if r.load_s is not None]
    return {
        "prompt_eval_tokens_per_s": _rate(
            sum(r.prompt_eval_count or 0 for r in prompt_timed),
            sum(r.prompt_eval_s or 0.0 for r in prompt_timed),
        ),
        "eval_tokens_per_s": _rate(
            sum(r.output_tokens for r in timed), sum(r.eval_s or 0.0 for r in timed)
        ),
        # Cold loads count: the total, not a mean that a warm majority would hide.
        "load_s": sum(loads) if loads else None,
        "max_load_s": max(loads) if loads else None,
        "prompt_eval_count": sum(r.prompt_eval_count or 0 for r in counted) if counted else None,
        "prompt_tokens_sent": sum(r.prompt_tokens_sent for r in counted) if counted else None,
    }
