"""What the caller holds for a submitted request: consumer-only handles.

:class:`RequestHandle` (from :meth:`Runtime.submit
<rubberduck.runtime.Runtime.submit>`) is read by a blocking thread;
:class:`AsyncRequestHandle` (from :meth:`AsyncRuntime.submit
<rubberduck.async_runtime.AsyncRuntime.submit>`) by a task on an event loop. Both
read events, wait for the whole answer, cancel; neither can emit or end the
request otherwise: that is the internal :class:`~rubberduck.request_state.RequestState`'s.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from rubberduck.channels import LoopChannel, ThreadChannel
from rubberduck.errors import RequestTimeout, RubberDuckError
from rubberduck.messages import (
    AnyRequest,
    ChatRequest,
    ChatResponse,
    Done,
    EmbedResponse,
    Event,
    GenerateResponse,
    assemble_chat,
    assemble_generate,
)
from rubberduck.request_state import RequestState

__all__ = ["AsyncRequestHandle", "RequestHandle"]

#: How long a reader waits for the terminal item of a request that has ended.
_TERMINAL_WAIT_S = 1.0


class _Handle:
    """What both handles show of the request (read-only)."""

    def __init__(self, state: RequestState) -> None:
        self._state = state
        self._events: list[Event] = []
        self._outcome: Done | RubberDuckError | None = None  # as the caller saw it

    @property
    def id(self) -> int:
        """Process-unique request number."""
        return self._state.id

    @property
    def request(self) -> AnyRequest:
        """The request as submitted."""
        return self._state.request

    @property
    def timeout(self) -> float:
        """The request's total timeout, seconds."""
        return self._state.timeout

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` value after which the request fails with
        :class:`~rubberduck.errors.RequestTimeout`."""
        return self._state.deadline

    @property
    def finished(self) -> bool:
        """The request has a terminal outcome (which may not be read yet)."""
        return self._state.finished

    @property
    def tried(self) -> tuple[str, ...]:
        """Backends attempted so far, in order (again after a retry round)."""
        return tuple(self._state.tried)

    @property
    def causes(self) -> Mapping[str, RubberDuckError]:
        """Backend name → the last error it gave for this request (read-only)."""
        return MappingProxyType(dict(self._state.causes))

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<{type(self).__name__} #{self.id} model={self.request.model!r} {state}>"

    def _seen(self, item: Any) -> Event:
        """Record one item read from the channel; raises it if it is an error."""
        if isinstance(item, RubberDuckError):
            self._outcome = item
            raise item
        if type(item) is Done:
            self._outcome = item
        self._events.append(item)
        return item  # type: ignore[no-any-return]

    def _answer(self) -> ChatResponse | GenerateResponse | EmbedResponse:
        """The whole answer, once the outcome was read."""
        if isinstance(self._outcome, RubberDuckError):
            raise self._outcome
        if isinstance(self._state.request, ChatRequest):
            return assemble_chat(self._events)
        embedding = self._state.embedding
        if embedding is not None:
            done = self._events[-1]
            if type(done) is Done and done.substituted_for is not None:
                return msgspec.structs.replace(embedding, substituted_for=done.substituted_for)
            return embedding
        return assemble_generate(self._events)

    def cancel(self) -> None:
        """Stop the request: its HTTP call is closed and its slot freed.

        A request that already ended is left as it was; otherwise its outcome
        becomes :class:`~rubberduck.errors.Cancelled`.
        """
        self._state.cancel()


class RequestHandle(_Handle):
    """A submitted request: iterate it for events, or wait for its ``result()``.

    Iterating yields :class:`~rubberduck.messages.Delta`,
    :class:`~rubberduck.messages.ToolCall` (and
    :class:`~rubberduck.messages.Restart`), finally
    :class:`~rubberduck.messages.Done`; a failure is raised as a
    :class:`~rubberduck.errors.RubberDuckError` instead of ``Done``. Closing the
    handle (or leaving its ``with`` block) before the end cancels the request and
    closes its HTTP connection.
    """

    def __init__(self, state: RequestState, channel: ThreadChannel) -> None:
        super().__init__(state)
        self._channel = channel

    def next_event(self, timeout: float | None = None) -> Event:
        """Wait for the next event.

        Args:
            timeout: Seconds to wait at most; ``None``: until the deadline.

        Raises:
            StopIteration: the request already ended and its outcome was read.
            RequestTimeout: the deadline passed (the request ends), or
                ``timeout`` did (the request goes on).
            RubberDuckError: the request failed (typed).
        """
        if self._outcome is not None:
            if isinstance(self._outcome, RubberDuckError):
                raise self._outcome
            raise StopIteration
        left = self._state.time_left()
        try:
            item = self._channel.get(left if timeout is None else min(timeout, left))
        except queue.Empty:
            if timeout is not None and timeout < left:
                raise RequestTimeout(
                    f"no answer within {timeout:g} s (the request goes on)"
                ) from None
            self._state.fail(
                RequestTimeout(f"no answer within the request timeout of {self.timeout:g} s")
            )
            item = self._terminal()
        return self._seen(item)

    def _terminal(self) -> Any:
        """After the deadline, the next item: the request has ended, so its
        terminal item is in the channel or about to be (whoever ended it sends
        it just after marking it ended); events sent before it come first."""
        try:
            return self._channel.get(_TERMINAL_WAIT_S)
        except queue.Empty:
            return RequestTimeout(f"no answer within the request timeout of {self.timeout:g} s")

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                event = self.next_event()
            except StopIteration:
                return
            yield event
            if type(event) is Done:
                return

    def result(
        self, timeout: float | None = None
    ) -> ChatResponse | GenerateResponse | EmbedResponse:
        """Wait for the whole answer.

        Args:
            timeout: Seconds to wait at most; ``None`` waits until the request's
                deadline. Like ``concurrent.futures.Future.result``, running out
                of it only stops the wait: the request goes on, and a later
                ``result()`` or iteration picks up where this one stopped.

        Returns:
            A :class:`ChatResponse` for a chat request, a
            :class:`GenerateResponse` for a generate request, an
            :class:`EmbedResponse` for an embedding request.

        Raises:
            RequestTimeout: ``timeout`` seconds passed (the request goes on), or
                the request's deadline did (it ended).
            RubberDuckError: the request failed.
        """
        give_up = None if timeout is None else time.monotonic() + timeout
        while self._outcome is None:
            self.next_event(None if give_up is None else max(give_up - time.monotonic(), 0.0))
        return self._answer()

    def close(self) -> None:
        """Same as :meth:`cancel`; makes the handle usable with ``contextlib.closing``."""
        self.cancel()

    def __enter__(self) -> RequestHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


class AsyncRequestHandle(_Handle):
    """A submitted request, read from an asyncio task: ``async for`` its events,
    or ``await handle.result()``.

    Events are those of :class:`RequestHandle`. Nothing here blocks the event
    loop: events are delivered to it by the worker threads. Cancelling the task
    that awaits the handle (``asyncio.timeout``, a ``TaskGroup``, a client
    disconnect in a web framework), or leaving an ``async for`` over it early,
    cancels the request and closes its HTTP connection. The deadline ends the
    request whether or not anyone reads it.
    """

    def __init__(self, state: RequestState, channel: LoopChannel) -> None:
        super().__init__(state)
        self._channel = channel

    async def next_event(self) -> Event:
        """Wait for the next event.

        Raises:
            StopAsyncIteration: the request already ended and its outcome was read.
            RubberDuckError: the request failed (typed), or its deadline passed
                (:class:`~rubberduck.errors.RequestTimeout`).
            asyncio.CancelledError: the awaiting task was cancelled; so is the request.
        """
        if self._outcome is not None:
            if isinstance(self._outcome, RubberDuckError):
                raise self._outcome
            raise StopAsyncIteration
        try:
            item = await self._channel.get()
        except asyncio.CancelledError:
            self._state.cancel()
            raise
        return self._seen(item)

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while self._outcome is None:
                event = await self.next_event()
                yield event
        finally:
            # Left early (break, an exception, the task cancelled): stop the request.
            self._state.cancel()

    async def result(self) -> ChatResponse | GenerateResponse | EmbedResponse:
        """Wait for the whole answer (to bound the wait, use ``asyncio.timeout``:
        that cancels the request).

        Returns:
            As :meth:`RequestHandle.result`.

        Raises:
            RubberDuckError: the request failed; its deadline passing is
                :class:`~rubberduck.errors.RequestTimeout`.
            asyncio.CancelledError: the awaiting task was cancelled; so is the request.
        """
        while self._outcome is None:
            await self.next_event()
        return self._answer()

    async def aclose(self) -> None:
        """Same as :meth:`cancel`, awaitable (``contextlib.aclosing``)."""
        self.cancel()

    async def __aenter__(self) -> AsyncRequestHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()
