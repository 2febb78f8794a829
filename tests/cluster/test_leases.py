"""The Lua lease logic (rubberduck.cluster.leases) against a real redis-server."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rubberduck.cluster.leases import Lease, SlotLeases
from rubberduck.cluster.link import RedisLink
from rubberduck.config import ClusterConfig
from tests.cluster.conftest import RedisServer


def leases(
    server: RedisServer,
    replica: str,
    ttl_s: float = 5.0,
    retry_after: float = 1.0,
    poll_s: float = 1.0,
) -> SlotLeases:
    """A replica's leases; a wait it announces lasts ``2 × poll_s`` (long
    enough that a test's next few round trips see it on a loaded machine)."""
    link = RedisLink(ClusterConfig(redis_url=server.url, retry_after=retry_after))
    return SlotLeases(link, "t", replica, ttl_s, poll_s=poll_s)


def live(slots: SlotLeases, backend: str, model: str | None = None) -> int:
    """Leases not expired in ``backend``'s set (or ``model``'s on it), by Redis' clock."""
    client = slots.link.client
    now_s, now_us = client.time()
    key = slots.key(backend, model)
    return int(client.zcount(key, now_s * 1000 + now_us // 1000 + 1, "+inf"))


def test_at_most_limit_leases_across_replicas(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    got = [a.try_acquire("ollama", 3) for _ in range(2)] + [
        b.try_acquire("ollama", 3) for _ in range(2)
    ]
    assert [isinstance(g, Lease) for g in got] == [True, True, True, False]
    assert live(a, "ollama") == 3
    assert isinstance(a.try_acquire("other", 3), Lease)  # per backend


def test_release_frees_the_slot(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    lease = a.try_acquire("ollama", 1)
    assert isinstance(lease, Lease)
    assert b.try_acquire("ollama", 1) is False
    a.release(lease)
    a.flush()
    assert isinstance(b.try_acquire("ollama", 1), Lease)


def test_an_unrenewed_lease_expires_and_a_renewed_one_does_not(redis_server: RedisServer) -> None:
    dead, alive, other = (leases(redis_server, r, ttl_s=0.3) for r in ("dead", "alive", "other"))
    assert isinstance(dead.try_acquire("x", 2), Lease)
    assert isinstance(alive.try_acquire("x", 2), Lease)
    for _ in range(6):  # 0.6 s: twice the TTL; only `alive` renews
        time.sleep(0.1)
        alive.renew()
    assert live(other, "x") == 1
    assert isinstance(other.try_acquire("x", 2), Lease)  # the dead one's slot
    assert other.try_acquire("x", 2) is False  # the renewed one still holds its own


def test_renew_does_not_bring_back_a_dropped_lease(redis_server: RedisServer) -> None:
    slow, other = leases(redis_server, "slow", ttl_s=0.1), leases(redis_server, "other", ttl_s=0.1)
    assert isinstance(slow.try_acquire("x", 1), Lease)
    time.sleep(0.15)
    assert isinstance(other.try_acquire("x", 1), Lease)  # dropped the expired one
    slow.renew()
    assert slow.held() == 0
    assert live(other, "x") == 1


def test_acquire_waits_for_a_release(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    got: list[Lease | None] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire("x", 1, lambda: False)))
    waiter.start()
    time.sleep(0.05)
    assert not got  # still waiting
    a.release(first)
    a.flush()
    waiter.join(10)
    assert got and isinstance(got[0], Lease)


def test_acquire_gives_up_when_told(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    assert isinstance(a.try_acquire("x", 1), Lease)
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert b.acquire("x", 1, stop.is_set) is None


def test_redis_down_means_local_limits(redis_server: RedisServer) -> None:
    a = leases(redis_server, "a")
    redis_server.kill()
    assert a.try_acquire("x", 1) is True  # run without a lease
    assert a.acquire("x", 1, lambda: False) is None  # at once, no second timeout
    assert not a.link.up


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.sampled_from(["take", "release"]), max_size=30), limit=st.integers(1, 4))
def test_held_never_exceeds_limit(shared_redis: RedisServer, ops: list[str], limit: int) -> None:
    slots = leases(shared_redis, "p")
    slots.link.client.flushall()
    held: list[Lease] = []
    for op in ops:
        if op == "take":
            got = slots.try_acquire("x", limit)
            assert isinstance(got, Lease) == (len(held) < limit)
            if isinstance(got, Lease):
                held.append(got)
        elif held:
            slots.release(held.pop())
            slots.flush()
        assert live(slots, "x") == len(held)


def test_the_link_rejoins_when_redis_is_back(redis_server: RedisServer) -> None:
    from tests.cluster.conftest import start_redis

    link = RedisLink(ClusterConfig(redis_url=redis_server.url, retry_after=0.1))
    assert link.call("ping", lambda c: c.ping()) is True
    redis_server.kill()
    assert link.call("ping", lambda c: c.ping()) is None
    assert not link.up
    assert link.call("ping", lambda c: c.ping()) is None  # in its pause: not even tried
    back = start_redis(redis_server.port)
    try:
        time.sleep(0.15)  # past retry_after
        assert link.call("ping", lambda c: c.ping()) is True
        assert link.up
    finally:
        back.kill()


def test_a_lease_released_here_is_taken_back_without_a_round_trip(
    redis_server: RedisServer,
) -> None:
    a = leases(redis_server, "a")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    a.release(first)  # not flushed yet: still in Redis
    scripts = a.link.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    again = a.try_acquire("x", 1)
    assert again == first
    assert a.link.client.info("commandstats")["cmdstat_evalsha"]["calls"] == scripts
    assert isinstance(a.try_acquire("y", 1), Lease)  # another backend: its own lease
    a.flush()
    assert live(a, "x") == 1  # the lease taken back stays; nothing was removed


def test_a_lease_lost_in_redis_is_not_taken_back(redis_server: RedisServer) -> None:
    # Redis restarted empty while the request ran: the renewal finds the lease
    # gone; when that request ends, the next one must ask Redis, not reuse it.
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    a.link.client.flushall()
    a.renew()
    assert a.held() == 0
    a.release(first)
    assert isinstance(b.try_acquire("x", 1), Lease)  # b took the free slot
    assert a.try_acquire("x", 1) is False  # so a must not run: one slot, one holder
    a.flush()  # the lost id is removed at most, never re-added
    assert live(a, "x") == 1


def test_a_lease_not_confirmed_for_half_its_ttl_is_not_taken_back(
    redis_server: RedisServer,
) -> None:
    # Renewals failed (Redis slow) for longer than the lease may have lived:
    # it may have expired and gone to another replica; ask Redis again.
    a, b = leases(redis_server, "a", ttl_s=0.2), leases(redis_server, "b", ttl_s=0.2)
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    time.sleep(0.25)  # expired: no renewal reached Redis
    assert isinstance(b.try_acquire("x", 1), Lease)
    a.release(first)
    assert a.try_acquire("x", 1) is False


def _reply_lost_once(slots: SlotLeases, *, ran: bool = True) -> None:
    """The next Redis call fails as on ``socket_timeout``: ``ran``, Redis ran
    it anyway (slow, it ran the script after the client gave up); else it
    never got there."""
    call = slots.link.call

    def lost(what: str, fn: Any) -> Any:
        slots.link.call = call  # type: ignore[method-assign]
        if ran:
            fn(slots.link.client)
        slots.link._failed(what, TimeoutError())  # as RedisLink.call does
        return None

    slots.link.call = lost  # type: ignore[method-assign]


def test_a_slot_taken_after_the_client_gave_up_is_removed(redis_server: RedisServer) -> None:
    a = leases(redis_server, "a", retry_after=0.1)
    _reply_lost_once(a)
    assert a.try_acquire("x", 1) is True  # runs on local limits
    assert live(a, "x") == 1  # Redis did take it
    a.flush()  # in the link's retry_after pause: not sent, kept
    time.sleep(0.15)
    a.flush()
    assert live(a, "x") == 0  # not an orphan for slot_ttl


def test_a_lease_is_not_taken_back_while_another_replica_waits(
    redis_server: RedisServer,
) -> None:
    # Reusing its own released leases, a busy runtime never lets the slot
    # reach Redis: a replica waiting for it would starve.
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    assert b.try_acquire("x", 1) is False  # b waits: it says so in Redis
    a.flush()  # a's cluster thread learns it (off the request's path)
    a.release(first)
    assert a.try_acquire("x", 1) is False  # not taken back: asked Redis
    a.flush()  # removed
    assert isinstance(b.try_acquire("x", 1), Lease)


def test_closing_a_node_releases_the_leases_it_holds(redis_server: RedisServer) -> None:
    from rubberduck.cluster.node import ClusterNode
    from rubberduck.cost import UsageReport

    node = ClusterNode(
        ClusterConfig(redis_url=redis_server.url, key_prefix="t"),
        lambda: UsageReport(by_backend={}, by_model={}),
    )
    assert isinstance(node.leases.try_acquire("x", 2), Lease)  # a request still running
    other = leases(redis_server, "other")
    assert live(other, "x") == 1
    held = node.leases.try_acquire("y", 2)
    assert isinstance(held, Lease)
    node.leases.release(held)  # released, not yet removed
    node.close()
    assert live(other, "x") == live(other, "y") == 0  # free now, not in slot_ttl


def test_after_retry_after_one_caller_tries_redis_the_others_go_on() -> None:
    # A blackholed Redis (connects, never answers): each try costs
    # socket_timeout, so only one caller at a time may pay it.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    try:
        url = f"redis://127.0.0.1:{hole.getsockname()[1]}/0"
        link = RedisLink(ClusterConfig(redis_url=url, socket_timeout=0.3, retry_after=0.5))
        assert link.call("ping", lambda c: c.ping()) is None
        time.sleep(0.55)  # past retry_after
        tries: list[int] = []
        results: list[object] = []
        start = threading.Barrier(4)

        def caller() -> None:
            start.wait()
            results.append(link.call("ping", lambda c: (tries.append(1), c.ping())))

        callers = [threading.Thread(target=caller) for _ in range(4)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(10)
        assert results == [None] * 4
        assert len(tries) == 1
    finally:
        hole.close()


def test_a_slot_given_back_here_never_looks_taken_to_this_runtime(
    redis_server: RedisServer,
) -> None:
    # The cluster thread has taken the released lease out of reuse and its
    # removal is on the way (or failed and waits to be sent again): a request
    # here asking Redis meanwhile must not find its own old lease counted.
    a = leases(redis_server, "a")
    a.reuse = False  # every try asks Redis
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    a.release(first)  # queued for removal, not yet sent
    assert live(a, "x") == 1
    second = a.try_acquire("x", 1)
    assert isinstance(second, Lease) and second != first
    assert live(a, "x") == 1  # the old lease went first: one slot, one holder


def test_a_try_whose_caller_goes_elsewhere_does_not_stop_others_reusing(
    redis_server: RedisServer,
) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    assert b.try_acquire("x", 1, waiting=False) is False  # b goes to another backend
    assert a.link.client.exists(a.waiting_key("x")) == 0
    a.flush()
    a.release(first)
    assert a.try_acquire("x", 1) == first  # taken back: nobody waits


def test_closing_with_every_lease_released_fails_no_release_round(
    redis_server: RedisServer,
) -> None:
    # A backend whose leases were all released had nothing to remove at
    # close: sent as a ZREM with no member, Redis' error failed the whole
    # round (the other backends' removals unconfirmed, Redis marked down, so
    # the last usage totals were not written).
    a = leases(redis_server, "a")
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    a.release(first)
    a.flush()
    last = a.try_acquire("y", 1)
    assert isinstance(last, Lease)
    a.release_all()  # the runtime closes
    a.flush()
    assert a.link.up
    assert live(a, "y") == 0


def test_releases_work_again_after_redis_failed_for_longer_than_the_ttl(
    redis_server: RedisServer,
) -> None:
    a = leases(redis_server, "a", ttl_s=0.1, retry_after=0.05)
    first = a.try_acquire("x", 1)
    assert isinstance(first, Lease)
    a.release(first)
    time.sleep(0.15)  # it has expired in Redis: nothing left to remove after...
    _reply_lost_once(a, ran=False)
    a.flush()  # ...this round fails
    time.sleep(0.06)  # past retry_after
    again = a.try_acquire("y", 1)  # Redis answers again
    assert isinstance(again, Lease)
    a.release(again)
    a.flush()
    assert a.link.up
    assert live(a, "y") == 0
