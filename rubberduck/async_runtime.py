"""AsyncRuntime: the asyncio twin of :class:`~rubberduck.runtime.Runtime`.

>>> async with AsyncRuntime.default() as rt:                       # doctest: +SKIP
...     reply = await rt.chat(messages=[{"role": "user", "content": "hi"}])
...     async for event in await rt.chat(messages=[...], stream=True):
...         ...

Same constructors and method names as ``Runtime`` (as ``ollama.AsyncClient`` is
to ``ollama.Client``), awaitable. Underneath is one ``Runtime``: its actors and
worker threads serve every event loop the AsyncRuntime is used from (several
``asyncio.run`` in turn, uvloop); each request's events reach the loop that
submitted it with ``loop.call_soon_threadsafe``.

Nothing blocks the event loop. Construction only checks the configuration (and
:meth:`from_config` reads the file); the actors start in a worker thread at
``async with`` (or :meth:`start`, or the first request), and :meth:`close` stops
them in one too.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, cast, overload

from rubberduck.async_admin import AsyncModelAdmin
from rubberduck.channels import LoopChannel
from rubberduck.config import Config, default_config, load_config
from rubberduck.cost import UsageReport
from rubberduck.errors import ConfigError, ProviderUnavailable
from rubberduck.handle import AsyncRequestHandle
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
)
from rubberduck.ollama_options import OptionValue
from rubberduck.request_methods import prepare
from rubberduck.runtime import Runtime

__all__ = ["AsyncRuntime"]


class AsyncRuntime(AsyncModelAdmin):
    """A supervised set of backends with health checks and fallback, for asyncio.

    Use it as ``async with`` (which starts it and closes it), or call
    :meth:`start` and :meth:`close`. Requests (:meth:`chat`, :meth:`generate`,
    :meth:`embed`) start it if needed; :meth:`submit`, which is not awaitable,
    needs it started. Model management (``list``, ``show``, ``ps``, ``pull``, ...)
    is :class:`~rubberduck.async_admin.AsyncModelAdmin`'s.

    Cancelling a task that awaits a request (``asyncio.timeout``, a
    ``TaskGroup``, a client disconnect), or leaving an ``async for`` over its
    events early, cancels the request and closes its HTTP connection.

    Args:
        config: The configuration (see :mod:`rubberduck.config`).

    Raises:
        ConfigError: ``config`` is not a :class:`Config` or has no enabled
            backend; other bad values are raised by :meth:`start`.
    """

    def __init__(self, config: Config) -> None:
        if not isinstance(config, Config):
            raise ConfigError(
                f"AsyncRuntime takes a Config (got {type(config).__name__}) — use "
                "AsyncRuntime.from_config(path or dict)"
            )
        if not config.backends():
            raise ConfigError("no enabled backend — add a [provider.NAME] table")
        self.config = config
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()  # not asyncio's: the runtime outlives loops
        self._closed = False

    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | Mapping[str, Any]) -> AsyncRuntime:
        """An async runtime for a TOML file path or a mapping (as
        :meth:`Runtime.from_config <rubberduck.runtime.Runtime.from_config>`).

        Raises:
            ConfigError: the file cannot be read or a value is invalid.
        """
        return cls(load_config(source))

    @classmethod
    def default(cls) -> AsyncRuntime:
        """As :meth:`Runtime.default <rubberduck.runtime.Runtime.default>`."""
        return cls(default_config())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._runtime else "not started"
        return f"<AsyncRuntime {state} backends={[n for n, _ in self.config.backends()]}>"

    # --- life -----------------------------------------------------------------------

    def _start_blocking(self) -> Runtime:
        with self._lock:
            if self._closed:
                raise ProviderUnavailable("the AsyncRuntime is closed — create a new one")
            if self._runtime is None:
                self._runtime = Runtime(self.config)
            return self._runtime

    async def _started(self) -> Runtime:
        runtime = self._runtime
        if runtime is not None and not self._closed:
            return runtime
        return await asyncio.to_thread(self._start_blocking)

    async def start(self) -> AsyncRuntime:
        """Start the actors (in a worker thread); idempotent.

        Raises:
            ConfigError: a value of the configuration is invalid.
            ProviderUnavailable: the runtime was closed.
        """
        await self._started()
        return self

    async def close(self, timeout: float = 10.0) -> None:
        """Cancel the requests still running, stop every actor and thread, close
        connections (in a worker thread); idempotent.

        Args:
            timeout: Seconds to wait for each actor to stop.
        """
        await asyncio.to_thread(self._close_blocking, timeout)

    def _close_blocking(self, timeout: float) -> None:
        with self._lock:  # waits for a start under way: it runs off the loop too
            self._closed = True
            runtime = self._runtime
        if runtime is not None:
            runtime.close(timeout)

    aclose = close

    async def __aenter__(self) -> AsyncRuntime:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def escalation(self) -> str | None:
        """As :attr:`Runtime.escalation <rubberduck.runtime.Runtime.escalation>`."""
        return None if self._runtime is None else self._runtime.escalation

    def _running(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            raise ProviderUnavailable(
                "the AsyncRuntime is not started — use `async with` or `await rt.start()`"
            )
        return runtime

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
    ) -> AsyncRequestHandle:
        """Start a request without waiting, from a task on the running loop; its
        events come to this loop. Arguments, checks and errors as
        :meth:`Runtime.submit <rubberduck.runtime.Runtime.submit>`.

        Returns:
            An :class:`~rubberduck.handle.AsyncRequestHandle`: ``async for`` its
            events, ``await handle.result()``, ``handle.cancel()``; read it from
            this loop.

        Hand-off to the Router is a non-blocking ``tell``, except while the
        Router is being restarted by its supervisor (then up to a second, as
        for :meth:`Runtime.submit <rubberduck.runtime.Runtime.submit>`).

        Raises:
            ProviderUnavailable: the runtime is not started, closed, or its
                supervisor gave up.
            RuntimeError: no event loop is running in this thread.
        """
        runtime = self._running()
        channel = LoopChannel(asyncio.get_running_loop(), self.config.router.max_buffered_events)
        state = runtime._start_request(
            request,
            channel,
            timeout=timeout,
            mid_stream=mid_stream,
            backends=backends,
            fallback=fallback,
            allow_substitute=allow_substitute,
        )
        return AsyncRequestHandle(state, channel)

    async def _call(self, kind: Any, args: dict[str, Any]) -> Any:
        """Build, start and (unless streamed) wait for one request method's call."""
        call = prepare(kind, args)
        await self._started()
        handle = self.submit(call.request, **call.routing)
        return handle if call.stream else await handle.result()

    @overload
    async def chat(
        self,
        model: str | None = ...,
        messages: Iterable[Message | Mapping[str, Any]] | None = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        stream: Literal[False] = ...,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> ChatResponse: ...

    @overload
    async def chat(
        self,
        model: str | None = ...,
        messages: Iterable[Message | Mapping[str, Any]] | None = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        stream: Literal[True],
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> AsyncRequestHandle: ...

    async def chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Literal["", "json"] | dict[str, Any] | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> ChatResponse | AsyncRequestHandle:
        """Chat with a model: arguments, answer and errors as
        :meth:`Runtime.chat <rubberduck.runtime.Runtime.chat>`; with
        ``stream=True`` an :class:`~rubberduck.handle.AsyncRequestHandle`."""
        return cast(ChatResponse | AsyncRequestHandle, await self._call(ChatRequest, locals()))

    async def stream_chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> AsyncRequestHandle:
        """``await chat(..., stream=True)``; takes :meth:`chat`'s keyword arguments."""
        handle: AsyncRequestHandle = await self.chat(model, messages, stream=True, **kwargs)
        return handle

    @overload
    async def generate(
        self,
        model: str | None = ...,
        prompt: str = ...,
        suffix: str | None = ...,
        *,
        system: str | None = ...,
        template: str | None = ...,
        context: Sequence[int] | None = ...,
        stream: Literal[False] = ...,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        raw: bool | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        images: Sequence[str | bytes | os.PathLike[str]] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> GenerateResponse: ...

    @overload
    async def generate(
        self,
        model: str | None = ...,
        prompt: str = ...,
        suffix: str | None = ...,
        *,
        system: str | None = ...,
        template: str | None = ...,
        context: Sequence[int] | None = ...,
        stream: Literal[True],
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        raw: bool | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        images: Sequence[str | bytes | os.PathLike[str]] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> AsyncRequestHandle: ...

    async def generate(
        self,
        model: str | None = None,
        prompt: str = "",
        suffix: str | None = None,
        *,
        system: str | None = None,
        template: str | None = None,
        context: Sequence[int] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool | None = None,
        format: Literal["", "json"] | dict[str, Any] | None = None,
        images: Sequence[str | bytes | os.PathLike[str]] | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> GenerateResponse | AsyncRequestHandle:
        """Complete a prompt: as :meth:`Runtime.generate
        <rubberduck.runtime.Runtime.generate>`; with ``stream=True`` an
        :class:`~rubberduck.handle.AsyncRequestHandle`."""
        return cast(
            GenerateResponse | AsyncRequestHandle, await self._call(GenerateRequest, locals())
        )

    async def embed(
        self,
        model: str | None = None,
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        *,
        timeout: float | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> EmbedResponse:
        """Embed one text or several: as :meth:`Runtime.embed
        <rubberduck.runtime.Runtime.embed>`."""
        return cast(EmbedResponse, await self._call(EmbedRequest, locals()))

    # --- control --------------------------------------------------------------------

    async def health(self, timeout: float = 5.0) -> dict[str, BackendHealth]:
        """As :meth:`Runtime.health <rubberduck.runtime.Runtime.health>`, off the loop."""
        return await asyncio.to_thread((await self._started()).health, timeout)

    async def wait_for_probes(self, timeout: float = 5.0) -> dict[str, BackendHealth]:
        """As :meth:`Runtime.wait_for_probes
        <rubberduck.runtime.Runtime.wait_for_probes>`, off the loop."""
        return await asyncio.to_thread((await self._started()).wait_for_probes, timeout)

    async def models(self, timeout: float = 5.0) -> dict[str, list[str] | Exception]:
        """As :meth:`Runtime.models <rubberduck.runtime.Runtime.models>`, off the loop."""
        return await asyncio.to_thread((await self._started()).models, timeout)

    async def cluster_usage(self) -> UsageReport:
        """As :meth:`Runtime.cluster_usage
        <rubberduck.runtime.Runtime.cluster_usage>` (a Redis read), off the loop."""
        return await asyncio.to_thread((await self._started()).cluster_usage)

    def usage(self) -> UsageReport:
        """As :meth:`Runtime.usage <rubberduck.runtime.Runtime.usage>` (not awaitable).

        Raises:
            ProviderUnavailable: the runtime is not started.
        """
        return self._running().usage()

    def subscribe_usage(self, callback: Callable[[Done], None]) -> Callable[[], None]:
        """As :meth:`Runtime.subscribe_usage
        <rubberduck.runtime.Runtime.subscribe_usage>`: ``callback`` runs in a worker
        thread, not on the loop.

        Raises:
            ProviderUnavailable: the runtime is not started.
        """
        return self._running().subscribe_usage(callback)
