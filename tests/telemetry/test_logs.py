"""Log records: levels, logger names, structured fields, rate limiting, and no
prompt, answer or key in any of them. These run without an OpenTelemetry SDK."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tests
from rubberduck import AllProvidersFailed, ChatRequest, StreamInterrupted
from rubberduck.telemetry import LIMITER, WarningLimiter
from tests.conftest import ANSWER, HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama, free_port

pytestmark = pytest.mark.usefixtures("no_thread_left")

ROOT = Path(tests.__file__).resolve().parent.parent  # the checkout (tests/ is a package)


def _records(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno == level]


def test_a_fallback_warns_from_where_to_where_and_why(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    caplog.set_level(logging.INFO, logger="rubberduck")
    with runtime_for(primary.url, backup.url) as rt:
        rt.chat("llama3.2", HI)
    [record] = _records(caplog, "rubberduck.router", logging.WARNING)
    assert "primary failed (busy:" in record.getMessage()
    assert record.getMessage().endswith("falling back to backup")
    assert (record.backend, record.model) == ("primary", "llama3.2")  # type: ignore[attr-defined]
    assert (record.error_kind, record.fallback_to) == ("busy", "backup")  # type: ignore[attr-defined]
    assert isinstance(record.request_id, int)  # type: ignore[attr-defined]
    starts = _records(caplog, "rubberduck.runtime", logging.INFO)
    assert [r.getMessage() for r in starts] == [
        "runtime started with backends ['primary', 'backup']",
        "runtime closed",
    ]


def test_identical_warnings_are_rate_limited_with_a_count(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    caplog.set_level(logging.WARNING, logger="rubberduck")
    with runtime_for(primary.url, backup.url, failure_threshold=99) as rt:
        for _ in range(5):
            assert rt.chat("llama3.2", HI).provider == "backup"
        LIMITER.interval_s, saved = 0.0, LIMITER.interval_s
        try:
            rt.chat("llama3.2", HI)
        finally:
            LIMITER.interval_s = saved
    records = _records(caplog, "rubberduck.router", logging.WARNING)
    assert len(records) == 2
    assert records[1].suppressed == 4  # type: ignore[attr-defined]
    assert "4 more like this were suppressed" in records[1].getMessage()


def test_the_limiter_lets_one_per_key_per_interval() -> None:
    limiter = WarningLimiter(interval_s=10.0, max_keys=2)
    assert limiter.allow(("a",), now=0.0) == 0
    assert limiter.allow(("a",), now=5.0) is None
    assert limiter.allow(("b",), now=5.0) == 0
    assert limiter.allow(("a",), now=9.0) is None
    assert limiter.allow(("a",), now=10.0) == 2
    limiter.allow(("c",), now=11.0)  # a third key: the oldest is forgotten
    assert len(limiter._seen) == 2


def test_a_circuit_opening_warns_and_its_closing_informs(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    caplog.set_level(logging.INFO, logger="rubberduck")
    with runtime_for(primary.url, backup.url) as rt:
        rt.wait_for_probes()
        primary.mode = "drop"
        assert wait_until(lambda: rt.health()["primary"].state == "open")
        primary.mode = "ok"
        assert wait_until(lambda: rt.health()["primary"].state == "closed")
    [opened] = _records(caplog, "rubberduck.health", logging.WARNING)
    assert opened.getMessage().startswith("circuit of primary opened")
    assert (opened.backend, opened.error_kind) == ("primary", "circuit_open")  # type: ignore[attr-defined]
    [closed] = _records(caplog, "rubberduck.health", logging.INFO)
    assert closed.getMessage() == "circuit of primary closed: the backend is back"


def test_routing_decisions_at_debug_name_a_backend_skipped_for_its_circuit(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    _, backup = servers
    down = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.DEBUG, logger="rubberduck")
    with runtime_for(down, backup.url, cooldown=60.0) as rt:
        assert wait_until(lambda: rt.health()["primary"].state == "open")
        caplog.clear()
        rt.chat("llama3.2", HI)
    debug = _records(caplog, "rubberduck.router", logging.DEBUG)
    skipped = [r for r in debug if "skipped primary, circuit open" in r.getMessage()]
    assert skipped and skipped[0].error_kind == "circuit_open"  # type: ignore[attr-defined]
    assert any(r.getMessage().endswith("candidates ['backup'] (tried [], round 0)") for r in debug)


def test_retry_rounds_mid_stream_failures_and_substitutions_warn(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    caplog.set_level(logging.WARNING, logger="rubberduck")
    router = {"retries": 1, "retry_backoff": 0.01}
    with runtime_for(
        primary.url, backup.url, router=router, failure_threshold=99,
        backup_cfg={"serve_any_model": True},
    ) as rt:  # fmt: skip
        rt.wait_for_probes()
        primary.mode = backup.mode = "busy"
        with pytest.raises(AllProvidersFailed):
            rt.chat("llama3.2", HI)
        primary.mode, backup.mode = "midstream", "ok"
        with pytest.raises(StreamInterrupted):
            list(rt.stream_chat("llama3.2", HI, mid_stream="error"))
        assert rt.chat("qwen3:0.6b", HI).substituted_for == "qwen3:0.6b"
    messages = {r.name: r for r in caplog.records}
    retry = [r for r in caplog.records if "retry round 1 on" in r.getMessage()]
    assert retry and retry[0].name == "rubberduck.router"
    broke = messages["rubberduck.provider.primary"]
    assert broke.levelno == logging.WARNING
    assert "the stream broke after it started" in broke.getMessage()
    assert (broke.backend, broke.error_kind) == ("primary", "unavailable")  # type: ignore[attr-defined]
    [sub] = [r for r in caplog.records if "answered with its own" in r.getMessage()]
    assert sub.name == "rubberduck.router" and sub.levelno == logging.WARNING
    assert sub.error_kind == "substituted"  # type: ignore[attr-defined]


def test_escalation_is_an_error(
    caplog: pytest.LogCaptureFixture, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    from rubberduck.messages import Crash

    primary, backup = servers
    caplog.set_level(logging.WARNING, logger="rubberduck")
    with runtime_for(primary.url, backup.url, supervisor={"max_restarts": 0}) as rt:
        ref = rt._registry.get("provider:backup")
        assert ref is not None
        ref.tell(Crash("test"))
        assert wait_until(lambda: rt.escalation is not None)
    [error] = _records(caplog, "rubberduck.supervisor", logging.ERROR)
    assert error.getMessage().startswith("rubberduck runtime stopped")
    assert error.error_kind == "escalation"  # type: ignore[attr-defined]


def test_no_record_holds_a_prompt_an_answer_or_a_key(
    caplog: pytest.LogCaptureFixture,
    servers: tuple[FakeOllama, FakeOllama],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, prompt = "sk-SECRET-7f3a9c", "PURPLE-ELEPHANT-PROMPT-42"
    monkeypatch.setenv("RD_TEST_KEY", key)
    primary, backup = servers
    caplog.set_level(logging.DEBUG, logger="rubberduck")
    cfg = {"api_key_env": "RD_TEST_KEY"}
    messages = [{"role": "user", "content": prompt}]
    with runtime_for(primary.url, backup.url, primary_cfg=cfg, backup_cfg=cfg) as rt:
        primary.mode = "busy"
        rt.chat("llama3.2", messages)
        primary.mode = "midstream"
        list(rt.stream_chat("llama3.2", messages, mid_stream="restart"))
        primary.mode = "drop"
        assert wait_until(lambda: rt.health()["primary"].state == "open")
        rt.submit(ChatRequest(model="llama3.2", messages=messages)).result()
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert any(h.get("authorization") == f"Bearer {key}" for h in primary.headers)  # sent
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        for secret in (key, prompt, ANSWER, "The sky", "sky is blue"):
            assert secret not in text, (secret, record.name, record.getMessage())


def test_nothing_is_printed_unless_the_application_configures_logging() -> None:
    script = textwrap.dedent(
        """
        from tests.conftest import HI, runtime_for
        from tests.fake_ollama import FakeOllama
        with FakeOllama(mode="busy") as primary, FakeOllama() as backup:
            with runtime_for(primary.url, backup.url) as rt:
                assert rt.chat("llama3.2", HI).provider == "backup"
        print("done")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "done\n", "")
