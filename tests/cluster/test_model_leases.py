"""The per-model limit held across replicas (``max_in_flight_per_model``):
one lease in the backend's set and in the model's, taken together or not at
all, in one ``EVALSHA`` (rubberduck.cluster.leases, real redis-server)."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rubberduck.cluster.lease_scripts import redis_model_name
from rubberduck.cluster.leases import Lease, SlotLeases
from tests.cluster.conftest import RedisServer
from tests.cluster.test_leases import leases, live
from tests.conftest import wait_until

#: A backend of 4 slots, 1 per model (Ollama's default OLLAMA_NUM_PARALLEL).
FOUR = {"limit": 4, "model_limit": 1}


def take(slots: SlotLeases, model: str | None, **kw: object) -> Lease | bool:
    return slots.try_acquire("x", model=model, **{**FOUR, **kw})  # type: ignore[arg-type]


def evalsha_calls(slots: SlotLeases) -> int:
    stats = slots.link.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {"calls": 0})["calls"])


def test_one_per_model_across_replicas_while_models_run_together(
    redis_server: RedisServer,
) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = take(a, "llama3.2")
    assert isinstance(first, Lease) and first.model == "llama3.2"
    assert take(b, "llama3.2") is False  # the model is full across the cluster
    assert isinstance(take(b, "qwen3"), Lease)  # another model: room on the backend
    assert live(a, "x") == 2
    assert (live(a, "x", "llama3.2"), live(a, "x", "qwen3")) == (1, 1)


def test_both_sets_or_neither(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    assert isinstance(take(a, "llama3.2"), Lease)
    assert take(b, "llama3.2") is False  # model full: no backend slot taken either
    assert live(a, "x") == 1
    assert isinstance(take(b, "qwen3", limit=2), Lease)
    assert take(a, "gemma3", limit=2) is False  # backend full: no model slot taken
    assert live(a, "x", "gemma3") == 0
    assert not a.link.client.exists(a.key("x", "gemma3"))


def test_a_release_frees_the_slot_in_both_sets(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = take(a, "llama3.2")
    assert isinstance(first, Lease)
    a.release(first)
    a.flush()
    assert (live(a, "x"), live(a, "x", "llama3.2")) == (0, 0)
    assert isinstance(take(b, "llama3.2"), Lease)


def test_a_lease_is_taken_back_only_for_the_same_model(redis_server: RedisServer) -> None:
    a = leases(redis_server, "a")
    first = take(a, "llama3.2")
    assert isinstance(first, Lease)
    a.release(first)  # not flushed: still in both sets
    calls = evalsha_calls(a)
    assert take(a, "llama3.2") == first  # its own model's: taken back, no round trip
    assert evalsha_calls(a) == calls
    a.release(first)
    other = take(a, "qwen3")  # must not run on llama3.2's slot: asks Redis
    assert isinstance(other, Lease) and other.id != first.id and other.model == "qwen3"
    assert evalsha_calls(a) == calls + 1
    # ... which frees llama3.2's backend slot on the way (it is ours, given back).
    assert (live(a, "x"), live(a, "x", "qwen3")) == (1, 1)
    again = take(a, "llama3.2")
    assert isinstance(again, Lease) and again.id != first.id
    a.flush()
    assert (live(a, "x"), live(a, "x", "llama3.2")) == (2, 1)
    # A lease held without a per-model limit is not one for a model either.
    plain = a.try_acquire("x", 4)
    assert isinstance(plain, Lease) and plain.model is None
    a.release(plain)
    third = take(a, "gemma3")
    assert isinstance(third, Lease) and third.id != plain.id
    assert live(a, "x", "gemma3") == 1


def test_a_slot_given_back_for_one_model_is_free_for_another_at_once(
    redis_server: RedisServer,
) -> None:
    # One slot on the backend: released for llama3.2 and not yet removed by
    # the cluster thread, it must not make the backend look full to this
    # runtime's next request, for another model (before: False, and the
    # runtime's own waiting flag set against itself).
    a = leases(redis_server, "a")
    first = a.try_acquire("x", 1, model="llama3.2", model_limit=1)
    assert isinstance(first, Lease)
    a.release(first)
    second = a.try_acquire("x", 1, model="qwen3", model_limit=1, waiting=True)
    assert isinstance(second, Lease)
    assert not a.link.client.exists(a.waiting_key("x"))
    a.flush()
    assert (live(a, "x"), live(a, "x", "llama3.2"), live(a, "x", "qwen3")) == (1, 0, 1)


def test_renewal_keeps_the_lease_in_both_sets(redis_server: RedisServer) -> None:
    alive, other = leases(redis_server, "alive", ttl_s=0.3), leases(redis_server, "other")
    assert isinstance(take(alive, "llama3.2"), Lease)
    for _ in range(6):  # 0.6 s: twice the TTL, renewed
        time.sleep(0.1)
        alive.renew()
    assert alive.held() == 1
    assert take(other, "llama3.2") is False


def test_a_lease_gone_from_the_model_set_is_lost(redis_server: RedisServer) -> None:
    a = leases(redis_server, "a")
    assert isinstance(take(a, "llama3.2"), Lease)
    a.link.client.delete(a.key("x", "llama3.2"))  # e.g. expired and dropped
    a.renew()
    assert a.held() == 0  # not renewed in the backend's set alone


def test_a_killed_replicas_model_leases_expire_within_the_ttl(redis_server: RedisServer) -> None:
    ttl = 0.3
    dead, other = leases(redis_server, "dead", ttl_s=ttl), leases(redis_server, "other")
    assert isinstance(take(dead, "llama3.2"), Lease)
    client = other.link.client
    now_s, now_us = client.time()
    taken_ms = now_s * 1000 + now_us // 1000
    key = other.key("x", "llama3.2")
    [(_, expiry)] = client.zrange(key, 0, -1, withscores=True)
    assert expiry <= taken_ms + ttl * 1000  # nobody renews it: gone by then
    assert 0 < client.pttl(key) <= 2 * ttl * 1000  # and the set with it
    assert take(other, "llama3.2") is False
    assert wait_until(lambda: isinstance(take(other, "llama3.2"), Lease), 5)
    # A model nobody asks for any more leaves nothing behind.
    assert isinstance(take(dead, "qwen3"), Lease)
    assert wait_until(lambda: not client.exists(other.key("x", "qwen3")), 5)


def test_a_waiting_replica_stops_reuse_of_that_models_leases(redis_server: RedisServer) -> None:
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first, second = take(a, "llama3.2"), take(a, "qwen3")
    assert isinstance(first, Lease) and isinstance(second, Lease)
    assert take(b, "llama3.2", waiting=True) is False  # b waits for the model's slot
    assert a.link.client.exists(a.waiting_key("x", "llama3.2"))
    assert not a.link.client.exists(a.waiting_key("x"))  # the backend had room
    a.flush()  # a's cluster thread learns it
    a.release(first)
    a.release(second)
    assert take(a, "qwen3") == second  # nobody waits for qwen3: taken back
    assert take(a, "llama3.2") is False  # not taken back: asked Redis
    a.flush()
    assert isinstance(take(b, "llama3.2"), Lease)


def test_model_names_in_keys_are_bounded_and_distinct(redis_server: RedisServer) -> None:
    assert redis_model_name("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M") == (
        "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"
    )
    odd = ["a b", "x" * 5000, "{tag}\n", "#abc", "модель", ""]
    names = [redis_model_name(m) for m in odd]
    assert all(n.startswith("#") and len(n) == 33 for n in names)
    assert len(set(names)) == len(odd)
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    assert isinstance(take(a, "x" * 5000), Lease)
    assert take(b, "x" * 5000) is False
    assert isinstance(take(b, "x" * 4999), Lease)
    assert all(len(k) < 80 for k in a.link.client.keys("t:*"))


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["take", "wait", "release", "flush"]), st.sampled_from("mn")),
        max_size=30,
    ),
    limit=st.integers(1, 4),
    model_limit=st.integers(1, 3),
)
def test_room_means_a_lease_and_neither_limit_is_ever_exceeded(
    shared_redis: RedisServer, ops: list[tuple[str, str]], limit: int, model_limit: int
) -> None:
    """One runtime alone: its own slots, given back and not yet removed (the
    cluster thread flushes later), never make a set look full to it, and
    its own waits ("wait": a failed try whose caller waits) do not stop it
    taking them back."""
    slots = leases(shared_redis, "p")
    slots.link.client.flushall()
    held: dict[str, list[Lease]] = {"m": [], "n": []}
    for op, model in ops:
        if op in ("take", "wait"):
            got = slots.try_acquire(
                "x", limit, model=model, model_limit=model_limit, waiting=op == "wait"
            )
            room = sum(map(len, held.values())) < limit and len(held[model]) < model_limit
            assert isinstance(got, Lease) == room
            if isinstance(got, Lease):
                held[model].append(got)
        elif op == "release" and held[model]:
            slots.release(held[model].pop())
        elif op == "flush":
            slots.flush()
            assert live(slots, "x") == sum(map(len, held.values()))
            assert [live(slots, "x", m) for m in "mn"] == [len(held[m]) for m in "mn"]
        assert live(slots, "x") <= limit
        assert max(live(slots, "x", m) for m in "mn") <= model_limit
    slots.link.close()


def test_a_lease_a_renewal_found_lost_is_not_taken_back_once_released(
    redis_server: RedisServer,
) -> None:
    # Redis lost the lease (restarted without data, failed over) and its
    # request ended while the renewal that finds it gone was on its way: the
    # released lease must not serve the next request without a round trip,
    # or two requests would run on one slot (before: both got it).
    a, b = leases(redis_server, "a"), leases(redis_server, "b")
    first = a.try_acquire("x", 1, model="m", model_limit=1)
    assert isinstance(first, Lease)
    a.link.client.flushall()
    call = a.link.call

    def released_meanwhile(what: str, fn: Any) -> Any:
        a.link.call = call  # type: ignore[method-assign]
        a.release(first)
        return call(what, fn)

    a.link.call = released_meanwhile  # type: ignore[method-assign]
    a.renew()
    again = a.try_acquire("x", 1, model="m", model_limit=1)
    taken = b.try_acquire("x", 1, model="m", model_limit=1)
    assert [isinstance(x, Lease) for x in (again, taken)].count(True) == 1


def test_nothing_is_kept_for_a_model_once_idle(redis_server: RedisServer) -> None:
    a, b = (leases(redis_server, r, poll_s=0.05) for r in "ab")
    for n in range(50):  # callers name any model they like
        lease = take(a, f"model-{n}")
        assert isinstance(lease, Lease)
        assert take(b, f"model-{n}", waiting=True) is False  # b waits for a moment
        a.flush()
        a.release(lease)
        a.flush()
    a.renew()
    time.sleep(2 * 2 * a.poll_s)  # the waiting flags lapse
    a.flush()
    assert a.pools() == 0
