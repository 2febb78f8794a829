"""Circuit breaker transitions (pure logic, explicit clock)."""

from __future__ import annotations

import random

import pytest
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
    assert b.record_failure(12.0)  # failed probe: open again
    assert b.state == "open" and b.retry_at == 14.0
    b.probe_due(14.0)
    assert b.record_success(14.0) and b.state == "closed" and b.allows_requests()


def test_failed_probes_do_not_lengthen_the_wait_however_long_the_outage() -> None:
    # A restarted server is used again about one cooldown after it listens.
    b = breaker(cooldown=1.0, max_cooldown=60.0)
    assert b.record_failure(0.0, immediate=True)
    now = 0.0
    for _ in range(500):  # more than eight minutes of failed probes
        now = b.retry_at
        assert b.probe_due(now)
        b.record_failure(now, immediate=True)
        assert b.retry_at - now == 1.0
    assert b.probes == 500


def test_probes_of_an_open_circuit_are_jittered_within_ten_percent() -> None:
    b = CircuitBreaker(cooldown=1.0, rng=random.Random(1))
    b.record_failure(0.0, immediate=True)
    waits = []
    for _ in range(50):
        now = b.retry_at
        b.probe_due(now)
        b.record_failure(now)
        waits.append(b.retry_at - now)
    assert all(1.0 <= w <= 1.1 for w in waits) and len(set(waits)) > 1


def test_a_flapping_backend_waits_longer_before_each_first_probe() -> None:
    # It passes its probe, then fails requests again: each re-open within
    # `window` doubles the wait, up to max_cooldown; later probes come every
    # cooldown; a circuit that stays closed for a window starts over.
    b = breaker(failure_threshold=1, cooldown=1.0, max_cooldown=5.0, window=30.0)
    now = 0.0
    waits = []
    for _ in range(5):
        assert b.record_failure(now)
        waits.append(b.retry_at - now)
        now = b.retry_at
        assert b.probe_due(now) and b.record_success(now)
        now += 1.0
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    b.probe_due(now)
    assert b.record_failure(now) and b.probe_due(now + 5.0)
    assert b.record_failure(now + 5.0) and b.retry_at == now + 6.0, "then every cooldown"
    b.probe_due(now + 6.0)
    b.record_success(now + 6.0)
    assert b.record_failure(now + 40.0) and b.retry_at == now + 41.0, "closed for a window"


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
        changed = b.record_success(now) if ok else b.record_failure(now, immediate=refused)
        assert b.state in ("closed", "open", "half_open")
        if ok:
            assert b.state == "closed" and changed == (was != "closed")
        if b.state == "open":
            assert not ok and b.failures > 0
            assert now < b.retry_at <= now + b.cooldown * 1.1
        assert 1.0 <= b.cooldown <= 8.0


@pytest.mark.parametrize("seed", range(20))
def test_ten_percent_independent_failures_do_not_open_it(seed: int) -> None:
    # 2000 requests at 100 per second, each failing with p = 0.1 (the old
    # policy, three in a row, opened on nearly every seed).
    rng = random.Random(seed)
    b = CircuitBreaker(rng=rng)
    for i in range(2000):
        now = i * 0.01
        if rng.random() < 0.1:
            assert not b.record_failure(now), f"opened after request {i}"
        else:
            b.record_success(now)
    assert b.state == "closed"


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.floats(0.001, 5.0)),
        max_size=80,
    )
)
def test_rare_short_failure_runs_never_open_it(runs: list[tuple[int, float]]) -> None:
    # Runs shorter than failure_threshold, each followed by three successes per
    # failure: below both the consecutive trip and the failure rate.
    b = CircuitBreaker()
    now = 0.0
    for failures, gap in runs:
        for _ in range(failures):
            now += gap
            assert not b.record_failure(now)
        for _ in range(3 * failures):
            now += gap
            b.record_success(now)
    assert b.state == "closed"


@given(
    st.lists(st.sampled_from(["ok", "fail"]), max_size=50),
    st.floats(0.0001, 1.0),
)
def test_a_backend_failing_everything_opens_within_the_threshold(
    history: list[str], step: float
) -> None:
    b = CircuitBreaker()
    now = 0.0
    for outcome in history:
        now += step
        b.probe_due(now)
        if outcome == "ok":
            b.record_success(now)
        else:
            b.record_failure(now)
    if b.state != "closed":
        return
    for _ in range(b.failure_threshold):
        now += step
        b.record_failure(now)
    assert b.state == "open"


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
