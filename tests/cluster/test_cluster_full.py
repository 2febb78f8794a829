"""A backend whose slots across the cluster are all leased by another runtime
is full, as for local slots: a request goes to another backend with room
rather than wait, and waits for a cluster slot only as overflow (no backend
has room). The same holds for a model whose slots on a backend
(``max_in_flight_per_model``) are all leased."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rubberduck import Runtime
from rubberduck.handle import RequestHandle
from tests.cluster.conftest import RedisServer
from tests.conftest import HI, wait_until
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")

#: One request at a time and none queued: full while one runs.
ONE_SLOT = {"kind": "ollama", "max_in_flight": 1, "max_queue": 0, "priority": 0}


#: Two requests at a time, one per model (Ollama's default OLLAMA_NUM_PARALLEL).
ONE_PER_MODEL = {"max_in_flight": 2, "max_in_flight_per_model": 1}


def _config(
    redis: RedisServer, *hosts: FakeOllama, h1_slots: int = 1, **provider: Any
) -> dict[str, Any]:
    """Every host as ``ONE_SLOT``, then ``provider``'s keys."""
    providers = {
        f"h{n}": {**ONE_SLOT, "base_url": host.url, **provider} for n, host in enumerate(hosts)
    }
    if "h1" in providers:
        providers["h1"]["max_in_flight"] = h1_slots
    return {
        "provider": providers,
        "cluster": {"redis_url": redis.url},
        "health": {"interval": 60.0},
        "router": {"balance": "priority", "retries": 0},
    }


@pytest.fixture
def hosts() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with FakeOllama() as h0, FakeOllama() as h1:
        yield h0, h1


@contextmanager
def _holding(redis_server: RedisServer, h0: FakeOllama, **overrides: Any) -> Iterator[Runtime]:
    """Another runtime holds a request at h0 (it hangs until h0's gate opens)."""
    h0.gate.clear()
    with Runtime.from_config(_config(redis_server, h0, **overrides)) as other:
        holding = other.chat("llama3.2", HI, stream=True)
        assert wait_until(lambda: len(h0.posts()) == 1)
        yield other
        h0.gate.set()
        holding.result()


@pytest.fixture
def held(redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama]) -> Iterator[Runtime]:
    """Another runtime holds h0's one slot."""
    with _holding(redis_server, hosts[0]) as other:
        yield other


def test_a_host_full_across_the_cluster_passes_requests_to_a_free_one(
    redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama], held: Runtime
) -> None:
    h0, h1 = hosts
    # Two slots at h1: a lease this runtime released there a moment ago and
    # whose ZREM has not landed yet does not make it look full.
    with Runtime.from_config(_config(redis_server, h0, h1, h1_slots=2)) as rt:
        answers = [rt.chat("llama3.2", HI, timeout=10) for _ in range(4)]
        streamed = rt.chat("llama3.2", HI, stream=True, timeout=10)
        streamed.result()
        health = rt.health()["h0"]
    assert [a.provider for a in answers] == ["h1"] * 4
    assert streamed.result().done.provider == "h1"
    assert streamed.tried == ("h1",)  # h0 was full, not tried
    assert len(h0.posts()) == 1  # the other runtime's only
    assert (health.state, health.failures) == ("closed", 0)  # full is no failure


def test_with_no_host_free_a_request_waits_for_a_cluster_slot(
    redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama], held: Runtime
) -> None:
    """h1 is full too (this runtime's own request): the request waits on h0 as
    overflow and runs there once the other runtime's request ends."""
    h0, h1 = hosts
    h1.gate.clear()
    with Runtime.from_config(_config(redis_server, h0, h1)) as rt:
        busy = rt.chat("llama3.2", HI, stream=True, timeout=30, backends=["h1"])
        assert wait_until(lambda: len(h1.posts()) == 1)
        handle: list[RequestHandle] = []
        waiter = threading.Thread(
            target=lambda: handle.append(rt.chat("llama3.2", HI, stream=True, timeout=30))
        )
        waiter.start()
        waiter.join()
        assert wait_until(lambda: rt.health()["h0"].in_flight == 1)
        assert len(h0.posts()) == 1
        h0.gate.set()  # the other runtime's request ends: its slot is ours
        assert handle[0].result().done.provider == "h0"
        h1.gate.set()
        busy.result()
    assert len(h0.posts()) == 2


@pytest.fixture
def model_held(
    redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama]
) -> Iterator[Runtime]:
    """Another runtime holds h0's one slot for llama3.2 (of two in all there)."""
    with _holding(redis_server, hosts[0], **ONE_PER_MODEL) as other:
        yield other


def test_a_model_full_across_the_cluster_goes_to_a_host_with_room(
    redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama], model_held: Runtime
) -> None:
    h0, h1 = hosts
    with Runtime.from_config(_config(redis_server, h0, h1, **ONE_PER_MODEL)) as rt:
        answers = [rt.chat("llama3.2", HI, timeout=10) for _ in range(3)]
        # h0 has room for another model: the model's limit held, not the host's.
        other_model = rt.chat("nomic-embed-text", HI, stream=True, timeout=10)
        assert wait_until(lambda: len(h0.posts()) == 2)
        h0.gate.set()
        assert other_model.result().done.provider == "h0"
        health = rt.health()["h0"]
    assert [a.provider for a in answers] == ["h1"] * 3
    assert [p["model"] for p in h0.posts()] == ["llama3.2", "nomic-embed-text"]
    assert h0.max_active["llama3.2"] == 1
    assert (health.state, health.failures) == ("closed", 0)  # full is no failure


def test_with_no_host_free_a_request_waits_for_its_models_cluster_slot(
    redis_server: RedisServer, hosts: tuple[FakeOllama, FakeOllama], model_held: Runtime
) -> None:
    h0 = hosts[0]
    with Runtime.from_config(_config(redis_server, h0, **ONE_PER_MODEL)) as rt:
        waiting = rt.chat("llama3.2", HI, stream=True, timeout=30)
        assert wait_until(lambda: rt.health()["h0"].in_flight == 1)
        assert len(h0.posts()) == 1  # it waits here (overflow), not inside Ollama
        h0.gate.set()  # the other runtime's request ends: its model slot is ours
        assert waiting.result().done.provider == "h0"
    assert len(h0.posts()) == 2
    assert h0.max_active["llama3.2"] == 1
