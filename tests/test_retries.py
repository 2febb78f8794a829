"""Retry backoffs wait on the runtime's one scheduler thread, not a thread each."""

from __future__ import annotations

import threading

import pytest

from rubberduck import Cancelled
from tests.conftest import HI, runtime_for, wait_until
from tests.fake_ollama import FakeOllama

N = 150


def test_many_requests_waiting_out_a_backoff_start_no_thread_each(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    for server in servers:  # both answer 503 and ask for 30 s: every request waits
        server.mode, server.retry_after = "busy", "30"
    health = {"failure_threshold": 10**6, "min_requests": 10**6}
    roomy = {"max_queue": N}  # every request is admitted and tried
    with runtime_for(primary.url, backup.url, primary_cfg=roomy, backup_cfg=roomy, **health) as rt:
        baseline = _our_threads()
        handles = [rt.stream_chat("llama3.2", HI, timeout=60) for _ in range(N)]
        # Every request tried both backends once and now waits for its retry.
        assert wait_until(lambda: len(primary.posts()) == len(backup.posts()) == N, 30)
        assert wait_until(lambda: all(h._state.retry_round == 1 for h in handles))
        waiting = _our_threads()
    # (The two backends' worker pools, 4 threads each, may have started meanwhile.)
    assert waiting - baseline <= 16, f"{waiting - baseline} threads for {N} waiting requests"
    for handle in handles:
        with pytest.raises(Cancelled):
            handle.result()


def _our_threads() -> int:
    """Live threads, but the fake servers' (one per client connection)."""
    return sum("process_request" not in t.name for t in threading.enumerate())
