"""Counts circuit openings during a benchmark run, from ``Runtime.health()``.

The HealthMonitor keeps each backend's circuit state and the time of its last
change (``BackendHealth.since``); polling it a few times a second and counting the
changes into ``"open"`` gives the openings a run caused (an opening and its
recovery between two polls would be missed, so the poll is frequent).
"""

from __future__ import annotations

import threading
from typing import Any

from rubberduck.errors import RubberDuckError

__all__ = ["CircuitWatch"]


class CircuitWatch:
    """A thread that polls ``rt.health()`` every ``interval_s`` seconds while the
    ``with`` block runs; :attr:`openings` counts the changes into ``"open"`` per
    backend, and :attr:`last_error` keeps each backend's last error seen.

    Args:
        rt: A ``Runtime`` (anything with ``health(timeout)``).
        interval_s: Seconds between polls.
    """

    def __init__(self, rt: Any, interval_s: float = 0.1) -> None:
        self._rt = rt
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._seen: dict[str, tuple[str, float]] = {}
        self.openings: dict[str, int] = {}
        self.last_error: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="bench-circuits", daemon=True)

    def poll(self) -> None:
        """Read the health once and count new openings."""
        try:
            snapshot = self._rt.health(timeout=2.0)
        except RubberDuckError:
            return
        for name, h in snapshot.items():
            before = self._seen.get(name)
            self.openings.setdefault(name, 0)
            if before is not None and h.state == "open" and (h.state, h.since) != before:
                self.openings[name] += 1
            self._seen[name] = (h.state, h.since)
            if h.last_error:
                self.last_error[name] = h.last_error

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def __enter__(self) -> CircuitWatch:
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
