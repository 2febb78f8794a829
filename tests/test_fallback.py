"""The runtime end to end over HTTP: routing, fallback, health, cancellation,
deadlines — two fault-injecting Ollama-protocol servers, no model needed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rubberduck import (
    AllProvidersFailed,
    Cancelled,
    Delta,
    Done,
    InvalidRequest,
    RequestTimeout,
    Runtime,
    StreamInterrupted,
)
from rubberduck.actors.router import Router
from rubberduck.actors.routing import RoutingTable
from tests.conftest import ANSWER, HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama, free_port

pytestmark = pytest.mark.usefixtures("no_thread_left")


def test_healthy_primary_serves_and_reports_usage(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        reply = rt.chat("llama3.2", HI)
    assert reply.message.content == ANSWER
    assert (reply.provider, reply.done_reason, reply.cost_usd) == ("primary", "stop", 0.0)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (26, 282)
    assert reply.fallbacks == ()
    assert primary.posts()[0]["stream"] is False
    assert backup.posts() == []


def test_health_counts_every_answered_request_at_once(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url, interval=60.0, cooldown=60.0) as rt:
        for _ in range(5):
            rt.chat("llama3.2", HI)
        health = rt.health()["primary"]  # no tick in between: read with the snapshot
    assert (health.requests, health.failures, health.failure_ratio) == (5, 0, 0.0)
    assert health.latency_p50_s is not None and health.latency_p50_s > 0


def test_the_failure_rate_weighs_failures_after_the_successes_before_them(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    rate = {"failure_rate": 0.5, "min_requests": 4, "window": 60.0, "failure_threshold": 99}
    with runtime_for(primary.url, backup.url, interval=60.0, cooldown=60.0, **rate) as rt:
        for _ in range(3):
            assert rt.chat("llama3.2", HI).provider == "primary"
        primary.mode = "busy"
        for _ in range(2):
            assert rt.chat("llama3.2", HI).provider == "backup"
        health = rt.health()["primary"]
        assert (health.state, health.failure_ratio) == ("closed", 0.4)
        rt.chat("llama3.2", HI)  # 3 of 6 failed: the rate is reached
        assert wait_until(lambda: rt.health()["primary"].state == "open")


@pytest.mark.parametrize("mode", ["busy", "drop"])
def test_failing_primary_falls_back_and_is_marked_down(
    servers: tuple[FakeOllama, FakeOllama], mode: str
) -> None:
    primary, backup = servers
    primary.mode = mode
    # A long cooldown keeps the circuit open while the test looks at it.
    with runtime_for(primary.url, backup.url, cooldown=30.0) as rt:
        first = rt.chat("llama3.2", HI)
        assert first.message.content == ANSWER
        assert first.provider == "backup"
        assert first.fallbacks and first.fallbacks[0].startswith("primary: ")
        rt.chat("llama3.2", HI)  # a second failure reaches the threshold (2)
        assert wait_until(lambda: rt.health()["primary"].state != "closed")
        health = rt.health()
        assert health["primary"].last_error
        assert health["backup"].state == "closed"
        tried = len(primary.posts())
        third = rt.chat("llama3.2", HI)
        assert third.provider == "backup"
        assert "circuit open" in third.fallbacks[0]
        assert len(primary.posts()) == tried, "an open circuit must not receive user requests"


def test_refused_connection_opens_the_circuit_at_once(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    _, backup = servers
    closed = f"http://127.0.0.1:{free_port()}"
    with runtime_for(closed, backup.url, failure_threshold=5, cooldown=30.0) as rt:
        reply = rt.chat("llama3.2", HI)
        assert reply.provider == "backup"
        assert "not reachable" in reply.fallbacks[0] and "ollama serve" in reply.fallbacks[0]
        assert wait_until(lambda: rt.health()["primary"].state in ("open", "half_open"))


def test_backend_that_comes_back_is_used_again_after_a_probe(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "drop"
    with runtime_for(primary.url, backup.url) as rt:
        assert wait_until(lambda: rt.health()["primary"].state != "closed")
        posts_while_down = len(primary.posts())
        primary.mode = "ok"
        assert wait_until(lambda: rt.health()["primary"].state == "closed")
        assert len(primary.posts()) == posts_while_down, "the probe, not a user request, decides"
        assert rt.chat("llama3.2", HI).provider == "primary"


def test_a_request_right_after_health_says_closed_goes_there_whatever_the_router_knows(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, backup = servers
    primary.mode = "drop"
    held, release = threading.Event(), threading.Event()
    receive = Router.receive

    def holding(router: Router, message: Any) -> Any:
        if held.is_set():
            release.wait(10)  # the Router's mailbox is held: it hears of nothing
        return receive(router, message)

    monkeypatch.setattr(Router, "receive", holding)
    with runtime_for(primary.url, backup.url) as rt:
        try:
            assert wait_until(lambda: "primary" in _published(rt).down)
            held.set()
            primary.mode = "ok"
            assert wait_until(lambda: rt.health()["primary"].state == "closed")
            assert rt.chat("llama3.2", HI).provider == "primary"
            # And the other way: health() says open, no request goes there.
            primary.mode = "drop"
            assert wait_until(lambda: rt.health()["primary"].state != "closed")
            posts = len(primary.posts())
            assert rt.chat("llama3.2", HI).provider == "backup"
            assert len(primary.posts()) == posts
        finally:
            release.set()


def test_model_not_found_moves_on_with_the_pull_hint(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "not_found"
    with runtime_for(primary.url, backup.url) as rt:
        reply = rt.chat("llama3.2", HI)
    assert reply.provider == "backup"
    assert "ollama pull llama3.2" in reply.fallbacks[0]


def test_all_backends_failing_raises_with_every_cause(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode, backup.mode = "busy", "not_found"
    with runtime_for(primary.url, backup.url) as rt, pytest.raises(AllProvidersFailed) as info:
        rt.chat("llama3.2", HI)
    causes = info.value.causes
    assert list(causes) == ["primary", "backup"]
    assert "server busy" in causes["primary"].message
    assert "ollama pull" in causes["backup"].message
    assert "ollama pull" in str(info.value)


def test_bad_request_is_not_sent_to_another_backend(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "bad_request"
    with runtime_for(primary.url, backup.url) as rt, pytest.raises(InvalidRequest, match="num_ctx"):
        rt.chat("llama3.2", HI)
    assert backup.posts() == []


def test_stream_broken_after_first_chunk_is_not_restarted(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    for mode in ("midstream", "error_line"):
        primary.mode = mode
        with runtime_for(primary.url, backup.url) as rt:
            events: list[Any] = []
            with pytest.raises(StreamInterrupted) as info:
                for event in rt.stream_chat("llama3.2", HI):
                    events.append(event)
        assert [e.text for e in events] == ["The", " sky"]
        assert info.value.partial_text == "The sky"
        assert info.value.provider == "primary"
    assert backup.posts() == []


def test_streaming_yields_deltas_then_done(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        events = list(rt.stream_chat("llama3.2", HI))
    assert [type(e) for e in events] == [Delta, Delta, Delta, Done]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == ANSWER
    assert primary.posts()[0]["stream"] is True  # sent, as the official client sends it


def test_closing_a_stream_early_cancels_the_http_call(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "stall"
    with runtime_for(primary.url, backup.url) as rt:
        stream = rt.stream_chat("llama3.2", HI)
        first = next(iter(stream))
        assert isinstance(first, Delta)
        started = time.monotonic()
        stream.close()
        assert wait_until(lambda: primary.disconnects == 1, 3)
        assert time.monotonic() - started < 2
        with pytest.raises(Cancelled):
            stream.result()


def test_deadline_ends_a_stalled_request(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "stall"
    with runtime_for(primary.url, backup.url) as rt:
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            rt.chat("llama3.2", HI, timeout=0.5)
        assert time.monotonic() - started < 2
        assert wait_until(lambda: primary.disconnects == 1, 3)


def test_full_queue_answers_busy_and_falls_back(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "stall"
    config = {
        "provider": {
            "primary": {"kind": "ollama", "base_url": primary.url, "model": "llama3.2",
                        "max_in_flight": 1, "max_queue": 0},
            "backup": {"kind": "ollama", "base_url": backup.url, "model": "llama3.2"},
        },
    }  # fmt: skip
    with Runtime.from_config(config) as rt:
        stalled = rt.stream_chat("llama3.2", HI)
        assert isinstance(next(iter(stalled)), Delta)
        reply = rt.chat("llama3.2", HI)
        assert reply.provider == "backup"
        assert "requests running" in reply.fallbacks[0]
        stalled.close()


def test_many_concurrent_requests_each_end_once(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url) as rt:
        handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(40)]
        outcomes = [h.result(timeout=10) for h in handles]
    assert all(o.message.content == ANSWER for o in outcomes)
    assert {o.provider for o in outcomes} == {"backup"}


def test_close_with_requests_in_flight_ends_them(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = backup.mode = "stall"
    rt = runtime_for(primary.url, backup.url)
    handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(3)]
    assert wait_until(lambda: len(primary.posts()) >= 1)
    rt.close()
    for handle in handles:
        with pytest.raises(Cancelled):
            handle.result(timeout=5)


def test_submit_after_close_is_a_typed_error(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    rt = runtime_for(primary.url, backup.url)
    rt.close()
    with pytest.raises(Exception, match="closed") as info:
        rt.chat("llama3.2", HI)
    assert info.type.__module__ == "rubberduck.errors"


def _published(rt: Runtime) -> RoutingTable:
    """The routing table the Router last published for callers."""
    table = rt._registry.routing
    assert table is not None
    return table
