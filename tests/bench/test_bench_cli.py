"""``rubberduck bench`` end to end against fake Ollama servers: the JSON names,
failures counted under a fault mix, fallbacks reported, routing flags, the open
loop, a sweep with its plot, the direct client, and bad input refused."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubberduck.bench import LoadSpec, run_load, synthetic
from rubberduck.bench.load import arrival_gaps
from rubberduck.bench.metrics import LATENCIES, RequestRecord
from rubberduck.bench.prompts import load_jsonl
from rubberduck.cli import main
from rubberduck.errors import InvalidRequest
from tests.fake_ollama import FakeOllama

#: The names `--json` promises (issue 14): scripts rely on them.
FLAT_NAMES = {
    "completed",
    "failed",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "request_goodput",
    "prompt_eval_tokens_per_s",
    "eval_tokens_per_s",
    "load_s",
    "fallbacks",
    "skipped_open_circuit",
    "retries",
    "restarts",
    "substitutions",
    "per_backend",
} | {f"{s}_{n}_ms" for s in ("mean", "median", "std", "p90", "p95", "p99") for n in LATENCIES}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[str, FakeOllama, FakeOllama]]:
    """A config of two fake Ollamas: ``primary`` (first) and ``spare``."""
    with FakeOllama() as primary, FakeOllama() as spare:
        path = tmp_path / "rubberduck.toml"
        path.write_text(
            "[router]\nretries = 0\n"
            + "".join(
                f'[provider.{n}]\nkind = "ollama"\nbase_url = "{s.url}"\nmodel = "llama3.2"\n'
                for n, s in (("primary", primary), ("spare", spare))
            )
        )
        yield str(path), primary, spare


def bench(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> dict[str, Any]:
    assert main(["bench", "--json", *argv]) == code
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_json_has_the_promised_names_and_sends_num_predict(
    two: tuple[str, FakeOllama, FakeOllama], capsys: pytest.CaptureFixture[str]
) -> None:
    config, primary, _ = two
    r = bench(
        capsys,
        "--config",
        config,
        "--requests",
        "6",
        "--concurrency",
        "3",
        "--output-tokens",
        "7",
        "--goodput",
        "ttft:60000",
        "tpot:60000",
    )
    assert FLAT_NAMES <= r.keys()
    assert (r["completed"], r["failed"], r["fallbacks"]) == (6, 0, 0)
    assert r["request_goodput"] == pytest.approx(r["request_throughput"])  # generous SLOs
    # From the transcript's own fields: eval_count 282 in 4.5356 s, load 1.33 ms.
    assert r["eval_tokens_per_s"] == pytest.approx(282 / 4.535599)
    assert r["load_s"] == pytest.approx(6 * 0.001334875)
    assert r["per_backend"]["primary"]["completed"] == 6
    assert {p["options"]["num_predict"] for p in primary.posts()} == {7}


def test_fault_mix_failures_are_counted_and_fallbacks_reported(
    two: tuple[str, FakeOllama, FakeOllama], capsys: pytest.CaptureFixture[str]
) -> None:
    config, primary, spare = two
    primary.fault_rate, primary.faults = 0.5, ("busy", "server_error", "midstream")
    primary._rng = random.Random(7)
    r = bench(capsys, "--config", config, "--requests", "30", "--concurrency", "4")
    assert r["completed"] + r["failed"] == 30
    before_first_chunk = primary.faults_injected.count("busy") + primary.faults_injected.count(
        "server_error"
    )
    midstream = primary.faults_injected.count("midstream")
    # A 503/500 falls back to the spare; a break mid-stream fails (mid_stream="error").
    assert r["failed"] == midstream
    assert r["fallbacks"] == before_first_chunk > 0
    # The spare also takes requests the Router balances onto it, or sends there while
    # the primary's circuit is open.
    spare_done = r["per_backend"]["spare"]["completed"]
    assert spare_done >= before_first_chunk and spare_done == len(spare.posts())
    assert r["skipped_open_circuit"] == 0 or r["circuit_openings"]["primary"] > 0


def test_backend_sends_only_there_and_no_fallback_fails_instead(
    two: tuple[str, FakeOllama, FakeOllama], capsys: pytest.CaptureFixture[str]
) -> None:
    config, primary, spare = two
    r = bench(capsys, "--config", config, "--requests", "3", "--backend", "spare")
    assert r["completed"] == 3 and not primary.posts() and len(spare.posts()) == 3
    primary.mode = "busy"
    r = bench(capsys, "--config", config, "--requests", "3", "--no-fallback", code=1)
    assert (r["completed"], r["failed"], r["fallbacks"]) == (0, 3, 0)
    assert len(spare.posts()) == 3  # the spare got nothing more


def test_generate_and_embed_endpoints_and_the_open_loop(
    two: tuple[str, FakeOllama, FakeOllama], capsys: pytest.CaptureFixture[str]
) -> None:
    config, primary, _ = two
    r = bench(
        capsys,
        "--config",
        config,
        "--endpoint",
        "generate",
        "--requests",
        "4",
        "--rate",
        "200",
        "--seed",
        "1",
    )
    assert r["completed"] == 4 and r["mean_ttft_ms"] is not None and r["rate"] == 200
    r = bench(capsys, "--config", config, "--endpoint", "embed", "--requests", "3")
    assert r["completed"] == 3 and r["mean_ttft_ms"] is None and r["mean_e2el_ms"] > 0
    paths = [path for method, path, _ in primary.requests if method == "POST"]
    assert paths == ["/api/generate"] * 4 + ["/api/embed"] * 3


def test_sweep_plot_results_file_and_direct_comparison(
    two: tuple[str, FakeOllama, FakeOllama], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the `plot` extra")
    config, primary, _ = two
    png, out = tmp_path / "sweep.png", tmp_path / "results.json"
    r = bench(
        capsys,
        "--config",
        config,
        "--requests",
        "4",
        "--sweep",
        "1,2",
        "--plot",
        str(png),
        "--results",
        str(out),
        "--compare-direct",
        "--backend",
        "primary",
    )
    assert [p["concurrency"] for p in r["sweep"]] == [1, 2]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(out.read_text())["sweep"][1]["completed"] == 4
    assert r["direct"]["completed"] == 4 and r["overhead_ratio"]["mean_e2el_ms"] > 0
    assert len(primary.posts()) == 2 * (4 + 4)  # each step: RubberDuck, then direct


def test_table_output(
    two: tuple[str, FakeOllama, FakeOllama], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = two
    assert main(["bench", "--config", config, "--requests", "2"]) == 0
    out = capsys.readouterr().out
    assert "Completed requests" in out and "P99 TTFT (ms)" in out and "Fallbacks" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--rate", "0"], "--rate"),
        (["--sweep", "1,x"], "--sweep"),
        (["--goodput", "latency:5"], "--goodput"),
        (["--input-tokens", "0"], "--input-tokens"),
        (["--backend", "nope"], "nope"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    two: tuple[str, FakeOllama, FakeOllama],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    config, primary, spare = two
    assert main(["bench", "--config", config, "--requests", "2", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not primary.posts() and not spare.posts()


def test_closed_loop_sends_exactly_the_requests_after_the_warmup() -> None:
    sent: list[str] = []

    def send(prompt: Any) -> RequestRecord:
        sent.append(prompt.text)
        return RequestRecord(ok=True)

    run = run_load(send, synthetic(5, 2), LoadSpec(concurrency=3, requests=10, warmup=2))
    assert len(run.records) == 10 and len(sent) == 12 and len(set(sent)) == 12
    assert sent[0].startswith("0:") and sent[1].startswith("1:")


def test_duration_bounds_a_run_without_a_request_count() -> None:
    run = run_load(
        lambda p: RequestRecord(ok=True),
        synthetic(3, None),
        LoadSpec(concurrency=2, requests=None, duration_s=0.05),
    )
    assert run.records  # it stopped, with some requests sent


def test_arrival_gaps_have_the_rate_as_mean() -> None:
    gaps = arrival_gaps(4.0, 0.5, random.Random(3))
    drawn = [next(gaps) for _ in range(20000)]
    assert sum(drawn) / len(drawn) == pytest.approx(0.25, rel=0.05)


def test_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '"hello there"\n\n{"prompt": "a b c", "output_tokens": 3}\n'
        '{"messages": [{"role": "user", "content": "hi"}]}\n'
    )
    first, second, third = load_jsonl(path, output_tokens=9)
    assert (first.text, first.output_tokens, first.input_tokens) == ("hello there", 9, 2)
    assert second.output_tokens == 3
    assert third.chat_messages() == [{"role": "user", "content": "hi"}]
    path.write_text('{"nothing": 1}\n')
    with pytest.raises(InvalidRequest, match=":1:"):
        load_jsonl(path)


def test_restarts_and_circuit_openings_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream that breaks mid-way restarts on the spare (``restarts``, a
    fallback); a primary that keeps failing opens its circuit, and the requests
    after that skip it (``circuit_openings``, ``skipped_open_circuit``)."""
    with FakeOllama(script=("midstream",)) as primary, FakeOllama() as spare:
        path = tmp_path / "rubberduck.toml"
        path.write_text(
            '[router]\nretries = 0\nmid_stream = "restart"\n'
            "[health]\nfailure_threshold = 2\ncooldown = 60\nmax_cooldown = 60\n"
            + "".join(
                f'[provider.{n}]\nkind = "ollama"\nbase_url = "{s.url}"\nmodel = "llama3.2"\n'
                for n, s in (("primary", primary), ("spare", spare))
            )
        )
        r = bench(capsys, "--config", str(path), "--requests", "1")
        assert (r["completed"], r["restarts"], r["fallbacks"]) == (1, 1, 1)
        primary.mode = "server_error"
        r = bench(capsys, "--config", str(path), "--requests", "6")
        assert r["completed"] == 6 and r["failed"] == 0
        assert r["circuit_openings"]["primary"] == 1
        # Each request either failed on the primary first (the two that opened the
        # circuit, and any routed before the Router heard) or skipped it.
        assert r["fallbacks"] >= 2 and r["skipped_open_circuit"] >= 1
        assert r["fallbacks"] + r["skipped_open_circuit"] == 6
