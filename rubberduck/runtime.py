"""The Runtime: the one object a service embeds.

>>> with Runtime.default() as rt:                                  # doctest: +SKIP
...     reply = rt.chat(messages=[{"role": "user", "content": "hi"}])
...     print(reply.message.content, reply.provider)
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import msgspec
import pykka

from rubberduck.actors.health import HEALTH, HealthMonitor
from rubberduck.actors.provider import ROUTER, Load, ProviderActor, provider_actor_name
from rubberduck.actors.router import Backoff, Route, Router
from rubberduck.actors.supervisor import ChildSpec, Registry, Supervisor
from rubberduck.config import Config, ProviderConfig, default_config, load_config
from rubberduck.cost import UsageLedger, UsageReport, find_price
from rubberduck.deadlines import DeadlineWatch
from rubberduck.errors import Cancelled, ConfigError, InvalidRequest, ProviderUnavailable
from rubberduck.handle import RequestHandle
from rubberduck.messages import (
    AnyRequest,
    BackendHealth,
    ChatRequest,
    ChatResponse,
    Done,
    EmbedRequest,
    EmbedResponse,
    GenerateRequest,
    GenerateResponse,
    Message,
    Snapshot,
    Submit,
)
from rubberduck.model_admin import ModelAdmin
from rubberduck.providers import create_provider
from rubberduck.providers.base import Provider

__all__ = ["Runtime"]

log = logging.getLogger("rubberduck")


class Runtime(ModelAdmin):
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
        ConfigError: the configuration has no enabled backend or a bad value.

    Attributes:
        escalation: ``None`` while the runtime runs; the reason once its
            supervisor gave up (by default more than 3 actor restarts in 5 s). It is also
            logged at ERROR on ``rubberduck.supervisor``; every request still
            running then fails, and :meth:`health` and :meth:`submit` raise.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        backends = config.backends()
        if not backends:
            raise ConfigError("no enabled backend — add a [provider.NAME] table")
        _check_timeout(config.router.request_timeout, ConfigError, "[router] request_timeout")
        self.providers: dict[str, Provider] = {}
        try:
            for name, cfg in backends:
                self.providers[name] = create_provider(name, cfg)
            self._start(config, backends)
        except BaseException:
            if (deadlines := getattr(self, "_deadlines", None)) is not None:
                deadlines.stop()
            for provider in self.providers.values():
                provider.close()
            raise

    def _start(self, config: Config, backends: list[tuple[str, ProviderConfig]]) -> None:
        self._handles: dict[int, RequestHandle] = {}
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
        self._deadlines = DeadlineWatch()
        routes = [
            Route(
                name,
                tuple(cfg.models),
                cfg.serve_any_model,
                cfg.priority if cfg.priority is not None else i,
                self.providers[name].supports_feature("embeddings"),
            )
            for i, (name, cfg) in enumerate(backends)
        ]
        rc = config.router
        backoff = Backoff(rc.retries, rc.retry_backoff, rc.max_retry_backoff)
        specs = [ChildSpec(HEALTH, self._starter(HealthMonitor, self.providers, config.health))]
        for name, cfg in backends:
            specs.append(ChildSpec(provider_actor_name(name), self._provider_starter(name, cfg)))
        specs.append(ChildSpec(ROUTER, self._starter(Router, routes, self._load, backoff)))
        self._supervisor = Supervisor.start(
            specs,
            self._registry,
            max_restarts=config.supervisor.max_restarts,
            within_s=config.supervisor.within,
            on_escalate=self._escalated,
        )
        # Wait until the supervisor's on_start has started every child.
        self._supervisor.ask(None)

    def _starter(self, cls: type[pykka.ThreadingActor], *args: Any) -> Any:
        registry = self._registry
        return lambda: cls.start(registry, *args)

    def _provider_starter(self, name: str, cfg: ProviderConfig) -> Any:
        registry, provider, load = self._registry, self.providers[name], self._load
        return lambda: ProviderActor.start(
            registry,
            provider,
            load,
            max_in_flight=cfg.max_in_flight,
            max_queue=cfg.max_queue,
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
    ) -> RequestHandle:
        """Start a request without waiting; returns its handle at once.

        Args:
            request: A :class:`ChatRequest`, :class:`GenerateRequest` or
                :class:`EmbedRequest`.
            timeout: Deadline of the whole request (queueing, retries, fallback
                and generation), seconds; default ``[router] request_timeout``.
            mid_stream: When the stream breaks after its first chunk:
                ``"error"`` raises :class:`StreamInterrupted` carrying the partial
                text; ``"restart"`` yields a :class:`Restart` event and then the
                whole answer from the next backend. Default ``[router] mid_stream``.

        Returns:
            A :class:`RequestHandle`: iterate it for events, call ``result()`` for
            the whole answer, ``cancel()`` to stop it.

        Raises:
            ProviderUnavailable: the runtime is closed or its supervisor gave up.
        """
        if self._closed or self.escalation is not None:
            why = self.escalation or "the runtime is closed"
            raise ProviderUnavailable(f"cannot submit: {why} — create a new Runtime")
        rc = self.config.router
        if timeout is not None:
            _check_timeout(timeout, InvalidRequest, "timeout")
        handle = RequestHandle(
            request,
            timeout=timeout if timeout is not None else rc.request_timeout,
            max_buffered=rc.max_buffered_events,
            mid_stream=mid_stream or rc.mid_stream,
        )
        with self._lock:
            self._handles[handle.id] = handle
        handle.on_finish = self._forget
        handle.pricer = self._ledger.price
        self._deadlines.watch(handle)
        # Waits (up to a second) only while the router is being restarted.
        if not self._registry.tell_eventually(ROUTER, Submit(handle), handle.time_left()):
            handle.fail(ProviderUnavailable("the router is not running — create a new Runtime"))
        return handle

    def _forget(self, handle: RequestHandle) -> None:
        with self._lock:
            self._handles.pop(handle.id, None)
        self._deadlines.ended()

    def chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] = (),
        *,
        stream: bool = False,
        options: Mapping[str, Any] | None = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        tools: list[dict[str, Any]] | None = None,
        think: bool | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        **extra_options: Any,
    ) -> ChatResponse | RequestHandle:
        """Chat with a model (Ollama ``/api/chat`` semantics).

        Args:
            model: Model name; ``None`` lets each backend use its default model.
            messages: ``{"role": ..., "content": ...}`` mappings or :class:`Message`.
            stream: Return a :class:`RequestHandle` to iterate for events
                (``Delta``, ``ToolCall``, then ``Done``) instead of waiting.
            options: Ollama options (``temperature``, ``num_predict`` tokens, ...).
            format: ``"json"`` or a JSON schema.
            keep_alive: Seconds or a duration string (``"5m"``).
            tools: Tool definitions (function schema).
            think: Thinking mode, for models that have one.
            timeout: Deadline of the whole request, seconds.
            mid_stream: ``"error"`` or ``"restart"``: see :meth:`submit`.
            **extra_options: Merged into ``options`` (``temperature=0.2``).

        Returns:
            A :class:`ChatResponse` (``.message.content``, ``.done_reason``,
            ``.usage``, ``.provider``, ``.cost_usd``), or a :class:`RequestHandle`
            when ``stream=True``.

        Raises:
            InvalidRequest: a message is malformed.
            AllProvidersFailed: no backend could serve it (``.causes`` says why).
            RequestTimeout, StreamInterrupted, ...: see :mod:`rubberduck.errors`.
        """
        request = ChatRequest(
            model=model,
            messages=_messages(messages),
            stream=stream,
            options=_options(options, extra_options),
            format=format,
            keep_alive=keep_alive,
            tools=tools,
            think=think,
        )
        handle = self.submit(request, timeout=timeout, mid_stream=mid_stream)
        return handle if stream else cast(ChatResponse, handle.result())

    def stream_chat(
        self, model: str | None = None, messages: Iterable[Any] = (), **kwargs: Any
    ) -> RequestHandle:
        """``chat(..., stream=True)``: an iterable of events that can be closed early."""
        handle = self.chat(model, messages, stream=True, **kwargs)
        assert isinstance(handle, RequestHandle)
        return handle

    def generate(
        self,
        model: str | None = None,
        prompt: str = "",
        *,
        stream: bool = False,
        system: str | None = None,
        suffix: str | None = None,
        template: str | None = None,
        raw: bool | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        think: bool | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        **extra_options: Any,
    ) -> GenerateResponse | RequestHandle:
        """Complete a prompt (Ollama ``/api/generate`` semantics).

        Arguments and errors are as for :meth:`chat`, plus ``system``, ``suffix``,
        ``template`` and ``raw`` (send the prompt without the model's template).

        Returns:
            A :class:`GenerateResponse` (``.response``, ``.done_reason``,
            ``.usage``, ``.provider``), or a :class:`RequestHandle` when
            ``stream=True``.
        """
        request = GenerateRequest(
            model=model,
            prompt=prompt,
            system=system,
            suffix=suffix,
            template=template,
            raw=raw,
            stream=stream,
            options=_options(options, extra_options),
            format=format,
            keep_alive=keep_alive,
            think=think,
        )
        handle = self.submit(request, timeout=timeout, mid_stream=mid_stream)
        return handle if stream else cast(GenerateResponse, handle.result())

    def embed(
        self,
        model: str | None = None,
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        *,
        timeout: float | None = None,
    ) -> EmbedResponse:
        """Embed one text or several (Ollama ``/api/embed`` semantics), routed and
        falling back like a chat, to backends that can embed.

        Args:
            model: Embedding model; ``None`` lets each backend use its default.
            input: A text, or a list of texts.
            truncate: Cut inputs longer than the context (Ollama's default) or
                fail on them (``False``).
            options: Model options.
            keep_alive: Seconds or a duration string (``"5m"``).
            dimensions: Keep the first N values (models that allow it).
            timeout: Deadline of the whole request, seconds.

        Returns:
            An :class:`EmbedResponse`: ``.embeddings`` (one unit-length vector per
            input, in order), ``.model``, ``.provider``, ``.usage``.

        Raises:
            AllProvidersFailed: no backend could embed (``.causes`` says why).
            RequestTimeout, InvalidRequest, ...: see :mod:`rubberduck.errors`.
        """
        request = EmbedRequest(
            model=model,
            input=input if isinstance(input, str) else list(input),
            truncate=truncate,
            dimensions=dimensions,
            options=dict(options) if options else None,
            keep_alive=keep_alive,
        )
        return cast(EmbedResponse, self.submit(request, timeout=timeout).result())

    # --- control --------------------------------------------------------------------

    def health(self, timeout: float = 5.0) -> dict[str, BackendHealth]:
        """Each backend's circuit state, last error and latency percentiles.

        Raises:
            ProviderUnavailable: the supervisor gave up after too many restarts
                (the message gives its reason, as does :attr:`escalation`), or
                the HealthMonitor did not answer within ``timeout`` seconds.
        """
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

    def subscribe_usage(self, callback: Callable[[Done], None]) -> Callable[[], None]:
        """Call ``callback(done)`` with every finished request's ``Done`` (cost and
        usage filled in), in the worker thread that finished it: keep it quick;
        an exception in it is logged, not raised. Returns an unsubscribe function."""
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
            self._registry.cancel_timers()
            self._deadlines.stop()
            for thread in self._registry.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout)
            for pool in self._registry.leftovers:
                pool.shutdown(wait=True)
            for provider in self.providers.values():
                provider.close()

    def _escalated(self, reason: str) -> None:
        self.escalation = reason
        with self._lock:
            pending = list(self._handles.values())
        for handle in pending:
            handle.fail(ProviderUnavailable(f"the runtime stopped: {reason}"))


def _messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
            continue
        try:
            out.append(msgspec.convert(m, Message))
        except (msgspec.ValidationError, TypeError) as exc:
            raise InvalidRequest(
                f"messages[{i}] is not a chat message ({exc}) — use "
                '{"role": "user", "content": "..."}'
            ) from None
    if not out:
        raise InvalidRequest('no messages — pass messages=[{"role": "user", "content": "..."}]')
    return out


def _options(options: Mapping[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any] | None:
    if not options and not extra:
        return None
    return {**(options or {}), **extra}


def _check_timeout(value: float, error: type[ConfigError | InvalidRequest], what: str) -> None:
    """A deadline must be a finite number of seconds above zero."""
    if not (math.isfinite(value) and value > 0):
        raise error(f"{what} must be a number of seconds above 0 (got {value!r})")
