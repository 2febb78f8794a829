"""Routing policy over HTTP: retries with backoff and Retry-After, priorities and
load, the mid-stream policy, deadlines, and recovery within one cooldown."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rubberduck import (
    AllProvidersFailed,
    AuthError,
    Cancelled,
    ConfigError,
    Delta,
    Done,
    InvalidRequest,
    RequestTimeout,
    Restart,
)
from rubberduck.messages import Crash
from tests.conftest import ANSWER, HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama, free_port

pytestmark = pytest.mark.usefixtures("no_thread_left")

FAST_RETRY = {"retries": 2, "retry_backoff": 0.05}


def test_a_503_goes_to_another_backend_before_any_retry(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url, router=FAST_RETRY) as rt:
        reply = rt.chat("llama3.2", HI)
    assert reply.provider == "backup"
    assert len(primary.posts()) == 1


def test_a_lone_busy_backend_is_retried_after_a_backoff(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.script.extend(["busy", "busy"])
    backup.mode = "not_found"
    with runtime_for(primary.url, backup.url, router=FAST_RETRY, failure_threshold=5) as rt:
        reply = rt.chat("llama3.2", HI)
    assert (reply.provider, reply.message.content) == ("primary", ANSWER)
    assert len(primary.posts()) == 3
    gaps = [b - a for a, b in zip(primary.post_times, primary.post_times[1:], strict=False)]
    assert gaps[0] >= 0.05 * 0.5 and gaps[1] >= 0.1 * 0.5, "exponential backoff with jitter"
    assert len(reply.fallbacks) == 1
    assert reply.fallbacks[0].startswith("backup: model 'llama3.2' not found")


def test_retries_are_bounded(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = backup.mode = "busy"
    with runtime_for(primary.url, backup.url, router=FAST_RETRY, failure_threshold=99) as rt:
        with pytest.raises(AllProvidersFailed) as info:
            rt.chat("llama3.2", HI)
    assert (len(primary.posts()), len(backup.posts())) == (3, 3)
    assert {e.kind for e in info.value.causes.values()} == {"busy"}


def test_retry_after_is_honoured(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, _ = servers
    primary.script.append("busy")
    primary.retry_after = "1"
    with runtime_for(primary.url, f"http://127.0.0.1:{free_port()}", router=FAST_RETRY) as rt:
        assert rt.chat("llama3.2", HI).provider == "primary"
    assert primary.post_times[1] - primary.post_times[0] >= 1.0


def test_no_retry_that_cannot_finish_before_the_deadline(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, _ = servers
    primary.mode = "busy"
    primary.retry_after = "30"
    closed = f"http://127.0.0.1:{free_port()}"
    with runtime_for(primary.url, closed, router=FAST_RETRY) as rt:
        started = time.monotonic()
        with pytest.raises(AllProvidersFailed):
            rt.chat("llama3.2", HI, timeout=10)
        assert time.monotonic() - started < 5  # not the 10 s deadline: no wait at all
    assert len(primary.posts()) == 1


def test_a_refused_connection_is_not_retried() -> None:
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with runtime_for(*closed, router={"retries": 5, "retry_backoff": 5.0}) as rt:
        started = time.monotonic()
        with pytest.raises(AllProvidersFailed, match="ollama serve"):
            rt.chat("llama3.2", HI)
        assert time.monotonic() - started < 3  # one backoff alone would be 5 s


def test_a_rejected_key_falls_back_at_once_and_is_never_retried(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "unauthorized"
    with runtime_for(primary.url, backup.url, router=FAST_RETRY) as rt:
        reply = rt.chat("llama3.2", HI)
        assert reply.provider == "backup"
        assert reply.fallbacks == ("primary: HTTP 401: unauthorized — run `ollama signin` "
                                   "for cloud models, or check the credentials a proxy in "
                                   "front of Ollama expects",)  # fmt: skip
        backup.mode = "not_found"
        with pytest.raises(AllProvidersFailed) as info:
            rt.chat("llama3.2", HI)
    assert isinstance(info.value.causes["primary"], AuthError)
    assert len(primary.posts()) == 2, "one attempt per request, no retry rounds"


def test_a_429_is_retried_after_its_retry_after(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, _ = servers
    primary.script.append("rate_limited")
    primary.retry_after = "0.5"
    with runtime_for(primary.url, f"http://127.0.0.1:{free_port()}", router=FAST_RETRY) as rt:
        assert rt.chat("llama3.2", HI).provider == "primary"
    assert primary.post_times[1] - primary.post_times[0] >= 0.5


def test_the_deadline_covers_queueing_and_fallback(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = backup.mode = "hang"
    with runtime_for(primary.url, backup.url) as rt:
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            rt.chat("llama3.2", HI, timeout=0.3)
        assert time.monotonic() - started < 3  # both backends hang for ever
        assert wait_until(lambda: primary.disconnects == 1), "the HTTP call is closed"


def test_cancel_before_the_first_byte_closes_the_call(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "hang"
    with runtime_for(primary.url, backup.url) as rt:
        handle = rt.chat("llama3.2", HI, stream=True)
        assert wait_until(lambda: len(primary.posts()) == 1)
        handle.cancel()
        assert wait_until(lambda: primary.disconnects == 1, 2)
        with pytest.raises(Cancelled):
            handle.result()
        assert rt.health()["primary"].in_flight == 0
    assert backup.posts() == []


def test_equal_priorities_share_by_fewest_in_flight(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = backup.mode = "hang"
    same = {"priority": 1}
    with runtime_for(primary.url, backup.url, primary_cfg=same, backup_cfg=same) as rt:
        handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(4)]
        assert wait_until(lambda: len(primary.posts()) + len(backup.posts()) == 4)
        assert (len(primary.posts()), len(backup.posts())) == (2, 2)
        assert rt.health()["backup"].in_flight == 2
        for handle in handles:
            handle.cancel()


def test_lower_priority_number_goes_first(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    cfgs: dict[str, Any] = {"primary_cfg": {"priority": 2}, "backup_cfg": {"priority": 1}}
    with runtime_for(primary.url, backup.url, **cfgs) as rt:
        assert rt.chat("llama3.2", HI).provider == "backup"
    assert primary.posts() == []


def test_restart_policy_replays_the_whole_answer_elsewhere(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "midstream"
    with runtime_for(primary.url, backup.url) as rt:
        events = list(rt.stream_chat("llama3.2", HI, mid_stream="restart"))
        reply = rt.chat("llama3.2", HI, mid_stream="restart")
    assert events[:2] == [Delta("The"), Delta(" sky")]
    assert isinstance(events[2], Restart) and events[2].discarded_text == "The sky"
    assert "".join(e.text for e in events[3:] if isinstance(e, Delta)) == ANSWER
    assert isinstance(events[-1], Done) and events[-1].provider == "backup"
    assert events[-1].fallbacks[0].startswith("primary: ")
    assert (reply.message.content, reply.provider) == (ANSWER, "backup")


def test_restart_policy_from_config(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "error_line"
    with runtime_for(primary.url, backup.url, router={"mid_stream": "restart"}) as rt:
        events = list(rt.stream_chat("llama3.2", HI))
    assert [type(e).__name__ for e in events].count("Restart") == 1


def test_a_backend_that_comes_back_is_used_within_one_cooldown(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "drop"
    cooldown = 0.5  # max_cooldown = cooldown: the cooldown does not grow
    with runtime_for(primary.url, backup.url, cooldown=cooldown, max_cooldown=cooldown) as rt:
        assert wait_until(lambda: rt.health()["primary"].state != "closed")
        user_posts = len(primary.posts())
        primary.mode = "ok"
        back = time.monotonic()
        assert wait_until(lambda: rt.health()["primary"].state == "closed", 3)
        took = time.monotonic() - back
        assert rt.chat("llama3.2", HI).provider == "primary"
    # One cooldown (+10 % jitter), plus a tick and the probe itself.
    assert took < cooldown * 1.1 + 0.25, took
    assert len(primary.posts()) == user_posts + 1, "the probe decided, not a user request"


def test_the_deadline_holds_for_a_request_nobody_reads(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "hang"
    with runtime_for(primary.url, backup.url) as rt:
        handle = rt.chat("llama3.2", HI, stream=True, timeout=0.3)
        # Nobody waits on the handle, yet its call is closed at the deadline.
        assert wait_until(lambda: primary.disconnects == 1, 2)
        assert rt.health()["primary"].in_flight == 0
        with pytest.raises(RequestTimeout, match=r"0\.3 s"):
            handle.result()


def test_cancel_and_close_do_not_wait_for_a_caller_that_fell_behind(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url, router={"max_buffered_events": 1}) as rt:
        handle = rt.stream_chat("llama3.2", HI, timeout=30)
        assert wait_until(lambda: len(primary.posts()) == 1)
        time.sleep(0.1)  # the worker fills the one-event buffer and waits for room
        started = time.monotonic()
        handle.cancel()
        assert time.monotonic() - started < 5  # not the 30 s deadline
        behind = rt.stream_chat("llama3.2", HI, timeout=30)
        assert wait_until(lambda: len(primary.posts()) == 2)
        started = time.monotonic()
    assert time.monotonic() - started < 2, "close() must not wait for the deadline"
    with pytest.raises(Cancelled):
        behind.result()


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_a_timeout_must_be_finite_and_positive(
    servers: tuple[FakeOllama, FakeOllama], bad: float
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt, pytest.raises(InvalidRequest, match="above 0"):
        rt.chat("llama3.2", HI, timeout=bad)
    with pytest.raises(ConfigError, match="request_timeout"):
        runtime_for(primary.url, backup.url, router={"request_timeout": bad})


def test_retries_pending_when_the_router_crashed_end_with_close(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    for server in servers:
        server.mode, server.retry_after = "busy", "30"
    with runtime_for(primary.url, backup.url, failure_threshold=100) as rt:
        handle = rt.stream_chat("llama3.2", HI, timeout=60)
        scheduler = rt._registry.scheduler
        # Its deadline and its retry (after Retry-After: 30) wait on the scheduler.
        assert wait_until(lambda: len(scheduler) == 2)
        old = rt._registry.get("router")
        rt._registry.tell("router", Crash("test"))
        assert wait_until(lambda: rt._registry.get("router") not in (None, old))
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert scheduler.thread is not None and not scheduler.thread.is_alive()
    with pytest.raises(Cancelled):
        handle.result()


def test_a_model_no_catalogue_has_names_the_remedy(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        rt.wait_for_probes()  # both catalogues (tags.json) are known: neither has the model
        with pytest.raises(AllProvidersFailed) as info:
            rt.chat("no-such-model:1b", HI)
    assert primary.posts() == backup.posts() == []
    for cause in info.value.causes.values():
        assert "run `ollama pull no-such-model:1b`" in str(cause)
