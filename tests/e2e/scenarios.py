"""Fault scenarios on a real server, shared by the fault tests and the transcript
checks: a full queue (a real 503) and a runner lost mid-stream (a real
``{"error"}`` line)."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from tests.conftest import wait_until
from tests.e2e.conftest import MODEL
from tests.e2e.ollama_server import OllamaServer

__all__ = ["COUNT", "LONG", "SHORT", "full_queue", "http", "lost_runner", "start_long"]

#: A prompt the model answers at length (until it is interrupted).
COUNT = "Count from 1 to 1000, one number per line."
#: Options for a long answer, and for a short one (tokens).
LONG = {"seed": 42, "temperature": 0, "num_predict": 1000}
SHORT = {"seed": 42, "temperature": 0, "num_predict": 8}


def http() -> requests.Session:
    """A session that ignores the environment's proxies (the servers are on loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


def start_long(server: OllamaServer) -> tuple[requests.Response, bytes, Iterator[bytes]]:
    """Start a long streamed ``/api/generate`` and wait for its first line.

    Returns:
        The response (close it to abort), its first line and the lines to come.
    """
    reply = http().post(
        f"{server.url}/api/generate",
        json={"model": MODEL, "prompt": COUNT, "options": LONG},
        stream=True,
        timeout=60,
    )
    reply.raise_for_status()
    lines = reply.iter_lines()
    first = next(lines)
    assert "response" in json.loads(first)  # generating now
    return reply, first, lines


@contextmanager
def full_queue(server: OllamaServer) -> Iterator[requests.Response]:
    """Fill the queue of a server started with ``OLLAMA_MAX_QUEUE=1``; yields the
    503 it answered (the queue stays full inside the ``with`` block).

    The model is kept busy with one request (its runner stopped with ``SIGSTOP``
    mid-answer, so it cannot finish early). A request whose options need the model
    reloaded (another ``num_ctx``) then waits in Ollama's scheduler, the next in
    its queue (one place), and the one after is answered 503 at once. (A request
    the loaded model can serve skips the queue: it waits for one of the model's
    ``OLLAMA_NUM_PARALLEL`` slots instead, and never gets a 503.)
    """
    running, _, _ = start_long(server)
    server.signal_runners(signal.SIGSTOP)
    answers: list[requests.Response] = []

    def reload_request() -> None:
        body = {"model": MODEL, "prompt": "Hi", "options": {**SHORT, "num_ctx": 1024}}
        with contextlib.suppress(requests.RequestException):  # the server stops
            answers.append(
                http().post(f"{server.url}/api/generate", json=body, stream=True, timeout=120)
            )

    try:
        threading.Thread(target=reload_request, daemon=True).start()
        time.sleep(0.3)  # the scheduler takes it before the next one comes
        for _ in range(2):
            threading.Thread(target=reload_request, daemon=True).start()
        assert wait_until(lambda: any(a.status_code == 503 for a in answers), 10), answers
        yield next(a for a in answers if a.status_code == 503)
    finally:
        server.signal_runners(signal.SIGCONT)
        running.close()


def lost_runner(server: OllamaServer) -> tuple[requests.Response, list[bytes]]:
    """Kill the runner while it streams a long ``/api/generate``; returns the
    response and every line the server sent (the last one its ``{"error"}``)."""
    reply, first, lines = start_long(server)
    server.kill_runners()
    return reply, [first, *(line for line in lines if line)]
