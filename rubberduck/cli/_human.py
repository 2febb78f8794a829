"""Sizes and times as ``ollama list`` and ``ollama ps`` print them: "2.0 GB",
"3 days ago", "4 minutes from now", "Forever"."""

from __future__ import annotations

from datetime import datetime

__all__ = ["FOREVER_AFTER_S", "ago", "human_bytes", "until"]

#: An expiry further away than this is a model kept loaded for good
#: (``keep_alive: -1`` gives a date centuries ahead): "Forever", as Ollama prints.
FOREVER_AFTER_S = 10 * 365 * 86400.0

_UNITS = (
    ("year", 365 * 86400),
    ("month", 30 * 86400),
    ("week", 7 * 86400),
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)


def _span(seconds: float) -> str:
    for name, size in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'s' * (n != 1)}"
    return "less than a second"


def ago(when: datetime | None, now: datetime) -> str:
    """``"3 days ago"``; ``"-"`` for an unknown time (both times timezone-aware)."""
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    return "just now" if seconds < 1 else f"{_span(seconds)} ago"


def until(when: datetime | None, now: datetime) -> str:
    """When a loaded model unloads: ``"4 minutes from now"``, ``"Forever"`` for a
    far-future expiry, ``"Stopping..."`` once past, ``"Never"`` with none."""
    if when is None:
        return "Never"
    seconds = (when - now).total_seconds()
    if seconds <= 0:
        return "Stopping..."
    if seconds > FOREVER_AFTER_S:
        return "Forever"
    return f"{_span(seconds)} from now"


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KB"`` (decimal units, as Ollama prints sizes)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
