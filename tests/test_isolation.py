"""No caller can break the runtime for the others: a bad request fails alone,
typed, and the actors that handled it keep running; restarts (and their
intensity) are left for genuine faults. When the supervisor does give up, every
request in flight ends at once with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rubberduck import (
    ChatRequest,
    InternalError,
    InvalidRequest,
    Message,
    ProviderUnavailable,
    Runtime,
)
from rubberduck.actors.provider import ProviderActor
from rubberduck.actors.router import Router
from rubberduck.actors.supervisor import Supervisor
from rubberduck.handle import RequestHandle
from rubberduck.messages import Crash
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")


@pytest.fixture
def boom_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A model name whose routing raises inside the Router, as a bug would."""
    serves = Router.serves

    def buggy(self: Router, route: Any, model: str | None) -> bool:
        if model == "boom":
            raise RuntimeError("a bug tied to this request")
        return serves(self, route, model)

    monkeypatch.setattr(Router, "serves", buggy)
    yield "boom"


def test_bad_requests_never_reach_the_router(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        router = rt._registry.get("router")
        for _ in range(8):  # twice the restart intensity
            with pytest.raises(InvalidRequest):
                rt.submit("not a request")  # type: ignore[arg-type]
            with pytest.raises(InvalidRequest):
                rt.submit(ChatRequest(model=["llama3.2"], messages=[Message("user", "hi")]))  # type: ignore[arg-type]
        assert rt._registry.get("router") is router and router.is_alive()
        assert rt.escalation is None
        assert rt.chat("llama3.2", HI).message.content


def test_a_router_failure_tied_to_one_request_fails_only_that_request(
    servers: tuple[FakeOllama, FakeOllama], boom_model: str
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        router = rt._registry.get("router")
        for _ in range(8):  # twice the restart intensity
            with pytest.raises(InternalError, match="a bug tied to this request"):
                rt.chat(boom_model, HI, timeout=5)
        assert rt._registry.get("router") is router and router.is_alive()
        assert rt.escalation is None
        assert rt.chat("llama3.2", HI).message.content


def test_a_worker_failure_tied_to_one_request_fails_it_at_once(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = ProviderActor._attempt

    def buggy(self: ProviderActor, handle: RequestHandle) -> Any:
        # Tied to the request's text, not its model: a model the catalogue lacks
        # would be skipped by the Router before any worker saw it.
        if handle.request.messages[0].content == "boom":
            raise RuntimeError("a worker bug")
        return attempt(self, handle)

    monkeypatch.setattr(ProviderActor, "_attempt", buggy)
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        # Before, the exception vanished in the pool's future: the request hung
        # until its deadline and ended as a RequestTimeout.
        with pytest.raises(InternalError, match="a worker bug"):
            rt.chat("llama3.2", [{"role": "user", "content": "boom"}], timeout=30)
        assert rt.escalation is None
        assert rt.chat("llama3.2", HI).message.content


def test_crash_injection_still_counts_against_the_intensity(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        for _ in range(4):  # the intensity allows 3 in 5 s
            old = rt._registry.get("router")
            old.tell(Crash("test"))
            assert wait_until(lambda o=old: rt._registry.get("router") is not o)
        assert wait_until(lambda: rt.escalation is not None)
        assert "gave up" in (rt.escalation or "")


def test_at_escalation_every_request_in_flight_ends_first_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three backends that never answer hold requests running and queued; when the
    supervisor gives up, each request ends with the escalation's reason, and all
    have ended before the first actor is stopped (not one by one as each actor's
    teardown hands its requests on to siblings that are stopping too)."""
    handles: list[RequestHandle] = []
    ended_at_teardown: list[bool] = []
    stop_children = Supervisor._stop_children

    def recording(self: Supervisor, names: list[str]) -> None:
        if names == self.order and not ended_at_teardown:
            ended_at_teardown.extend(h.finished for h in handles)
        stop_children(self, names)

    monkeypatch.setattr(Supervisor, "_stop_children", recording)
    with FakeOllama("hang") as a, FakeOllama("hang") as b, FakeOllama("hang") as c:
        equal = {"priority": 0, "max_in_flight": 2}
        config = {
            "provider": {
                name: {"kind": "ollama", "base_url": fake.url, "model": "llama3.2", **equal}
                for name, fake in (("a", a), ("b", b), ("c", c))
            },
            "health": {"interval": 60.0},
        }
        try:
            with Runtime.from_config(config) as rt:
                handles.extend(rt.stream_chat("llama3.2", HI, timeout=60) for _ in range(12))
                assert wait_until(lambda: len(a.posts()) + len(b.posts()) + len(c.posts()) == 6)
                for _ in range(4):  # the intensity allows 3 in 5 s
                    old = rt._registry.get("health")
                    old.tell(Crash("test"))
                    assert wait_until(lambda o=old: rt._registry.get("health") is not o)
                assert wait_until(lambda: rt.escalation is not None)
                reason = rt.escalation
                assert reason is not None and "gave up" in reason
                for handle in handles:
                    with pytest.raises(ProviderUnavailable) as info:
                        handle.result()
                    assert reason in str(info.value)
        finally:
            for fake in (a, b, c):
                fake.release.set()
    assert ended_at_teardown == [True] * len(handles)
