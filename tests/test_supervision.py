"""Actor crashes inside a running Runtime: a crashed actor is restarted at once,
its requests are handed on (or fail with a typed error once a chunk was
delivered), and past the restart intensity the Runtime reports the escalation."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from typing import Any

import pytest

from rubberduck import (
    Delta,
    Done,
    ProviderUnavailable,
    Restart,
    Runtime,
    StreamInterrupted,
)
from rubberduck.actors.provider import ProviderActor
from rubberduck.messages import Crash
from tests.conftest import ANSWER, HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama, free_port

pytestmark = pytest.mark.usefixtures("no_thread_left")


def crash(rt: Runtime, actor: str) -> Any:
    """Make ``actor`` raise as a bug would; returns the ref it had."""
    old = rt._registry.get(actor)
    assert old is not None
    old.tell(Crash("test"))
    return old


def restarted(rt: Runtime, actor: str, old: Any) -> bool:
    def new_one() -> bool:
        ref = rt._registry.get(actor)
        return ref is not None and ref is not old and ref.is_alive()

    return wait_until(new_one, 3)


def test_crashed_provider_actor_is_back_within_100_ms_and_serves(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url, supervisor={"max_restarts": 10}) as rt:
        gaps = []
        for _ in range(7):
            started = time.monotonic()
            old = crash(rt, "provider:primary")
            assert restarted(rt, "provider:primary", old)
            gaps.append(time.monotonic() - started)
            assert rt.chat("llama3.2", HI).provider == "primary"
    assert statistics.median(gaps) < 0.1, gaps


def test_requests_of_a_crashed_actor_move_to_another_backend(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "hang"  # no headers, no chunk: nothing has reached the caller
    cfg = {"max_in_flight": 1, "max_queue": 8}
    with runtime_for(primary.url, backup.url, primary_cfg=cfg) as rt:
        handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(3)]  # 1 runs, 2 wait
        assert wait_until(lambda: len(primary.posts()) == 1)
        crash(rt, "provider:primary")
        replies = [h.result(timeout=5) for h in handles]
    assert [r.provider for r in replies] == ["backup"] * 3
    assert all(r.message.content == ANSWER for r in replies)
    assert all("crashed" in r.fallbacks[0] for r in replies)
    assert wait_until(lambda: primary.disconnects == 1), "the running call must be closed"
    assert len(primary.posts()) == 1, "queued requests must not reach the old backend"


def test_a_crash_does_not_touch_the_next_attempt_of_a_request_it_handed_on(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, backup = servers
    primary.mode, backup.mode = "busy", "hang"
    # Hold primary's worker between handing the request on and letting go of it.
    gate = threading.Event()
    let_go = ProviderActor._left

    def slow_left(actor: ProviderActor, handle: Any) -> None:
        if actor.backend == "primary":
            gate.wait(5)
        let_go(actor, handle)

    monkeypatch.setattr(ProviderActor, "_left", slow_left)
    try:
        with runtime_for(primary.url, backup.url) as rt:
            handle = rt.chat("llama3.2", HI, stream=True)
            assert wait_until(lambda: len(backup.posts()) == 1)
            old = crash(rt, "provider:primary")
            assert restarted(rt, "provider:primary", old)
            time.sleep(0.2)
            assert backup.disconnects == 0, "the crash closed backup's call"
            assert not handle.finished
    finally:
        gate.set()


def test_crash_after_the_first_chunk_is_a_typed_error(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "stall"  # one chunk, then silence
    with runtime_for(primary.url, backup.url) as rt:
        stream = iter(rt.stream_chat("llama3.2", HI))
        assert next(stream) == Delta("The")
        crash(rt, "provider:primary")
        with pytest.raises(StreamInterrupted, match="crashed") as info:
            next(stream)
    assert info.value.partial_text == "The"
    assert backup.posts() == []


def test_crash_after_the_first_chunk_restarts_elsewhere_when_asked(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "stall"
    with runtime_for(primary.url, backup.url) as rt:
        handle = rt.stream_chat("llama3.2", HI, mid_stream="restart")
        events = [next(iter(handle))]
        crash(rt, "provider:primary")
        events += list(handle)
    assert events[0] == Delta("The")
    assert isinstance(events[1], Restart)
    assert (events[1].provider, events[1].discarded_text) == ("primary", "The")
    assert "".join(e.text for e in events[2:] if isinstance(e, Delta)) == ANSWER
    assert isinstance(events[-1], Done) and events[-1].provider == "backup"


def test_router_crash_loses_no_request(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        old = crash(rt, "router")
        # These land in the dying router's mailbox, or wait for the new one.
        handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(20)]
        replies = [h.result(timeout=5) for h in handles]
        assert restarted(rt, "router", old)
    assert all(r.message.content == ANSWER for r in replies)


def test_health_monitor_crash_starts_the_router_view_over(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    _, backup = servers
    closed = f"http://127.0.0.1:{free_port()}"
    with runtime_for(closed, backup.url, cooldown=30.0) as rt:
        assert wait_until(lambda: rt.health()["primary"].state != "closed")
        old = crash(rt, "health")
        assert restarted(rt, "health", old)
        # The fresh monitor probes at once and finds the backend down again.
        assert wait_until(lambda: rt.health()["primary"].state != "closed")
        assert rt.chat("llama3.2", HI).provider == "backup"


def test_too_many_restarts_escalate_and_are_reported(
    servers: tuple[FakeOllama, FakeOllama], caplog: pytest.LogCaptureFixture
) -> None:
    primary, backup = servers
    primary.mode = "stall"
    caplog.set_level(logging.ERROR, logger="rubberduck.supervisor")
    with runtime_for(primary.url, backup.url) as rt:
        stream = iter(rt.stream_chat("llama3.2", HI))
        assert next(stream) == Delta("The")
        for _ in range(4):  # the intensity allows 3 in 5 s
            old = crash(rt, "provider:backup")
            assert wait_until(lambda o=old: rt._registry.get("provider:backup") is not o)
        assert wait_until(lambda: rt.escalation is not None)
        with pytest.raises(ProviderUnavailable, match="gave up"):
            rt.health()
        with pytest.raises(ProviderUnavailable, match="gave up"):
            rt.chat("llama3.2", HI)
        with pytest.raises((ProviderUnavailable, StreamInterrupted)):
            next(stream)  # the request in flight ends, typed
    assert any("supervisor gave up" in r.getMessage() for r in caplog.records)
