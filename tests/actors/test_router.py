"""The Router without HTTP: backends are fake admissions in the registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pykka
import pytest

from rubberduck.actors.channels import Admission, Load
from rubberduck.actors.provider import ROUTER
from rubberduck.actors.router import Backoff, Route, Router
from rubberduck.actors.supervisor import Registry
from rubberduck.channels import ThreadChannel
from rubberduck.errors import AllProvidersFailed, ModelNotFound, ProviderUnavailable, ServerBusy
from rubberduck.handle import RequestHandle
from rubberduck.messages import (
    AttemptFailed,
    CatalogueRead,
    ChatRequest,
    Done,
    Submit,
    Usage,
)
from rubberduck.request_state import RequestState
from tests.conftest import HI, wait_until


class FakeBackend:
    """An admission that answers what ``answer`` says and records each offer."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry, self.name = registry, name
        self.offers: list[tuple[int, bool]] = []  # (request id, overflow)
        self.answer: Callable[[RequestState, bool], Admission] = self.serve
        registry.admissions.register(name, self.admit)

    def admit(self, handle: RequestState, *, overflow: bool = False) -> Admission:
        self.offers.append((handle.id, overflow))
        return self.answer(handle, overflow)

    def serve(self, handle: RequestState, overflow: bool) -> Admission:
        handle.emit(Done(provider=self.name, model="m", usage=Usage(1, 1)))
        return Admission.TAKEN

    def full(self, handle: RequestState, overflow: bool) -> Admission:
        return self.serve(handle, overflow) if overflow else Admission.FULL

    def busy(self, handle: RequestState, overflow: bool) -> Admission:
        """Take it, then fail it with a 503 (as a worker would: by message)."""
        error = ServerBusy("server busy", provider=self.name)
        self.registry.tell(ROUTER, AttemptFailed(handle, self.name, error))
        return Admission.TAKEN


@pytest.fixture
def registry() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    pykka.ActorRegistry.stop_all()
    registry.stop_scheduler()


def start_router(registry: Registry, backoff: Backoff | None = None) -> pykka.ActorRef[Router]:
    ref = Router.start(registry, [Route("a"), Route("b")], Load(), backoff or Backoff())
    registry.set(ROUTER, ref)
    return ref


def submit(
    registry: Registry, *, fallback: bool = True, timeout: float = 30, model: str = "m"
) -> RequestHandle:
    channel = ThreadChannel(64)
    state = RequestState(
        ChatRequest(model=model, messages=HI), channel, timeout=timeout, fallback=fallback
    )
    assert registry.tell(ROUTER, Submit(state))
    return RequestHandle(state, channel)


def test_a_full_backend_is_passed_over_for_a_free_one_at_once(registry: Registry) -> None:
    a, _ = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer = a.full
    start_router(registry)
    handle = submit(registry)
    assert handle.result(timeout=10).provider == "b"
    assert a.offers == [(handle.id, False)], "no overflow while another backend has room"
    assert handle.tried == ("b",)


def test_when_every_backend_is_full_the_request_waits_on_the_best(registry: Registry) -> None:
    a, b = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer, b.answer = a.full, b.full
    start_router(registry)
    handle = submit(registry)
    assert handle.result(timeout=10).provider == "a"
    assert a.offers == [(handle.id, False), (handle.id, True)]
    assert b.offers == [(handle.id, False)]


def test_without_fallback_the_request_waits_on_its_first_backend(registry: Registry) -> None:
    a, b = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer = a.full
    start_router(registry)
    handle = submit(registry, fallback=False)
    assert handle.result(timeout=10).provider == "a"
    assert a.offers == [(handle.id, True)] and b.offers == []


def test_full_even_for_overflow_is_busy_and_retried(registry: Registry) -> None:
    a, b = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer = b.answer = lambda handle, overflow: Admission.FULL
    start_router(registry, Backoff(retries=1, base_s=0.01))
    handle = submit(registry)
    with pytest.raises(AllProvidersFailed) as info:
        handle.result(timeout=10)
    assert isinstance(info.value.causes["a"], ServerBusy)
    assert handle.tried == (
        "a",
        "a",
    ), "one overflow offer per round"


def test_requests_waiting_out_a_backoff_share_one_thread(registry: Registry) -> None:
    a, b = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer, b.answer = a.busy, b.busy
    start_router(registry, Backoff(retries=1, base_s=3600, max_s=3600))
    before = threading.active_count()
    handles = [submit(registry, timeout=7200) for _ in range(200)]
    assert wait_until(lambda: len(registry.scheduler) == 200, 10)
    assert all(h._state.retry_round == 1 for h in handles)
    assert threading.active_count() <= before + 1, "one scheduler thread, not one per retry"


def test_a_retry_reaches_a_router_restarted_meanwhile(registry: Registry) -> None:
    a, b = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    a.answer = b.answer = a.busy
    first = start_router(registry, Backoff(retries=1, base_s=0.2, max_s=0.2))
    handle = submit(registry)
    assert wait_until(lambda: handle._state.retry_round == 1)
    a.answer = b.answer = a.serve
    first.stop()  # the retry, due in 0.1-0.2 s, goes to the router by name: the new one
    registry.remove(ROUTER)
    start_router(registry)
    assert handle.result(timeout=10).provider == "a"


def test_a_backend_whose_actor_is_restarting_is_passed_over(registry: Registry) -> None:
    FakeBackend(registry, "b")  # "a" has no live actor
    start_router(registry)
    handle = submit(registry)
    assert handle.result(timeout=10).provider == "b"
    assert handle.tried == (
        "a",
        "b",
    )
    assert isinstance(handle.causes["a"], ProviderUnavailable)


def test_a_backend_without_the_model_is_never_tried(registry: Registry) -> None:
    a, _ = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    router = start_router(registry)
    router.tell(CatalogueRead("a", ("other:latest",)))
    handle = submit(registry, model="m")
    assert handle.result(timeout=10).provider == "b"
    assert a.offers == []
    assert isinstance(handle.causes["a"], ModelNotFound)


def test_in_panic_mode_the_backend_down_last_goes_first(registry: Registry) -> None:
    a, _ = FakeBackend(registry, "a"), FakeBackend(registry, "b")
    start_router(registry)
    # As the HealthMonitor writes them (the Router reads them live).
    registry.circuits.open("a", "refused")
    registry.circuits.open("b", "refused")  # down later: the least bad
    handle = submit(registry)
    assert handle.result(timeout=10).provider == "b"
    assert a.offers == []
