"""ClusterNode: one runtime's membership of a cluster — its Redis link, slot
leases, shared state and usage, and the one thread that does their Redis work
off the request's path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rubberduck.cluster.leases import SlotLeases, replica_id
from rubberduck.cluster.link import RedisLink
from rubberduck.cluster.state import SharedState
from rubberduck.cluster.usage import SharedUsage
from rubberduck.config import ClusterConfig
from rubberduck.cost import UsageReport
from rubberduck.errors import ProviderUnavailable
from rubberduck.telemetry.logs import component

__all__ = ["ClusterNode"]

log = component("cluster")

#: Seconds a release waits for others to share its round trip to Redis (and
#: for a request of this runtime to take it back with none): the slot is free
#: for other replicas this much later, at most.
RELEASE_BATCH_S = 0.002


class ClusterNode:
    """A runtime's part in a cluster (``[cluster]``).

    The ``rubberduck-cluster`` thread removes released leases at once,
    renews the leases held every ``slot_ttl / 3`` seconds, and every
    ``sync_interval`` seconds sends this runtime's circuit changes,
    catalogues, residency and usage totals and reads the others'.

    Args:
        config: The ``[cluster]`` table.
        usage: This runtime's usage totals now (``UsageLedger.report``).

    Raises:
        ConfigError: the ``redis`` client is missing or ``redis_url`` is bad.
            Redis being down is not an error: the runtime starts on local state.
    """

    def __init__(self, config: ClusterConfig, usage: Callable[[], UsageReport]) -> None:
        self.config = config
        self.replica = replica_id()
        self.link = RedisLink(config)
        self._wake = threading.Event()
        self._stopping = False
        prefix = config.key_prefix
        self.leases = SlotLeases(
            self.link, prefix, self.replica, config.slot_ttl, config.slot_poll, self._wake.set
        )
        self.state = SharedState(self.link, prefix, self.replica)
        self.usage = SharedUsage(self.link, prefix, usage, self.replica)
        self._thread = threading.Thread(target=self._run, name="rubberduck-cluster", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        renew_every = self.config.slot_ttl / 3
        now = time.monotonic()
        renew_at, sync_at = now + renew_every, now
        self.leases.load_scripts()
        while True:
            if self._wake.wait(max(0.0, min(renew_at, sync_at) - time.monotonic())):
                # A release woke us: let the releases of the next moment join it
                # (one pipelined round trip for many under load, not one each).
                time.sleep(RELEASE_BATCH_S)
            self._wake.clear()
            try:
                if self._stopping:
                    self.leases.release_all()
                self.leases.flush()
                if self._stopping:
                    self.usage.flush()
                    return
                now = time.monotonic()
                if now >= renew_at:
                    self.leases.renew()
                    renew_at = now + renew_every
                if now >= sync_at:
                    self.state.sync()
                    self.usage.flush()
                    sync_at = now + self.config.sync_interval
            except Exception:  # the thread must outlive any bug in a round
                log.exception("cluster round failed; trying again next round")
                if self._stopping:
                    return

    def usage_totals(self) -> UsageReport:
        """Requests, tokens and cost (USD) of every runtime of the cluster,
        this one's included up to its last flush (``sync_interval``).

        Raises:
            ProviderUnavailable: Redis cannot be read now.
        """
        self.usage.flush()
        report = self.usage.totals()
        if report is None:
            raise ProviderUnavailable(
                f"cluster usage totals: Redis at {self.link.url} did not answer — "
                "rt.usage() has this runtime's own"
            )
        return report

    def close(self, timeout: float = 5.0) -> None:
        """Release what is held, write the last usage totals, stop the thread,
        close the connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self.link.close()
