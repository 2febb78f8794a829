"""The request hot path: the first offer on the caller's thread, the attempt of a
blocking call on the caller's thread, and POSTs straight on the session's adapter.
Behaviour only; the speed is measured by benchmarks/hot_path.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from rubberduck import Runtime
from rubberduck.actors.provider import ProviderActor
from rubberduck.actors.router import Router
from rubberduck.errors import RequestTimeout
from rubberduck.messages import Crash, Submit
from rubberduck.providers._http.direct import send_direct
from rubberduck.providers._http.session import new_session
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")


@pytest.fixture
def router_submits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the requests the Router actor was sent with ``Submit``."""
    seen: list[int] = []
    receive = Router.receive

    def counting(self: Router, message: Any) -> Any:
        if isinstance(message, Submit):
            seen.append(message.handle.id)
        return receive(self, message)

    monkeypatch.setattr(Router, "receive", counting)
    return seen


def test_a_backend_with_room_takes_a_request_without_the_router(
    servers: tuple[FakeOllama, FakeOllama], router_submits: list[int]
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        assert rt.chat("llama3.2", HI).provider == "primary"
        events = list(rt.stream_chat("llama3.2", HI))
        assert events[-1].provider == "primary"  # type: ignore[union-attr]
    assert router_submits == []
    posts = [path for method, path, _ in primary.requests if method == "POST"]
    assert posts == ["/api/chat", "/api/chat"]


def test_a_failed_first_attempt_still_falls_back_through_the_router(
    router_submits: list[int],
) -> None:
    with FakeOllama("503") as primary, FakeOllama() as backup:
        with runtime_for(primary.url, backup.url) as rt:
            reply = rt.chat("llama3.2", HI)
    assert reply.provider == "backup"
    assert reply.fallbacks and "primary" in reply.fallbacks[0]
    assert router_submits == []  # the failure went to the Router as AttemptFailed


def test_a_blocking_chat_runs_its_attempt_on_the_callers_thread(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rubberduck.actors.provider import ProviderActor

    threads: list[str] = []
    work = ProviderActor._work

    def recording(self: ProviderActor, handle: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        work(self, handle, **kwargs)

    monkeypatch.setattr(ProviderActor, "_work", recording)
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        rt.chat("llama3.2", HI)
        rt.embed("llama3.2", "a duck")
        list(rt.stream_chat("llama3.2", HI))  # a stream: read as it comes, on a worker
    here = threading.current_thread().name
    assert threads[:2] == [here, here]
    assert threads[2] != here


def test_the_deadline_ends_an_attempt_on_the_callers_thread() -> None:
    with FakeOllama("hang") as primary, FakeOllama("hang") as backup:
        with runtime_for(primary.url, backup.url) as rt:
            with pytest.raises(RequestTimeout):
                rt.chat("llama3.2", HI, timeout=0.5)
            # Its slot was given back: the next request gets one at once.
            primary.mode = backup.mode = "ok"
            assert rt.chat("llama3.2", HI, timeout=10).message.content


def test_a_direct_post_sends_what_session_request_sends() -> None:
    with FakeOllama() as server:
        session = new_session(pool_size=2, trust_env=False, headers={"X-Extra": "1"})
        url = server.url + "/api/chat"
        body = b'{"model":"llama3.2","messages":[],"stream":false}'
        sent = {"Accept-Encoding": "identity", "X-Extra": "2"}
        for send in (session.request, lambda *a, **k: send_direct(session, *a, **k)):
            resp = send("POST", url, data=body, headers=sent, stream=False, timeout=(5, 5))
            assert resp.status_code == 200 and resp.json()["done"] is True
        session.close()
    via_session, direct = server.headers
    assert direct == via_session
    assert direct["x-extra"] == "2" and direct["content-length"] == str(len(body))
    assert server.raw_bodies == [body, body]


def test_a_session_that_reads_the_environment_goes_through_session_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = new_session(pool_size=1, trust_env=True)
    calls: list[str] = []
    monkeypatch.setattr(session, "request", lambda method, url, **kw: calls.append(url))
    send_direct(session, "POST", "http://127.0.0.1:9/api/chat", data=b"{}")
    assert calls == ["http://127.0.0.1:9/api/chat"]
    session.close()


def test_a_refused_direct_post_raises_what_requests_raises() -> None:
    session = new_session(pool_size=1, trust_env=False)
    with pytest.raises(requests.ConnectionError):
        send_direct(session, "POST", "http://127.0.0.1:9/api/chat", data=b"{}", timeout=(1, 1))
    session.close()


def test_attempts_on_callers_threads_count_against_max_in_flight(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, backup = servers
    running, most, lock = [0], [0], threading.Lock()
    with runtime_for(primary.url, backup.url, primary_cfg={"max_in_flight": 2}) as rt:
        provider = rt.providers["primary"]
        run = provider.run

        def counting(*args: Any) -> None:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                threading.Event().wait(0.05)  # long enough for the callers to pile up
                run(*args)
            finally:
                with lock:
                    running[0] -= 1

        monkeypatch.setattr(provider, "run", counting)
        callers = [
            threading.Thread(target=lambda: rt.chat("llama3.2", HI, backends=["primary"]))
            for _ in range(8)
        ]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
    assert most[0] == 2
    assert sum(1 for m, _, _ in primary.requests if m == "POST") == 8


def test_a_burst_past_the_slots_waits_for_one_without_the_router(
    servers: tuple[FakeOllama, FakeOllama], router_submits: list[int]
) -> None:
    primary, backup = servers
    limits = {"max_in_flight": 1, "max_queue": 0}
    with runtime_for(primary.url, backup.url, primary_cfg=limits, backup_cfg=limits) as rt:
        replies: list[Any] = []
        callers = [
            threading.Thread(target=lambda: replies.append(rt.chat("llama3.2", HI)))
            for _ in range(8)
        ]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
    assert len(replies) == 8 and all(r.message.content for r in replies)
    assert router_submits == []  # the full ones joined a waiting list from their own thread


@pytest.fixture
def work_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread of every attempt a ProviderActor runs, in order."""
    seen: list[str] = []
    work = ProviderActor._work

    def recording(self: ProviderActor, handle: Any, **kwargs: Any) -> None:
        seen.append(threading.current_thread().name)
        work(self, handle, **kwargs)

    monkeypatch.setattr(ProviderActor, "_work", recording)
    return seen


def caller(rt: Runtime, name: str, replies: list[Any], **routing: Any) -> threading.Thread:
    """A started thread called ``name`` that makes one blocking chat."""
    thread = threading.Thread(
        target=lambda: replies.append(rt.chat("llama3.2", HI, **routing)), name=name
    )
    thread.start()
    return thread


def test_a_blocking_chat_that_waited_for_a_slot_runs_on_its_callers_thread(
    servers: tuple[FakeOllama, FakeOllama], work_threads: list[str]
) -> None:
    primary, backup = servers
    limits = {"max_in_flight": 1, "max_queue": 0}
    replies: list[Any] = []
    with runtime_for(primary.url, backup.url, primary_cfg=limits, backup_cfg=limits) as rt:
        for t in [caller(rt, f"caller-{i}", replies) for i in range(8)]:
            t.join()
        assert rt._load["primary"] == rt._load["backup"] == 0  # every slot given back
    assert len(replies) == 8 and all(r.message.content for r in replies)
    # Most of them waited on a waiting list; each still ran on its own thread,
    # not on a worker that then had to wake it.
    assert len(work_threads) == 8
    assert all(name.startswith("caller-") for name in work_threads), work_threads


def test_a_blocking_chat_falls_back_on_its_callers_thread(work_threads: list[str]) -> None:
    with FakeOllama("busy") as primary, FakeOllama() as backup:
        with runtime_for(primary.url, backup.url) as rt:
            reply = rt.chat("llama3.2", HI)
    assert reply.provider == "backup"
    here = threading.current_thread().name
    assert work_threads == [here, here]  # primary's attempt, then backup's


def test_an_attempt_handed_to_its_caller_as_the_actor_dies_goes_to_the_next_actor(
    servers: tuple[FakeOllama, FakeOllama],
    work_threads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, backup = servers
    holding, handed, go_on = threading.Event(), threading.Event(), threading.Event()
    work = ProviderActor._work  # the recording one

    def held(self: ProviderActor, handle: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "caller-1" and not handed.is_set():
            handed.set()  # caller-1 got its attempt; hold it there until the crash
            go_on.wait(5)
        work(self, handle, **kwargs)

    monkeypatch.setattr(ProviderActor, "_work", held)
    replies: list[Any] = []
    with runtime_for(
        primary.url, backup.url, primary_cfg={"max_in_flight": 1, "max_queue": 0}
    ) as rt:
        provider = rt.providers["primary"]
        run = provider.run

        def hold_first(*args: Any) -> None:
            if threading.current_thread().name == "caller-0":
                holding.set()
                assert wait_until(lambda: rt._load["primary"] == 2)  # caller-1 waits
            run(*args)

        monkeypatch.setattr(provider, "run", hold_first)
        first = caller(rt, "caller-0", replies, backends=["primary"])
        assert holding.wait(5)
        second = caller(rt, "caller-1", replies, backends=["primary"])
        # caller-0 ends; its slot passes to caller-1, whose attempt is held.
        assert handed.wait(5), work_threads
        old = rt._registry.get("provider:primary")
        assert old is not None
        old.tell(Crash("test"))
        assert wait_until(lambda: rt._registry.get("provider:primary") not in (None, old))
        go_on.set()
        first.join(5)
        second.join(5)
        assert wait_until(lambda: rt._load["primary"] == 0)
    assert [r.provider for r in replies] == ["primary", "primary"]
    # caller-1's attempt at the dead actor moved the request on; the new actor
    # handed the next attempt to caller-1 too.
    assert work_threads == ["caller-0", "caller-1", "caller-1"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the benchmark's upstream needs gcc")
def test_the_hot_path_benchmark_runs_in_smoke_mode() -> None:
    pytest.importorskip("ollama")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "hot_path.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for row in ("Runtime.chat", "AsyncRuntime.chat", "Runtime.stream_chat", "requests thread pool"):
        assert row in done.stdout
