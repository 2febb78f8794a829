"""Slot leases: every runtime sharing a Redis holds a backend's
``max_in_flight`` together, and its ``max_in_flight_per_model`` per model.

A backend's slots are a sorted set of leases scored by their expiry (Redis
server time, ms, so that replicas' clocks do not matter); a backend with
``max_in_flight_per_model`` (Ollama's ``OLLAMA_NUM_PARALLEL``, which holds per
loaded model) also has one set per model, and a request's lease is a member of
both under one id (keys and scripts: :mod:`~rubberduck.cluster.lease_scripts`).
Taking a slot is one Lua script, one round trip on the request's path
(:data:`ACQUIRE`): drop expired leases, add ours to every set if each has room,
else to none. Releases and renewals are off that path: a request that ends
queues its lease for the runtime's cluster thread, which removes it from its
sets at once (``ZREM``), and which renews every lease still held every
``slot_ttl / 3`` in one pipelined round trip (:data:`RENEW`). A replica that
dies stops renewing: its leases expire within ``slot_ttl`` and the next
ACQUIRE drops them; a set nobody touches for ``2 × slot_ttl`` expires whole,
so a model nobody asks for leaves nothing in Redis (nor here: nothing is kept
per model once idle).

A lease released and not yet removed (the cluster thread batches removals over
``RELEASE_BATCH_S``) is taken back by the next request of the same runtime for
the same *pool* (the backend, and the model when its limit applies) with no
round trip: under steady load most requests reuse a lease. Only a lease that
Redis confirmed (taken or renewed) less than ``slot_ttl / 2`` ago is taken
back; one that a renewal found gone (Redis restarted, or renewals were late by
more than ``slot_ttl``) is only removed. Nor is one taken back while another
runtime waits for that backend's slots, or that model's: an ACQUIRE that finds
a set full adds its runtime to that set's waiting flag (for ``2 ×
slot_poll``) when its caller is going to wait, which the cluster thread reads
with its removals (a runtime's own wait is no reason to stop taking back its
own leases); meanwhile released leases go back to Redis, where the waiting
runtime can take them. An ACQUIRE also removes this runtime's own released
leases of that backend (of any model) before it counts, so that a slot this
runtime just gave back never looks taken to it while the cluster thread's
removal is on its way.

When every slot is leased (the backend's, or the model's on it), a request
goes back to the Router, which offers it to a backend with room
(``ProviderActor._cluster_slot``); only a request that no backend had room for
(overflow) waits, on the thread that runs it, trying again after a short
jittered backoff up to ``slot_poll`` until a slot frees or the request ends
(deadline, cancel). When Redis fails, the request runs on local limits alone.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from rubberduck.cluster.lease_scripts import ACQUIRE, RENEW, slots_key, waiting_key
from rubberduck.cluster.link import RedisLink
from rubberduck.telemetry import events
from rubberduck.telemetry.logs import component

__all__ = ["ACQUIRE", "RENEW", "Lease", "SlotLeases", "replica_id"]

log = component("cluster")

#: A backend and, when its per-model limit applies, the model (a model key):
#: the slot sets a lease is a member of.
Pool = tuple[str, str | None]


def replica_id() -> str:
    """A name for this runtime, unique across the cluster (host-independent)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:10]}"


class Lease(NamedTuple):
    """One slot held in Redis: the backend, the lease's id and, when the
    backend's ``max_in_flight_per_model`` is held too, the model (a model key)
    whose set also holds it."""

    backend: str
    id: str
    model: str | None = None


