"""Reply channels: the attempts a blocking call's channel hands to its reader."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from rubberduck.channels import CallerChannel, LoopChannel, ThreadChannel


def test_a_caller_channel_runs_handed_attempts_on_its_readers_thread() -> None:
    channel = CallerChannel()
    ran: list[str] = []

    def attempt() -> None:
        ran.append(threading.current_thread().name)
        channel.offer("answer")  # the attempt's own events come after it

    worker = threading.Thread(target=lambda: channel.hand(attempt))
    worker.start()
    worker.join()
    assert channel.get(5) == "answer"
    assert ran == [threading.current_thread().name]


def test_a_caller_channel_that_stopped_reading_refuses_and_runs_the_rest() -> None:
    channel = CallerChannel()
    ran: list[int] = []
    assert channel.hand(lambda: ran.append(1))
    channel.offer("unread event")
    channel.close()
    assert ran == [1]  # what was handed before the close ran there
    assert not channel.hand(lambda: ran.append(2))  # the backend uses a worker instead
    assert ran == [1]
    channel.close()  # idempotent


def test_a_caller_channel_get_gives_up_at_its_timeout() -> None:
    channel = CallerChannel()
    with pytest.raises(queue.Empty):
        channel.get(0.01)


def test_other_channels_take_no_attempts() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert not ThreadChannel(4).hand(lambda: None)
        assert not LoopChannel(loop, 4).hand(lambda: None)
    finally:
        loop.close()
