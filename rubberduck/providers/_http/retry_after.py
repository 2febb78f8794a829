"""The one reader of a server's "wait before retrying" headers."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

__all__ = ["retry_after"]


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait before retrying, from ``retry-after-ms`` (OpenAI, in
    milliseconds) or ``Retry-After`` in seconds or as an HTTP date (RFC 9110
    section 10.2.3).

    Args:
        headers: The answer's headers (case-insensitive, as requests gives them).
        now: The current time, seconds since the epoch (default: the clock), for
            an HTTP date.

    Returns:
        Seconds, at least 0.0; ``None`` when neither header is there or readable.
    """
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1e3)
    except (TypeError, ValueError):
        pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
