"""Loggers per component, structured fields, and rate-limited warnings.

Every logger is a child of ``rubberduck`` (which has a ``NullHandler``: nothing
is printed unless the application configures logging). Records carry their
structured fields in ``extra`` — ``request_id``, ``backend``, ``model``,
``error_kind`` where they apply — so a JSON formatter picks them up as
attributes of the record. No record ever holds a prompt, an answer or a key:
only names, counts, error kinds and the error messages RubberDuck builds
itself (which never quote a request or a secret).

During an outage the same warning would repeat for every request; a
:class:`WarningLimiter` lets at most one identical warning (same logger,
message template, backend and error kind) through per ``interval_s`` seconds,
and the next one that passes says how many were suppressed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["LIMITER", "WarningLimiter", "component", "fields", "never_raises", "warn"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def component(name: str) -> logging.Logger:
    """The logger of one component: ``rubberduck.NAME`` (``router``, ``health``,
    ``provider.BACKEND``, ``supervisor``, ``runtime``)."""
    return logging.getLogger(f"rubberduck.{name}")


def fields(
    request_id: int | None = None,
    backend: str | None = None,
    model: str | None = None,
    error_kind: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra`` of a record: the structured fields, ``None`` where unknown."""
    return {
        "request_id": request_id,
        "backend": backend,
        "model": model,
        "error_kind": error_kind,
        **more,
    }


class WarningLimiter:
    """At most one identical warning per key per ``interval_s`` seconds.

    Args:
        interval_s: Seconds during which repeats of a key are suppressed.
        max_keys: Keys remembered; past it the oldest are forgotten (so a flood
            of distinct keys cannot grow memory).

    Thread-safe: workers, the Router and the HealthMonitor log concurrently.
    """

    def __init__(self, interval_s: float = 10.0, max_keys: int = 1024) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._seen: dict[tuple[Any, ...], list[float | int]] = {}  # key → [last, suppressed]

    def allow(self, key: tuple[Any, ...], now: float | None = None) -> int | None:
        """``None`` to suppress this warning; otherwise how many identical ones
        were suppressed since the last that passed (0 the first time).

        Args:
            key: What makes two warnings identical.
            now: ``time.monotonic()`` seconds (for tests); default now.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                return None
            suppressed = int(entry[1]) if entry is not None else 0
            if entry is None and len(self._seen) >= self.max_keys:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = [now, 0]
            return suppressed

    def reset(self) -> None:
        """Forget every key (tests; a fresh start)."""
        with self._lock:
            self._seen.clear()


#: The limiter every rate-limited warning goes through.
LIMITER = WarningLimiter()


def warn(logger: logging.Logger, msg: str, *args: Any, extra: dict[str, Any]) -> None:
    """Log ``msg % args`` at WARNING unless an identical warning (same logger,
    template, ``backend`` and ``error_kind``) passed less than
    ``LIMITER.interval_s`` seconds ago. A warning that passes after
    suppressed ones ends with their count and carries it as ``suppressed``."""
    if not logger.isEnabledFor(logging.WARNING):
        return
    key = (logger.name, msg, extra.get("backend"), extra.get("error_kind"))
    suppressed = LIMITER.allow(key)
    if suppressed is None:
        return
    if suppressed:
        msg += f" ({suppressed} more like this were suppressed since the last)"
    # stacklevel: the record names the hook's caller (router.py, ...), not this helper.
    logger.warning(msg, *args, extra={**extra, "suppressed": suppressed}, stacklevel=3)


def never_raises(hook: Callable[_P, _R | None]) -> Callable[_P, _R | None]:
    """Wrap a telemetry hook so that a failure in it (an SDK's, or ours) is
    logged on ``rubberduck.telemetry`` and returns ``None``: observability must
    never fail a request or an actor."""

    @functools.wraps(hook)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return hook(*args, **kwargs)
        except Exception:  # noqa: BLE001 - see the docstring
            if LIMITER.allow(("rubberduck.telemetry", hook.__name__)) is not None:
                component("telemetry").exception("telemetry hook %s failed", hook.__name__)
            return None

    return guarded
