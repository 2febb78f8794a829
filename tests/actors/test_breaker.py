"""Circuit breaker transitions (pure logic, explicit clock)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from rubberduck.actors.breaker import CircuitBreaker


def breaker(**kw: float) -> CircuitBreaker:
    return CircuitBreaker(rng=random.Random(0), jitter=0.0, **kw)  # type: ignore[arg-type]


def test_opens_after_threshold_consecutive_failures() -> None:
    b = breaker(failure_threshold=3, cooldown=1.0)
    assert not b.record_failure(0.0) and not b.record_failure(0.1)
    assert b.allows_requests()
    assert b.record_failure(0.2)
    assert b.state == "open" and not b.allows_requests()


def test_a_success_resets_the_count() -> None:
    b = breaker(failure_threshold=2)
    b.record_failure(0.0)
    b.record_success()
    assert not b.record_failure(0.1)
    assert b.state == "closed"


def test_refused_connection_opens_at_once() -> None:
    b = breaker(failure_threshold=5)
    assert b.record_failure(0.0, immediate=True)
    assert b.state == "open"


def test_half_open_after_cooldown_then_probe_decides() -> None:
    b = breaker(failure_threshold=1, cooldown=2.0, max_cooldown=5.0)
    b.record_failure(10.0)
    assert not b.probe_due(11.9) and b.state == "open"
    assert b.probe_due(12.0) and b.state == "half_open"
    assert not b.allows_requests(), "half-open lets only the probe through"
    assert b.record_failure(12.0)  # failed probe: open again, cooldown doubled
    assert b.state == "open" and b.retry_at == 16.0
    b.probe_due(16.0)
    b.record_failure(16.0)
    assert b.retry_at == 21.0, "the cooldown is capped at max_cooldown"
    b.probe_due(21.0)
    assert b.record_success() and b.state == "closed" and b.cooldown == 2.0


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60))
def test_state_is_always_one_of_three_and_open_only_after_a_failure(
    outcomes: list[tuple[bool, bool]],
) -> None:
    b = CircuitBreaker(failure_threshold=3, cooldown=1.0, max_cooldown=8.0)
    now = 0.0
    for ok, refused in outcomes:
        now += 0.5
        b.probe_due(now)
        was = b.state
        changed = b.record_success() if ok else b.record_failure(now, immediate=refused)
        assert b.state in ("closed", "open", "half_open")
        if ok:
            assert b.state == "closed" and changed == (was != "closed")
        if b.state == "open":
            assert not ok and b.failures > 0
            assert b.opened_at + b.cooldown <= b.retry_at <= b.opened_at + b.cooldown * 1.1
        assert b.cooldown <= 8.0


def test_failure_rate_over_the_window_opens_it() -> None:
    # Every other request fails: never 3 in a row, but half of them.
    b = breaker(failure_threshold=3, failure_rate=0.5, window=10.0, min_requests=6)
    t = 0.0
    for _ in range(2):
        assert not b.record_failure(t)
        b.record_success(t + 0.1)
        t += 0.2
    assert b.state == "closed" and b.failure_ratio() == 0.5
    assert not b.record_failure(t)  # 3 of 5: too few requests yet
    b.record_success(t + 0.1)
    assert b.record_failure(t + 0.2)  # 4 of 7 >= 50 %
    assert b.state == "open"


def test_failures_older_than_the_window_do_not_count() -> None:
    b = breaker(failure_threshold=3, failure_rate=0.5, window=1.0, min_requests=4)
    b.record_failure(0.0)
    b.record_failure(0.1)
    b.record_success(0.2)
    for t in (5.0, 5.1, 5.2):
        b.record_success(t)
    assert not b.record_failure(5.3)  # 1 failure of 4 in the last second
    assert b.state == "closed" and b.failure_ratio() == 0.25


def test_a_successful_probe_starts_a_fresh_window() -> None:
    b = breaker(failure_threshold=100, failure_rate=0.5, window=60.0, min_requests=2, cooldown=1.0)
    b.record_failure(0.0)
    assert b.record_failure(0.1)  # 2 of 2
    assert b.probe_due(2.0) and b.record_success()
    assert b.failure_ratio() is None
    assert not b.record_failure(2.1)  # 1 of 1: below min_requests again
