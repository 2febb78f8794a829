"""A circuit breaker per backend: closed → open → half-open → closed.

- closed: requests flow. ``failure_threshold`` consecutive failures open it, and
  so does a failure rate of ``failure_rate`` or more over the last ``window``
  seconds once ``min_requests`` outcomes were seen there (a backend failing every
  other request never fails three in a row). A refused connection opens it at once
  (nothing is listening, so waiting for more failures only burns requests).
- open: requests skip the backend. After ``cooldown`` seconds it turns half-open.
- half-open: a health probe — never a user request — decides: success closes it
  (and resets the cooldown), failure opens it again with the cooldown doubled,
  capped at ``max_cooldown``, plus up to 10 % jitter so that many runtimes do not
  probe in step.

Pure logic: the caller passes ``now`` (``time.monotonic()`` seconds).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Literal

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Args:
    failure_threshold: Consecutive failures that open the circuit.
    cooldown: Seconds an open circuit waits before going half-open.
    max_cooldown: Cap of the growing cooldown, seconds.
    jitter: Fraction of the cooldown added at random (0.1 = up to 10 %).
    failure_rate: Share of failures (0–1] in the window that opens the circuit.
    window: The failure-rate window, seconds.
    min_requests: Outcomes in the window before the rate counts.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown: float = 2.0,
        max_cooldown: float = 60.0,
        jitter: float = 0.1,
        failure_rate: float = 0.5,
        window: float = 30.0,
        min_requests: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.base_cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.jitter = jitter
        self.failure_rate = failure_rate
        self.window = window
        self.min_requests = max(1, min_requests)
        self._recent: deque[tuple[float, bool]] = deque()  # (time, failed), closed state
        self._recent_failures = 0
        self._rng = rng or random.Random()
        self.state: State = "closed"
        self.failures = 0
        self.cooldown = cooldown
        self.opened_at = 0.0
        self.retry_at = 0.0

    def allows_requests(self) -> bool:
        """``True`` when user requests may go to the backend (closed)."""
        return self.state == "closed"

    def probe_due(self, now: float) -> bool:
        """``True`` when an open circuit's cooldown is over; turns it half-open."""
        if self.state == "open" and now >= self.retry_at:
            self.state = "half_open"
        return self.state == "half_open"

    def record_success(self, now: float | None = None) -> bool:
        """A request or probe succeeded. Returns ``True`` if the state changed.

        Args:
            now: Current monotonic time, seconds, to count the success in the
                failure-rate window; ``None`` leaves the window as it is.
        """
        changed = self.state != "closed"
        if changed:
            self._forget_window()
        elif now is not None:
            self._note(now, failed=False)
        self.state, self.failures, self.cooldown = "closed", 0, self.base_cooldown
        return changed

    def record_failure(self, now: float, *, immediate: bool = False) -> bool:
        """A request or probe failed. Returns ``True`` if the state changed.

        Args:
            now: Current monotonic time, seconds.
            immediate: Open at once (connection refused), whatever the count.
        """
        self.failures += 1
        if self.state == "half_open":
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self._open(now)
            return True
        if self.state != "closed":
            return False
        self._note(now, failed=True)
        if immediate or self.failures >= self.failure_threshold or self._rate_exceeded():
            self._open(now)
            return True
        return False

    def failure_ratio(self) -> float | None:
        """Failed share of the outcomes in the window, or ``None`` if there are none."""
        return self._recent_failures / len(self._recent) if self._recent else None

    def _note(self, now: float, *, failed: bool) -> None:
        recent = self._recent
        recent.append((now, failed))
        self._recent_failures += failed
        while recent and now - recent[0][0] > self.window:
            self._recent_failures -= recent.popleft()[1]

    def _rate_exceeded(self) -> bool:
        return len(
            self._recent
        ) >= self.min_requests and self._recent_failures >= self.failure_rate * len(self._recent)

    def _forget_window(self) -> None:
        self._recent.clear()
        self._recent_failures = 0

    def _open(self, now: float) -> None:
        self._forget_window()
        self.state = "open"
        self.opened_at = now
        self.retry_at = now + self.cooldown * (1 + self.jitter * self._rng.random())
