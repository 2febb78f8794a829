"""What the HealthMonitors of a cluster share: circuit states, catalogues,
``/api/ps`` residency, and who probes each backend.

Writes are queued by the HealthMonitor (never a Redis call on its thread) and
sent by the runtime's cluster thread; every ``sync_interval`` that thread also
reads what the others wrote (one pipelined round trip) into a local copy the
HealthMonitor and the Router read without a call:

- ``PREFIX:circuit`` (hash: backend → JSON ``{"state", "reason", "replica",
  "at"}``): a replica whose breaker opens or closes writes it; the others apply
  a change they have not seen (:meth:`SharedState.circuit_news`), so a backend
  one replica saw die is skipped by every replica within ``sync_interval``.
- ``PREFIX:catalogue`` and ``PREFIX:residency`` (hash: backend → JSON list of
  model names): the last ``/api/tags`` and ``/api/ps`` read, the shape
  ``dict[backend, list[model]]``.
- ``PREFIX:probe:BACKEND`` (a key set with ``NX PX``): the probe lease. One
  replica per probe period probes a backend; the others take its result from
  the shared circuit state and catalogue instead (:meth:`SharedState.may_probe`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from rubberduck.cluster.link import RedisLink

__all__ = ["CircuitNews", "SharedState"]


class CircuitNews(NamedTuple):
    """A circuit change another replica saw.

    Attributes:
        backend: Backend name.
        state: ``"open"`` or ``"closed"`` (a half-open circuit is reported open).
        reason: Why (the last error), as that replica put it.
        replica: Who saw it.
    """

    backend: str
    state: str
    reason: str
    replica: str


class SharedState:
    """Circuit states, catalogues, residency and probe leases in Redis.

    Args:
        link: The Redis connection.
        prefix: Key prefix.
        replica: This runtime's id.

    Locking: queued writes, the local copies and the news are under one lock
    (the HealthMonitor, the Router and the cluster thread use them).
    """

    def __init__(self, link: RedisLink, prefix: str, replica: str) -> None:
        self.link = link
        self.prefix = prefix
        self.replica = replica
        self._lock = threading.Lock()
        self._writes: dict[tuple[str, str], str] = {}  # (hash, backend) → JSON
        self._seen: dict[str, bytes] = {}  # backend → last circuit entry read
        self._news: list[CircuitNews] = []
        self._catalogue: dict[str, list[str]] = {}
        self._residency: dict[str, list[str]] = {}
        #: Called (on the cluster thread) when news arrived: the HealthMonitor
        #: sets it to wake itself, so news waits for no tick.
        self.on_news: Callable[[], None] = lambda: None

    # --- written by this replica's HealthMonitor -------------------------------------

    def circuit_changed(self, backend: str, state: str, reason: str) -> None:
        """This replica's breaker of ``backend`` changed to ``state``
        (``"closed"``, ``"open"``, ``"half_open"``)."""
        entry = {
            "state": "closed" if state == "closed" else "open",
            "reason": reason,
            "replica": self.replica,
            "at": time.time(),
        }
        self._queue("circuit", backend, entry)

    def share_probe(
        self,
        backend: str,
        models: list[str] | tuple[str, ...] | None,
        loaded: list[str] | tuple[str, ...] | None,
    ) -> None:
        """What a probe of ``backend`` just read: the models it serves (its
        ``/api/tags``) and the models it holds in memory (its ``/api/ps``);
        ``None`` for what was not read. Both go to Redis in the same round
        trip, so another replica never sees a residency without its catalogue."""
        with self._lock:
            for table, copy, value in (
                ("catalogue", self._catalogue, models),
                ("residency", self._residency, loaded),
            ):
                if value is not None:
                    self._writes[(table, backend)] = json.dumps(list(value))
                    copy[backend] = list(value)

    def _queue(self, table: str, backend: str, value: Any) -> None:
        with self._lock:
            self._writes[(table, backend)] = json.dumps(value)

    # --- read by this replica --------------------------------------------------------

    def circuit_news(self) -> list[CircuitNews]:
        """Circuit changes other replicas wrote since the last call (each once)."""
        with self._lock:
            news, self._news = self._news, []
        return news

    def circuit(self, backend: str) -> CircuitNews | None:
        """The last circuit entry read for ``backend`` (by any replica)."""
        with self._lock:
            raw = self._seen.get(backend)
        if raw is None:
            return None
        entry = json.loads(raw)
        return CircuitNews(backend, entry["state"], entry["reason"], entry["replica"])

    def catalogue(self) -> dict[str, list[str]]:
        """Backend → its models, as the cluster last read them."""
        with self._lock:
            return {k: list(v) for k, v in self._catalogue.items()}

    def residency(self) -> dict[str, list[str]]:
        """Backend → the models loaded there (``/api/ps``), as the cluster last read them."""
        with self._lock:
            return {k: list(v) for k, v in self._residency.items()}

    def may_probe(self, backend: str, period_s: float) -> bool:
        """Take ``backend``'s probe lease for ``period_s`` seconds (one round
        trip, on a probe thread). ``False``: another replica probes it now;
        ``True`` also when Redis fails (every replica then probes for itself)."""
        key = f"{self.prefix}:probe:{backend}"
        ms = max(10, int(period_s * 1000))
        got = self.link.call(
            "take the probe lease", lambda c: bool(c.set(key, self.replica, nx=True, px=ms))
        )
        return got is None or bool(got)

    # --- the cluster thread ----------------------------------------------------------

    def sync(self) -> bool:
        """Send the queued writes and read the others' (one pipelined round
        trip). Returns ``False`` when Redis failed (the writes wait for the next)."""
        with self._lock:
            writes, self._writes = self._writes, {}
        prefix = self.prefix

        def exchange(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for (table, backend), value in writes.items():
                pipe.hset(f"{prefix}:{table}", backend, value)
            pipe.hgetall(f"{prefix}:circuit")
            pipe.hgetall(f"{prefix}:catalogue")
            pipe.hgetall(f"{prefix}:residency")
            result: list[Any] = pipe.execute()
            return result

        result = self.link.call("share state", exchange)
        if result is None:
            with self._lock:  # newer writes queued meanwhile win
                self._writes = {**writes, **self._writes}
            return False
        circuits, catalogue, residency = result[-3:]
        news = False
        with self._lock:
            for raw_backend, raw in circuits.items():
                backend = raw_backend.decode()
                if self._seen.get(backend) == raw:
                    continue
                self._seen[backend] = raw
                entry = json.loads(raw)
                if entry["replica"] != self.replica:
                    news = True
                    self._news.append(
                        CircuitNews(backend, entry["state"], entry["reason"], entry["replica"])
                    )
            self._catalogue = _models(catalogue)
            self._residency = _models(residency)
            # Ours, written in this round: the copy shows them at once.
            for (table, backend), value in writes.items():
                if table in ("catalogue", "residency"):
                    copy = self._catalogue if table == "catalogue" else self._residency
                    copy[backend] = json.loads(value)
        if news:
            self.on_news()
        return True


def _models(table: dict[bytes, bytes]) -> dict[str, list[str]]:
    return {k.decode(): [str(m) for m in json.loads(v)] for k, v in table.items()}
