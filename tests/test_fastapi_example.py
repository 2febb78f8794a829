"""examples/fastapi_app.py served by uvicorn on 127.0.0.1, against fake Ollama
backends, driven by an HTTP client: concurrent streams, and a client that leaves
mid-stream (the upstream connection must close)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ANSWER, wait_until
from tests.fake_ollama import FakeOllama, free_port

uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FakeOllama, FakeOllama]]:
    """The example app on a free port; its config names two fake Ollama backends."""
    with FakeOllama() as first, FakeOllama() as second:
        toml = tmp_path / "rubberduck.toml"
        toml.write_text(
            "".join(
                f'[provider.{name}]\nkind = "ollama"\nbase_url = "{fake.url}"\n'
                f'model = "llama3.2"\nmax_in_flight = 8\n'
                for name, fake in (("first", first), ("second", second))
            )
        )
        monkeypatch.setenv("RUBBERDUCK_CONFIG", str(toml))
        spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # pydantic resolves names there
        spec.loader.exec_module(module)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: server.started, 10)
            yield f"http://127.0.0.1:{port}", first, second
        finally:
            server.should_exit = True
            thread.join(10)
    assert not thread.is_alive()


def test_endpoints_and_fifty_concurrent_streams(served: tuple[str, FakeOllama, FakeOllama]) -> None:
    url, first, second = served

    async def stream(client: Any) -> str:
        async with client.stream("POST", f"{url}/chat/stream", json=BODY) as response:
            assert response.status_code == 200
            return "".join([text async for text in response.aiter_text()])

    async def main() -> list[str]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            health = (await client.get(f"{url}/health")).json()
            assert set(health) == {"first", "second"}
            reply = (await client.post(f"{url}/chat", json=BODY)).json()
            assert reply["content"] == ANSWER and reply["provider"] in health
            return await asyncio.gather(*(stream(client) for _ in range(50)))

    texts = asyncio.run(main())
    assert texts == [ANSWER] * 50
    assert len(first.posts()) + len(second.posts()) == 51


def test_a_client_that_leaves_mid_stream_closes_the_upstream_connection(
    served: tuple[str, FakeOllama, FakeOllama],
) -> None:
    url, first, second = served
    first.mode = second.mode = "stall"  # one token, then silence

    async def main() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", f"{url}/chat/stream", json=BODY) as response,
        ):
            async for text in response.aiter_text():
                assert text  # the first token; the server now says nothing
                break
        # The client has closed its connection (leaving both blocks).

    asyncio.run(main())
    assert wait_until(lambda: first.disconnects + second.disconnects == 1, 2.0)
    time.sleep(0.1)
    assert len(first.posts()) + len(second.posts()) == 1
