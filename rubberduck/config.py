"""Configuration: TOML (or the same shape as a dict), validated by msgspec.

Example ``rubberduck.toml``::

    [provider.ollama]            # kind defaults to the table's name
    base_url = "http://127.0.0.1:11434"   # default: OLLAMA_HOST, else this
    model = "llama3.2"           # used when a request names no model
    keep_alive = "5m"

    [provider.local]             # llama.cpp in-process (extra `local`)
    serve_any_model = true       # last resort: answers any model with its own

    [router]
    order = ["ollama", "local"]  # priority; default: the tables' order

    [cluster]                    # optional: replicas share limits and state in Redis
    redis_url = "redis://127.0.0.1:6379/0"
    slot_ttl = 10.0

Units: every timeout and interval is in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from rubberduck.cost import Price
from rubberduck.errors import ConfigError

__all__ = [
    "ClusterConfig",
    "Config",
    "CostConfig",
    "HealthConfig",
    "ProviderConfig",
    "RouterConfig",
    "SupervisorConfig",
    "load_config",
]

ProviderKind = Literal["ollama", "local", "openai", "anthropic"]

#: A year, seconds: the longest timeout or interval accepted (it also keeps out
#: ``inf``; ``nan`` fails every bound).
_MAX_S = 365 * 24 * 3600.0
#: Seconds above zero (timeouts, intervals, windows).
Seconds = Annotated[float, msgspec.Meta(gt=0, le=_MAX_S)]
#: Seconds, zero allowed (backoffs, cooldowns).
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0, le=_MAX_S)]
#: A ``keep_alive`` in seconds (negative: forever, as Ollama reads it).
KeepAliveSeconds = Annotated[float, msgspec.Meta(ge=-_MAX_S, le=_MAX_S)]
Count = Annotated[int, msgspec.Meta(ge=0)]
PositiveCount = Annotated[int, msgspec.Meta(ge=1)]


class ProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[provider.NAME]`` table.

    Attributes:
        kind: ``"ollama"``, ``"local"``, ``"openai"`` (an OpenAI-compatible
            server: llama.cpp, vLLM, LM Studio, OpenAI) or ``"anthropic"``;
            defaults to the table's name.
        enabled: ``False`` keeps the table but starts no backend.
        base_url: Server URL (Ollama: default ``OLLAMA_HOST``, else
            ``http://127.0.0.1:11434``; ``openai``: required, with the version,
            e.g. ``http://127.0.0.1:8080/v1``; ``anthropic``: default
            ``https://api.anthropic.com``).
        api_key_env: Name of the environment variable holding the API key (never
            the key itself), e.g. ``"OPENAI_API_KEY"``; ``None`` for servers that
            need none (``anthropic`` default: ``ANTHROPIC_API_KEY``; ``ollama``
            default: ``OLLAMA_API_KEY`` when it is set, as the official client).
        allow_insecure_key: Send the API key (or an ``Authorization`` header) over
            plain ``http://`` to a host other than this machine. Off by default:
            such a key is refused when the provider is built; turn it on only on
            a trusted network.
        headers: ``ollama`` only: extra HTTP headers for every request (e.g. what
            a proxy in front of Ollama expects), as the official client's
            ``headers``; an ``Authorization`` here wins over the key.
        model: Default model for requests that name none. For ``local``, a
            packaged model name or a ``.gguf`` path.
        models: Extra model names to treat as served before the catalogue is read.
        serve_any_model: Accept requests for any model, answering with ``model``
            (for a last-resort embedded backend); ``Done.model`` says which answered.
        timeout: Read timeout, seconds: the longest silence accepted from the
            server, model loading included.
        connect_timeout: TCP connect timeout, seconds.
        priority: Routing priority, lower first; backends of equal priority
            share the load (fewest requests in flight first). Default: the
            position in ``[router] order``.
        keep_alive: Default Ollama ``keep_alive`` (seconds or ``"5m"``).
        max_in_flight: Requests running at once on this backend. Ollama runs
            ``OLLAMA_NUM_PARALLEL`` requests per model (default 1) and queues the
            rest, so a higher value only moves the queue into Ollama.
        max_in_flight_per_model: Requests per model running at once on this
            backend: set it to the host's ``OLLAMA_NUM_PARALLEL`` (default 1
            in recent Ollama). Requests beyond it wait here, where they can
            still go to another host with a free slot, instead of queueing
            inside Ollama. Default: no per-model limit. A request naming no
            model is not counted per model.
        max_loaded_models: The host's ``OLLAMA_MAX_LOADED_MODELS`` (Ollama's
            default: 3 per GPU, 3 on CPU). With ``[router] balance = "warm"``
            a model not loaded there is not sent to it while every loaded
            model has requests of ours in flight (the load would evict one in
            use), if another host can take it. Default: unknown (not checked).
        weight: Share of the load among backends of equal priority, relative
            (2.0 takes about twice the requests of 1.0 at the same latency).
        max_queue: Requests waiting for a slot; beyond it the backend is full
            and the router moves on at once. When every backend is full, a
            request waits for a slot on the best one (until its deadline)
            instead of failing ``ServerBusy``.
        trust_env: Read proxy settings and .netrc from the environment.
        n_ctx: ``local`` only: context window, tokens.
        embeddings: ``local`` only: load the model so that it can also embed
            (``Runtime.embed``); chat answers stay the same.
        max_tokens: ``local`` and ``anthropic``: completion cap when a request sets
            no ``num_predict``, tokens.
    """

    kind: ProviderKind | None = None
    enabled: bool = True
    base_url: str | None = None
    api_key_env: str | None = None
    allow_insecure_key: bool = False
    headers: dict[str, str] = {}
    model: str | None = None
    models: list[str] = []
    serve_any_model: bool = False
    timeout: Seconds = 300.0
    connect_timeout: Seconds = 3.0
    priority: int | None = None
    keep_alive: KeepAliveSeconds | str | None = None
    max_in_flight: PositiveCount = 4
    max_queue: Count = 64
    max_in_flight_per_model: PositiveCount | None = None
    max_loaded_models: PositiveCount | None = None
    weight: Annotated[float, msgspec.Meta(gt=0, le=1e6)] = 1.0
    trust_env: bool = False
    n_ctx: PositiveCount = 4096
    embeddings: bool = False
    max_tokens: PositiveCount = 256


class RouterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[router]`` table.

    Attributes:
        order: Backend names in priority order; default: the order of the
            ``[provider.*]`` tables.
        request_timeout: Default deadline of a whole request (queueing, fallback
            and generation), seconds.
        max_buffered_events: Events buffered per request before the backend waits
            for the caller to read.
        retries: Extra rounds per request after every candidate failed with a
            retryable error (503/busy, timeout, 5xx or a dropped connection; never
            a refused connection or a bad request). Each round waits the backoff.
        retry_backoff: First backoff, seconds; it doubles each round, with
            jitter (50–100 %), and a server's ``Retry-After`` wins when longer.
        max_retry_backoff: Cap of the backoff, seconds.
        mid_stream: Default policy when a stream breaks after its first chunk:
            ``"error"`` raises ``StreamInterrupted`` (with the partial text);
            ``"restart"`` emits a ``Restart`` event and runs the request again on
            the next backend. ``Runtime.submit(..., mid_stream=...)`` overrides it.
        allow_substitute: Whether a backend configured with ``serve_any_model``
            may answer a request for a model it does not have with its own
            model. The answer then says so (``Done.substituted_for``).
            ``Runtime.submit(..., allow_substitute=...)`` overrides it per
            request; with ``False`` such a backend takes only requests for its
            own models (or naming none).
        balance: How requests are shared among backends of *equal* priority
            (priorities themselves always come first):
            ``"priority"``: fewest requests in flight, then configured order;
            ``"least_loaded"``: power of two choices on requests in flight ×
            latency EWMA ÷ ``weight``;
            ``"warm"`` (default): as ``least_loaded``, but hosts where the
            model is loaded (Ollama ``/api/ps``, read on the health interval,
            and answers) first, never one whose slots for the model are full
            while another is free, and not one where loading the model would
            evict a model in use. See :mod:`rubberduck.actors.balance`.
        cold_load_threshold: An answer whose ``load_duration`` is above this,
            seconds, was a cold load (the host had to load the model).
    """

    order: list[str] = []
    request_timeout: Seconds = 600.0
    max_buffered_events: PositiveCount = 4096
    retries: Count = 2
    retry_backoff: SecondsOrZero = 0.1
    max_retry_backoff: SecondsOrZero = 2.0
    mid_stream: Literal["error", "restart"] = "error"
    allow_substitute: bool = True
    balance: Literal["priority", "least_loaded", "warm"] = "warm"
    cold_load_threshold: SecondsOrZero = 0.5


class HealthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[health]`` table (the policy: :mod:`rubberduck.actors.breaker`).

    Attributes:
        interval: Seconds between probes of a backend whose circuit is closed.
        timeout: Seconds a probe may take.
        failure_threshold: Failed requests in a row (no success between) that
            open a circuit; a refused connection opens it at once. High enough
            that a backend failing now and then does not reach it by chance.
        failure_rate: Share of failed requests (0–1) within ``window`` that
            opens a circuit, once ``min_requests`` were seen there; catches a
            backend that fails often but not in a row.
        window: The failure-rate window, seconds; also the flap window (a
            circuit re-opening this soon after a probe closed it).
        min_requests: Requests in the window before the rate counts.
        cooldown: Seconds an open circuit waits before a half-open probe, and
            between probes while they fail, however long the backend is down.
        max_cooldown: Cap of the wait before the first probe when a circuit
            flaps (it doubles at each re-open within ``window``).
        catalogue_ttl: Seconds between reads of a backend's model list; 0 reads
            it with every probe, so a model pulled later is routed there within
            one ``interval``.
    """

    interval: Seconds = 5.0
    timeout: Seconds = 2.0
    failure_threshold: PositiveCount = 6
    failure_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    window: Seconds = 30.0
    min_requests: PositiveCount = 20
    cooldown: SecondsOrZero = 1.0
    max_cooldown: SecondsOrZero = 60.0
    catalogue_ttl: SecondsOrZero = 0.0


class SupervisorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[supervisor]`` table: OTP restart intensity of the runtime's actors
    (the strategy is ``one_for_one``: each backend's actor fails alone).

    Attributes:
        max_restarts: Restarts allowed within ``within`` seconds; one more and
            the supervisor stops every actor and the runtime reports why.
        within: The intensity window, seconds.
    """

    max_restarts: Count = 3
    within: Seconds = 5.0


class CostConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[cost]`` table.

    Attributes:
        prices: Model → ``{input = USD, output = USD}`` per million tokens, over
            the shipped defaults (``rubberduck.cost.DEFAULT_PRICES``, dated
            ``PRICES_AS_OF``). A name also prices the models it is a prefix of.
        shadow_model: Price local answers as if this cloud model had produced
            the same tokens (``Done.shadow_cost_usd``); it needs a price.
    """

    prices: dict[str, Price] = {}
    shadow_model: str | None = None


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The ``[cluster]`` table: runtimes (replicas) sharing one Redis hold each
    backend's ``max_in_flight`` (and ``max_in_flight_per_model``, per model)
    together and share circuit state, catalogues, ``/api/ps`` residency and
    usage totals (:mod:`rubberduck.cluster`; needs the ``cluster`` extra).
    Without the table nothing is shared and ``redis`` is never imported.
    ``max_queue`` holds per runtime; backends are identified across replicas by
    their name (``[provider.NAME]``), so every replica must give one host one
    name, and different hosts different names.

    Attributes:
        redis_url: The Redis server, e.g. ``"redis://127.0.0.1:6379/0"``.
        slot_ttl: Seconds a slot lease lives without renewal: a replica that
            dies frees its slots within this time. Leases of running requests
            are renewed every ``slot_ttl / 3``; at least 3 × ``socket_timeout``.
        key_prefix: Prefix of every Redis key, so that several fleets can
            share one Redis (``PREFIX:slots:BACKEND``, ...).
        socket_timeout: Seconds a Redis call may take before the runtime
            carries on with its local state (keep it short: taking a slot is
            on the request's path).
        retry_after: Seconds without calling Redis after it failed (requests
            use local limits meanwhile), then it is tried again.
        sync_interval: Seconds between reads of the shared state (circuits,
            catalogues, residency) and writes of usage totals.
        slot_poll: Longest wait, seconds, between two tries for a slot when
            every slot of a backend is taken across the cluster.
    """

    redis_url: str
    slot_ttl: Annotated[float, msgspec.Meta(ge=0.1, le=3600.0)] = 10.0
    key_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "rubberduck"
    socket_timeout: Annotated[float, msgspec.Meta(gt=0, le=10.0)] = 0.25
    retry_after: Annotated[float, msgspec.Meta(gt=0, le=300.0)] = 1.0
    sync_interval: Annotated[float, msgspec.Meta(ge=0.01, le=60.0)] = 0.5
    slot_poll: Annotated[float, msgspec.Meta(ge=0.001, le=5.0)] = 0.05

    def __post_init__(self) -> None:
        """Raises:
        ConfigError: ``slot_ttl`` is under 3 × ``socket_timeout`` (leases are
            renewed every ``slot_ttl / 3`` and a renewal may take
            ``socket_timeout``: a shorter TTL loses leases to a slow Redis).
        """
        if self.slot_ttl < 3 * self.socket_timeout:
            raise ConfigError(
                f"[cluster] slot_ttl ({self.slot_ttl:g} s) must be at least 3 × "
                f"socket_timeout ({self.socket_timeout:g} s): leases are renewed every "
                f"slot_ttl / 3 and a renewal may take socket_timeout — raise slot_ttl "
                f"to {3 * self.socket_timeout:g} or lower socket_timeout"
            )


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole configuration.

    Attributes:
        provider: Backend name → its table.
        router: Routing settings.
        health: Health-probe and circuit-breaker settings.
        supervisor: Restart intensity.
        cost: Prices and the shadow model.
        cluster: Shared limits and state in Redis; ``None``: this runtime alone.
    """

    provider: dict[str, ProviderConfig] = {}
    router: RouterConfig = RouterConfig()
    health: HealthConfig = HealthConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    cost: CostConfig = CostConfig()
    cluster: ClusterConfig | None = None

    def backends(self) -> list[tuple[str, ProviderConfig]]:
        """Enabled backends in routing order, each with its ``kind`` filled in.

        Raises:
            ConfigError: ``router.order`` names an unknown backend, or a table's
                kind cannot be told.
        """
        names = self.router.order or list(self.provider)
        for name in names:
            if name not in self.provider:
                raise ConfigError(
                    f"[router] order names {name!r}, but there is no [provider.{name}] table"
                )
        out = []
        for name in names:
            cfg = self.provider[name]
            if not cfg.enabled:
                continue
            kind = cfg.kind or name
            if kind not in get_args(ProviderKind):
                kinds = ", ".join(f'"{k}"' for k in get_args(ProviderKind))
                raise ConfigError(f"[provider.{name}] needs kind = one of {kinds} (got {kind!r})")
            out.append((name, msgspec.structs.replace(cfg, kind=kind)))
        return out


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> Config:
    """Read a configuration from a TOML file path or a mapping of the same shape.

    Raises:
        ConfigError: the file is missing, not UTF-8 or not TOML, or a value has
            the wrong type, an unknown key or is out of range (a timeout that is
            not a finite number of seconds above 0, a negative count, a
            ``failure_rate`` outside 0–1); the message names the key.
    """
    if isinstance(source, Mapping):
        return _convert(dict(source), "invalid configuration")
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"a configuration is a TOML file path or a mapping (got {type(source).__name__})"
        )
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        table = msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (TOML must be): {exc.reason}") from None
    return _convert(table, f"invalid configuration in {path}")


def _convert(table: Any, what: str) -> Config:
    """The :class:`Config` for a decoded table; a bad value's error names its key
    (msgspec writes a backend's table as ``$.provider[...]``: this names it)."""
    try:
        return msgspec.convert(table, Config)
    except msgspec.ValidationError as exc:
        message = str(exc)
    providers = table.get("provider") if isinstance(table, dict) else None
    if "$.provider[...]" in message and isinstance(providers, dict):
        for name, cfg in providers.items():
            try:
                msgspec.convert(cfg, ProviderConfig)
            except msgspec.ValidationError as exc:
                message = str(exc).replace("$", f"$.provider[{name!r}]", 1)
                break
    raise ConfigError(f"{what}: {message}") from None


def default_config() -> Config:
    """Ollama (``OLLAMA_HOST`` or 127.0.0.1:11434, model ``llama3.2``) first, then
    the embedded model as a last resort that answers any request."""
    return Config(
        provider={
            "ollama": ProviderConfig(
                kind="ollama", model=os.environ.get("RUBBERDUCK_MODEL", "llama3.2")
            ),
            "local": ProviderConfig(kind="local", serve_any_model=True, max_in_flight=1),
        },
        router=RouterConfig(order=["ollama", "local"]),
    )
