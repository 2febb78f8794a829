"""Usage totals of the whole cluster: requests, tokens and cost (USD).

Each runtime adds its finished requests to local deltas (on the usage
thread, off the request's path: a subscriber of the runtime's
:class:`~rubberduck.cost.UsageLedger`); the cluster thread adds the deltas to
two Redis hashes every ``sync_interval`` (``HINCRBY``/``HINCRBYFLOAT``, one
pipelined round trip), ``PREFIX:usage:by_backend`` and ``PREFIX:usage:by_model``,
field ``NAME/COUNTER``. Deltas that Redis did not take are kept for the next
round, so the totals catch up after an outage.
"""

from __future__ import annotations

import threading
from typing import Any

from rubberduck.cluster.link import RedisLink
from rubberduck.cost import UsageReport, UsageTotals
from rubberduck.messages import Done

__all__ = ["SharedUsage"]

_INTS = ("requests", "prompt_tokens", "completion_tokens", "unpriced")
_FLOATS = ("cost_usd", "shadow_cost_usd")


class SharedUsage:
    """Adds this runtime's usage to the cluster's totals, and reads them.

    Args:
        link: The Redis connection.
        prefix: Key prefix.
        is_local: Backend name → ``True`` for a local (free) backend, to count
            a cloud answer priced at 0.0 as unpriced as the ledger does.

    Locking: the deltas are under a lock (the usage thread adds, the cluster
    thread takes them).
    """

    def __init__(self, link: RedisLink, prefix: str, is_local: dict[str, bool]) -> None:
        self.link = link
        self.keys = {
            "by_backend": f"{prefix}:usage:by_backend",
            "by_model": f"{prefix}:usage:by_model",
        }
        self.is_local = is_local
        self._lock = threading.Lock()
        self._deltas: dict[str, dict[str, UsageTotals]] = {"by_backend": {}, "by_model": {}}

    def add(self, done: Done) -> None:
        """Count one finished request (a usage subscriber)."""
        u = done.usage
        unpriced = not self.is_local.get(done.provider, False) and not done.cost_usd
        with self._lock:
            for table, name in (("by_backend", done.provider), ("by_model", done.model)):
                self._deltas[table].setdefault(name, UsageTotals()).add(
                    u.prompt_tokens,
                    u.completion_tokens,
                    done.cost_usd or 0.0,
                    done.shadow_cost_usd,
                    unpriced=unpriced,
                )

    def flush(self) -> bool:
        """Add the deltas to the cluster totals (one pipelined round trip).
        Returns ``False`` when Redis failed (the deltas wait for the next)."""
        with self._lock:
            deltas = self._deltas
            if not any(deltas.values()):
                return True
            self._deltas = {"by_backend": {}, "by_model": {}}

        def send(client: Any) -> bool:
            pipe = client.pipeline(transaction=False)
            for table, totals in deltas.items():
                for name, t in totals.items():
                    for counter in _INTS:
                        if n := getattr(t, counter):
                            pipe.hincrby(self.keys[table], f"{name}/{counter}", n)
                    for counter in _FLOATS:
                        if x := getattr(t, counter):
                            pipe.hincrbyfloat(self.keys[table], f"{name}/{counter}", x)
            pipe.execute()
            return True

        if self.link.call("add usage totals", send):
            return True
        with self._lock:  # put them back, under what came in meanwhile
            for table, totals in deltas.items():
                for name, t in totals.items():
                    mine = self._deltas[table].setdefault(name, UsageTotals())
                    for counter in _INTS + _FLOATS:
                        setattr(mine, counter, getattr(mine, counter) + getattr(t, counter))
        return False

    def totals(self) -> UsageReport | None:
        """The cluster's totals (every replica's flushed usage), or ``None``
        when Redis cannot be read."""

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for key in self.keys.values():
                pipe.hgetall(key)
            result: list[Any] = pipe.execute()
            return result

        result = self.link.call("read usage totals", read)
        if result is None:
            return None
        tables: list[dict[str, UsageTotals]] = []
        for raw in result:
            table: dict[str, UsageTotals] = {}
            for field, value in raw.items():
                name, _, counter = field.decode().rpartition("/")
                totals = table.setdefault(name, UsageTotals())
                kind = int if counter in _INTS else float
                setattr(totals, counter, kind(value.decode()))
            tables.append(table)
        return UsageReport(by_backend=tables[0], by_model=tables[1])
