"""GenAI client metrics and rubberduck.* runtime metrics, read by a real SDK's
in-memory reader after real requests to fake Ollama servers."""

from __future__ import annotations

from typing import Any

import pytest

from rubberduck import AllProvidersFailed, ChatRequest
from rubberduck.telemetry.requests import request_started
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama, free_port
from tests.telemetry.conftest import Sdk

pytestmark = pytest.mark.usefixtures("no_thread_left")


def _sum(points: list[Any], **attrs: Any) -> float:
    """Sum (or count, for histograms) of the points whose attributes include ``attrs``."""
    total = 0.0
    for p in points:
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            total += p.count if hasattr(p, "count") else p.value
    return total


def test_a_request_records_the_genai_client_metrics(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        reply = rt.chat("llama3.2", HI)
    duration = sdk.metric("gen_ai.client.operation.duration")
    assert duration.unit == "s"
    [point] = duration.data.data_points
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "llama3.2",
        "gen_ai.response.model": reply.model,
        "gen_ai.provider.name": "ollama",
        "server.address": "127.0.0.1",
        "rubberduck.backend": "primary",
    }
    assert point.count == 1 and 0 < point.sum < 5
    assert point.explicit_bounds[:3] == (0.01, 0.02, 0.04)
    tokens = sdk.metric("gen_ai.client.token.usage")
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p.sum for p in tokens.data.data_points}
    assert by_type == {"input": 26, "output": 282}
    # Not streamed: no time to first chunk.
    assert sdk.points("gen_ai.client.operation.time_to_first_chunk") == []
    assert _sum(sdk.points("rubberduck.attempts"), **{"rubberduck.outcome": "ok"}) == 1


