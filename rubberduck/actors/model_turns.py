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

A request waiting for its model's turn holds no thread: it is a callback on
the model's waiting list (FIFO), called with the turn when one is given back
(:meth:`ModelTurns.give`); only then does it go to a worker or its caller's
thread. Parked threads would take the pool's workers, and a request for
another model would wait behind them. A request that ends while it waits
(deadline, cancel) leaves the list when a turn reaches it (it declines), as
on the backend's overflow waiting list.

These turns are this runtime's. With ``[cluster]``, a request that has its
turn here also takes a lease in the model's slot set in Redis, so that the
limit holds across every replica sharing it (see
:mod:`rubberduck.cluster.leases` and ``ProviderActor._cluster_slot``).

Locking: one lock guards the counts and the waiting lists; callbacks run
outside it. A model with no turn taken and nobody waiting has no entry: the
names come from callers, so nothing is kept per name once idle.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["ModelTurns"]


class ModelTurns:
    """At most ``limit`` attempts per model running at once on one backend.

    Args:
        limit: Attempts per model at once; ``None``: no limit (every turn is
            free and nothing is counted).
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._taken: dict[str, int] = {}
        self._waiting: dict[str, deque[Callable[[], bool]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Models with a turn taken or a request waiting for one."""
        with self._lock:
            return len(self._taken.keys() | self._waiting.keys())

    def full(self, in_flight: int) -> bool:
        """Whether a model with ``in_flight`` requests here (the one being
        admitted included) is over the limit."""
        return self.limit is not None and in_flight > self.limit

    def try_take(self, model: str | None) -> bool:
        """Take a turn for ``model`` if one is free now, without waiting.

        Returns:
            ``True`` when taken (give it back with :meth:`give`; no limit or
            no model: nothing is counted); ``False`` when every turn for
            ``model`` is taken.
        """
        if self.limit is None or model is None:
            return True
        with self._lock:
            taken = self._taken.get(model, 0)
            if taken >= self.limit:
                return False
            self._taken[model] = taken + 1
            return True

    def take(self, model: str | None, start: Callable[[], bool]) -> bool:
        """Take a turn for ``model`` now, or put ``start`` on its waiting list.

        Args:
            model: The request's model (``None``: no turn needed).
            start: Called (on the thread of :meth:`give`, no lock held) when
                a turn is given to it: ``True`` when it took the turn (and
                will give it back), ``False`` when it declines (its request
                ended): the turn passes to the next one.

        Returns:
            ``True``: the turn is taken now (``start`` will not be called);
            ``False``: ``start`` waits for one.
        """
        if self.limit is None or model is None:
            return True
        with self._lock:
            taken = self._taken.get(model, 0)
            if taken < self.limit:
                self._taken[model] = taken + 1
                return True
            self._waiting.setdefault(model, deque()).append(start)
            return False

    def give(self, model: str | None) -> None:
        """Give back a turn :meth:`try_take` or :meth:`take` took: to the
        first request waiting for ``model`` that takes it, else it is free."""
        if self.limit is None or model is None:
            return
        while True:
            with self._lock:
                waiting = self._waiting.get(model)
                if not waiting:
                    taken = self._taken[model] - 1
                    if taken:
                        self._taken[model] = taken
                    else:
                        del self._taken[model]
                    return
                start = waiting.popleft()
                if not waiting:
                    del self._waiting[model]
            if start():
                return
