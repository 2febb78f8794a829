"""HealthMonitor: active probes, passive outcomes, one circuit breaker per backend.

Probes are the provider's ``health_check`` (Ollama: ``GET /api/version``; the
embedded backend: the model file is there) and ``list_models`` (Ollama:
``GET /api/tags``), read with every probe unless ``catalogue_ttl`` asks for
fewer reads (so a model pulled later is routed there within one interval).
For the backends named in ``read_ps`` (Ollama hosts that share a priority
with another, under ``[router] balance = "warm"``) the models in memory
(``GET /api/ps``) are read with the catalogue and written to the registry's
:class:`~rubberduck.actors.residency.Residency`, as is each successful
attempt's latency (the EWMA routing weighs load with).
They run on a small thread pool so that a slow backend never blocks this actor;
results come back as messages. Closed circuits are probed every ``interval``
seconds, open ones every ``cooldown`` (the policy:
:mod:`rubberduck.actors.breaker`).

Request outcomes arrive from the ProviderActors' workers through one ordered
queue, ``Registry.outcomes`` (a :class:`~rubberduck.actors.channels.OutcomeLog`),
read before each message (ticks included): the breaker sees successes and
failures in the order they happened, so failures never look consecutive because
successes between them were read late. A failure also wakes this actor (a
:class:`~rubberduck.messages.Tick`), so a circuit opens at once; a success does
not (a message per success cost a thread wake-up per request, at the moment the
caller wakes for its answer: ``benchmarks/overhead.py``).

A circuit's state change is written to ``Registry.circuits`` (a
:class:`~rubberduck.actors.channels.Circuits`) here, on this actor's thread, as
the breaker changes: routing (the Router, and callers' threads) reads it
there, so it never lags what :meth:`HealthMonitor.snapshot` (``Runtime.health``)
says. The catalogue goes to the Router as
:class:`~rubberduck.messages.CatalogueRead` after every read, changed or not,
so the Router's view converges within one interval whatever it dropped (a model
it removed after a 404) or missed; a Router that starts asks for it with
:class:`~rubberduck.messages.Resync`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from rubberduck.actors.breaker import CircuitBreaker
from rubberduck.actors.supervisor import Registry, SupervisedActor
from rubberduck.config import HealthConfig
from rubberduck.errors import ProviderUnavailable, RubberDuckError
from rubberduck.messages import (
    BackendHealth,
    CatalogueRead,
    Outcome,
    ProbeResult,
    Resync,
    Snapshot,
    Tick,
)
from rubberduck.providers.base import Provider
from rubberduck.telemetry import events
from rubberduck.telemetry.logs import component

if TYPE_CHECKING:
    from rubberduck.cluster.state import CircuitNews, SharedState

__all__ = ["FAILURE_KINDS", "HealthMonitor"]

HEALTH = "health"

log = component("health")

#: The detail of a probe another replica made for us (``[cluster]``).
ELSEWHERE = "probed by another replica"
#: Outcome kinds that count against a backend. A 503 ("busy") counts too, so a
#: backend that keeps refusing work is cooled down, but only "refused" opens the
#: circuit at once. A rejected key ("auth") counts: the backend cannot serve
#: anyone until its configuration changes. "model_not_found" and "invalid" are
#: about the request, not the backend.
FAILURE_KINDS = frozenset(
    {"refused", "unavailable", "timeout", "protocol", "interrupted", "busy", "auth"}
)


@dataclass
class _Backend:
    provider: Provider
    breaker: CircuitBreaker
    since: float = field(default_factory=time.time)
    detail: str = ""
    last_error: str = ""
    models: tuple[str, ...] | None = None
    catalogue_at: float = float("-inf")
    last_probe: float = float("-inf")
    probing: bool = False
    requests: int = 0
    failures: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=512))


class HealthMonitor(SupervisedActor):
    """Owns the circuit breakers and the health snapshot.

    Args:
        registry: Where the Router is found.
        providers: Backend name → provider, in routing order.
        config: Probe interval/timeout and breaker settings (seconds).
        read_ps: Backends whose loaded models (Ollama ``GET /api/ps``) are read
            with their catalogue (in a cluster, every backend that can answer
            it: what is read is shared).
        shared: The cluster's shared state (``[cluster]``): circuit changes
            seen here are shared and those seen by other replicas applied
            (on each tick, from a local copy); catalogues and ``/api/ps``
            residency read here are shared; a backend is probed only under
            its probe lease, otherwise the prober's findings stand for a
            probe. ``None``: this runtime alone.
    """

    def __init__(
        self,
        registry: Registry,
        providers: dict[str, Provider],
        config: HealthConfig,
        read_ps: frozenset[str] = frozenset(),
        shared: SharedState | None = None,
    ) -> None:
        super().__init__(registry, HEALTH)
        self.providers = providers
        self.config = config
        self.read_ps = read_ps
        self.shared = shared
        self.tick_s = max(0.02, min(config.interval, config.cooldown) / 4)

    def started(self) -> None:
        cfg = self.config
        self.backends = {
            name: _Backend(
                provider,
                CircuitBreaker(
                    failure_threshold=cfg.failure_threshold,
                    cooldown=cfg.cooldown,
                    max_cooldown=cfg.max_cooldown,
                    failure_rate=cfg.failure_rate,
                    window=cfg.window,
                    min_requests=cfg.min_requests,
                ),
            )
            for name, provider in self.providers.items()
        }
        self.registry.breakers.update((name, b.breaker) for name, b in self.backends.items())
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(4, len(self.providers))), thread_name_prefix="rubberduck-probe"
        )
        self._ticking_stopped = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_loop, name="rubberduck-health-tick", daemon=True
        )
        self._ticker.start()
        self.registry.add_thread(self._ticker)
        if self.shared is not None:
            self.shared.on_news = self._wake
        # After a restart the Router may hold a stale view (a "down" that no
        # change of our fresh breakers would ever clear): start it over. The
        # first probes, at once, find what is really down.
        for name, backend in self.backends.items():
            self._publish(name, backend)
        self.actor_ref.tell(Tick())

    def cleanup(self, crashed: bool) -> None:
        stop = getattr(self, "_ticking_stopped", None)
        if stop is not None:
            stop.set()
            # A probe in flight ends within the probe timeout; after a crash the
            # replacement must not wait for it.
            self._pool.shutdown(wait=not crashed, cancel_futures=True)
            if crashed:
                self.registry.leftovers.append(self._pool)
            else:
                self._ticker.join()

    def _wake(self) -> None:
        """A tick now (another thread has news for this actor)."""
        try:
            self.actor_ref.tell(Tick())
        except pykka.ActorDeadError:
            pass

    def _tick_loop(self) -> None:
        ref = self.actor_ref
        while not self._ticking_stopped.wait(self.tick_s):
            try:
                ref.tell(Tick())
            except pykka.ActorDeadError:
                return

    def receive(self, message: Any) -> Any:
        for outcome in self.registry.outcomes.drain():
            self._outcome(outcome)
        if isinstance(message, Outcome):
            self._outcome(message)
        elif isinstance(message, Tick):
            self._tick()
        elif isinstance(message, ProbeResult):
            self._probed(message)
        elif isinstance(message, Snapshot):
            return self.snapshot()
        elif isinstance(message, Resync):
            for name, backend in self.backends.items():
                self._publish(name, backend, catalogue=True)
        return None

    # --- probes -------------------------------------------------------------------

    def _tick(self) -> None:
        if self.shared is not None:
            for news in self.shared.circuit_news():
                self._remote(news)
        now = time.monotonic()
        for name, b in self.backends.items():
            if b.probing:
                continue
            due = b.breaker.probe_due(now) or (
                b.breaker.state == "closed" and now - b.last_probe >= self.config.interval
            )
            if due and not self._ticking_stopped.is_set():
                want_catalogue = now - b.catalogue_at >= self.config.catalogue_ttl
                period = (
                    self.config.interval if b.breaker.state == "closed" else self.config.cooldown
                )
                try:
                    self._pool.submit(self._probe, name, b.provider, want_catalogue, period)
                except RuntimeError:  # the pool is shutting down (the interpreter exits)
                    return
                b.probing = True

    def _probe(self, name: str, provider: Provider, want_catalogue: bool, period: float) -> None:
        """Runs on the probe pool; reports back with a message. In a cluster,
        only under ``name``'s probe lease (``period`` seconds)."""
        started = time.monotonic()
        timeout = self.config.timeout
        if self.shared is not None and not self.shared.may_probe(name, period):
            self._tell(self._probed_elsewhere(name, self.shared))
            return
        try:
            detail = provider.health_check(timeout)
            models = tuple(provider.list_models(timeout)) if want_catalogue else None
            loaded = self._read_ps(name, provider, timeout) if want_catalogue else None
            if self.shared is not None:
                self.shared.share_probe(name, models, loaded)
            result = ProbeResult(
                name, True, detail, models, time.monotonic() - started, loaded=loaded
            )
        except RubberDuckError as exc:
            refused = isinstance(exc, ProviderUnavailable) and exc.refused
            result = ProbeResult(
                name, False, exc.message, None, time.monotonic() - started, refused
            )
        except Exception as exc:  # noqa: BLE001 - a probe must always report back
            result = ProbeResult(name, False, f"probe crashed: {exc!r}", None, 0.0)
        self._tell(result)

    def _tell(self, result: ProbeResult) -> None:
        try:
            self.actor_ref.tell(result)
        except pykka.ActorDeadError:
            pass

    def _read_ps(self, name: str, provider: Provider, timeout: float) -> tuple[str, ...] | None:
        """The models ``provider`` holds in memory, if it is one to ask (routing
        wants it, or a cluster shares it); ``None`` when not asked or the read
        failed (routing then goes by answers alone)."""
        ps = getattr(provider, "ps", None)
        if ps is None or (name not in self.read_ps and self.shared is None):
            return None
        try:
            return tuple(m.name or m.model for m in ps(timeout).models)
        except RubberDuckError as exc:
            log.debug("reading %s's loaded models failed: %s", name, exc.message)
            return None

    @staticmethod
    def _probed_elsewhere(name: str, shared: SharedState) -> ProbeResult:
        """Another replica holds ``name``'s probe lease: what the cluster knows
        stands for this probe (its circuit entry, its catalogue)."""
        entry = shared.circuit(name)
        if entry is not None and entry.state == "open":
            why = f"{entry.reason} (probed by replica {entry.replica})"
            return ProbeResult(name, False, why, None, 0.0)
        models = shared.catalogue().get(name)
        loaded = shared.residency().get(name)
        return ProbeResult(
            name,
            True,
            ELSEWHERE,
            None if models is None else tuple(models),
            0.0,
            loaded=None if loaded is None else tuple(loaded),
        )

    def _probed(self, msg: ProbeResult) -> None:
        b = self.backends[msg.provider]
        now = time.monotonic()
        events.probed(msg.provider, msg.latency_s, msg.ok)  # telemetry
        b.probing = False
        b.last_probe = now
        if msg.ok:
            b.detail = msg.detail
            if msg.loaded is not None:
                self.registry.residency.set_loaded(msg.provider, msg.loaded)
            if msg.models is not None:
                b.models, b.catalogue_at = msg.models, now
            # In the closed state the failure count belongs to real requests (a
            # server can answer /api/version and still 503 every chat), so only
            # a half-open probe's success resets it — not one sent before the
            # circuit opened, which proves nothing about the failures since.
            if b.breaker.state == "half_open" and b.breaker.record_success(now):
                self._changed(msg.provider, b, catalogue=True)
            elif msg.models is not None:
                # Changed or not: the Router may have dropped a model after a
                # 404, or missed a message; this brings its view back.
                self._publish(msg.provider, b, catalogue=True)
        else:
            b.failures += 1
            b.last_error = msg.detail
            if b.breaker.record_failure(now, immediate=msg.refused):
                self._changed(msg.provider, b)

    # --- passive signals ----------------------------------------------------------

    def _outcome(self, msg: Outcome) -> None:
        b = self.backends.get(msg.provider)
        if b is None:
            return
        b.requests += 1
        if msg.kind == "ok":
            b.latencies.append(msg.latency_s)
            self.registry.residency.observe(msg.provider, msg.latency_s)
            # Only a probe closes an open circuit; a success that started before
            # the circuit opened proves little.
            if b.breaker.state == "closed":
                b.breaker.record_success(time.monotonic())
        elif msg.kind in FAILURE_KINDS:
            b.failures += 1
            b.last_error = msg.error
            if b.breaker.state == "closed" and b.breaker.record_failure(
                time.monotonic(), immediate=msg.kind == "refused"
            ):
                self._changed(msg.provider, b)

    def _changed(
        self, name: str, b: _Backend, *, catalogue: bool = False, share: bool = True
    ) -> None:
        b.since = time.time()
        events.circuit_changed(name, b.breaker, b.last_error or b.detail)  # telemetry
        if share and self.shared is not None:
            self.shared.circuit_changed(name, b.breaker.state, b.last_error or b.detail)
        self._publish(name, b, catalogue=catalogue)

    def _remote(self, news: CircuitNews) -> None:
        """Another replica's breaker of a backend changed: ours follows."""
        b = self.backends.get(news.backend)
        if b is None:
            return
        now = time.monotonic()
        if news.state == "open" and b.breaker.state == "closed":
            b.last_error = f"{news.reason} (seen by replica {news.replica})"
            if b.breaker.record_failure(now, immediate=True):
                self._changed(news.backend, b, share=False)
        elif news.state == "closed" and b.breaker.state != "closed":
            if b.breaker.record_success(now):
                self._changed(news.backend, b, catalogue=True, share=False)

    def _publish(self, name: str, b: _Backend, *, catalogue: bool = False) -> None:
        """The circuit's state to ``Registry.circuits`` (before any health
        snapshot can show it), and with ``catalogue`` the models to the Router."""
        if b.breaker.allows_requests():
            self.registry.circuits.close(name)
        else:
            self.registry.circuits.open(name, b.last_error or "circuit open")
        if catalogue and b.models is not None:
            self.registry.tell("router", CatalogueRead(name, b.models))

    def snapshot(self) -> dict[str, BackendHealth]:
        """Every backend's :class:`BackendHealth`, in routing order."""
        out = {}
        residency = self.registry.residency
        for name, b in self.backends.items():
            lat = sorted(b.latencies)
            loaded = residency.loaded(name)
            out[name] = BackendHealth(
                name=name,
                kind=b.provider.kind,
                state=b.breaker.state,
                since=b.since,
                detail=b.detail,
                last_error=b.last_error,
                models=b.models,
                requests=b.requests,
                failures=b.failures,
                failure_ratio=b.breaker.failure_ratio(),
                latency_p50_s=lat[len(lat) // 2] if lat else None,
                latency_p95_s=lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else None,
                checked=b.last_probe > float("-inf"),
                loaded_models=None if loaded is None else tuple(sorted(loaded)),
                cold_loads=residency.cold_loads.get(name, 0),
            )
        return out