def test_a_stream_records_time_to_first_chunk_and_per_chunk(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        list(rt.stream_chat("llama3.2", HI))  # three chunks (chat_stream.ndjson)
    ttfc = sdk.metric("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.unit == "s"
    assert [p.count for p in ttfc.data.data_points] == [1]
    assert ttfc.data.data_points[0].attributes["gen_ai.operation.name"] == "chat"
    assert ttfc.data.data_points[0].attributes["gen_ai.provider.name"] == "ollama"
    # Once per request: the mean gap between the three chunks (see requests.py).
    tpoc = sdk.metric("gen_ai.client.operation.time_per_output_chunk")
    assert tpoc.unit == "s" and [p.count for p in tpoc.data.data_points] == [1]
    [point] = tpoc.data.data_points
    assert 0 <= point.sum <= ttfc.data.data_points[0].sum + 1


def test_a_fallback_is_counted_with_where_from_where_to_and_why(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url) as rt:
        assert rt.chat("llama3.2", HI).provider == "backup"
    [fallback] = sdk.points("rubberduck.fallbacks")
    assert dict(fallback.attributes) == {
        "rubberduck.backend": "primary",
        "rubberduck.fallback_to": "backup",
        "error.type": "ServerBusy",
    }
    assert fallback.value == 1
    attempts = sdk.points("rubberduck.attempts")
    assert _sum(attempts, **{"rubberduck.backend": "primary", "rubberduck.outcome": "busy"}) == 1
    assert _sum(attempts, **{"rubberduck.backend": "backup", "rubberduck.outcome": "ok"}) == 1
    [duration] = sdk.points("gen_ai.client.operation.duration")
    assert duration.attributes["rubberduck.backend"] == "backup"
    assert "error.type" not in duration.attributes


def test_retry_rounds_are_counted(sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = backup.mode = "busy"
    router = {"retries": 1, "retry_backoff": 0.01}
    with runtime_for(primary.url, backup.url, router=router, failure_threshold=99) as rt:
        with pytest.raises(AllProvidersFailed):
            rt.chat("llama3.2", HI)
    retries = sdk.points("rubberduck.retries")
    assert _sum(retries, **{"rubberduck.backend": "primary"}) == 1
    assert _sum(retries, **{"rubberduck.backend": "backup"}) == 1
    [duration] = sdk.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "AllProvidersFailed"


def test_a_circuit_opening_shows_in_transitions_and_the_state_gauge(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    _, backup = servers
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused, opens at once
    with runtime_for(down, backup.url, cooldown=60.0) as rt:
        assert rt.chat("llama3.2", HI).provider == "backup"
        assert wait_until(lambda: rt.health()["primary"].state == "open")
        # The request did not wait for backup's first probe: wait for it here.
        assert all(h.checked for h in rt.wait_for_probes(30).values())
        states = {
            (p.attributes["rubberduck.backend"], p.attributes["rubberduck.state"]): p.value
            for p in sdk.points("rubberduck.circuit.state")
        }
        transitions = sdk.points("rubberduck.circuit.transitions")
    assert states[("primary", "open")] == 1 and states[("primary", "closed")] == 0
    assert states[("backup", "closed")] == 1 and states[("backup", "open")] == 0
    assert _sum(transitions, **{"rubberduck.backend": "primary", "rubberduck.state": "open"}) == 1
    probes = sdk.points("rubberduck.probe.duration")
    assert _sum(probes, **{"rubberduck.backend": "backup", "rubberduck.outcome": "ok"}) >= 1
    assert _sum(probes, **{"rubberduck.backend": "primary", "rubberduck.outcome": "error"}) >= 1


@pytest.mark.parametrize(("policy", "restarts"), [("restart", 1), ("error", 0)])
def test_a_mid_stream_failure_is_counted(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama], policy: str, restarts: int
) -> None:
    primary, backup = servers
    primary.mode = "midstream"
    with runtime_for(primary.url, backup.url) as rt:
        try:
            list(rt.stream_chat("llama3.2", HI, mid_stream=policy))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            assert type(exc).__name__ == "StreamInterrupted"
    attrs = {"rubberduck.backend": "primary"}
    assert _sum(sdk.points("rubberduck.stream.interruptions"), **attrs) == 1
    assert _sum(sdk.points("rubberduck.stream.restarts"), **attrs) == restarts
    [duration] = sdk.points("gen_ai.client.operation.duration")
    assert duration.attributes.get("error.type") == (None if restarts else "StreamInterrupted")


def test_in_flight_and_queued_per_backend(sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    primary.mode = "hang"
    with runtime_for(primary.url, backup.url, primary_cfg={"max_in_flight": 1}) as rt:
        handles = [rt.submit(ChatRequest(model="llama3.2", messages=HI)) for _ in range(3)]

        def gauges() -> dict[str, float]:
            primary_only = {"rubberduck.backend": "primary"}
            return {
                name: _sum(sdk.points(f"rubberduck.backend.{name}"), **primary_only)
                for name in ("in_flight", "queued")
            }

        assert wait_until(lambda: gauges() == {"in_flight": 1, "queued": 2})
        for handle in handles:
            handle.cancel()
        primary.release.set()
        assert wait_until(lambda: gauges() == {"in_flight": 0, "queued": 0})


def test_actor_restarts_and_escalation_are_counted(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    from rubberduck.messages import Crash

    primary, backup = servers
    with runtime_for(primary.url, backup.url, supervisor={"max_restarts": 1}) as rt:
        for _ in range(2):
            old = rt._registry.get("provider:backup")
            assert old is not None
            old.tell(Crash("test"))
            assert wait_until(lambda o=old: rt._registry.get("provider:backup") is not o)  # type: ignore[misc]
        assert wait_until(lambda: rt.escalation is not None)
    restarts = sdk.points("rubberduck.actor.restarts")
    assert _sum(restarts, **{"rubberduck.actor": "provider:backup"}) == 1
    assert _sum(sdk.points("rubberduck.escalations")) == 1


def test_nothing_is_recorded_without_an_sdk(servers: tuple[FakeOllama, FakeOllama]) -> None:
    request = ChatRequest(model="llama3.2", messages=HI)
    assert request_started(request) is None
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        handle = rt.submit(request)
        handle.result()
        assert handle._state.trace is None


def test_nothing_is_recorded_without_the_api(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rubberduck.telemetry import otel

    monkeypatch.setattr(otel, "_metrics", None)  # as if opentelemetry-api were not installed
    monkeypatch.setattr(otel, "_trace", None)
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url) as rt:
        assert rt.chat("llama3.2", HI).provider == "backup"
    monkeypatch.undo()
    assert sdk.points("gen_ai.client.operation.duration") == []
    assert sdk.points("rubberduck.fallbacks") == []
    assert sdk.finished() == []


def test_a_failing_telemetry_hook_fails_no_request(
    sdk: Sdk,
    servers: tuple[FakeOllama, FakeOllama],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rubberduck.telemetry import otel

    class Broken:
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("an exporter bug")

    inst = otel.instruments()
    assert inst is not None
    monkeypatch.setattr(inst, "duration", Broken())
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        for _ in range(2):
            assert rt.chat("llama3.2", HI).provider == "primary"
        assert not rt._handles  # forgotten, as every finished request
    failures = [r for r in caplog.records if r.name == "rubberduck.telemetry"]
    assert len(failures) == 1  # rate-limited
    # The SDK calls run on the recorder thread, in a job per request.
    assert failures[0].getMessage() == "telemetry job _record_request failed"
