"""Several hosts serving the same model, over HTTP (fake Ollama servers that
serve ``/api/ps`` from the models they loaded): requests go to the warm host,
answers teach the runtime where a model is loaded, and per-model limits hold."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rubberduck import ConfigError, Runtime
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")

EQUAL = {"priority": 0}


def one_per_model(url: str, max_in_flight: int) -> dict[str, Any]:
    """One Ollama backend at ``url`` running one request per model at once
    (``OLLAMA_NUM_PARALLEL=1``) and ``max_in_flight`` in all."""
    ollama = {
        "base_url": url,
        "model": "llama3.2",
        "max_in_flight": max_in_flight,
        "max_in_flight_per_model": 1,
    }
    return {"provider": {"ollama": ollama}, "health": {"interval": 60.0}}


def test_requests_go_to_the_host_where_the_model_is_loaded(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.loaded, backup.loaded = ["qwen3:latest"], ["llama3.2:latest"]
    with runtime_for(primary.url, backup.url, primary_cfg=EQUAL, backup_cfg=EQUAL) as rt:
        assert wait_until(lambda: rt.health()["backup"].loaded_models == ("llama3.2",))
        assert wait_until(lambda: rt.health()["primary"].loaded_models == ("qwen3",))
        providers = [rt.chat("llama3.2", HI).provider for _ in range(4)]
    assert providers == ["backup"] * 4
    assert primary.posts() == []
    assert ("GET", "/api/ps", {}) in backup.requests


def test_an_answer_makes_its_host_warm_until_the_next_ps_read(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    """Nothing loaded anywhere: the first request (sent to backup on purpose)
    cold-loads the model there (load_duration 3 s); the next go there too."""
    primary, backup = servers
    primary.loaded, backup.loaded = [], []
    cfg = {"primary_cfg": EQUAL, "backup_cfg": EQUAL, "interval": 60.0}
    with runtime_for(primary.url, backup.url, **cfg) as rt:
        assert wait_until(lambda: rt.health()["primary"].loaded_models == ())
        assert wait_until(lambda: rt.health()["backup"].loaded_models == ())
        first = rt.chat("llama3.2", HI, backends=["backup"])
        assert first.done.durations.load_s == 3.0
        assert rt.health()["backup"].loaded_models == ("llama3.2",)
        assert rt.health()["backup"].cold_loads == 1
        providers = [rt.chat("llama3.2", HI).provider for _ in range(3)]
    assert providers == ["backup"] * 3
    assert primary.posts() == []


def test_max_in_flight_per_model_holds_at_the_host() -> None:
    """Three requests for one model, one slot per model: the host holds one at a
    time, the others wait in the runtime; a request for another model runs."""
    with FakeOllama() as fake:
        fake.models = ["llama3.2:latest", "qwen3:latest"]
        fake.gate.clear()
        with Runtime.from_config(one_per_model(fake.url, max_in_flight=4)) as rt:
            handles = [rt.chat("llama3.2", HI, stream=True) for _ in range(3)]
            other = rt.chat("qwen3", HI, stream=True)
            assert wait_until(lambda: len(fake.posts()) == 2)
            assert wait_until(lambda: rt.health()["ollama"].in_flight == 4)
            assert sorted(p["model"] for p in fake.posts()) == ["llama3.2", "qwen3"]
            fake.gate.set()
            for handle in [*handles, other]:
                assert handle.result().done.provider == "ollama"
    assert fake.max_active["llama3.2"] == 1
    assert len(fake.posts()) == 4


def test_a_host_with_the_models_slots_full_is_passed_over_for_a_free_one(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    """The warm host's one slot for the model is taken: the next request goes to
    the cold host at once rather than queue behind it."""
    primary, backup = servers
    primary.loaded, backup.loaded = ["llama3.2:latest"], []
    primary.gate.clear()
    per_model = {**EQUAL, "max_in_flight_per_model": 1}
    cfg = {"primary_cfg": per_model, "backup_cfg": per_model, "interval": 60.0}
    with runtime_for(primary.url, backup.url, **cfg) as rt:
        assert wait_until(lambda: rt.health()["primary"].loaded_models == ("llama3.2",))
        assert wait_until(lambda: rt.health()["backup"].loaded_models == ())
        held = rt.chat("llama3.2", HI, stream=True)
        assert wait_until(lambda: len(primary.posts()) == 1)
        assert rt.chat("llama3.2", HI).provider == "backup"
        primary.gate.set()
        assert held.result().done.provider == "primary"


def test_balance_and_the_new_provider_keys_are_checked() -> None:
    for policy in ("priority", "least_loaded", "warm"):
        Runtime.from_config({"provider": {"ollama": {}}, "router": {"balance": policy}}).close()
    with pytest.raises(ConfigError, match="balance"):
        Runtime.from_config({"provider": {"ollama": {}}, "router": {"balance": "random"}})
    for key, bad in (("max_in_flight_per_model", 0), ("weight", 0), ("max_loaded_models", 0)):
        with pytest.raises(ConfigError, match=key):
            Runtime.from_config({"provider": {"ollama": {key: bad}}})


def test_per_model_counts_return_to_zero_after_failures_and_fallbacks(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    """A count left behind would make a host look full for that model forever."""
    primary, backup = servers
    primary.script.extend(["busy", "reset", "midstream"])
    cfg = {"primary_cfg": EQUAL, "backup_cfg": EQUAL, "interval": 60.0, "failure_threshold": 9}
    with runtime_for(primary.url, backup.url, router={"mid_stream": "restart"}, **cfg) as rt:
        for _ in range(6):
            assert rt.chat("llama3.2", HI).done.provider in ("primary", "backup")
        load = rt._load
        assert wait_until(lambda: load.model("primary", "llama3.2") == 0)
        assert wait_until(lambda: load.model("backup", "llama3.2") == 0)
        assert load.busy_models("primary") == load.busy_models("backup") == frozenset()


def test_a_call_waiting_for_its_models_turn_holds_no_backend_turn() -> None:
    """Turn order: the model's turn, then the backend's. Two blocking calls for
    one model (one turn per model, two per backend): the second waits for the
    model's turn holding no backend turn, so a call for another model takes the
    free one and reaches the host while the first still runs (it took it in
    ``admit`` before: a caller holding the backend's turn waited for the
    model's while a worker holding the model's waited for the backend's)."""
    with FakeOllama() as fake:
        fake.models = ["llama3.2:latest", "qwen3:latest"]
        fake.gate.clear()
        with Runtime.from_config(one_per_model(fake.url, max_in_flight=2)) as rt:
            answers: dict[str, str] = {}

            def call(tag: str, model: str) -> None:
                answers[tag] = rt.chat(model, HI, timeout=30).provider

            threads = [threading.Thread(target=call, args=("a1", "llama3.2"))]
            threads[0].start()
            assert wait_until(lambda: len(fake.posts()) == 1)
            threads.append(threading.Thread(target=call, args=("a2", "llama3.2")))
            threads[1].start()
            assert wait_until(lambda: rt.health()["ollama"].in_flight == 2)
            threads.append(threading.Thread(target=call, args=("b", "qwen3")))
            threads[2].start()
            reached = wait_until(lambda: len(fake.posts()) == 2)
            fake.gate.set()
            for thread in threads:
                thread.join()
            assert reached, "qwen3 waited behind llama3.2 with a backend turn free"
            assert [p["model"] for p in fake.posts()[:2]] == ["llama3.2", "qwen3"]
    assert answers == {"a1": "ollama", "a2": "ollama", "b": "ollama"}
    assert fake.max_active["llama3.2"] == 1


def test_requests_waiting_for_one_model_leave_the_workers_to_another() -> None:
    """As many streamed requests for one model as the backend has workers, one
    turn per model: those waiting for the model's turn hold no worker, so a
    request for another model starts at once (parked workers kept it queued
    behind them)."""
    with FakeOllama() as fake:
        fake.models = ["llama3.2:latest", "qwen3:latest"]
        fake.gate.clear()
        with Runtime.from_config(one_per_model(fake.url, max_in_flight=4)) as rt:
            handles = [rt.chat("llama3.2", HI, stream=True, timeout=30) for _ in range(4)]
            assert wait_until(lambda: len(fake.posts()) == 1)
            other = rt.chat("qwen3", HI, stream=True, timeout=30)
            reached = wait_until(lambda: len(fake.posts()) == 2)
            fake.gate.set()
            for handle in [*handles, other]:
                assert handle.result().done.provider == "ollama"
            assert reached, "qwen3 waited for a worker held by requests for llama3.2"
    assert fake.max_active["llama3.2"] == 1
    assert len(fake.posts()) == 5
