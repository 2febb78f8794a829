"""Model management for :class:`~rubberduck.async_runtime.AsyncRuntime`: the
methods of :class:`~rubberduck.model_admin.ModelAdmin`, awaitable.

Each call is one blocking HTTP exchange with one Ollama server, run off the
event loop (``asyncio.to_thread``). A progress stream (``pull``, ``push``,
``create`` with ``stream=True``) is an async iterator fed by one thread for the
whole transfer, through a :class:`~rubberduck.channels.LoopChannel`; leaving it
early (``break``, ``aclose()``, the task cancelled) closes the connection at
once, even while the server is silent.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from rubberduck.channels import LoopChannel
from rubberduck.messages import Message
from rubberduck.model_admin import ModelAdmin
from rubberduck.ollama_types import Progress
from rubberduck.providers.base import CancelScope

if TYPE_CHECKING:
    from rubberduck.runtime import Runtime

__all__ = ["AsyncModelAdmin"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Progress items a transfer may have sent ahead of the reader.
_PROGRESS_BUFFER = 64
_END = object()


def _off_loop(
    method: Callable[Concatenate[ModelAdmin, _P], _T],
) -> Callable[Concatenate[AsyncModelAdmin, _P], Coroutine[Any, Any, _T]]:
    """``method`` of the started runtime, run in a worker thread."""

    async def run(self: AsyncModelAdmin, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        runtime = await self._started()
        return await asyncio.to_thread(method, runtime, *args, **kwargs)

    functools.update_wrapper(run, method)
    return run


async def _progress(
    open_stream: Callable[..., Iterator[Progress]],
) -> AsyncIterator[Progress]:
    """The items of ``open_stream(scope=scope)``, read by one worker thread and
    delivered to this loop; closing this iterator cancels ``scope``."""
    loop = asyncio.get_running_loop()
    channel = LoopChannel(loop, _PROGRESS_BUFFER)
    scope = CancelScope()
    stop = threading.Event()

    def pump() -> None:
        try:
            items = open_stream(scope=scope)
            try:
                for item in items:
                    while not channel.put(item, 0.05):
                        if stop.is_set() or channel.gone:
                            return
                    if stop.is_set():
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # a generator: closes the connection
            channel.put_final(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            channel.put_final(exc)

    loop.run_in_executor(None, pump)
    try:
        while (item := await channel.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        scope.cancel()


class AsyncModelAdmin:
    """``list``, ``show``, ``ps``, ``pull``, ``push``, ``create``, ``create_blob``,
    ``copy``, ``delete``, ``version``, ``embeddings``, ``ensure_model``,
    ``warm_up``, ``unload``: as :class:`~rubberduck.model_admin.ModelAdmin`,
    awaitable; same arguments, same errors."""

    async def _started(self) -> Runtime:
        raise NotImplementedError

    show = _off_loop(ModelAdmin.show)
    ps = _off_loop(ModelAdmin.ps)
    version = _off_loop(ModelAdmin.version)
    create_blob = _off_loop(ModelAdmin.create_blob)
    copy = _off_loop(ModelAdmin.copy)
    delete = _off_loop(ModelAdmin.delete)
    embeddings = _off_loop(ModelAdmin.embeddings)
    ensure_model = _off_loop(ModelAdmin.ensure_model)
    warm_up = _off_loop(ModelAdmin.warm_up)
    unload = _off_loop(ModelAdmin.unload)

    @overload
    async def pull(
        self,
        model: str,
        *,
        insecure: bool = ...,
        stream: Literal[False] = ...,
        backend: str | None = ...,
        timeout: float | None = ...,
    ) -> Progress: ...

    @overload
    async def pull(
        self,
        model: str,
        *,
        insecure: bool = ...,
        stream: Literal[True],
        backend: str | None = ...,
        timeout: float | None = ...,
    ) -> AsyncIterator[Progress]: ...

    async def pull(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | AsyncIterator[Progress]:
        """Download a model (Ollama ``POST /api/pull``); with ``stream=True`` an
        async iterator of :class:`~rubberduck.ollama_types.Progress`. See
        :meth:`ModelAdmin.pull <rubberduck.model_admin.ModelAdmin.pull>`."""
        ollama = (await self._started()).ollama(backend)
        if stream:
            return _progress(
                functools.partial(ollama.iter_pull, model, insecure=insecure, timeout=timeout)
            )
        return await asyncio.to_thread(
            ollama.pull, model, insecure=insecure, stream=False, timeout=timeout
        )

    async def push(
        self,
        model: str,
        *,
        insecure: bool = False,
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | AsyncIterator[Progress]:
        """Upload a model (Ollama ``POST /api/push``); ``stream`` as for :meth:`pull`."""
        ollama = (await self._started()).ollama(backend)
        if stream:
            return _progress(
                functools.partial(ollama.iter_push, model, insecure=insecure, timeout=timeout)
            )
        return await asyncio.to_thread(
            ollama.push, model, insecure=insecure, stream=False, timeout=timeout
        )

    async def create(
        self,
        model: str,
        *,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        license: str | Sequence[str] | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        messages: Sequence[Message | Mapping[str, Any]] | None = None,
        quantize: str | None = None,
        stream: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> Progress | AsyncIterator[Progress]:
        """Create a model (Ollama ``POST /api/create``); fields as in
        :meth:`ModelAdmin.create <rubberduck.model_admin.ModelAdmin.create>`,
        ``stream`` as for :meth:`pull`."""
        skip = ("self", "model", "stream", "backend")
        fields = {k: v for k, v in locals().items() if k not in skip}
        ollama = (await self._started()).ollama(backend)
        if stream:
            return _progress(functools.partial(ollama.iter_create, model, **fields))
        return await asyncio.to_thread(
            functools.partial(ollama.create, model, stream=False, **fields)
        )

    # Last: from here on ``list`` in this class body is the method.
    list = _off_loop(ModelAdmin.list)
