"""Usage totals of the whole cluster: requests, tokens and cost (USD).

Every ``sync_interval`` the cluster thread reads the runtime's own totals
(:class:`~rubberduck.cost.UsageLedger`, which the requests keep anyway: nothing
more on their path) and adds what they grew by since the last flush to two
Redis hashes (``HINCRBY``/``HINCRBYFLOAT``, one pipelined round trip),
``PREFIX:usage:by_backend`` and ``PREFIX:usage:by_model``, field
``NAME/COUNTER``. Growth that Redis did not take goes with the next flush, so
the totals catch up after an outage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rubberduck.cluster.link import RedisLink
from rubberduck.cost import UsageReport, UsageTotals

__all__ = ["SharedUsage"]

_INTS = ("requests", "prompt_tokens", "completion_tokens", "unpriced")
_FLOATS = ("cost_usd", "shadow_cost_usd")


class SharedUsage:
    """Adds this runtime's usage to the cluster's totals, and reads them.

    Args:
        link: The Redis connection.
        prefix: Key prefix.
        source: This runtime's totals now (``UsageLedger.report``): each
            flush sends what they grew by since the last flush Redis took.

    Only the cluster thread calls :meth:`flush` (and :meth:`totals` on the
    caller's thread reads Redis only): no lock, nothing on the request's path.
    """

    def __init__(self, link: RedisLink, prefix: str, source: Callable[[], UsageReport]) -> None:
        self.link = link
        self.keys = {
            "by_backend": f"{prefix}:usage:by_backend",
            "by_model": f"{prefix}:usage:by_model",
        }
        self.source = source
        self._sent: dict[str, dict[str, UsageTotals]] = {"by_backend": {}, "by_model": {}}
        self._flushing = threading.Lock()

    def flush(self) -> bool:
        """Add what this runtime's totals grew by to the cluster's (one
        pipelined round trip). Returns ``False`` when Redis failed (the next
        flush sends it with the rest)."""
        with self._flushing:
            report = self.source()
            now = {"by_backend": report.by_backend, "by_model": report.by_model}
            deltas = {
                table: {name: _minus(t, self._sent[table].get(name)) for name, t in totals.items()}
                for table, totals in now.items()
            }

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
                if len(pipe):
                    pipe.execute()
                return True

            if not self.link.call("add usage totals", send):
                return False
            self._sent = now
            return True

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


def _minus(now: UsageTotals, sent: UsageTotals | None) -> UsageTotals:
    if sent is None:
        return now
    return UsageTotals(**{c: getattr(now, c) - getattr(sent, c) for c in _INTS + _FLOATS})
