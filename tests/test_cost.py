"""Cost: exactly zero for local backends, list prices for cloud ones, a shadow
cost for local answers, running totals and usage events."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from rubberduck import ConfigError, Done, Runtime, Usage
from rubberduck.cost import DEFAULT_PRICES, Price, UsageLedger, find_price
from tests.conftest import HI
from tests.fake_anthropic import FakeAnthropic
from tests.fake_ollama import FakeOllama

KEY = "sk-ant-test-0123456789"


def done(provider: str, model: str, prompt: int, completion: int) -> Done:
    return Done(provider=provider, model=model, usage=Usage(prompt, completion))


def test_price_is_per_million_tokens() -> None:
    assert Price(3.0, 15.0).of(1_000_000, 0) == 3.0
    assert Price(3.0, 15.0).of(2095, 503) == pytest.approx(0.006285 + 0.007545)


def test_a_dated_model_name_takes_its_family_price() -> None:
    assert find_price(DEFAULT_PRICES, "claude-sonnet-4-5-20250929") == Price(3.0, 15.0)
    assert find_price(DEFAULT_PRICES, "gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert find_price(DEFAULT_PRICES, "llama3.2") is None


def test_local_is_free_and_shadow_priced_cloud_is_priced() -> None:
    ledger = UsageLedger({"ollama": True, "claude": False}, shadow_model="gpt-4o")
    local = ledger.price(done("ollama", "llama3.2", 1000, 500))
    assert local.cost_usd == 0.0
    assert local.shadow_cost_usd == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    cloud = ledger.price(done("claude", "claude-sonnet-4-5", 1000, 500))
    assert cloud.cost_usd == pytest.approx((1000 * 3.0 + 500 * 15.0) / 1e6)
    assert cloud.shadow_cost_usd is None
    report = ledger.report()
    assert report.by_backend["ollama"].shadow_cost_usd == local.shadow_cost_usd
    assert report.by_backend["claude"].cost_usd == cloud.cost_usd
    assert report.by_model["llama3.2"].prompt_tokens == 1000


def test_configured_prices_win_and_unpriced_models_are_counted() -> None:
    ledger = UsageLedger({"api": False}, prices={"my-model": Price(1.0, 2.0)})
    assert ledger.price(done("api", "my-model", 10**6, 10**6)).cost_usd == 3.0
    assert ledger.price(done("api", "mystery", 10**6, 10**6)).cost_usd == 0.0
    assert ledger.report().by_backend["api"].unpriced == 1


def test_a_failing_subscriber_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    ledger = UsageLedger({"ollama": True})
    seen: list[Done] = []
    ledger.subscribe(lambda d: 1 / 0)
    unsubscribe = ledger.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="rubberduck.cost"):
        ledger.price(done("ollama", "m", 1, 1))
        assert ledger.flush()
    assert len(seen) == 1 and "subscriber failed" in caplog.text
    unsubscribe()
    ledger.price(done("ollama", "m", 1, 1))
    ledger.close()
    assert len(seen) == 1


def runtime(ollama: str, anthropic: str, **cost: Any) -> Runtime:
    return Runtime.from_config(
        {
            "provider": {
                "ollama": {"kind": "ollama", "base_url": ollama, "model": "llama3.2"},
                "claude": {
                    "kind": "anthropic",
                    "base_url": anthropic,
                    "api_key_env": "RD_TEST_ANTHROPIC_KEY",
                    "model": "claude-3-7-sonnet-20250219",
                },
            },
            "cost": cost,
        }
    )


def test_runtime_prices_each_answer_and_keeps_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RD_TEST_ANTHROPIC_KEY", KEY)
    with FakeOllama() as ollama, FakeAnthropic(KEY) as claude:
        with runtime(ollama.url, claude.url, shadow_model="claude-sonnet-4-5") as rt:
            events: list[Done] = []
            rt.subscribe_usage(events.append)
            # No model: each backend answers with its own (the fake streams, so stream).
            local = rt.chat(None, HI, stream=True).result()
            ollama.mode = "busy"  # the next one falls back to the cloud
            cloud = rt.chat(None, HI, stream=True).result()
            report = rt.usage()
    assert (local.provider, local.cost_usd) == ("ollama", 0.0)
    assert local.done.shadow_cost_usd == pytest.approx(
        Price(3.0, 15.0).of(local.usage.prompt_tokens, local.usage.completion_tokens)
    )
    assert cloud.provider == "claude"
    assert cloud.usage.completion_tokens > 0
    assert cloud.cost_usd == pytest.approx(
        Price(3.0, 15.0).of(cloud.usage.prompt_tokens, cloud.usage.completion_tokens)
    )
    assert [e.provider for e in events] == ["ollama", "claude"]
    assert report.by_backend["claude"].cost_usd == cloud.cost_usd
    assert report.by_backend["ollama"].requests == 1
    assert report.shadow_model == "claude-sonnet-4-5"


def test_a_shadow_model_without_a_price_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cost\.prices"):
        Runtime.from_config(
            {
                "provider": {"ollama": {"base_url": "http://127.0.0.1:9"}},
                "cost": {"shadow_model": "x"},
            }
        )


def _ollama_runtime(url: str) -> Runtime:
    return Runtime.from_config(
        {"provider": {"ollama": {"kind": "ollama", "base_url": url, "model": "llama3.2"}}}
    )


def test_a_slow_subscriber_delays_no_request() -> None:
    gate = threading.Event()
    saw_gate_open: list[bool] = []

    def slow(done: Done) -> None:  # as slow as the test wants (5 s at most)
        saw_gate_open.append(gate.wait(5))

    with FakeOllama() as ollama, _ollama_runtime(ollama.url) as rt:
        rt.subscribe_usage(slow)
        first = rt.chat(None, HI, stream=True).result()
        second = rt.chat(None, HI, stream=True).result()  # the subscriber still blocks
        report = rt.usage()
        gate.set()
    assert first.provider == second.provider == "ollama"
    assert report.by_backend["ollama"].requests == 2, "the totals do not wait for it"
    assert saw_gate_open == [True, True], "both answers came before the subscriber returned"


def test_a_raising_subscriber_is_logged_and_breaks_no_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Done] = []

    def broken(done: Done) -> None:
        raise RuntimeError("subscriber bug")

    with caplog.at_level(logging.ERROR, logger="rubberduck.cost"):
        with FakeOllama() as ollama, _ollama_runtime(ollama.url) as rt:
            rt.subscribe_usage(broken)
            rt.subscribe_usage(seen.append)
            replies = [rt.chat(None, HI, stream=True).result() for _ in range(2)]
    assert [r.provider for r in replies] == ["ollama", "ollama"]
    assert [d.provider for d in seen] == ["ollama", "ollama"], "close() gave them every Done"
    assert caplog.text.count("a usage subscriber failed") == 2
    assert "subscriber bug" in caplog.text


def test_subscribers_run_on_one_usage_thread_not_a_worker() -> None:
    threads: list[str] = []
    with FakeOllama() as ollama, _ollama_runtime(ollama.url) as rt:
        rt.subscribe_usage(lambda done: threads.append(threading.current_thread().name))
        rt.chat(None, HI, stream=True).result()
    assert threads == ["rubberduck-usage"]
