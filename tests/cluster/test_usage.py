"""Cluster usage totals (rubberduck.cluster.usage) against a real redis-server."""

from __future__ import annotations

from typing import Any

from rubberduck.cluster.leases import Lease
from rubberduck.cluster.link import RedisLink
from rubberduck.cluster.node import ClusterNode
from rubberduck.cluster.usage import SharedUsage
from rubberduck.config import ClusterConfig
from rubberduck.cost import UsageReport, UsageTotals
from tests.cluster.conftest import RedisServer
from tests.conftest import wait_until


def report(requests: int, tokens: int, cost: float) -> UsageReport:
    totals = UsageTotals(requests=requests, completion_tokens=tokens, cost_usd=cost)
    return UsageReport(by_backend={"gpu1": totals}, by_model={"hf.co/x/y:q4": totals})


def test_a_flush_whose_reply_was_lost_is_not_counted_twice(redis_server: RedisServer) -> None:
    now = [report(3, 30, 0.5)]
    usage = SharedUsage(
        RedisLink(ClusterConfig(redis_url=redis_server.url)), "t", lambda: now[0], "a"
    )
    call = usage.link.call

    def reply_lost(what: str, fn: Any) -> Any:  # Redis applied it; the reply timed out
        usage.link.call = call  # type: ignore[method-assign]
        fn(usage.link.client)
        return None

    usage.link.call = reply_lost  # type: ignore[method-assign]
    assert usage.flush() is False
    assert usage.flush() is True  # sent again
    now[0] = report(5, 50, 0.75)
    assert usage.flush() is True
    assert usage.totals() == report(5, 50, 0.75)


def test_totals_add_up_the_replicas(redis_server: RedisServer) -> None:
    link = RedisLink(ClusterConfig(redis_url=redis_server.url))
    a = SharedUsage(link, "t", lambda: report(3, 30, 0.5), "a")
    b = SharedUsage(link, "t", lambda: report(1, 10, 0.25), "b")
    assert a.flush() and b.flush() and a.flush()
    assert a.totals() == report(4, 40, 0.75)


def test_a_closing_node_writes_its_last_totals_after_its_leases_were_released(
    redis_server: RedisServer,
) -> None:
    # Its backend had no lease left at close: the release round used to fail
    # on it (a ZREM with no member) and Redis was taken as down, so the last
    # totals were not written.
    now = [report(1, 10, 0.25)]
    config = ClusterConfig(redis_url=redis_server.url, key_prefix="t", sync_interval=60.0)
    node = ClusterNode(config, lambda: now[0])
    lease = node.leases.try_acquire("gpu1", 2)
    assert isinstance(lease, Lease)
    node.leases.release(lease)
    assert wait_until(lambda: node.link.client.zcard(node.leases.key("gpu1")) == 0)
    now[0] = report(2, 20, 0.5)
    node.close()
    link = RedisLink(ClusterConfig(redis_url=redis_server.url))
    reader = SharedUsage(link, "t", lambda: UsageReport(by_backend={}, by_model={}), "reader")
    assert reader.totals() == report(2, 20, 0.5)
