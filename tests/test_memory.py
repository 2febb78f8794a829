"""A finished request is not kept: once the caller drops its handle, the handle
and every event it carried are garbage, however far its deadline."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from rubberduck import ChatRequest, RubberDuckError, Runtime
from tests.conftest import HI, wait_until
from tests.fake_ollama import FakeOllama


@pytest.fixture
def rt() -> Iterator[tuple[Runtime, FakeOllama]]:
    with FakeOllama() as ollama:
        config = {"provider": {"ollama": {"kind": "ollama", "base_url": ollama.url,
                                          "model": "llama3.2"}},
                  "router": {"retries": 0}}  # fmt: skip
        with Runtime.from_config(config) as runtime:
            yield runtime, ollama


def _collected(ref: weakref.ref[object]) -> bool:
    gc.collect()
    return ref() is None


def test_a_finished_handle_the_caller_dropped_is_collected(
    rt: tuple[Runtime, FakeOllama],
) -> None:
    runtime, _ = rt
    request = ChatRequest(model="llama3.2", messages=HI, stream=True)
    handle = runtime.submit(request, timeout=3600)  # a deadline an hour away
    assert handle.result(timeout=10).message.content
    ref = weakref.ref(handle)
    del handle
    assert wait_until(lambda: _collected(ref))


def test_a_streamed_handle_read_to_the_end_is_collected(rt: tuple[Runtime, FakeOllama]) -> None:
    runtime, _ = rt
    handle = runtime.stream_chat("llama3.2", HI, timeout=3600)
    events = list(handle)
    assert events
    ref = weakref.ref(handle)
    del handle, events
    assert wait_until(lambda: _collected(ref))


@pytest.mark.parametrize("mode", ["cancel", "busy"])
def test_a_handle_that_failed_is_collected(rt: tuple[Runtime, FakeOllama], mode: str) -> None:
    runtime, ollama = rt
    if mode == "busy":
        ollama.mode = "busy"
    handle = runtime.stream_chat("llama3.2", HI, timeout=3600)
    if mode == "cancel":
        handle.cancel()
    with pytest.raises(RubberDuckError):
        handle.result()
    ref = weakref.ref(handle)
    del handle
    assert wait_until(lambda: _collected(ref))
