"""Invariant 1, as a property: under any schedule of backend faults, actor crashes,
cancellations and an early ``Runtime.close()``, every submitted request gets
exactly one terminal outcome (``Done`` or one typed error), none hangs past its
deadline, and no thread is left once the runtime is closed."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from rubberduck import (
    Done,
    InvalidRequest,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
    Runtime,
    StreamInterrupted,
)
from rubberduck.handle import RequestHandle
from rubberduck.messages import Crash, Delta, Restart, ToolCall
from tests.conftest import HI, wait_until
from tests.fake_ollama import FakeOllama, free_port
from tests.strategies import FaultSchedule, fault_schedules

DEADLINE_S = 0.6
#: How late past its deadline a request may end: thread wake-ups on a busy 2-core box.
SLACK_S = 1.0
EXAMPLES = int(os.environ.get("RUBBERDUCK_PROPERTY_EXAMPLES", "60"))
stats = {"examples": 0, "requests": 0}


def config(urls: list[str]) -> dict[str, Any]:
    return {
        "provider": {
            f"b{i}": {"kind": "ollama", "base_url": url, "model": "llama3.2"}
            for i, url in enumerate(urls)
        },
        "router": {"request_timeout": DEADLINE_S, "retries": 1, "retry_backoff": 0.02},
        "health": {"interval": 0.05, "cooldown": 0.1, "failure_threshold": 2},
    }


def consume(handle: RequestHandle, cancel_after: int | None) -> tuple[list[Any], Any, float]:
    """Read ``handle`` to its end; returns (events, outcome, seconds late)."""
    events: list[Any] = []
    outcome: Any = None
    try:
        for event in handle:
            events.append(event)
            if cancel_after is not None and len(events) > cancel_after:
                handle.cancel()
        outcome = events[-1] if events and isinstance(events[-1], Done) else None
    except RubberDuckError as exc:
        outcome = exc
    return events, outcome, time.monotonic() - handle.deadline


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=fault_schedules())
def test_every_request_ends_exactly_once(schedule: FaultSchedule) -> None:
    before = set(threading.enumerate())
    fakes = []
    urls = []
    for b in schedule.backends:
        if b.down:
            urls.append(f"http://127.0.0.1:{free_port()}")
            continue
        fake = FakeOllama(b.mode, b.script).start()
        fakes.append(fake)
        urls.append(fake.url)
    try:
        rt = Runtime.from_config(config(urls))
        handles = []
        crashes = list(schedule.crashes)
        for i, plan in enumerate(schedule.requests):
            try:
                handle = rt.chat("llama3.2", HI, stream=True, mid_stream=plan.mid_stream)  # type: ignore[arg-type]
            except ProviderUnavailable:
                # The crashes drawn so far exceeded the restart intensity: the
                # runtime stopped, and says so to every later submission.
                assert rt.escalation is not None
                break
            handles.append(handle)
            for _, actor in [c for c in crashes if c[0] == i]:
                with contextlib.suppress(Exception):
                    rt._registry.tell(actor, Crash("property test"))
        results = []
        for handle, plan in zip(handles, schedule.requests[: len(handles)], strict=True):
            results.append(consume(handle, plan.cancel_after))
            if schedule.close_early:
                rt.close()
        rt.close()
    finally:
        for fake in fakes:
            fake.stop()
    stats["examples"] += 1
    stats["requests"] += len(handles)

    healthy = any(b.healthy for b in schedule.backends)
    quiet = not schedule.crashes and not schedule.close_early
    modes = schedule.modes()
    for handle, plan, (events, outcome, late) in zip(
        handles, schedule.requests[: len(handles)], results, strict=True
    ):
        # Exactly one terminal outcome, and nothing after it.
        assert isinstance(outcome, (Done, RubberDuckError)), (events, outcome)
        assert handle.finished and handle._channel.empty()
        assert all(isinstance(e, (Delta, ToolCall, Restart)) for e in events[:-1])
        assert late < SLACK_S, f"ended {late:.2f} s past its deadline"
        if isinstance(outcome, RubberDuckError):
            assert type(outcome).__module__ == "rubberduck.errors"
        if healthy and quiet and plan.cancel_after is None:
            allowed: tuple[type, ...] = (Done,)
            if plan.mid_stream == "error":
                allowed += (StreamInterrupted,)
            if modes & {"stall", "hang"}:
                allowed += (RequestTimeout,)
            if "bad_request" in modes:
                allowed += (InvalidRequest,)
            assert isinstance(outcome, allowed), (schedule, outcome)

    # No thread of the runtime (or of a fake server) outlives it.
    assert wait_until(lambda: not (set(threading.enumerate()) - before), 3), [
        t.name for t in set(threading.enumerate()) - before
    ]


def teardown_module() -> None:
    print(f"\nproperty test: {stats['examples']} examples, {stats['requests']} requests")
