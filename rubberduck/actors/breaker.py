"""A circuit breaker per backend: closed → open → half-open → closed.

- closed: requests flow. ``failure_threshold`` consecutive failures open it; a
  refused connection opens it at once (nothing is listening, so waiting for more
  failures only burns requests).
- open: requests skip the backend. After ``cooldown`` seconds it turns half-open.
- half-open: a health probe — never a user request — decides: success closes it
  (and resets the cooldown), failure opens it again with the cooldown doubled,
  capped at ``max_cooldown``, plus up to 10 % jitter so that many runtimes do not
  probe in step.

Pure logic: the caller passes ``now`` (``time.monotonic()`` seconds).
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Args:
    failure_threshold: Consecutive failures that open the circuit.
    cooldown: Seconds an open circuit waits before going half-open.
    max_cooldown: Cap of the growing cooldown, seconds.
    jitter: Fraction of the cooldown added at random (0.1 = up to 10 %).
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown: float = 2.0,
        max_cooldown: float = 60.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.base_cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.jitter = jitter
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

    def record_success(self) -> bool:
        """A request or probe succeeded. Returns ``True`` if the state changed."""
        changed = self.state != "closed"
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
        if self.state == "closed" and (immediate or self.failures >= self.failure_threshold):
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = "open"
        self.opened_at = now
        self.retry_at = now + self.cooldown * (1 + self.jitter * self._rng.random())
