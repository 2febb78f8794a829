"""Per-model turns on one backend: ``max_in_flight_per_model``.

Ollama runs ``OLLAMA_NUM_PARALLEL`` requests at once *per loaded model*
(default 1 in recent versions, ``NumParallel = Uint("OLLAMA_NUM_PARALLEL", 1)``
in its ``envconfig/config.go``; older ones chose 4 or 1 by free memory)
and queues the rest inside the server, where they can neither go to another
host nor be counted. A backend configured with
``max_in_flight_per_model`` therefore runs at most that many attempts per
model at once; the rest wait here, where the Router sees them. The Router
offers a request elsewhere first: :meth:`ModelTurns.full` makes a backend
whose turns for the model are all taken refuse it (``Admission.FULL``) unless
no backend has room (overflow).

Locking: one lock guards the semaphore per model (created on first use); the
semaphores lock themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ModelTurns"]

#: How often a waiting attempt checks whether it should stop waiting, seconds.
_POLL_S = 0.05


class ModelTurns:
    """At most ``limit`` attempts per model running at once on one backend.

    Args:
        limit: Attempts per model at once; ``None``: no limit (every call
            takes nothing and returns at once).
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._turns: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def full(self, in_flight: int) -> bool:
        """Whether a model with ``in_flight`` requests here (the one being
        admitted included) is over the limit."""
        return self.limit is not None and in_flight > self.limit

    def try_take(self, model: str | None) -> bool:
        """Take a turn for ``model`` if one is free now, without waiting.

        Returns:
            ``True`` when taken (give it back with :meth:`give`) or when none
            is needed (no limit, no model: nothing to give back); ``False``
            when every turn for ``model`` is taken.
        """
        if self.limit is None or model is None:
            return True
        with self._lock:
            turns = self._turns.get(model)
            if turns is None:
                turns = self._turns[model] = threading.Semaphore(self.limit)
        return turns.acquire(blocking=False)

    def take(self, model: str | None, give_up: Callable[[], bool]) -> str | None:
        """Wait for a turn for ``model``; checks ``give_up`` every 50 ms.

        Returns:
            The model whose turn is now held (give it back with :meth:`give`),
            or ``None`` when none was taken: no limit, no model, or ``give_up``
            said so.
        """
        if self.limit is None or model is None:
            return None
        with self._lock:
            turns = self._turns.get(model)
            if turns is None:
                turns = self._turns[model] = threading.Semaphore(self.limit)
        while not turns.acquire(timeout=_POLL_S):
            if give_up():
                return None
        return model

    def give(self, model: str) -> None:
        """Give back a turn :meth:`take` returned or :meth:`try_take` took
        (no limit: nothing to give back)."""
        if self.limit is not None:
            self._turns[model].release()
