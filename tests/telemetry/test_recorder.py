"""The SDK calls run on the recorder thread, off the request path: what the
request's threads leave behind, when it is recorded, and what a full queue does."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from rubberduck import ChatRequest
from rubberduck.config import ProviderConfig
from rubberduck.errors import Cancelled
from rubberduck.providers import create_provider
from rubberduck.telemetry import recorder
from rubberduck.telemetry import requests as tr
from rubberduck.telemetry.recorder import Recorder
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama
from tests.telemetry.conftest import Sdk

pytestmark = pytest.mark.usefixtures("no_thread_left")


class Paused(Recorder):
    """A recorder whose thread never starts: jobs wait for :meth:`flush`."""

    def _start(self) -> None:
        pass


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> Iterator[Paused]:
    rec = Paused()
    monkeypatch.setattr(recorder, "RECORDER", rec)
    yield rec
    rec.flush()


def test_the_request_path_makes_no_sdk_call_and_close_flushes(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama], paused: Paused
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        reply = rt.chat("llama3.2", HI)
        # Answered, and nothing recorded yet: the SDK calls wait in the queue,
        # one job for the request (its attempt included).
        assert sdk.spans.get_finished_spans() == ()
        assert [job.__name__ for job, _ in paused._queue] == ["_record_request"]
    # Runtime.close() flushed: the spans exist, with the times of the request.
    spans = {s.name: s for s in sdk.spans.get_finished_spans()}
    request, attempt = spans["chat llama3.2"], spans["attempt primary"]
    assert request.start_time and request.end_time and attempt.start_time and attempt.end_time
    assert request.start_time <= attempt.start_time <= attempt.end_time
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    assert (request.attributes or {})["gen_ai.response.model"] == reply.model
    [point] = sdk.points("gen_ai.client.operation.duration")
    assert point.count == 1
    assert point.sum == pytest.approx((request.end_time - request.start_time) / 1e9, abs=1e-3)


def test_an_attempt_ending_after_its_request_was_recorded_gets_its_own_span(
    sdk: Sdk, paused: Paused
) -> None:
    provider = create_provider("primary", ProviderConfig(kind="ollama", model="llama3.2"))
    request = ChatRequest(model="llama3.2", messages=HI)
    state = SimpleNamespace(trace=tr.request_started(request), tried=["primary"], id=7)
    token = tr.attempt_started(state, provider)  # type: ignore[arg-type]
    tr.request_finished(state, Cancelled("the caller cancelled"))  # type: ignore[arg-type]
    paused.flush()  # the request span is recorded without the attempt, still running
    assert [s.name for s in sdk.spans.get_finished_spans()] == ["chat llama3.2"]
    tr.attempt_ended(token, "cancelled", None)
    assert [job.__name__ for job, _ in paused._queue] == ["_record_attempt"]
    provider.close()
    spans = {s.name: s for s in sdk.finished()}
    request_span, attempt = spans["chat llama3.2"], spans["attempt primary"]
    assert attempt.parent is not None and attempt.parent.span_id == request_span.context.span_id
    assert (attempt.attributes or {})["rubberduck.outcome"] == "cancelled"
    assert (request_span.attributes or {})["error.type"] == "Cancelled"
    [point] = sdk.points("rubberduck.attempts")
    assert point.value == 1 and point.attributes["rubberduck.outcome"] == "cancelled"


def test_a_full_queue_drops_counts_and_warns_never_blocks_never_raises(
    sdk: Sdk, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder(capacity=2)
    busy, release, ran = threading.Event(), threading.Event(), []
    rec.submit(lambda: (busy.set(), release.wait(10)))  # the recorder thread is stuck in it
    assert busy.wait(5)
    results = [rec.submit(ran.append, i) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert rec.dropped == 3
    release.set()
    assert rec.flush()
    assert ran == [0, 1]
    [point] = sdk.points("rubberduck.telemetry.dropped")
    assert point.value == 3
    [warning] = [r for r in caplog.records if r.name == "rubberduck.telemetry"]
    assert warning.levelno == logging.WARNING
    assert "3 requests' spans and metrics dropped" in warning.getMessage()


def test_a_failing_job_leaves_the_recorder_running(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("an SDK bug")

    assert rec.submit(broken)
    assert rec.submit(done.set)
    assert done.wait(5)
    assert [r.getMessage() for r in caplog.records] == ["telemetry job broken failed"]


def test_inline_recording_makes_the_sdk_calls_on_the_request_path(
    sdk: Sdk, servers: tuple[FakeOllama, FakeOllama], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Paused()  # its thread never runs: only inline recording can record
    rec.inline = True
    monkeypatch.setattr(recorder, "RECORDER", rec)
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        rt.chat("llama3.2", HI)
        # The request span at once; its attempt's as the worker ends it (after the Done).
        assert wait_until(lambda: len(sdk.spans.get_finished_spans()) == 2)
        assert not rec._queue
