"""Usage totals of the whole cluster: requests, tokens and cost (USD).

Every ``sync_interval`` the cluster thread reads the runtime's own totals
(:class:`~rubberduck.cost.UsageLedger`, which the requests keep anyway: nothing
more on their path) and writes them, absolute, into this runtime's hash
``PREFIX:usage:replica:ID`` (``HSET``, field ``TABLE/NAME/COUNTER`` with TABLE
``by_backend`` or ``by_model``), naming it in the set ``PREFIX:usage:replicas``
(one pipelined round trip). Writing the same totals twice changes nothing, so
a write whose reply was lost (Redis slower than ``socket_timeout``) and is sent
again counts once; totals Redis did not take go with the next write, so the
cluster's totals catch up after an outage. The hashes have no expiry: a replica
that stops keeps its usage in the totals (one small hash per runtime started).
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
_TABLES = ("by_backend", "by_model")


class SharedUsage:
    """Writes this runtime's usage into the cluster's, and reads the cluster's.

    Args:
        link: The Redis connection.
        prefix: Key prefix.
        source: This runtime's totals now (``UsageLedger.report``).
        replica: This runtime's id (the name of its hash).

    :meth:`flush` runs on the cluster thread (and in
    ``ClusterNode.usage_totals``), serialised by a lock; :meth:`totals` reads
    Redis only. Nothing here is on a request's path.
    """

    def __init__(
        self, link: RedisLink, prefix: str, source: Callable[[], UsageReport], replica: str
    ) -> None:
        self.link = link
        self.replicas_key = f"{prefix}:usage:replicas"
        self.key = f"{prefix}:usage:replica:{replica}"
        self.source = source
        self._sent: dict[str, str] = {}
        self._flushing = threading.Lock()

    def flush(self) -> bool:
        """Write this runtime's totals (one pipelined round trip, none when
        they did not change). Returns ``False`` when Redis failed (the next
        flush writes them)."""
        with self._flushing:
            report = self.source()
            fields: dict[str, str] = {}
            for table in _TABLES:
                for name, totals in getattr(report, table).items():
                    for counter in _INTS + _FLOATS:
                        if value := getattr(totals, counter):
                            fields[f"{table}/{name}/{counter}"] = repr(value)
            if fields == self._sent:
                return True

            def send(client: Any) -> bool:
                pipe = client.pipeline(transaction=False)
                pipe.sadd(self.replicas_key, self.key)
                pipe.hset(self.key, mapping=fields)
                pipe.execute()
                return True

            if not self.link.call("write usage totals", send):
                return False
            self._sent = fields
            return True

    def totals(self) -> UsageReport | None:
        """The cluster's totals (every replica's last written usage), or
        ``None`` when Redis cannot be read (two round trips)."""

        def read(client: Any) -> list[Any]:
            keys = sorted(client.smembers(self.replicas_key))
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            result: list[Any] = pipe.execute()
            return result

        result = self.link.call("read usage totals", read)
        if result is None:
            return None
        tables: dict[str, dict[str, UsageTotals]] = {table: {} for table in _TABLES}
        for raw in result:
            for field, value in raw.items():
                head, _, counter = field.decode().rpartition("/")
                table, _, name = head.partition("/")
                if table not in tables or counter not in _INTS + _FLOATS:
                    continue
                totals = tables[table].setdefault(name, UsageTotals())
                kind = int if counter in _INTS else float
                setattr(totals, counter, getattr(totals, counter) + kind(value.decode()))
        return UsageReport(by_backend=tables["by_backend"], by_model=tables["by_model"])
