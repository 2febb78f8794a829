"""The Runtime as a replacement for ``ollama.Client``: every official method has an
equivalent; embeddings are routed and fall back; model management acts on one
Ollama backend."""

from __future__ import annotations

import gc
import inspect
import time
import weakref
from typing import Any

import ollama
import pytest

from rubberduck import (
    Cancelled,
    EmbedRequest,
    EmbedResponse,
    InvalidRequest,
    ModelNotFound,
    RequestTimeout,
    Runtime,
    runtime,
)
from rubberduck.actors import routing
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama

#: Official methods with no Runtime equivalent, and why.
NOT_LOCAL = {
    "close": "not an endpoint; Runtime.close() stops the whole runtime",
    "web_search": "ollama.com's hosted search, needs an account key",
    "web_fetch": "ollama.com's hosted fetch, needs an account key",
    "systemone": "not a route of the Ollama server (server/routes.go)",
}


def test_every_official_client_method_has_a_runtime_equivalent() -> None:
    official = {
        name
        for name, _ in inspect.getmembers(ollama.Client, inspect.isfunction)
        if not name.startswith("_")
    }
    missing = sorted(official - set(NOT_LOCAL) - set(dir(Runtime)))
    assert not missing, f"ollama.Client methods with no Runtime equivalent: {missing}"
    assert {"version", "ensure_model", "warm_up", "unload"} <= set(dir(Runtime))


def test_answers_read_as_the_official_clients_do(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    official = ollama.Client(host=primary.url)
    with runtime_for(primary.url, backup.url) as rt:
        ours, theirs = (
            rt.embeddings("all-minilm", "llamas"),
            official.embeddings("all-minilm", "llamas"),
        )
        assert ours.embedding == list(theirs.embedding) and ours.embedding
        assert [m.model for m in rt.list().models] == [m.model for m in official.list().models]


def test_embed_is_routed_and_falls_back(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url) as rt:
        answer = rt.embed("nomic-embed-text", ["Why is the sky blue?"])
    assert isinstance(answer, EmbedResponse)
    assert answer.provider == "backup" and len(answer.embeddings) == 1
    assert backup.posts()[0] == {"model": "nomic-embed-text", "input": ["Why is the sky blue?"]}


def test_embed_skips_backends_that_cannot_embed(
    servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _ = servers
    monkeypatch.setenv("RD_TEST_KEY", "sk-ant-test")
    config = {
        "provider": {
            "claude": {"kind": "anthropic", "api_key_env": "RD_TEST_KEY", "model": "claude-x",
                       "base_url": "http://127.0.0.1:9"},
            "ollama": {"base_url": primary.url},
        },
    }  # fmt: skip
    with Runtime.from_config(config) as rt:
        answer = rt.embed("nomic-embed-text", "hi")
    assert answer.provider == "ollama"
    assert all(path != "/v1/messages" for _, path, _ in primary.requests)


def test_model_management_acts_on_the_ollama_backend(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        assert rt.list().models[0].name == "llama3.2:latest"
        assert rt.show("llama3.2").details is not None
        assert rt.ps().models
        assert rt.version() == "0.12.6"
        statuses = [p.status for p in rt.pull("llama3.2", stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert rt.pull("llama3.2").status == "success"
        rt.copy("llama3.2", "duck", backend="backup")
        rt.delete("duck", backend="backup")
        rt.ensure_model("llama3.2")
    assert [path for method, path, _ in backup.requests if method != "GET"] == [
        "/api/copy",
        "/api/delete",
    ]


def test_a_missing_model_is_reported_with_the_pull_command(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "not_found"
    with runtime_for(primary.url, backup.url) as rt:
        with pytest.raises(ModelNotFound, match="ollama pull qwen3"):
            rt.ensure_model("qwen3")
        with pytest.raises(InvalidRequest, match="no backend named 'nope'"):
            rt.list(backend="nope")


def test_model_management_on_a_non_ollama_backend_is_refused() -> None:
    with Runtime.from_config({"provider": {"local": {"kind": "local"}}}) as rt:
        with pytest.raises(InvalidRequest, match="no Ollama backend"):
            rt.ps()


def test_close_does_not_wait_for_an_embedding_in_flight(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "hang"
    rt = runtime_for(primary.url, backup.url)
    handle = rt.submit(EmbedRequest(model="nomic-embed-text", input="x"), timeout=30)
    assert wait_until(lambda: len(primary.posts()) == 1)
    started = time.monotonic()
    rt.close()
    assert time.monotonic() - started < 2
    assert wait_until(lambda: primary.disconnects == 1), "its HTTP call is closed"
    with pytest.raises(Cancelled):
        handle.result()


def test_result_with_a_timeout_stops_waiting_and_the_request_goes_on() -> None:
    """As Future.result(timeout): the caller stops waiting; the request keeps its
    deadline and its connection (it used to be cancelled)."""
    with (
        FakeOllama("hang") as fake,
        Runtime.from_config(
            {"provider": {"a": {"kind": "ollama", "base_url": fake.url, "model": "llama3.2"}}}
        ) as rt,
    ):
        handle = rt.chat("llama3.2", HI, stream=True)
        with pytest.raises(RequestTimeout, match="goes on"):
            handle.result(timeout=0.05)
        assert not handle.finished and fake.disconnects == 0
        handle.cancel()
        assert wait_until(lambda: fake.disconnects == 1)


def test_a_finished_answer_is_freed_when_the_caller_lets_go_of_its_handle() -> None:
    """The runtime keeps only the request's internal state (for deadlines), which
    holds no events: the handle and the answer's events go with the caller's
    reference (they used to stay in the deadline heap, up to 1,024 answers)."""
    with (
        FakeOllama() as fake,
        Runtime.from_config(
            {"provider": {"a": {"kind": "ollama", "base_url": fake.url, "model": "llama3.2"}}}
        ) as rt,
    ):
        handle = rt.chat("llama3.2", HI, stream=True)
        events = list(handle)
        assert events and handle.finished
        gone = weakref.ref(handle)
        del handle, events
        gc.collect()
        assert gone() is None


@pytest.mark.parametrize("stream", [True, False])
def test_ctrl_c_while_a_request_is_handed_over_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """KeyboardInterrupt on the caller's thread just after a backend took the
    request (inside ``chat``, before the caller has a handle): nobody could
    stop it, and it used to hold the backend's only slot until its deadline."""
    taken = routing.route_first

    def interrupted(*args: Any) -> bool:
        taken(*args)
        raise KeyboardInterrupt

    with (
        FakeOllama() as fake,
        Runtime.from_config(
            {"provider": {"a": {"kind": "ollama", "base_url": fake.url, "max_in_flight": 1}}}
        ) as rt,
    ):
        fake.mode = "hang"  # if the request gets as far as the server, it stays
        monkeypatch.setattr(runtime, "route_first", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rt.chat("llama3.2", HI, stream=stream, timeout=600)
        monkeypatch.setattr(runtime, "route_first", taken)
        fake.mode = "ok"
        assert wait_until(lambda: rt.health()["a"].in_flight == 0)
        assert rt.chat("llama3.2", HI, timeout=10).provider == "a"
