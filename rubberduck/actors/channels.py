"""The paths between actors that do not go through a mailbox.

A mailbox hop costs a thread wake-up, and a view that follows its source by a
hop can be out of date. Four exchanges carry nothing a lock does not, so they
bypass the mailboxes, each through one small object with its locking written
down here:

- :class:`Admissions`: the Router hands a request to a backend's ProviderActor
  by calling that actor's ``admit`` on the Router's thread (a non-blocking slot
  check, then a hand-off to the actor's worker pool).
- :class:`OutcomeLog`: workers append how each attempt ended; the
  HealthMonitor reads them in that order before each message it handles.
- :class:`Load`: requests in flight per backend, written by the Router and the
  ProviderActors, read by the Router to share load.
- :class:`Circuits`: which backends' circuits are open, written by the
  HealthMonitor as its breakers change, read by whoever routes (the Router, and
  callers' threads making a request's first offer), so that routing and
  ``Runtime.health`` never disagree.

All of them live in the :class:`~rubberduck.actors.supervisor.Registry` (or the
runtime), not in an actor, so they survive actor restarts.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from rubberduck.messages import Outcome

if TYPE_CHECKING:
    from rubberduck.request_state import RequestState

__all__ = ["Admission", "Admissions", "Admit", "Circuits", "Load", "OutcomeLog"]


class Admission(enum.Enum):
    """What a backend's actor did with a request offered to it."""

    TAKEN = "taken"  # it runs it (or has it waiting for a worker): now the actor's
    FULL = "full"  # every slot is taken; nothing changed, offer it elsewhere
    GONE = "gone"  # the actor is going away; nothing changed, offer it elsewhere


class Admit(Protocol):
    """A ProviderActor's admission: never blocks.

    With ``overflow`` the actor takes the request even with every slot taken,
    and runs it when a slot frees (the Router asks this only when no other
    backend has room): the request waits, bounded by its deadline, instead of
    failing busy.
    """

    def __call__(self, handle: RequestState, *, overflow: bool = False) -> Admission: ...


class Admissions:
    """Backend name → the live ProviderActor's :class:`Admit`.

    Locking: :meth:`register` and :meth:`unregister` run under a lock (an actor
    starting and its predecessor's cleanup may race); :meth:`admit` reads the
    dict without it (one atomic ``dict.get``) and calls the actor's ``admit``,
    which takes the actor's own lock.
    """

    def __init__(self) -> None:
        self._admit: dict[str, Admit] = {}
        self._lock = threading.Lock()

    def register(self, backend: str, admit: Admit) -> None:
        """Route ``backend``'s requests to ``admit`` from now on."""
        with self._lock:
            self._admit[backend] = admit

    def unregister(self, backend: str, admit: Admit) -> None:
        """Forget ``admit`` if it is still ``backend``'s (a replacement that
        registered meanwhile stays)."""
        with self._lock:
            if self._admit.get(backend) == admit:
                del self._admit[backend]

    def __contains__(self, backend: str) -> bool:
        return backend in self._admit

    def admit(self, backend: str, handle: RequestState, *, overflow: bool = False) -> Admission:
        """Offer ``handle`` to ``backend``'s actor (see :class:`Admit`).

        Returns:
            ``Admission.GONE`` when no actor serves ``backend`` now (it is
            being restarted).
        """
        admit = self._admit.get(backend)
        if admit is None:
            return Admission.GONE
        return admit(handle, overflow=overflow)


class OutcomeLog:
    """Attempt outcomes, in the order the attempts ended.

    Workers :meth:`append`; one reader (the HealthMonitor) :meth:`drain`-s.
    Locking: none needed — ``deque.append`` and ``deque.popleft`` are atomic,
    and there is one reader. Bounded: past ``maxlen`` the oldest unread go.

    Args:
        maxlen: Outcomes kept unread at most.
    """

    def __init__(self, maxlen: int = 65536) -> None:
        self._outcomes: deque[Outcome] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self._outcomes)

    def append(self, outcome: Outcome) -> None:
        """Record one attempt's outcome (any thread)."""
        self._outcomes.append(outcome)

    def drain(self) -> Iterator[Outcome]:
        """The unread outcomes, oldest first, each read once (the reader only)."""
        outcomes = self._outcomes
        while outcomes:
            yield outcomes.popleft()


