"""Cancellation of a provider's blocking call from another thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["CancelScope", "quietly"]


class CancelScope:
    """Lets another thread abort a provider's blocking call promptly.

    The provider ``attach``-es a closer (closing the HTTP response and shutting
    its socket down, which wakes a blocked ``recv``); ``cancel()`` runs it at once,
    or later at ``attach`` time if it was cancelled first.
    """

    __slots__ = ("_closer", "_lock", "cancelled")

    def __init__(self) -> None:
        self.cancelled = False
        self._closer: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Mark cancelled and close whatever the provider attached. Idempotent."""
        with self._lock:
            self.cancelled = True
            closer, self._closer = self._closer, None
        if closer is not None:
            quietly(closer)

    def attach(self, closer: Callable[[], None]) -> None:
        """Register how to abort the current call; runs it now if already cancelled."""
        with self._lock:
            if not self.cancelled:
                self._closer = closer
                return
        quietly(closer)

    def detach(self) -> None:
        """Forget the closer (the call finished)."""
        with self._lock:
            self._closer = None


def quietly(fn: Callable[[], None]) -> None:
    """Run a closer, ignoring its failure (closing a dead socket may fail; it is
    closed either way)."""
    try:
        fn()
    except Exception:  # noqa: BLE001 - see above
        pass
