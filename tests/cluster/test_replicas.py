"""Several OS processes, each with its own Runtime, sharing one real
redis-server, in front of Ollama-protocol servers that record how many
requests they hold at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tests
from tests.cluster.conftest import RedisServer
from tests.cluster.counting_ollama import CountingOllama

pytestmark = pytest.mark.slow

#: The checkout (the replicas run ``python -m tests.cluster.replica`` from it).
ROOT = Path(tests.__file__).resolve().parent.parent


def config(
    redis_url: str,
    hosts: list[CountingOllama],
    provider: dict[str, Any] | None = None,
    **cluster: Any,
) -> dict[str, Any]:
    """Every host with 2 slots, then ``provider``'s keys."""
    return {
        "provider": {
            f"host{i}": {
                "kind": "ollama",
                "base_url": f"http://127.0.0.1:{h.port}",
                "max_in_flight": 2,
                "max_queue": 64,
                "priority": 0,
                **(provider or {}),
            }
            for i, h in enumerate(hosts)
        },
        "router": {"request_timeout": 60.0, "retries": 0},
        "health": {"interval": 1.0},
        "cluster": {"redis_url": redis_url, "key_prefix": "test", **cluster},
    }


#: A Redis reply late by more than socket_timeout (a loaded machine) would
#: run that request on local limits and break the count the test asserts.
PATIENT = {"socket_timeout": 3.0, "slot_ttl": 10.0}


class Replica:
    def __init__(
        self, cfg: dict[str, Any], threads: int, requests: int, models: str = "llama3.2"
    ) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.cluster.replica",
                json.dumps(cfg),
                str(threads),
                str(requests),
                models,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line + self.process.stderr.read()  # type: ignore[union-attr]

    def result(self) -> tuple[dict[str, Any], str]:
        out, err = self.process.communicate(timeout=90)
        assert self.process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1]), err

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def hosts() -> Iterator[list[CountingOllama]]:
    servers = [CountingOllama(lines=6, pause=0.02).start() for _ in range(2)]
    yield servers
    for s in servers:
        s.gate.set()
        s.stop()


def test_the_limit_holds_across_processes(
    redis_server: RedisServer, hosts: list[CountingOllama]
) -> None:
    cfg = config(redis_server.url, hosts, **PATIENT)
    replicas = [Replica(cfg, threads=6, requests=4) for _ in range(3)]
    results = [r.result()[0] for r in replicas]
    assert [r["errors"] for r in results] == [[], [], []]
    assert sum(r["ok"] for r in results) == 3 * 6 * 4
    assert sum(h.served for h in hosts) == 3 * 6 * 4
    # Each process alone would send 2 per host at once: 6 with three of them.
    assert [h.max_held for h in hosts] == [2, 2]


def test_the_per_model_limit_holds_across_processes(
    redis_server: RedisServer, hosts: list[CountingOllama]
) -> None:
    # One slot per model (the host's OLLAMA_NUM_PARALLEL), four in all: the
    # backend's limit is not what holds the models to one each.
    per_model = {"max_in_flight": 4, "max_in_flight_per_model": 1}
    cfg = config(redis_server.url, hosts[:1], per_model, **PATIENT)
    models = "llama3.2,nomic-embed-text"
    replicas = [Replica(cfg, threads=4, requests=4, models=models) for _ in range(3)]
    results = [r.result()[0] for r in replicas]
    assert [r["errors"] for r in results] == [[], [], []]
    assert hosts[0].served == 3 * 4 * 4
    # Each process alone would send 1 per model at once: 3 with three of them.
    assert hosts[0].max_held_by_model == {"llama3.2": 1, "nomic-embed-text": 1}
    assert hosts[0].max_held == 2  # the two models did run at the same time


def test_a_killed_process_frees_its_slots_within_the_ttl(
    redis_server: RedisServer, hosts: list[CountingOllama]
) -> None:
    ttl = 1.0
    cfg = config(redis_server.url, hosts[:1], slot_ttl=ttl)
    hosts[0].gate.clear()  # the first replica's requests hang at the host
    doomed = Replica(cfg, threads=2, requests=1)
    client = redis.Redis.from_url(redis_server.url)
    key = "test:slots:host0"
    give_up = time.monotonic() + 20
    while client.zcard(key) < 2 and time.monotonic() < give_up:
        time.sleep(0.02)
    assert client.zcard(key) == 2  # it holds both slots
    doomed.kill()
    now_s, now_us = client.time()
    killed_ms = now_s * 1000 + now_us // 1000
    expiries = [score for _, score in client.zrange(key, 0, -1, withscores=True)]
    assert max(expiries) <= killed_ms + ttl * 1000  # nobody renews them now
    hosts[0].gate.set()
    # Another replica gets both slots once they expired: all its requests end.
    survivor = Replica(cfg, threads=4, requests=2)
    result, _ = survivor.result()
    assert result == {"ok": 8, "errors": []}
    assert hosts[0].max_held <= 2


def test_redis_killed_mid_run_fails_no_request(
    redis_server: RedisServer, hosts: list[CountingOllama]
) -> None:
    for h in hosts:
        h.pause = 0.03
    cfg = config(redis_server.url, hosts, socket_timeout=0.2, retry_after=0.2)
    replicas = [Replica(cfg, threads=4, requests=6) for _ in range(2)]
    time.sleep(0.3)
    redis_server.kill()
    outcomes = [r.result() for r in replicas]
    assert [o[0] for o in outcomes] == [{"ok": 24, "errors": []}] * 2
    assert any("carrying on with local limits" in err for _, err in outcomes)


def test_leases_of_answers_longer_than_the_ttl_are_renewed(
    redis_server: RedisServer, hosts: list[CountingOllama]
) -> None:
    for h in hosts:
        h.lines, h.pause = 15, 0.1  # 1.5 s an answer: 2.5 × slot_ttl
    cfg = config(redis_server.url, hosts, slot_ttl=0.6, socket_timeout=0.15)
    replicas = [Replica(cfg, threads=4, requests=2) for _ in range(2)]
    results = [r.result()[0] for r in replicas]
    assert results == [{"ok": 8, "errors": []}] * 2
    # Unrenewed, a lease would expire mid-answer and another replica's request
    # would take its slot: up to 4 at a host.
    assert [h.max_held for h in hosts] == [2, 2]
