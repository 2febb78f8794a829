"""Admission: a burst larger than a backend's slots waits for a slot (until its
deadline) instead of failing busy; a free backend still takes the overflow at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rubberduck import Runtime
from rubberduck.actors._pykka import actor_of
from rubberduck.actors.channels import Admission, Load
from rubberduck.actors.provider import ProviderActor
from rubberduck.actors.supervisor import Registry
from rubberduck.channels import ThreadChannel
from rubberduck.errors import Cancelled
from rubberduck.handle import RequestHandle
from rubberduck.messages import ChatRequest, Done, Event, Request, Usage
from rubberduck.providers.base import CancelScope
from rubberduck.request_state import RequestState
from tests.conftest import HI, wait_until
from tests.fake_ollama import FakeOllama

BURST = 128


@pytest.mark.parametrize("held", [False, True], ids=["burst", "burst-on-a-held-backend"])
def test_a_burst_of_128_callers_on_one_backend_with_default_limits_fails_nothing(
    held: bool,
) -> None:
    with FakeOllama() as ollama:
        config = {"provider": {"ollama": {"kind": "ollama", "base_url": ollama.url,
                                          "model": "llama3.2"}}}  # fmt: skip
        with Runtime.from_config(config) as rt:
            if held:  # the backend answers nothing until all 128 are in
                ollama.gate.clear()
            results: list[Any] = [None] * BURST
            start = threading.Barrier(BURST)

            def call(i: int) -> None:
                start.wait()
                try:
                    results[i] = rt.chat("llama3.2", HI, stream=True, timeout=60).result()
                except Exception as exc:  # noqa: BLE001 - counted below
                    results[i] = exc

            threads = [threading.Thread(target=call, args=(i,)) for i in range(BURST)]
            for thread in threads:
                thread.start()
            if held:
                # 4 running + 64 queued + 60 waiting for a slot: none failed busy.
                in_flight = wait_until(lambda: rt.health()["ollama"].in_flight == BURST, 10)
                ollama.gate.set()
                assert in_flight, [r for r in results if isinstance(r, Exception)][:1]
            for thread in threads:
                thread.join(60)
    failures = [r for r in results if isinstance(r, Exception)]
    assert not failures, f"{len(failures)} of {BURST} failed, e.g. {failures[0]!r}"
    assert {r.provider for r in results} == {"ollama"}


# --- the ProviderActor's waiting list, without HTTP ----------------------------------


class GatedProvider:
    """Answers each request with one Done once ``gate`` is set."""

    name = kind = "gated"
    default_model = None
    is_local = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[str] = []

    def run(self, request: Request, emit: Callable[[Event], None], scope: CancelScope) -> None:
        self.started.append(request.model or "")
        self.gate.wait(10)
        emit(Done(provider=self.name, model="m", usage=Usage(1, 1)))


@pytest.fixture
def actor() -> Iterator[tuple[ProviderActor, GatedProvider, Load]]:
    registry, provider, load = Registry(), GatedProvider(), Load()
    ref = ProviderActor.start(registry, provider, load, max_in_flight=1, max_queue=0)
    actor = actor_of(ref)
    assert isinstance(actor, ProviderActor)
    yield actor, provider, load
    provider.gate.set()
    ref.stop()
    registry.stop_scheduler()


def _request(tag: str) -> RequestHandle:
    """A request (its model names it) and the caller's handle on it, as ``submit``
    makes them."""
    channel = ThreadChannel(64)
    return RequestHandle(
        RequestState(ChatRequest(model=tag, messages=HI), channel, timeout=30), channel
    )


def _offer(actor: ProviderActor, load: Load, handle: RequestHandle, overflow: bool) -> Admission:
    load.add("gated", 1)  # as the Router does
    taken = actor.admit(handle._state, overflow=overflow)
    if taken is not Admission.TAKEN:
        load.add("gated", -1)
    return taken


def test_a_full_backend_refuses_unless_asked_for_overflow(
    actor: tuple[ProviderActor, GatedProvider, Load],
) -> None:
    backend, provider, load = actor
    first, second, third = _request("1"), _request("2"), _request("3")
    assert _offer(backend, load, first, overflow=False) is Admission.TAKEN
    assert _offer(backend, load, second, overflow=False) is Admission.FULL
    assert _offer(backend, load, second, overflow=True) is Admission.TAKEN
    assert _offer(backend, load, third, overflow=True) is Admission.TAKEN
    assert load["gated"] == 3
    provider.gate.set()
    for handle in (first, second, third):
        assert handle.result(timeout=10).provider == "gated"
    assert provider.started == ["1", "2", "3"], "the waiting list is first come, first served"
    assert wait_until(lambda: load["gated"] == 0)


def test_a_new_request_does_not_jump_the_waiting_list(
    actor: tuple[ProviderActor, GatedProvider, Load],
) -> None:
    backend, provider, load = actor
    running, waiting = _request("running"), _request("waiting")
    assert _offer(backend, load, running, overflow=False) is Admission.TAKEN
    assert _offer(backend, load, waiting, overflow=True) is Admission.TAKEN
    provider.gate.set()
    assert running.result(timeout=10)
    # A slot is free now, but "waiting" came first (it has it, or is about to).
    assert wait_until(lambda: provider.started == ["running", "waiting"])


def test_a_request_cancelled_while_waiting_never_starts(
    actor: tuple[ProviderActor, GatedProvider, Load],
) -> None:
    backend, provider, load = actor
    running, waiting, last = _request("running"), _request("waiting"), _request("last")
    assert _offer(backend, load, running, overflow=False) is Admission.TAKEN
    assert _offer(backend, load, waiting, overflow=True) is Admission.TAKEN
    assert _offer(backend, load, last, overflow=True) is Admission.TAKEN
    waiting.cancel()
    provider.gate.set()
    assert last.result(timeout=10)
    with pytest.raises(Cancelled):
        waiting.result()
    assert provider.started == ["running", "last"]
    assert wait_until(lambda: load["gated"] == 0)


def test_the_waiting_list_is_bounded(actor: tuple[ProviderActor, GatedProvider, Load]) -> None:
    backend, _, load = actor
    backend.max_waiting = 2
    assert _offer(backend, load, _request("running"), overflow=False) is Admission.TAKEN
    assert _offer(backend, load, _request("a"), overflow=True) is Admission.TAKEN
    assert _offer(backend, load, _request("b"), overflow=True) is Admission.TAKEN
    assert _offer(backend, load, _request("c"), overflow=True) is Admission.FULL
