"""Shared test helpers: the protocol transcripts, waiting for actors, and a
runtime over two fault-injecting Ollama-protocol servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rubberduck import RubberDuckError, Runtime
from rubberduck.messages import Event, Request
from rubberduck.providers.base import CancelScope, Provider
from tests.fake_ollama import FIXTURES as FIXTURES_DIR
from tests.fake_ollama import FakeOllama
from tests.fake_ollama import fixture as load_fixture

__all__ = [
    "ANSWER",
    "FIXTURES_DIR",
    "HI",
    "load_fixture",
    "run",
    "run_failing",
    "runtime_for",
    "wait_until",
]

HI = [{"role": "user", "content": "Why is the sky blue?"}]
ANSWER = "The sky is blue."  # chat_stream.ndjson


def runtime_for(
    primary: str,
    backup: str,
    *,
    router: dict[str, Any] | None = None,
    supervisor: dict[str, Any] | None = None,
    primary_cfg: dict[str, Any] | None = None,
    backup_cfg: dict[str, Any] | None = None,
    **health: Any,
) -> Runtime:
    """A runtime with backends "primary" then "backup" (Ollama, model llama3.2),
    fast probes (0.1 s) and short cooldowns (0.2 s); keyword arguments override
    the ``[health]`` table, ``router`` the ``[router]`` table."""
    return Runtime.from_config(
        {
            "provider": {
                "primary": {
                    "kind": "ollama",
                    "base_url": primary,
                    "model": "llama3.2",
                    **(primary_cfg or {}),
                },
                "backup": {
                    "kind": "ollama",
                    "base_url": backup,
                    "model": "llama3.2",
                    **(backup_cfg or {}),
                },
            },
            "router": router or {},
            "supervisor": supervisor or {},
            "health": {"interval": 0.1, "cooldown": 0.2, "failure_threshold": 2, **health},
        }
    )


def run(provider: Provider, request: Request) -> list[Event]:
    """Run ``request`` on a provider alone (no actors); return its events."""
    events: list[Event] = []
    provider.run(request, events.append, CancelScope())
    return events


def run_failing(
    provider: Provider, request: Request, error: type[RubberDuckError]
) -> tuple[list[Event], Any]:
    """Run a request that must raise ``error``; return the events and the exception."""
    events: list[Event] = []
    with pytest.raises(error) as info:
        provider.run(request, events.append, CancelScope())
    return events, info.value


@pytest.fixture
def servers() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    """Two healthy fake Ollama servers, "primary" and "backup"."""
    with FakeOllama() as primary, FakeOllama() as backup:
        yield primary, backup


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    """Fails the test if it leaves a (non-daemon) thread running."""
    before = set(threading.enumerate())
    yield
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t not in before and not t.daemon], 5
    )


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 5 ms until it is true or ``timeout`` seconds pass;
    actors change state asynchronously."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The directory holding the Ollama transcripts (``tests/fixtures/ollama``)."""
    if not (FIXTURES_DIR / "README.md").is_file():
        pytest.fail(f"Ollama fixtures not found at {FIXTURES_DIR}")
    return FIXTURES_DIR


@pytest.fixture(autouse=True)
def _no_user_files(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the command line's user files (config, conversation history) out of the
    tester's home: neither read nor written there."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.delenv("RUBBERDUCK_CONFIG", raising=False)