class SlotLeases:
    """This runtime's slot leases.

    Args:
        link: The Redis connection.
        prefix: Key prefix (``[cluster] key_prefix``).
        replica: This runtime's id (:func:`replica_id`), the start of every lease id.
        ttl_s: Lease lifetime without renewal, seconds (``slot_ttl``).
        poll_s: Longest pause between two tries for a slot, seconds (``slot_poll``).
        wake: Called when a release is queued (wakes the cluster thread).

    Locking: the leases held and the releases queued are under one lock;
    :meth:`acquire` runs on any request's thread, :meth:`flush` and
    :meth:`renew` on the cluster thread. Everything below is kept per
    :data:`Pool` (a backend, or a model on it).
    """

    def __init__(
        self,
        link: RedisLink,
        prefix: str,
        replica: str,
        ttl_s: float,
        poll_s: float,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.poll_s = poll_s
        self._wake = wake
        #: Take back leases released here and not yet removed from Redis
        #: (``benchmarks/cluster.py`` turns it off to measure a round trip
        #: per request).
        self.reuse = True
        self.replica = replica
        self._ids = (f"{replica}:{n}" for n in itertools.count())
        self._lock = threading.Lock()
        # Lease id -> when Redis last confirmed it (taken or renewed; monotonic s).
        self._held: dict[Pool, dict[str, float]] = {}
        # Released, not yet removed from Redis (the cluster thread does it
        # within RELEASE_BATCH_S): a request here may take one back meanwhile
        # if Redis confirmed it less than _fresh_s ago (id, when confirmed).
        self._released: dict[Pool, list[tuple[str, float]]] = {}
        # To remove from Redis, never to take back (lost, or not known to be
        # ours), with when it was queued: kept while Redis fails, up to slot_ttl.
        self._drop: dict[Pool, list[tuple[str, float]]] = {}
        # Removals the cluster thread has sent and Redis may not have applied yet.
        self._removing: dict[Pool, list[str]] = {}
        self._ttl_s = ttl_s
        # Set -> until when (monotonic s) another runtime waits for its slots:
        # (backend, None) for the backend's set, (backend, model) for a
        # model's; read by flush() at most every poll_s / 2.
        self._contended: dict[Pool, float] = {}
        self._wait_ms = max(10, int(2000 * poll_s))
        self._checked_at = float("-inf")
        self._fresh_s = ttl_s / 2
        self._acquire: Any = link.client.register_script(ACQUIRE)
        self._renew: Any = link.client.register_script(RENEW)

    def load_scripts(self) -> None:
        """Load the Lua scripts into Redis (off the request's path), so that
        the first slot taken costs one ``EVALSHA``, not a miss and a load.
        Redis forgets them when it restarts: redis-py then loads them again."""
        self.link.call(
            "load the lease scripts",
            lambda c: [c.script_load(s.script) for s in (self._acquire, self._renew)],
        )

    def key(self, backend: str, model: str | None = None) -> str:
        """The Redis key of ``backend``'s slot set, or of ``model``'s on it."""
        return slots_key(self.prefix, backend, model)

    def waiting_key(self, backend: str, model: str | None = None) -> str:
        """The Redis key set while a runtime waits for that set's slots."""
        return waiting_key(self.prefix, backend, model)

    def _keys(self, pool: Pool) -> list[str]:
        """The slot sets of ``pool``: the backend's, and the model's."""
        backend, model = pool
        if model is None:
            return [self.key(backend)]
        return [self.key(backend), self.key(backend, model)]

    def try_acquire(
        self,
        backend: str,
        limit: int,
        *,
        model: str | None = None,
        model_limit: int | None = None,
        waiting: bool = True,
    ) -> Lease | bool:
        """One try: the lease, ``False`` when every slot is leased (the
        backend's, or the model's), ``True`` when Redis failed (go on with
        local limits only). A lease of the same backend and model released
        here and not yet removed from Redis is taken back without a round
        trip; otherwise one round trip, which also removes this runtime's own
        released leases of ``backend`` first.

        Args:
            backend: Backend name.
            limit: Its ``max_in_flight``.
            model: The request's model (a model key); held in the model's set
                too when ``model_limit`` is given.
            model_limit: The backend's ``max_in_flight_per_model``; ``None``:
                no per-model limit (the backend's set alone).
            waiting: The caller waits for a slot if this try fails: tell other
                runtimes (they stop taking back their released leases for a
                while). ``False`` for a try whose caller goes elsewhere.
        """
        if model_limit is None:
            model = None
        pool: Pool = (backend, model)
        with self._lock:
            now = time.monotonic()
            contended = self._contended.get((backend, None), 0.0) >= now or (
                model is not None and self._contended.get(pool, 0.0) >= now
            )
            released = self._released.get(pool)
            if released and not contended:
                fresh_after = now - self._fresh_s if self.reuse else float("inf")
                while released:
                    lease_id, confirmed = released.pop()
                    if confirmed > fresh_after:
                        self._held.setdefault(pool, {})[lease_id] = confirmed
                        return Lease(backend, lease_id, model)
                    self._drop.setdefault(pool, []).append((lease_id, confirmed))
            lease = Lease(backend, next(self._ids), model)
            # Ours, given back and not to take back: the script removes them
            # before it counts (a removal the cluster thread has sent may not
            # have landed yet). Not while another runtime waits: then they
            # count until the cluster thread removes them, so that the waiting
            # runtime gets its chance at the slot before this one takes it again.
            mine: list[str] = []
            if not contended:
                # Released for another model of this backend: not ours to take
                # back for this one, but its backend slot is ours to free now.
                for other in [p for p in self._released if p[0] == backend and p != pool]:
                    self._drop.setdefault(other, []).extend(self._released.pop(other))
                for (b, _), ids in self._drop.items():
                    if b == backend:
                        mine += [i for i, _ in ids]
                for (b, _), removing in self._removing.items():
                    if b == backend:
                        mine += removing
        keys = [self.key(backend), self.waiting_key(backend)]
        if model is not None:
            keys += [self.key(backend, model), self.waiting_key(backend, model)]
        wait_ms = self._wait_ms if waiting else 0
        args = [limit, self.ttl_ms, lease.id, wait_ms, model_limit or 0, *mine]
        sent = time.monotonic()
        got = self.link.call("take a slot", lambda c: self._acquire(keys=keys, args=args))
        if got is None:
            # Redis may have run the script after we gave up (a reply later
            # than socket_timeout): remove the lease, or it would hold a slot
            # of the cluster for slot_ttl with nobody renewing or releasing it.
            with self._lock:
                self._drop.setdefault(pool, []).append((lease.id, sent))
            self._wake()
            return True
        if not got:
            return False
        with self._lock:
            self._held.setdefault(pool, {})[lease.id] = sent
        return lease

    def acquire(
        self,
        backend: str,
        limit: int,
        give_up: Callable[[], bool],
        *,
        model: str | None = None,
        model_limit: int | None = None,
    ) -> Lease | None:
        """Wait for one of ``backend``'s ``limit`` slots across the cluster
        (and, with ``model_limit``, one of ``model``'s there).

        Args:
            backend: Backend name.
            limit: Its ``max_in_flight``.
            give_up: Polled between tries: ``True`` ends the wait (the request
                ended, or its actor is going away).
            model: The request's model (a model key), see :meth:`try_acquire`.
            model_limit: The backend's ``max_in_flight_per_model`` (``None``:
                none).

        Returns:
            The lease (give it to :meth:`release` when the request ends), or
            ``None``: Redis failed (run on local limits) or ``give_up``.
        """

        def once() -> Lease | bool:
            return self.try_acquire(backend, limit, model=model, model_limit=model_limit)

        got = once()
        if got is not False:
            return got if isinstance(got, Lease) else None
        started = time.monotonic()
        pause = min(0.002, self.poll_s)
        try:
            while not give_up():
                time.sleep(pause * random.uniform(0.5, 1.0))
                got = once()
                if got is not False:
                    return got if isinstance(got, Lease) else None
                pause = min(2 * pause, self.poll_s)
            return None
        finally:
            events.cluster_slot_wait(backend, time.monotonic() - started)

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back (off the request's path: the cluster thread
        removes it from Redis at once)."""
        pool: Pool = (lease.backend, lease.model)
        with self._lock:
            confirmed = self._pop_held(pool, lease.id)
            if confirmed is None:  # lost in Redis (see renew): remove it only
                self._drop.setdefault(pool, []).append((lease.id, time.monotonic()))
            else:
                self._released.setdefault(pool, []).append((lease.id, confirmed))
        self._wake()

    def release_all(self) -> None:
        """Give back every lease held (the runtime is closing): the next
        :meth:`flush` removes them from Redis; a request that still ends
        later only queues its lease for removal."""
        with self._lock:
            for pool, ids in self._held.items():
                self._drop.setdefault(pool, []).extend(ids.items())
            self._held = {}

    def held(self) -> int:
        """Leases this runtime holds now."""
        with self._lock:
            return sum(len(ids) for ids in self._held.values())

    def pools(self) -> int:
        """Backends and models this runtime keeps anything for now (leases
        held, released or to remove, another runtime waiting): the model
        names come from callers, so nothing is kept for one once idle."""
        with self._lock:
            kept = self._held.keys() | self._released.keys() | self._drop.keys()
            return len(kept | self._contended.keys())

    def _pop_held(self, pool: Pool, lease_id: str) -> float | None:
        """Forget a lease held (under ``_lock``), and the pool once it holds
        none; when Redis last confirmed it (``None``: not held)."""
        held = self._held.get(pool)
        if held is None:
            return None
        confirmed = held.pop(lease_id, None)
        if not held:
            del self._held[pool]
        return confirmed

    def flush(self) -> None:
        """Remove the released leases from Redis (from every set each is in)
        and, every ``slot_poll / 2`` at most, read whether other runtimes wait
        for the slots of the backends and models this one holds (one
        pipelined round trip). Removals Redis does not take are kept to send
        later (never to take back) until ``slot_ttl`` after they were last
        confirmed: by then they expired."""
        now = time.monotonic()
        with self._lock:
            # No empty list: a ZREM with no member is an error, which would
            # fail the whole round (and mark Redis down).
            queued = {pool: list(ids) for pool, ids in self._released.items() if ids}
            for pool, ids in self._drop.items():
                if ids:
                    queued.setdefault(pool, []).extend(ids)
            self._released, self._drop = {}, {}
            # In the same critical section: a request here always finds them
            # in one list or the other (its ACQUIRE removes them first).
            released = {pool: [i for i, _ in ids] for pool, ids in queued.items()}
            self._removing = released
            check: list[Pool] = []
            if now - self._checked_at >= self.poll_s / 2:
                self._contended = {p: t for p, t in self._contended.items() if t >= now}
                pools = set(self._held) | set(queued)
                # The backend's waiting flag, and the model's for a model pool.
                check = sorted({(b, None) for b, _ in pools} | pools, key=str)
        if not queued and not check:
            return

        def remove(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for pool, ids in released.items():
                for key in self._keys(pool):
                    pipe.zrem(key, *ids)
            if check:
                pipe.time()  # the flags' lapse times are in Redis server time
            for backend, model in check:
                pipe.zrange(self.waiting_key(backend, model), 0, -1, withscores=True)
            result: list[Any] = pipe.execute()
            return result

        result = None
        try:
            result = self.link.call("release slots", remove)
        finally:
            with self._lock:
                if result is None:  # kept to send later, until they expired
                    expired = time.monotonic() - self._ttl_s
                    for pool, ids in queued.items():
                        if keep := [(i, t) for i, t in ids if t > expired]:
                            self._drop.setdefault(pool, []).extend(keep)
                self._removing = {}
        if result is not None and check:
            self._checked_at = now
            (server_s, server_us), *flags = result[len(result) - len(check) - 1 :]
            server_ms = server_s * 1000 + server_us // 1000
            with self._lock:
                for pool, waiters in zip(check, flags, strict=True):
                    lapses = [
                        ms for who, ms in waiters if who.decode() != self.replica and ms > server_ms
                    ]
                    if lapses:  # another runtime waits (our own wait is no reason)
                        self._contended[pool] = now + (max(lapses) - server_ms) / 1000

    def renew(self) -> None:
        """Extend every lease held by ``slot_ttl``, in every set it is in
        (one pipelined round trip)."""
        with self._lock:
            held = {pool: list(ids) for pool, ids in self._held.items() if ids}
        if not held:
            return
        sent = time.monotonic()

        def extend(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for pool, ids in held.items():
                self._renew(keys=self._keys(pool), args=[self.ttl_ms, *ids], client=pipe)
            result: list[Any] = pipe.execute()
            return result

        lost = self.link.call("renew slot leases", extend)
        if lost is None:
            return
        for (pool, ids), gone in zip(held.items(), lost, strict=False):
            gone_ids = {i.decode() if isinstance(i, bytes) else i for i in gone}
            with self._lock:
                for lease_id in ids:
                    if lease_id in gone_ids:
                        self._pop_held(pool, lease_id)
                    elif lease_id in (mine := self._held.get(pool, {})):
                        mine[lease_id] = sent
                # Released while the renewal was on its way: to remove, never
                # to take back (Redis no longer counts it).
                released = self._released.get(pool, [])
                if lost_here := [(i, t) for i, t in released if i in gone_ids]:
                    released[:] = [(i, t) for i, t in released if i not in gone_ids]
                    self._drop.setdefault(pool, []).extend(lost_here)
            if gone_ids:
                backend, model = pool
                log.warning(
                    "%d slot lease(s) of %s expired before renewal (Redis was unreachable "
                    "or slow for more than slot_ttl): the cluster may run more than "
                    "%s there until they end",
                    len(gone_ids),
                    backend,
                    "max_in_flight" if model is None else f"max_in_flight_per_model of {model!r}",
                    extra={"backend": backend},
                )
