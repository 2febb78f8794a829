"""The Runtime: the one object a service embeds.

>>> with Runtime.default() as rt:                                  # doctest: +SKIP
...     reply = rt.chat(messages=[{"role": "user", "content": "hi"}])
...     print(reply.message.content, reply.provider)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import pykka

from rubberduck.actors.health import HEALTH, HealthMonitor
from rubberduck.actors.provider import ROUTER, Load, ProviderActor, provider_actor_name
from rubberduck.actors.router import Backoff, Route, Router
from rubberduck.actors.routing import route_first
from rubberduck.actors.supervisor import ChildSpec, Registry, Supervisor
from rubberduck.channels import CallerChannel, ReplyChannel, ThreadChannel
from rubberduck.config import Config, ProviderConfig, default_config, load_config
from rubberduck.cost import UsageLedger, UsageReport, find_price
from rubberduck.deadlines import DeadlineWatch
from rubberduck.errors import Cancelled, ConfigError, InvalidRequest, ProviderUnavailable
from rubberduck.handle import RequestHandle
from rubberduck.messages import (
    AnyRequest,
    BackendHealth,
    ChatResponse,
    Done,
    EmbedResponse,
    GenerateResponse,
    Snapshot,
    Submit,
)
from rubberduck.model_admin import ModelAdmin
from rubberduck.providers import create_provider
from rubberduck.providers.base import Provider
from rubberduck.request_methods import Call, RequestMethods
from rubberduck.request_state import RequestState
from rubberduck.telemetry import events, gauges, recorder
from rubberduck.validation import (
    check_mid_stream,
    check_request,
    check_routing,
    check_timeout,
)

if TYPE_CHECKING:
    from rubberduck.cluster import ClusterNode

__all__ = ["Runtime"]

log = logging.getLogger("rubberduck.runtime")


class Runtime(RequestMethods, ModelAdmin):
    """A supervised set of backends with health checks and automatic fallback.

    Requests (:meth:`chat`, :meth:`generate`, :meth:`embed`, :meth:`submit`) are
    routed and fall back; model management (``list``, ``show``, ``ps``, ``pull``,
    ``push``, ``create``, ``copy``, ``delete``, ``version``, ``embeddings`` — the
    official ``ollama.Client`` names — plus ``ensure_model``, ``warm_up`` and
    ``unload``) acts on one Ollama backend: see :class:`ModelAdmin`.

    Build it with :meth:`from_config` or :meth:`default`; use it as a context
    manager or call :meth:`close`, which stops every actor and thread.

    Args:
        config: The configuration (see :mod:`rubberduck.config`).

    Raises:
        ConfigError: ``config`` is not a :class:`Config`, or it has no enabled
            backend or a bad value.

    Attributes:
        escalation: ``None`` while the runtime runs; the reason once its
            supervisor gave up (by default more than 3 actor restarts in 5 s). It is also
            logged at ERROR on ``rubberduck.supervisor``; every request still
            running then fails, and :meth:`health` and :meth:`submit` raise.
        cluster: With a ``[cluster]`` table, this runtime's
            :class:`~rubberduck.cluster.ClusterNode` (``cluster.state.residency()``
            and ``.catalogue()``: ``dict[backend, list[model]]`` as the cluster
            last read them); ``None`` without one.
    """

    def __init__(self, config: Config) -> None:
        if not isinstance(config, Config):
            raise ConfigError(
                f"Runtime takes a Config (got {type(config).__name__}) — use "
                "Runtime.from_config(path or dict)"
            )
        self.config = config
        backends = config.backends()
        if not backends:
            raise ConfigError("no enabled backend — add a [provider.NAME] table")
        check_timeout(config.router.request_timeout, ConfigError, "[router] request_timeout")
        self.providers: dict[str, Provider] = {}
        try:
            for name, cfg in backends:
                self.providers[name] = create_provider(name, cfg)
            self._start(config, backends)
        except BaseException:
            if (deadlines := getattr(self, "_deadlines", None)) is not None:
                deadlines.stop()
            if (cluster := getattr(self, "cluster", None)) is not None:
                cluster.close()
            for provider in self.providers.values():
                provider.close()
            raise

    def _start(self, config: Config, backends: list[tuple[str, ProviderConfig]]) -> None:
        self._handles: dict[int, RequestState] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.escalation: str | None = None
        self._registry = Registry()
        self._load = Load()
        cost = config.cost
        self._ledger = UsageLedger(
            {name: p.is_local for name, p in self.providers.items()},
            cost.prices,
            cost.shadow_model,
        )
        if cost.shadow_model and find_price(self._ledger.prices, cost.shadow_model) is None:
            raise ConfigError(
                f"[cost] shadow_model {cost.shadow_model!r} has no price — add "
                f'[cost.prices."{cost.shadow_model}"] input = ..., output = ... (USD per '
                "million tokens)"
            )
        self._deadlines = DeadlineWatch(self._registry.scheduler)
        # [cluster]: shared slots and state in Redis (imports redis only then).
        self.cluster: ClusterNode | None = None
        if config.cluster is not None:
            from rubberduck.cluster import ClusterNode

            self.cluster = ClusterNode(config.cluster, self._ledger.report)
        shared = self.cluster.state if self.cluster is not None else None
        routes = [
            Route(
                name,
                tuple(cfg.models),
                cfg.serve_any_model,
                cfg.priority if cfg.priority is not None else i,
                self.providers[name].supports_feature("embeddings"),
                cfg.kind or "",
                cfg.weight,
                cfg.max_in_flight,
                cfg.max_in_flight_per_model,
                cfg.max_loaded_models,
            )
            for i, (name, cfg) in enumerate(backends)
        ]
        rc = config.router
        backoff = Backoff(rc.retries, rc.retry_backoff, rc.max_retry_backoff)
        self._registry.residency.cold_load_threshold = rc.cold_load_threshold
        read_ps = _read_ps(routes, rc.balance)
        health = self._starter(HealthMonitor, self.providers, config.health, read_ps, shared)
        specs = [ChildSpec(HEALTH, health)]
        for name, cfg in backends:
            specs.append(ChildSpec(provider_actor_name(name), self._provider_starter(name, cfg)))
        router = (Router, routes, self._load, backoff, rc.balance)
        specs.append(ChildSpec(ROUTER, self._starter(*router)))
        self._supervisor = Supervisor.start(
            specs,
            self._registry,
            max_restarts=config.supervisor.max_restarts,
            within_s=config.supervisor.within,
            on_escalate=self._escalated,
        )
        # Wait until the supervisor's on_start has started every child.
        self._supervisor.ask(None)
        # Telemetry: gauges read the in-flight counts and the breakers.
        workers = {name: cfg.max_in_flight for name, cfg in backends}
        self._gauges = gauges.BackendGauges(self._load, workers, self._registry.breakers)
        gauges.watch(self._gauges)
        events.runtime_started(list(self.providers))

    def _starter(self, cls: type[pykka.ThreadingActor], *args: Any) -> Any:
        registry = self._registry
        return lambda: cls.start(registry, *args)

    def _provider_starter(self, name: str, cfg: ProviderConfig) -> Any:
        registry, provider, load = self._registry, self.providers[name], self._load
        leases = self.cluster.leases if self.cluster is not None else None
        return lambda: ProviderActor.start(
            registry,
            provider,
            load,
            max_in_flight=cfg.max_in_flight,
            max_queue=cfg.max_queue,
            max_in_flight_per_model=cfg.max_in_flight_per_model,
            leases=leases,
        )

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> Runtime:
        """A runtime for a TOML file path or a mapping of the same shape.

        Raises:
            ConfigError: the file cannot be read or a value is invalid.
        """
        return cls(load_config(source))

    @classmethod
    def default(cls) -> Runtime:
        """Ollama at ``OLLAMA_HOST`` (or 127.0.0.1:11434, model ``llama3.2``)
        first, then the embedded SmolLM2-135M model, which answers any request
        when Ollama cannot."""
        return cls(default_config())

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<Runtime {state} backends={list(self.providers)}>"

    # --- requests -------------------------------------------------------------------

    def submit(
        self,
        request: AnyRequest,
        *,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
    ) -> RequestHandle:
        """Start a request without waiting; returns its handle at once.

        The request is checked here, on the caller's thread (field types, roles,
        Ollama option names, finite numbers): a bad one never reaches an actor.

        Args:
            request: A :class:`ChatRequest`, :class:`GenerateRequest` or
                :class:`EmbedRequest`.
            timeout: Deadline of the whole request (queueing, retries, fallback
                and generation), seconds; default ``[router] request_timeout``.
            mid_stream: When the stream breaks after its first chunk:
                ``"error"`` raises :class:`StreamInterrupted` carrying the partial
                text; ``"restart"`` yields a :class:`Restart` event and then the
                whole answer from the next backend. Default ``[router] mid_stream``.
            backends: Names of the backends that may serve it (routing order
                and priorities still apply among them); ``None``: any.
            fallback: ``False`` sends it to its first candidate only: when that
                backend fails, the request fails with its error (retry rounds
                on that backend still apply).
            allow_substitute: Whether a backend configured with
                ``serve_any_model`` may answer a request for a model it lacks with
                its own model; the answer then says so in ``substituted_for``.
                Default ``[router] allow_substitute``.

        Returns:
            A :class:`RequestHandle`: iterate it for events, call ``result()`` for
            the whole answer, ``cancel()`` to stop it.

        Raises:
            InvalidRequest: the request, ``timeout`` or ``mid_stream`` is invalid
                (see :func:`rubberduck.validation.check_request`), ``backends``
                names a backend that is not configured, or an argument has the
                wrong type.
            ProviderUnavailable: the runtime is closed or its supervisor gave up.
        """
        channel = ThreadChannel(self.config.router.max_buffered_events)
        state = self._start_request(
            request,
            channel,
            timeout=timeout,
            mid_stream=mid_stream,
            backends=backends,
            fallback=fallback,
            allow_substitute=allow_substitute,
        )
        return RequestHandle(state, channel)

    def _answer(self, call: Call) -> ChatResponse | GenerateResponse | EmbedResponse:
        """The whole answer of a non-streamed ``call``: the caller's thread waits
        for it, so it runs the attempts itself (no hand-off to a worker and
        back): the first one at once when a backend has a free slot, a later
        one (a slot freed for it on a waiting list, a fallback, a retry) when
        the backend hands it over through the channel
        (:class:`~rubberduck.channels.CallerChannel`). Fallback, retries and the
        deadline work as for :meth:`submit`. The channel is unbounded: this
        thread is both its producer and its reader (a non-streamed answer is a
        few events)."""
        channel = CallerChannel()
        state = self._start_request(call.request, channel, caller_runs=True, **call.routing)
        try:
            _run_inline(state)
            return RequestHandle(state, channel).result()
        finally:
            # The caller stops waiting: a request still running ends with it
            # (KeyboardInterrupt, ...), and attempts handed here meanwhile run
            # now, only to give their slots back.
            if not state.finished:
                state.cancel()
            _run_inline(state)
            channel.close()

    def _start_request(
        self,
        request: AnyRequest,
        channel: ReplyChannel,
        *,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        caller_runs: bool = False,
    ) -> RequestState:
        """Check ``request`` and the options (as :meth:`submit` documents), and
        hand it to the Router with its events going to ``channel``. With
        ``caller_runs``, a backend with a free slot leaves its first attempt in
        ``state.inline`` for the caller's thread to run."""
        request = check_request(request)
        if timeout is not None:
            check_timeout(timeout, InvalidRequest, "timeout")
        check_mid_stream(mid_stream)
        check_routing(fallback, allow_substitute)
        allowed = self._allowed_backends(backends)
        if self._closed or self.escalation is not None:
            why = self.escalation or "the runtime is closed"
            raise ProviderUnavailable(f"cannot submit: {why} — create a new Runtime")
        rc = self.config.router
        state = RequestState(
            request,
            channel,
            timeout=timeout if timeout is not None else rc.request_timeout,
            mid_stream=mid_stream or rc.mid_stream,
            backends=allowed,
            fallback=fallback,
            allow_substitute=rc.allow_substitute if allow_substitute is None else allow_substitute,
        )
        with self._lock:
            escalation = self.escalation
            if escalation is None:
                self._handles[state.id] = state
        if escalation is not None:  # the supervisor gave up since the check above
            raise ProviderUnavailable(f"cannot submit: {escalation} — create a new Runtime")
        state.on_finish = self._forget
        state.pricer = self._ledger.price
        self._deadlines.watch(state)
        try:
            self._route(state, caller_runs)
        except BaseException:
            # KeyboardInterrupt (Ctrl-C), ... on the caller's thread once a
            # backend may have taken the request: nobody will get its handle,
            # so nobody could stop it; it would hold its slot to its deadline.
            state.cancel()
            _run_inline(state)
            raise
        return state

    def _route(self, state: RequestState, caller_runs: bool) -> None:
        """Hand ``state`` to the first backend with room (or a waiting list),
        here on the caller's thread; otherwise to the Router, which decides
        (panic mode, retries, the error)."""
        registry = self._registry
        table = registry.routing
        state.caller_runs = caller_runs
        taken = table is not None and route_first(table, state, registry.admissions)
        state.caller_runs = False
        if taken:
            return
        # Waits (up to a second) only while the router is being restarted.
        if not registry.tell_eventually(ROUTER, Submit(state), state.time_left()):
            state.fail(ProviderUnavailable("the router is not running — create a new Runtime"))

    def _allowed_backends(self, backends: Sequence[str] | None) -> frozenset[str] | None:
        if backends is None:
            return None
        if isinstance(backends, str) or not all(isinstance(b, str) for b in backends):
            raise InvalidRequest(f"backends must be a list of backend names (got {backends!r})")
        known = ", ".join(self.providers)
        if not backends:
            raise InvalidRequest(f"backends is empty — name one or more of: {known}")
        unknown = sorted(set(backends) - set(self.providers))
        if unknown:
            raise InvalidRequest(
                f"backends names {', '.join(map(repr, unknown))}, which is not configured "
                f"— the backends are: {known}"
            )
        return frozenset(backends)

    def _forget(self, state: RequestState) -> None:
        with self._lock:
            self._handles.pop(state.id, None)
        self._deadlines.ended(state)

    # --- control --------------------------------------------------------------------

    def health(self, timeout: float = 5.0) -> dict[str, BackendHealth]:
        """Each backend's circuit state, last error and latency percentiles.

        Raises:
            InvalidRequest: ``timeout`` is not a number of seconds above 0.
            ProviderUnavailable: the supervisor gave up after too many restarts
                (the message gives its reason, as does :attr:`escalation`), or
                the HealthMonitor did not answer within ``timeout`` seconds.
        """
        check_timeout(timeout, InvalidRequest, "timeout")
        if self.escalation is not None:
            raise ProviderUnavailable(
                f"the runtime stopped: {self.escalation} — create a new Runtime"
            )
        ref = self._registry.get(HEALTH)
        if ref is None:
            raise ProviderUnavailable("the health monitor is not running")
        try:
            snapshot: dict[str, BackendHealth] = ref.ask(Snapshot(), block=True, timeout=timeout)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise ProviderUnavailable(f"the health monitor did not answer: {exc!r}") from None
        return {
            name: msgspec.structs.replace(h, in_flight=self._load[name])
            for name, h in snapshot.items()
        }

    def wait_for_probes(self, timeout: float = 5.0) -> dict[str, BackendHealth]:
        """Wait until every backend has been probed once (at most ``timeout``
        seconds), then return :meth:`health`."""
        check_timeout(timeout, InvalidRequest, "timeout")
        give_up = time.monotonic() + timeout
        while True:
            snapshot = self.health(timeout)
            if all(h.checked for h in snapshot.values()) or time.monotonic() >= give_up:
                return snapshot
            time.sleep(0.02)

    def usage(self) -> UsageReport:
        """Requests, tokens and cost (USD) since the runtime started, per backend
        and per model; local backends cost 0.0 (see ``shadow_cost_usd``)."""
        return self._ledger.report()

    def cluster_usage(self) -> UsageReport:
        """Requests, tokens and cost (USD) of every runtime sharing this one's
        ``[cluster]`` Redis, per backend and per model (each runtime adds its
        own every ``sync_interval`` seconds); without ``[cluster]``, :meth:`usage`.

        Raises:
            ProviderUnavailable: Redis cannot be read now (:meth:`usage` still can).
        """
        if self.cluster is None:
            return self.usage()
        return self.cluster.usage_totals()

    def subscribe_usage(self, callback: Callable[[Done], None]) -> Callable[[], None]:
        """Call ``callback(done)`` with every finished request's ``Done`` (cost and
        usage filled in), on the runtime's usage thread, off the request's path: a
        slow callback delays no request; an exception in it is logged, not raised.
        Returns an unsubscribe function."""
        return self._ledger.subscribe(callback)

    def models(self, timeout: float = 5.0) -> dict[str, list[str] | Exception]:
        """Ask every backend for its models now (Ollama ``/api/tags``).

        Returns:
            Backend name → model names, or the error that backend gave.
        """
        out: dict[str, list[str] | Exception] = {}
        for name, provider in self.providers.items():
            try:
                out[name] = provider.list_models(timeout)
            except Exception as exc:  # noqa: BLE001 - reported per backend
                out[name] = exc
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Cancel requests still running, stop every actor and thread, close
        connections. Idempotent.

        Args:
            timeout: Seconds to wait for each actor to stop.
        """
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = list(self._handles.values())
        for handle in pending:
            handle.fail(Cancelled("the runtime was closed"))
        try:
            self._supervisor.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            log.error("the runtime's actors did not stop within %g s; closing anyway", timeout)
        finally:
            self._registry.stop_scheduler()
            self._deadlines.stop()
            for thread in self._registry.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout)
            for pool in self._registry.leftovers:
                pool.shutdown(wait=True)
            for provider in self.providers.values():
                provider.close()
            self._ledger.close()
            if self.cluster is not None:
                self.cluster.close(timeout)
            gauges.unwatch(self._gauges)
            recorder.flush(timeout)  # the spans and metrics of the requests it ran
            events.runtime_closed(list(self.providers))

    def _escalated(self, reason: str) -> None:
        # Before the actors stop: every request ends now, with this reason (under
        # the lock, so that a submit either sees the escalation or is in the list).
        with self._lock:
            self.escalation = reason
            pending = list(self._handles.values())
        for handle in pending:
            handle.fail(ProviderUnavailable(f"the runtime stopped: {reason}"))


def _read_ps(routes: list[Route], balance: str) -> frozenset[str]:
    """The Ollama backends whose loaded models (``/api/ps``) routing uses: under
    ``balance = "warm"``, those that share their priority with another backend."""
    if balance != "warm":
        return frozenset()
    priorities = Counter(r.priority for r in routes)
    return frozenset(r.name for r in routes if r.kind == "ollama" and priorities[r.priority] > 1)


def _run_inline(state: RequestState) -> None:
    """Run the attempt a backend left for the caller's thread
    (``state.inline``), if one is there; it is taken off, so it runs once. On
    a request that has ended, the attempt only gives back the slot and turns
    it holds."""
    work, state.inline = state.inline, None
    if work is not None:
        work()