class Load:
    """Requests dispatched to each backend and not finished there yet, in all
    and per model.

    The Router adds one when it dispatches; the backend's actor takes it away
    when the request leaves it (done, failed, handed back). The Router reads it
    to break priority ties by fewest requests in flight (and, per model, to
    tell a host whose slots for a model are full, see
    :mod:`rubberduck.actors.balance`); ``Runtime.health`` reports it. Shared
    by reference, so it survives actor restarts.

    Locking: :meth:`add` under a lock (read-modify-write from several threads);
    reads of one count take none (one atomic ``dict.get``; a count a moment old
    is fine for ordering); :meth:`busy_models` copies under the lock.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._models: dict[tuple[str, str], int] = {}
        self._busy: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, backend: str, n: int, model: str | None = None) -> None:
        """Change ``backend``'s count by ``n``, and ``model``'s there when given
        (a name as :func:`~rubberduck.actors.residency.model_key` gives it)."""
        with self._lock:
            self._counts[backend] = self._counts.get(backend, 0) + n
            if model is not None:
                key = (backend, model)
                count = self._models.get(key, 0) + n
                busy = self._busy.setdefault(backend, set())
                if count:
                    self._models[key] = count
                    busy.add(model)
                else:
                    self._models.pop(key, None)
                    busy.discard(model)

    def __getitem__(self, backend: str) -> int:
        return self._counts.get(backend, 0)

    def model(self, backend: str, model: str) -> int:
        """Requests for ``model`` dispatched to ``backend`` and not finished."""
        return self._models.get((backend, model), 0)

    def busy_models(self, backend: str) -> frozenset[str]:
        """The models with requests in flight on ``backend`` now."""
        with self._lock:
            return frozenset(self._busy.get(backend, ()))


class Circuits:
    """The backends whose circuit is open, as the HealthMonitor's breakers say.

    The HealthMonitor writes it on a state change, before it does anything
    else (so before ``Runtime.health`` can report the new state); the Router
    and callers' threads read it as they route. One source for both, not a copy
    that follows the breakers by a mailbox hop: a request sent after
    ``health()`` said a circuit closed can go there.

    Locking: one writer (the HealthMonitor's thread). A write replaces the
    whole state (:attr:`down` with :attr:`down_since`) in one assignment, and
    the dicts it hands out are never changed afterwards, so readers take no
    lock and see either the old state or the new one.
    """

    def __init__(self) -> None:
        self._state: tuple[dict[str, str], dict[str, float]] = ({}, {})

    @property
    def down(self) -> dict[str, str]:
        """Backend → why its circuit is open (do not change the dict)."""
        return self._state[0]

    @property
    def down_since(self) -> dict[str, float]:
        """Backend → when its circuit opened, ``time.monotonic()`` seconds (do
        not change the dict)."""
        return self._state[1]

    def state(self) -> tuple[dict[str, str], dict[str, float]]:
        """:attr:`down` and :attr:`down_since` read together (one state)."""
        return self._state

    def open(self, backend: str, reason: str) -> None:
        """``backend``'s circuit is open because of ``reason``; when it opened
        does not move while it stays open."""
        down, since = self._state
        self._state = (
            {**down, backend: reason},
            {**since, backend: since.get(backend, time.monotonic())},
        )

    def close(self, backend: str) -> None:
        """``backend``'s circuit is closed (user requests may go there)."""
        down, since = self._state
        if backend in down:
            self._state = (
                {k: v for k, v in down.items() if k != backend},
                {k: v for k, v in since.items() if k != backend},
            )
