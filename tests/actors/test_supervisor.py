"""Supervision: restart by stable name, every kind of death, restart intensity."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from rubberduck.actors.supervisor import ChildSpec, Registry, Restart, SupervisedActor, Supervisor
from tests.conftest import wait_until


class Echo(SupervisedActor):
    """Answers "ping" with its urn; crashes on "crash"; can fail to start."""

    starts = 0
    fail_start = False

    def started(self) -> None:
        Echo.starts += 1
        if Echo.fail_start:
            raise RuntimeError("cannot start")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("boom")
        return self.actor_urn


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    Echo.starts, Echo.fail_start = 0, False
    yield
    pykka.ActorRegistry.stop_all()


def start(registry: Registry, restart: Restart = Restart.PERMANENT, **kw: Any) -> Any:
    spec = ChildSpec("echo", lambda: Echo.start(registry, "echo"), restart)
    sup = Supervisor.start([spec], registry, **kw)
    sup.ask(None)  # returns once on_start has started the children
    return sup


def test_crashed_child_is_restarted_and_reachable_by_name() -> None:
    registry = Registry()
    sup = start(registry)
    old = registry.get("echo").ask("ping")
    registry.tell("echo", "crash")
    assert wait_until(lambda: registry.get("echo") and registry.get("echo").actor_urn != old)
    assert registry.get("echo").ask("ping", timeout=1) != old
    assert Echo.starts == 2
    sup.stop()


def test_failure_in_on_start_is_detected() -> None:
    registry = Registry()
    escalated = threading.Event()
    Echo.fail_start = True
    start(registry, max_restarts=2, within_s=5, on_escalate=lambda why: escalated.set())
    assert escalated.wait(3), "a child that never starts must exhaust the intensity"
    assert Echo.starts == 3  # the first start and 2 restarts
    assert registry.get("echo") is None


def test_intensity_exceeded_stops_children_and_escalates() -> None:
    registry = Registry()
    reasons: list[str] = []
    sup = start(registry, max_restarts=2, within_s=10, on_escalate=reasons.append)
    for _ in range(3):
        urn = registry.get("echo").actor_urn
        registry.tell("echo", "crash")
        wait_until(
            lambda u=urn: registry.get("echo") is None or registry.get("echo").actor_urn != u
        )
    assert wait_until(lambda: bool(reasons))
    assert "more than 2 restarts" in reasons[0]
    assert wait_until(lambda: not sup.is_alive())


def test_temporary_child_is_not_restarted() -> None:
    registry = Registry()
    sup = start(registry, restart=Restart.TEMPORARY)
    registry.tell("echo", "crash")
    assert wait_until(lambda: registry.get("echo") is None)
    time.sleep(0.05)
    assert Echo.starts == 1
    sup.stop()


def test_transient_child_restarts_after_a_crash_only() -> None:
    registry = Registry()
    sup = start(registry, restart=Restart.TRANSIENT)
    registry.tell("echo", "crash")
    assert wait_until(lambda: Echo.starts == 2 and registry.get("echo") is not None)
    registry.get("echo").stop()
    assert wait_until(lambda: registry.get("echo") is None)
    assert Echo.starts == 2
    sup.stop()


def test_stop_stops_children_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    registry = Registry()
    sup = start(registry)
    child = registry.get("echo")
    sup.stop()
    assert not child.is_alive()
    for thread in registry.threads:
        thread.join(2)
    assert not [t for t in threading.enumerate() if t not in before]
