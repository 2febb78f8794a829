"""Faults a real Ollama server produces, on servers the tests start, kill, stop and
restart themselves (``OLLAMA_BIN``, ``OLLAMA_MODELS``), with the shared server as
the second backend to fall back to."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rubberduck import (
    ChatResponse,
    Delta,
    Done,
    InvalidRequest,
    Restart,
    Runtime,
    StreamInterrupted,
)
from tests.conftest import wait_until
from tests.e2e.conftest import MODEL, runtime
from tests.e2e.ollama_server import OllamaServer
from tests.e2e.scenarios import COUNT, LONG, SHORT, full_queue, http, lost_runner

pytestmark = pytest.mark.ollama

COUNT_CHAT = [{"role": "user", "content": COUNT}]
HI = [{"role": "user", "content": "Hi"}]
#: issue 9: after a local Ollama restarts, the first request it serves comes
#: within this many seconds, however long it was down.
BACK_WITHIN_S = 5.0
#: How long the server stays down in that test, seconds.
OUTAGE_S = 20.0

StartServer = Callable[..., OllamaServer]


def first_delta(events: Iterator[Any]) -> Delta:
    """The first event of a stream, which must be text."""
    event = next(events)
    assert isinstance(event, Delta), event
    return event


@pytest.fixture
def server(own_server: StartServer) -> OllamaServer:
    """A server of the test's own (``OLLAMA_NUM_PARALLEL=1``), ``smollm2:135m`` loaded."""
    started = own_server()
    http().post(f"{started.url}/api/generate", json={"model": MODEL}, timeout=60).raise_for_status()
    return started


def test_queue_full_gives_503_and_the_request_falls_back(
    own_server: StartServer, ollama_url: str
) -> None:
    busy = own_server(OLLAMA_MAX_QUEUE="1")
    with full_queue(busy) as refused:
        assert refused.headers["Content-Type"].startswith("application/json")
        assert refused.json() == {
            "error": "server busy, please try again.  maximum pending requests exceeded"
        }
        with runtime(
            {"primary": busy.url, "backup": ollama_url},
            provider={"primary": {"max_in_flight": 8}},
        ) as rt:
            rt.wait_for_probes()
            reply = rt.chat(MODEL, HI, options={**SHORT, "num_ctx": 1024})
            assert isinstance(reply, ChatResponse)
            assert reply.provider == "backup"
            assert reply.done.fallbacks and reply.done.fallbacks[0].startswith("primary")
            assert "busy" in reply.done.fallbacks[0]


def test_killed_mid_stream(server: OllamaServer, ollama_url: str) -> None:
    with runtime({"primary": server.url, "backup": ollama_url}) as rt:
        rt.wait_for_probes()
        # Default policy: the caller gets StreamInterrupted with the text so far.
        handle = rt.stream_chat(MODEL, COUNT_CHAT, options=LONG)
        events = iter(handle)
        first = first_delta(events)
        server.kill()
        with pytest.raises(StreamInterrupted) as info:
            list(events)
        assert info.value.provider == "primary"
        assert info.value.partial_text.startswith(first.text)

        # mid_stream="restart": a Restart event, then the whole answer from "backup".
        server.start()
        assert wait_until(lambda: rt.health()["primary"].up, 10)
        handle = rt.stream_chat(
            MODEL, COUNT_CHAT, options={**LONG, "num_predict": 16}, mid_stream="restart"
        )
        events = iter(handle)
        first = first_delta(events)
        server.kill()
        rest = list(events)
        restarts = [e for e in rest if isinstance(e, Restart)]
        assert len(restarts) == 1 and restarts[0].provider == "primary"
        assert restarts[0].discarded_text.startswith(first.text)
        after = rest[rest.index(restarts[0]) + 1 :]
        assert isinstance(after[-1], Done) and after[-1].provider == "backup"
        assert "".join(e.text for e in after if isinstance(e, Delta))


def test_runner_killed_mid_stream_gives_an_error_line(
    server: OllamaServer, ollama_url: str
) -> None:
    # Killing the runner (not the server) makes the server end the stream with an
    # {"error": ...} line, status 200: a mid-stream error as the transcripts have it.
    reply, lines = lost_runner(server)
    assert reply.status_code == 200
    last = json.loads(lines[-1])
    assert set(last) == {"error"}

    server.restart()
    with runtime({"primary": server.url, "backup": ollama_url}) as rt:
        rt.wait_for_probes()
        events = iter(rt.stream_chat(MODEL, COUNT_CHAT, options=LONG))
        first = first_delta(events)
        server.kill_runners()
        with pytest.raises(StreamInterrupted) as info:
            list(events)
        assert info.value.partial_text.startswith(first.text)


