"""Shared test helpers: the protocol transcripts, and waiting for actors."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake_ollama import FIXTURES as FIXTURES_DIR
from tests.fake_ollama import fixture as load_fixture

__all__ = ["FIXTURES_DIR", "load_fixture", "wait_until"]


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
    """The directory holding the Ollama transcripts (``shared/fixtures/ollama``)."""
    if not (FIXTURES_DIR / "README.md").is_file():
        pytest.fail(f"Ollama fixtures not found at {FIXTURES_DIR}")
    return FIXTURES_DIR
