"""Shared test helpers: where the protocol transcripts live, and how to read them."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Exact server transcripts, kept outside the repository (see its README.md):
#: /work/main/tests/conftest.py -> parents[2] is /work.
FIXTURES_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ollama"


def load_fixture(name: str) -> bytes:
    """The raw bytes of one Ollama transcript, exactly as the server sends them."""
    return (FIXTURES_DIR / name).read_bytes()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The directory holding the Ollama transcripts."""
    if not (FIXTURES_DIR / "README.md").is_file():
        pytest.fail(f"Ollama fixtures not found at {FIXTURES_DIR}")
    return FIXTURES_DIR