def test_stopped_server_times_out_and_the_request_falls_back(
    server: OllamaServer, ollama_url: str
) -> None:
    with runtime(
        {"primary": server.url, "backup": ollama_url}, provider={"primary": {"timeout": 2.0}}
    ) as rt:
        rt.wait_for_probes()
        server.pause()  # SIGSTOP: connections are accepted, nothing answers
        try:
            reply = rt.chat(MODEL, HI, options=SHORT)
        finally:
            server.resume()
        assert isinstance(reply, ChatResponse)
        assert reply.provider == "backup"
        assert reply.done.fallbacks[0].startswith("primary")
        assert "time" in reply.done.fallbacks[0]  # "timed out", "timeout"


def test_restarted_server_serves_again_within_the_bound(
    server: OllamaServer, ollama_url: str
) -> None:
    # Default [health] settings: the bound holds for them.
    with Runtime.from_config(
        {
            "provider": {
                "primary": {"kind": "ollama", "base_url": server.url, "model": MODEL},
                "backup": {"kind": "ollama", "base_url": ollama_url, "model": MODEL},
            }
        }
    ) as rt:
        rt.wait_for_probes()
        assert rt.chat(MODEL, HI, options=SHORT).provider == "primary"
        server.kill()
        assert rt.chat(MODEL, HI, options=SHORT).provider == "backup"
        assert wait_until(lambda: rt.health()["primary"].state == "open", 5)
        time.sleep(OUTAGE_S)
        assert rt.chat(MODEL, HI, options=SHORT).provider == "backup"

        server.start()
        back = time.monotonic()
        provider = ""
        while provider != "primary" and time.monotonic() - back < 30:
            reply = rt.chat(MODEL, HI, options=SHORT)
            assert isinstance(reply, ChatResponse)
            provider = reply.provider
            time.sleep(0.1)
        took = time.monotonic() - back
        assert provider == "primary", "the restarted server was not used again within 30 s"
        assert took <= BACK_WITHIN_S, f"the restarted server was used again after {took:.1f} s"


def test_cancelled_stream_is_aborted_on_the_server(own_server: StartServer) -> None:
    # OLLAMA_DEBUG=1: the scheduler logs when a request's context ends and its
    # runner goes idle (v0.24.0 logs nothing else when a client goes away).
    server = own_server(OLLAMA_DEBUG="1")
    finished = 'msg="context for request finished"'
    with runtime({"primary": server.url}) as rt:
        rt.warm_up(MODEL)
        assert wait_until(lambda: "refCount=0" in server.log(), 10)  # idle after loading
        mark = len(server.log())
        with rt.stream_chat(MODEL, COUNT_CHAT, options=LONG) as handle:
            first_delta(iter(handle))
            assert finished not in server.log()[mark:]  # still generating
        # Leaving the block closed the connection: the server ends the request
        # (its access-log line) and the runner goes idle, 999 tokens early.
        assert wait_until(lambda: '"/api/chat"' in server.log()[mark:], 10), server.log()[mark:]
        ended = server.log()[mark:]
        assert finished in ended and "refCount=0" in ended

        # The next request is served at once: the runner is free.
        mark = len(server.log())
        reply = rt.chat(MODEL, HI, options=SHORT)
        assert isinstance(reply, ChatResponse) and reply.provider == "primary"
        # The server logs the request's end just after it sent the answer.
        assert wait_until(lambda: finished in server.log()[mark:], 10), server.log()[mark:]
        served = server.log()[mark:]
        assert served.index('msg="completion request"') < served.index(finished)


def test_too_long_for_num_ctx(server: OllamaServer) -> None:
    long_text = " ".join(f"word{i}" for i in range(400))  # well over 256 tokens
    with runtime({"primary": server.url}) as rt:
        # Chat and generate: Ollama keeps the end of the prompt that fits.
        reply = rt.generate(MODEL, long_text, options={**SHORT, "num_ctx": 256})
        assert reply.done_reason in ("stop", "length")
        assert 0 < reply.usage.prompt_tokens <= 256
        assert "truncating input prompt" in server.log()

        # Embed: truncate=False makes it an error, before any output.
        with pytest.raises(InvalidRequest, match="context length"):
            rt.embed(MODEL, long_text, truncate=False, options={"num_ctx": 256})
        cut = rt.embed(MODEL, long_text, options={"num_ctx": 256})
        assert 0 < cut.usage.prompt_tokens <= 256
