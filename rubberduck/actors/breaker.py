"""A circuit breaker per backend: closed → open → half-open → closed.

The policy tells a backend that is down from one that fails now and then. With
three backends each failing 10 % of requests independently (503, 500, resets,
stalls), no circuit may open by bad luck, yet a backend that refuses connections
or fails everything must be skipped at once.

- closed: requests flow. It opens on one of three signals:

  * a refused connection (nothing listens there: waiting for more failures
    only burns requests), at once;
  * ``failure_threshold`` failures in a row with no success in between (default
    6: at a 10 % independent failure rate a given run of six has a chance of
    one in a million, so such a run says "down", not "unlucky");
  * a failure rate of ``failure_rate`` or more over the last ``window`` seconds,
    once ``min_requests`` outcomes were seen there (a backend failing every
    other request never fails six in a row; with the defaults, 50 % of at least
    20, a 10 % backend reaches it with a chance of 7 in a million while the
    window holds only 20 outcomes, and far less once it holds more).

  The caller must record outcomes in the order they happened (the HealthMonitor
  reads them from one ordered queue), or successes between failures are lost
  and failures look consecutive.
- open: requests skip the backend (the Router's panic mode aside: when every
  candidate is open it still tries them). Probes come every ``cooldown`` seconds
  (plus up to 10 % jitter, so that many runtimes do not probe in step), however
  long the backend has been down: a probe (Ollama: ``GET /api/version``) costs
  next to nothing, and a restarted server is back in use about one cooldown
  after it listens again. Failed probes do not lengthen the wait.
- half-open: a probe — never a user request — decides: success closes it,
  failure opens it again.

What does grow is the penalty for *flapping*: a backend that passes its probe
and fails requests again. When a circuit re-opens within ``window`` seconds of
a probe closing it, its cooldown doubles (capped at ``max_cooldown``) before the
first probe; later probes come every ``cooldown`` again. A circuit that stays
closed for ``window`` seconds starts over from ``cooldown``.

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
    failure_threshold: Failures in a row (no success between) that open the circuit.
    cooldown: Seconds an open circuit waits before a probe, and between probes.
    max_cooldown: Cap of the wait before the first probe after a flap, seconds.
    jitter: Fraction of the wait added at random (0.1 = up to 10 %).
    failure_rate: Share of failures (0–1] in the window that opens the circuit.
    window: The failure-rate window, and the flap window, seconds.
    min_requests: Outcomes in the window before the rate counts.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 6,
        cooldown: float = 1.0,
        max_cooldown: float = 60.0,
        jitter: float = 0.1,
        failure_rate: float = 0.5,
        window: float = 30.0,
        min_requests: int = 20,
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
        #: Failures since the last success (the consecutive count).
        self.failures = 0
        #: The wait before the first probe of the current (or next) opening.
        self.cooldown = cooldown
        self.opened_at = 0.0
        self.retry_at = 0.0
        self.closed_at = float("-inf")  # when a probe last closed the circuit
        self.probes = 0  # probes of open circuits since the circuit last opened

    def allows_requests(self) -> bool:
        """``True`` when user requests may go to the backend (closed)."""
        return self.state == "closed"

    def probe_due(self, now: float) -> bool:
        """``True`` when an open circuit's wait is over; turns it half-open."""
        if self.state == "open" and now >= self.retry_at:
            self.state = "half_open"
            self.probes += 1
        return self.state == "half_open"

    def record_success(self, now: float | None = None) -> bool:
        """A request or probe succeeded. Returns ``True`` if the state changed.

        Args:
            now: Current monotonic time, seconds, to count the success in the
                failure-rate window (and, when a probe closes the circuit, to
                start the flap window); ``None`` leaves both as they are.
        """
        changed = self.state != "closed"
        if changed:
            self._forget_window()
            if now is not None:
                self.closed_at = now
        elif now is not None:
            self._note(now, failed=False)
        self.state, self.failures = "closed", 0
        return changed

    def record_failure(self, now: float, *, immediate: bool = False) -> bool:
        """A request or probe failed. Returns ``True`` if the state changed.

        Args:
            now: Current monotonic time, seconds.
            immediate: Open at once (connection refused), whatever the count.
        """
        self.failures += 1
        if self.state == "half_open":
            # A failed probe: open again, probe again one (base) cooldown later.
            self.state = "open"
            self.retry_at = now + self._jittered(self.base_cooldown)
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

    def _jittered(self, wait: float) -> float:
        return wait * (1 + self.jitter * self._rng.random())

    def _open(self, now: float) -> None:
        """Closed → open. A re-trip soon after a probe closed it is a flap."""
        flapped = now - self.closed_at <= self.window
        self.cooldown = min(self.cooldown * 2, self.max_cooldown) if flapped else self.base_cooldown
        self._forget_window()
        self.state = "open"
        self.opened_at = now
        self.probes = 0
        self.retry_at = now + self._jittered(self.cooldown)
