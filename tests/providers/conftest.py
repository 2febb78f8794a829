"""Fixtures the provider tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.scripted_server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted fault server on 127.0.0.1 (see :class:`ScriptedServer`)."""
    with ScriptedServer() as srv:
        yield srv
