"""The benchmark figures, from hand-made timings: vLLM's definitions of TTFT, TPOT,
ITL and E2EL, the statistics, goodput, Ollama's rates and the runtime's counts."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rubberduck.bench.metrics import RequestRecord, percentile, summarize, tpot


def record(
    ttft: float, e2el: float, chunks: list[float], tokens: int, **fields: object
) -> RequestRecord:
    """A completed request sent at t=100 s: chunk times are offsets from the send."""
    return RequestRecord(
        ok=True,
        start=100.0,
        ttft_s=ttft,
        e2el_s=e2el,
        chunk_times=[100.0 + c for c in chunks],
        output_tokens=tokens,
        input_tokens=10,
        **fields,  # type: ignore[arg-type]
    )


def test_tpot_is_the_time_after_the_first_token_per_further_token() -> None:
    # 0.5 s to the first token, 1.5 s more for 3 more tokens: 0.5 s per token.
    assert tpot(record(0.5, 2.0, [0.5, 1.0, 1.5, 2.0], tokens=4)) == pytest.approx(0.5)
    assert tpot(record(0.5, 2.0, [0.5], tokens=1)) is None  # one token: undefined


def test_itl_is_each_gap_between_chunks_not_per_token() -> None:
    # Two chunks of 5 tokens each, 1 s apart: one ITL of 1 s; TPOT is per token.
    r = record(0.2, 1.2, [0.2, 1.2], tokens=10)
    assert r.itl_s == pytest.approx([1.0])
    assert tpot(r) == pytest.approx(1.0 / 9)


def test_summary_has_vllms_names_and_values() -> None:
    records = [
        record(0.1, 1.1, [0.1, 0.6, 1.1], tokens=3),
        record(0.3, 2.3, [0.3, 1.3, 2.3], tokens=3),
        RequestRecord(ok=False, e2el_s=5.0, error="boom"),
    ]
    s = summarize(records, duration_s=4.0, goodput_ms={"ttft": 200})
    assert (s["completed"], s["failed"]) == (2, 1)
    assert s["request_throughput"] == pytest.approx(0.5)
    assert s["output_throughput"] == pytest.approx(6 / 4)
    assert s["total_token_throughput"] == pytest.approx((6 + 20) / 4)
    assert s["mean_ttft_ms"] == pytest.approx(200)
    assert s["median_ttft_ms"] == pytest.approx(200)
    assert s["std_ttft_ms"] == pytest.approx(100)  # population std, as numpy's
    assert s["p90_ttft_ms"] == pytest.approx(100 + 0.9 * 200)
    assert s["mean_tpot_ms"] == pytest.approx((500 + 1000) / 2)
    # ITLs are 500, 500, 1000, 1000 ms.
    assert (s["mean_itl_ms"], s["median_itl_ms"], s["p99_itl_ms"]) == pytest.approx(
        (750, 750, 1000)
    )
    assert s["mean_e2el_ms"] == pytest.approx(1700)
    assert s["request_goodput"] == pytest.approx(1 / 4)  # only the 100 ms TTFT met 200 ms
    for name in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p90", "p95", "p99"):
            assert f"{stat}_{name}_ms" in s


def test_goodput_checks_every_slo() -> None:
    fast = record(0.1, 0.5, [0.1, 0.5], tokens=5)  # TPOT 100 ms
    s = summarize([fast], 1.0, {"ttft": 200, "tpot": 50})
    assert s["request_goodput"] == 0.0
    assert summarize([fast], 1.0, {"ttft": 200, "tpot": 150})["request_goodput"] == 1.0
    assert summarize([fast], 1.0)["request_goodput"] is None


def test_no_values_give_none_not_zero() -> None:
    s = summarize([RequestRecord(ok=False, e2el_s=1.0)], 1.0)
    assert s["completed"] == 0 and s["mean_ttft_ms"] is None and s["p99_e2el_ms"] is None
    assert s["eval_tokens_per_s"] is None and s["load_s"] is None


def test_ollama_rates_and_cold_loads() -> None:
    warm = record(
        0.1,
        1.0,
        [0.1],
        tokens=20,
        eval_s=1.0,
        prompt_eval_s=0.5,
        prompt_eval_count=10,
        load_s=0.01,
        prompt_tokens_sent=40,
    )
    cold = record(
        3.0,
        4.0,
        [3.0],
        tokens=20,
        eval_s=1.0,
        prompt_eval_s=0.5,
        prompt_eval_count=30,
        load_s=2.9,
        prompt_tokens_sent=40,
    )
    s = summarize([warm, cold], 5.0)
    assert s["eval_tokens_per_s"] == pytest.approx(40 / 2.0)
    assert s["prompt_eval_tokens_per_s"] == pytest.approx(40 / 1.0)
    assert s["load_s"] == pytest.approx(2.91)  # the cold load is in the total
    assert s["max_load_s"] == pytest.approx(2.9)
    assert (s["prompt_eval_count"], s["prompt_tokens_sent"]) == (40, 80)  # a cached prefix


def test_runtime_counts_and_per_backend() -> None:
    plain = record(0.1, 1.0, [0.1], tokens=2, provider="a", tried=("a",))
    fell = record(
        0.1, 1.0, [0.1], tokens=2, provider="b", tried=("a", "b"), causes=("a: server busy",)
    )
    retried = record(0.1, 1.0, [0.1], tokens=2, provider="a", tried=("a", "a"))
    skipped = record(
        0.1,
        1.0,
        [0.1],
        tokens=2,
        provider="b",
        tried=("b",),
        restarts=1,
        causes=("a: skipped, circuit open: refused",),
        substituted=True,
    )
    s = summarize([plain, fell, retried, skipped], 1.0)
    assert (s["fallbacks"], s["retries"], s["skipped_open_circuit"]) == (1, 1, 1)
    assert (s["restarts"], s["substitutions"]) == (1, 1)
    assert s["per_backend"]["a"]["completed"] == 2 and s["per_backend"]["b"]["fallbacks"] == 1
    assert "per_backend" not in s["per_backend"]["a"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        summarize([], 0.0)
    with pytest.raises(ValueError, match="goodput"):
        summarize([], 1.0, {"latency": 5})
    with pytest.raises(ValueError):
        percentile([], 50)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_lies_within_the_values_and_matches_the_median(
    values: list[float], p: float
) -> None:
    q = percentile(values, p)
    assert min(values) <= q <= max(values)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), abs=1e-6)
    assert percentile(values, 0) == min(values) and percentile(values, 100) == max(values)


@given(
    st.lists(st.floats(0.001, 10), min_size=2, max_size=30),
    st.integers(2, 500),
)
def test_tpot_times_tokens_rebuilds_the_latency(gaps: list[float], tokens: int) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    r = record(times[0], times[-1], times, tokens=tokens)
    rebuilt = r.ttft_s + tpot(r) * (tokens - 1)  # type: ignore[operator]
    assert math.isclose(rebuilt, r.e2el_s, rel_tol=1e-9)
    assert sum(r.itl_s) == pytest.approx(times[-1] - times[0])
