"""The request core without HTTP or actors: RequestState (exactly-once outcome,
cancel scope, backpressure), the two reply channels, and the consumer handles."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rubberduck.channels import LoopChannel, ThreadChannel
from rubberduck.errors import Cancelled, ProviderUnavailable, RequestTimeout
from rubberduck.handle import AsyncRequestHandle, RequestHandle
from rubberduck.messages import ChatRequest, Delta, Done, Message
from rubberduck.request_state import RequestState
from tests.conftest import wait_until

REQUEST = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
DONE = Done(provider="p", model="m")


def sync_request(capacity: int = 16, timeout: float = 30.0) -> tuple[RequestState, RequestHandle]:
    channel = ThreadChannel(capacity)
    state = RequestState(REQUEST, channel, timeout=timeout)
    return state, RequestHandle(state, channel)


def in_thread(target: Any) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``target`` in a thread; the exception it raised, if any, lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_the_outcome_is_decided_once() -> None:
    state, handle = sync_request()
    state.emit(Delta(text="a"))
    state.emit(DONE)
    assert state.fail(ProviderUnavailable("late")) is False
    state.cancel()  # after the end: nothing changes
    with pytest.raises(Cancelled):
        state.emit(Delta(text="after the end"))
    assert [type(e) for e in handle] == [Delta, Done]
    assert handle.result().message.content == "a"


def test_a_cancel_closes_the_running_attempt_and_ends_the_request() -> None:
    state, handle = sync_request()
    scope = state.new_scope()
    closed: list[bool] = []
    scope.attach(lambda: closed.append(True))
    handle.cancel()
    assert closed == [True] and state.cancelled and state.finished
    with pytest.raises(Cancelled):
        handle.result()
    assert state.new_scope().cancelled, "a later attempt starts cancelled"


def test_result_with_a_timeout_only_stops_waiting() -> None:
    """Like Future.result(timeout): the request goes on, with its deadline, and a
    later result() gets the answer. (It used to move the deadline and cancel.)"""
    state, handle = sync_request()
    deadline = state.deadline
    with pytest.raises(RequestTimeout, match="goes on"):
        handle.result(timeout=0.01)
    assert not state.finished and not state.cancelled and state.deadline == deadline
    state.emit(Delta(text="still "))
    state.emit(Delta(text="here"))
    state.emit(DONE)
    assert handle.result(timeout=5).message.content == "still here"


def test_the_public_handle_is_consumer_only() -> None:
    state, handle = sync_request()
    state.tried.append("a")
    state.causes["a"] = ProviderUnavailable("down", provider="a")
    for producer_side in ("emit", "fail", "restart", "excluded", "retry_round", "pricer"):
        assert not hasattr(handle, producer_side), producer_side
    assert handle.tried == ("a",)
    with pytest.raises(TypeError):
        handle.causes["b"] = ProviderUnavailable("x")  # type: ignore[index]
    with pytest.raises(AttributeError):
        handle.tried = ()  # type: ignore[misc]


def test_backpressure_thread_channel_waits_for_the_reader_and_a_cancel_ends_the_wait() -> None:
    state, handle = sync_request(capacity=2)
    third = threading.Event()

    def produce() -> None:
        state.emit(Delta(text="1"))
        state.emit(Delta(text="2"))
        state.emit(Delta(text="3"))  # waits: two unread
        third.set()
        state.emit(Delta(text="4"))  # waits again, until the cancel

    thread, errors = in_thread(produce)
    assert not third.wait(0.2), "the worker ran ahead of a reader that is behind"
    assert handle.next_event() == Delta(text="1")
    assert third.wait(5)
    handle.cancel()
    thread.join(5)
    assert not thread.is_alive() and isinstance(errors[0], Cancelled)


def test_backpressure_loop_channel_waits_for_the_task_to_read() -> None:
    ahead: list[int] = []

    async def main() -> None:
        channel = LoopChannel(asyncio.get_running_loop(), 2)
        state = RequestState(REQUEST, channel, timeout=30)
        handle = AsyncRequestHandle(state, channel)

        def produce() -> None:
            for i in range(10):
                state.emit(Delta(text=str(i)))
                with channel._room:
                    ahead.append(channel._unread)
            state.emit(DONE)

        thread, errors = in_thread(produce)
        texts = []
        async for event in handle:
            if isinstance(event, Delta):
                texts.append(event.text)
            await asyncio.sleep(0.001)  # a slow reader
        await asyncio.to_thread(thread.join, 5)
        assert not errors and texts == [str(i) for i in range(10)]

    asyncio.run(main())
    assert max(ahead) <= 2


def test_a_task_cancelled_while_waiting_cancels_the_request() -> None:
    closed = threading.Event()

    async def main() -> RequestState:
        channel = LoopChannel(asyncio.get_running_loop(), 8)
        state = RequestState(REQUEST, channel, timeout=30)
        state.new_scope().attach(closed.set)  # what an HTTP attempt registers
        handle = AsyncRequestHandle(state, channel)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await handle.result()
        return state

    state = asyncio.run(main())
    assert closed.is_set() and state.cancelled


def test_leaving_an_async_for_early_cancels_the_request() -> None:
    async def main() -> RequestState:
        channel = LoopChannel(asyncio.get_running_loop(), 8)
        state = RequestState(REQUEST, channel, timeout=30)
        state.emit(Delta(text="a"))
        state.emit(Delta(text="b"))
        async for _ in AsyncRequestHandle(state, channel):
            break
        return state

    assert asyncio.run(main()).cancelled


def test_events_for_a_closed_loop_stop_the_request() -> None:
    loop = asyncio.new_event_loop()
    channel = LoopChannel(loop, 8)
    state = RequestState(REQUEST, channel, timeout=30)
    loop.close()
    with pytest.raises(Cancelled):
        state.emit(Delta(text="nobody reads this"))
    assert state.finished


def test_a_burst_wakes_the_loop_once_and_arrives_in_order() -> None:
    loop = asyncio.new_event_loop()
    channel = LoopChannel(loop, 1000)
    wakeups: list[object] = []
    schedule = loop.call_soon_threadsafe

    def counting(*args: Any) -> Any:
        wakeups.append(args)
        return schedule(*args)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        # The loop is not running: the burst arrives while it is busy elsewhere.
        thread, errors = in_thread(lambda: [channel.offer(i) for i in range(100)])
        thread.join(5)
        assert not errors and len(wakeups) == 1

        async def read() -> list[int]:
            return [await channel.get() for _ in range(100)]

        assert loop.run_until_complete(read()) == list(range(100))
        channel.offer("next")  # the delivery ran: the next item wakes the loop again
        assert len(wakeups) == 2
        assert loop.run_until_complete(channel.get()) == "next"
    finally:
        loop.close()


def test_a_loop_closed_with_a_delivery_pending_stops_the_request() -> None:
    loop = asyncio.new_event_loop()
    channel = LoopChannel(loop, 8)
    state = RequestState(REQUEST, channel, timeout=30)
    state.emit(Delta(text="scheduled, never delivered"))
    loop.close()
    with pytest.raises(Cancelled):
        state.emit(Delta(text="nobody reads this"))
    assert state.finished


def test_a_failure_reaches_a_full_thread_channel_at_once() -> None:
    state, handle = sync_request(capacity=1)
    state.emit(Delta(text="unread"))
    state.fail(ProviderUnavailable("gone"))  # does not wait for the reader
    with pytest.raises(ProviderUnavailable):
        handle.result()
    assert wait_until(lambda: state.finished)
