"""Shared circuit state, catalogue, residency, probe leases and usage totals:
two Runtimes in one process are two replicas (each its own ClusterNode)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rubberduck import Runtime
from rubberduck.actors.health import HealthMonitor
from rubberduck.cluster.link import RedisLink
from rubberduck.cluster.state import SharedState
from rubberduck.config import ClusterConfig, load_config
from rubberduck.errors import AllProvidersFailed, ConfigError, ProviderUnavailable
from tests.cluster.conftest import RedisServer
from tests.fake_ollama import FakeOllama


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if check():
            return True
        time.sleep(0.02)
    return check()


def cfg(redis_url: str, port: int, **health: Any) -> dict[str, Any]:
    return {
        "provider": {"ollama": {"base_url": f"http://127.0.0.1:{port}"}},
        "router": {"retries": 0},
        "health": {"interval": 60.0, "cooldown": 60.0, **health},
        "cluster": {"redis_url": redis_url, "sync_interval": 0.05},
    }


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def test_a_circuit_one_replica_opens_opens_on_the_others(
    redis_server: RedisServer, fake: FakeOllama
) -> None:
    config = cfg(redis_server.url, fake.port, failure_threshold=1)
    with Runtime.from_config(config) as a, Runtime.from_config(config) as b:
        a.wait_for_probes()
        b.wait_for_probes()
        fake.mode = "drop"  # the host fails; only `a` sends it a request
        with pytest.raises(AllProvidersFailed):
            a.chat("llama3.2", [{"role": "user", "content": "hi"}])
        assert a.health()["ollama"].state == "open"
        # `b` probes once a minute and sends nothing: it learns it from `a`.
        assert wait_until(lambda: b.health()["ollama"].state == "open")
        assert "seen by replica" in b.health()["ollama"].last_error


def test_catalogue_and_residency_are_shared(
    redis_server: RedisServer, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The HealthMonitor holds every probe result until the other replica has
    # read the shared state: what a probe read reaches Redis from the probe
    # itself, catalogue and residency together, never one without the other.
    handled = threading.Event()
    probed = HealthMonitor._probed

    def held(self: HealthMonitor, msg: Any) -> None:
        handled.wait(20)
        probed(self, msg)

    monkeypatch.setattr(HealthMonitor, "_probed", held)
    with Runtime.from_config(cfg(redis_server.url, fake.port)) as a:
        link = RedisLink(ClusterConfig(redis_url=redis_server.url))
        other = SharedState(link, "rubberduck", "other")  # a replica that never probed
        assert wait_until(lambda: other.sync() and "ollama" in other.residency())
        assert other.catalogue()["ollama"] == fake.model_names()
        residency = other.residency()
        assert isinstance(residency["ollama"], list) and residency["ollama"]
        handled.set()
        a.wait_for_probes()
        assert list(a.health()["ollama"].models or ()) == fake.model_names()


def test_one_replica_at_a_time_holds_a_probe_lease(redis_server: RedisServer) -> None:
    link = RedisLink(ClusterConfig(redis_url=redis_server.url))
    a, b = SharedState(link, "p", "a"), SharedState(link, "p", "b")
    assert a.may_probe("ollama", 0.2)
    assert not b.may_probe("ollama", 0.2)
    assert b.may_probe("other", 0.2)
    time.sleep(0.25)
    assert b.may_probe("ollama", 0.2)


def test_usage_totals_add_up_across_replicas(redis_server: RedisServer, fake: FakeOllama) -> None:
    with (
        Runtime.from_config(cfg(redis_server.url, fake.port)) as a,
        Runtime.from_config(cfg(redis_server.url, fake.port)) as b,
    ):
        for rt in (a, a, b):
            rt.chat("llama3.2", [{"role": "user", "content": "hi"}])
        one = a.usage().by_backend["ollama"]
        assert wait_until(lambda: a.cluster_usage().by_backend.get("ollama") is not None)
        assert wait_until(lambda: a.cluster_usage().by_backend["ollama"].requests == 3)
        total = b.cluster_usage().by_backend["ollama"]
        assert total.completion_tokens == 3 * one.completion_tokens // 2
        assert sum(t.requests for t in b.cluster_usage().by_model.values()) == 3


def test_redis_down_at_start_still_serves(fake: FakeOllama) -> None:
    from tests.fake_ollama import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with Runtime.from_config(cfg(url, fake.port)) as rt:
        reply = rt.chat("llama3.2", [{"role": "user", "content": "hi"}])
        assert reply.provider == "ollama"
        with pytest.raises(ProviderUnavailable, match="did not answer"):
            rt.cluster_usage()


def test_cluster_config_is_checked() -> None:
    ok = load_config({"cluster": {"redis_url": "redis://127.0.0.1:6379/0", "slot_ttl": 3}})
    assert ok.cluster is not None and ok.cluster.slot_ttl == 3.0
    for bad in ({"slot_ttl": 0}, {"slot_ttl": float("nan")}, {"socket_timeout": -1}, {"ttl": 3}):
        with pytest.raises(ConfigError):
            load_config({"cluster": {"redis_url": "redis://x", **bad}})
    # Renewed every slot_ttl / 3, each renewal may take socket_timeout: a TTL
    # shorter than 3 x socket_timeout loses leases to a merely slow Redis.
    with pytest.raises(ConfigError, match=r"slot_ttl .*socket_timeout"):
        load_config({"cluster": {"redis_url": "redis://x", "slot_ttl": 0.5}})
    with pytest.raises(ConfigError, match=r"slot_ttl .*socket_timeout"):
        ClusterConfig(redis_url="redis://x", slot_ttl=1.0, socket_timeout=0.5)
    assert load_config({"cluster": {"redis_url": "redis://x", "slot_ttl": 0.75}}).cluster
    with pytest.raises(ConfigError, match="redis_url"):
        Runtime.from_config(
            {"provider": {"ollama": {}}, "cluster": {"redis_url": "http://127.0.0.1:6379"}}
        )


def test_no_cluster_table_imports_no_redis(fake: FakeOllama) -> None:
    code = (
        "import sys; from rubberduck import Runtime\n"
        f"rt = Runtime.from_config({{'provider': {{'ollama': {{'base_url': 'http://127.0.0.1:{fake.port}'}}}}}})\n"
        "rt.chat('llama3.2', [{'role': 'user', 'content': 'hi'}]); rt.close()\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "assert rt.cluster is None and rt.cluster_usage() == rt.usage()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_async_runtime_reads_the_cluster_totals(
    redis_server: RedisServer, fake: FakeOllama
) -> None:
    import asyncio

    from rubberduck import AsyncRuntime

    async def main() -> int:
        async with AsyncRuntime.from_config(cfg(redis_server.url, fake.port)) as rt:
            await rt.chat("llama3.2", [{"role": "user", "content": "hi"}])
            for _ in range(500):
                report = await rt.cluster_usage()
                if "ollama" in report.by_backend:
                    return report.by_backend["ollama"].requests
                await asyncio.sleep(0.02)
        return 0

    assert asyncio.run(main()) == 1


def test_one_redis_round_trip_per_request_takes_the_slot(
    redis_server: RedisServer, fake: FakeOllama
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)

    def calls(name: str) -> int:
        return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))

    with Runtime.from_config(cfg(redis_server.url, fake.port)) as rt:
        rt.wait_for_probes()
        before = calls("evalsha") + calls("eval")
        for stream in (False, True, False, True):
            answer = rt.chat("llama3.2", [{"role": "user", "content": "hi"}], stream=stream)
            if stream:
                list(answer)  # type: ignore[call-overload]
        taken = calls("evalsha") + calls("eval") - before
        # At most one lease script per request (renewals: none within
        # slot_ttl/3); fewer when a request takes back a lease just released.
        assert 1 <= taken <= 4
        assert wait_until(lambda: client.zcard("rubberduck:slots:ollama") == 0)  # released


def test_two_replicas_probe_a_backend_once_per_probe_period(
    redis_server: RedisServer, fake: FakeOllama
) -> None:
    config = cfg(redis_server.url, fake.port)  # interval 60 s: one probe period in this test
    with Runtime.from_config(config) as a, Runtime.from_config(config) as b:
        health = [a.wait_for_probes(), b.wait_for_probes()]
        versions = [r for r in fake.requests if r[:2] == ("GET", "/api/version")]
        assert len(versions) == 1  # the other replica took the prober's findings
        assert [h["ollama"].state for h in health] == ["closed", "closed"]
        assert all(h["ollama"].checked for h in health)
