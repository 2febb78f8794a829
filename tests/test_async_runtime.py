"""AsyncRuntime against the fake Ollama: the API, cancellation that closes the
upstream connection (even while the server is silent), several event loops, uvloop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from rubberduck import AsyncRequestHandle, AsyncRuntime, Done, Runtime
from rubberduck.errors import Cancelled, ConfigError, ProviderUnavailable, RequestTimeout
from rubberduck.messages import Delta
from rubberduck.ollama_types import Progress
from tests.conftest import ANSWER, HI
from tests.fake_ollama import FakeOllama

#: Hang guard only: what "promptly" means here is asserted by order of events.
GUARD_S = 2.0


def config(*urls: str, **router: Any) -> dict[str, Any]:
    return {
        "provider": {
            f"b{i}": {"kind": "ollama", "base_url": url, "model": "llama3.2"}
            for i, url in enumerate(urls)
        },
        "router": router,
        "health": {"interval": 0.1, "cooldown": 0.2},
    }


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


async def eventually(predicate: Callable[[], object], timeout: float = GUARD_S) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


def run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro())


def test_the_api_answers_like_the_sync_runtime(fake: FakeOllama) -> None:
    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            reply = await rt.chat("llama3.2", HI)
            assert reply.message.content == ANSWER and reply.provider == "b0"
            handle = await rt.chat("llama3.2", HI, stream=True)
            assert isinstance(handle, AsyncRequestHandle)
            events = [event async for event in handle]
            assert isinstance(events[-1], Done)
            assert "".join(e.text for e in events if isinstance(e, Delta)) == ANSWER
            assert (await rt.generate("llama3.2", "hi")).response
            assert (await rt.embed("llama3.2", "hi")).embeddings
            submitted = rt.submit(reply_request())
            assert (await submitted.result()).message.content == ANSWER
            assert submitted.tried == ("b0",)
            assert (await rt.health())["b0"].name == "b0"
            assert rt.usage().by_backend["b0"].requests == 5
            assert (await rt.list()).models
            assert await rt.version()
            statuses = [p.status async for p in await rt.pull("llama3.2", stream=True)]
            assert statuses[-1] == "success"
            assert isinstance(await rt.pull("llama3.2"), Progress)

    run(main)


def test_every_method_of_runtime_and_of_the_official_async_client_is_awaitable_here() -> None:
    """The twin has the same names: every public method of Runtime and of
    ollama.AsyncClient (but those that are not local) exists, and is a coroutine
    function, except submit (returns a handle), usage and subscribe_usage."""
    import inspect

    import ollama

    from tests.test_runtime_api import NOT_LOCAL

    names = {n for n, _ in inspect.getmembers(Runtime, inspect.isfunction) if n[0] != "_"}
    names |= {n for n, _ in inspect.getmembers(ollama.AsyncClient, inspect.isfunction)}
    names = {n for n in names if not n.startswith("_")} - set(NOT_LOCAL)
    names -= {"ollama"}  # the sync provider object itself, not a call
    missing = sorted(n for n in names if not hasattr(AsyncRuntime, n))
    assert not missing, f"AsyncRuntime lacks {missing}"
    plain = {"submit", "usage", "subscribe_usage"}
    not_awaitable = sorted(
        n for n in names - plain if not inspect.iscoroutinefunction(getattr(AsyncRuntime, n))
    )
    assert not not_awaitable, f"not awaitable: {not_awaitable}"


def reply_request() -> Any:
    from rubberduck import ChatRequest, Message

    return ChatRequest(model="llama3.2", messages=[Message(role="user", content="hi")])


def test_construction_starts_nothing_and_bad_input_fails_before_any_start(
    fake: FakeOllama,
) -> None:
    before = set(threading.enumerate())
    rt = AsyncRuntime.from_config(config(fake.url))
    assert set(threading.enumerate()) == before, "construction started threads"
    with pytest.raises(ConfigError):
        AsyncRuntime({"provider": {}})  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(ProviderUnavailable, match="not started"):
            rt.submit(reply_request())
        with pytest.raises(Exception, match="temprature"):
            await rt.chat("llama3.2", HI, temprature=0)  # type: ignore[call-overload]
        assert rt._runtime is None, "a bad request started the runtime"
        await rt.close()

    run(main)
    assert not fake.posts()


@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_cancelling_the_awaiting_task_closes_the_connection(fake: FakeOllama, mode: str) -> None:
    """Before the first byte ("hang") or in a pause after the first token
    ("stall"): asyncio.timeout cancels the task, the request, and its HTTP call."""
    fake.mode = mode

    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await rt.chat("llama3.2", HI)
            assert len(fake.posts()) == 1
            assert await eventually(lambda: fake.disconnects == 1)

    run(main)


def test_leaving_an_async_for_early_closes_the_connection(fake: FakeOllama) -> None:
    fake.mode = "stall"  # one token, then silence

    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            async for event in await rt.chat("llama3.2", HI, stream=True):
                assert isinstance(event, Delta)
                break
            assert await eventually(lambda: fake.disconnects == 1)

    run(main)


def test_a_task_group_cancelled_closes_every_connection(fake: FakeOllama) -> None:
    fake.mode = "hang"

    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:

            async def fail_soon() -> None:
                await eventually(lambda: len(fake.posts()) == 3)
                raise RuntimeError("one task failed")

            with pytest.raises(ExceptionGroup):
                async with asyncio.TaskGroup() as tg:
                    for _ in range(3):
                        tg.create_task(rt.chat("llama3.2", HI))
                    tg.create_task(fail_soon())
            assert await eventually(lambda: fake.disconnects == 3)

    run(main)


def test_the_deadline_ends_an_unread_request(fake: FakeOllama) -> None:
    fake.mode = "hang"

    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url, retries=0)) as rt:
            with pytest.raises(RequestTimeout):
                await rt.chat("llama3.2", HI, timeout=0.2)
            assert await eventually(lambda: fake.disconnects == 1)

    run(main)


def test_leaving_a_pull_early_closes_the_connection(fake: FakeOllama) -> None:
    fake.mode = "hang"

    async def main() -> None:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    async for _ in await rt.pull("llama3.2", stream=True):
                        pass
            assert await eventually(lambda: fake.disconnects == 1)

    run(main)


def test_one_runtime_across_several_event_loops(fake: FakeOllama) -> None:
    """Repeated asyncio.run with one runtime created outside (a known failure of
    ollama.AsyncClient)."""
    rt = AsyncRuntime.from_config(config(fake.url))

    async def ask() -> str:
        return (await rt.chat("llama3.2", HI)).message.content

    try:
        for _ in range(3):
            assert asyncio.run(ask()) == ANSWER
    finally:
        asyncio.run(rt.close())
    assert rt._runtime is not None and rt._runtime._closed


def test_one_runtime_per_event_loop(fake: FakeOllama) -> None:
    async def main() -> str:
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            handle = await rt.chat("llama3.2", HI, stream=True)
            return "".join([e.text async for e in handle if isinstance(e, Delta)])

    assert [asyncio.run(main()) for _ in range(2)] == [ANSWER, ANSWER]


def test_uvloop(fake: FakeOllama) -> None:
    uvloop = pytest.importorskip("uvloop")
    fake.mode = "stall"

    async def main() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with AsyncRuntime.from_config(config(fake.url)) as rt:
            fake.script.append("ok")
            assert (await rt.chat("llama3.2", HI)).message.content == ANSWER
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await rt.chat("llama3.2", HI)
            assert await eventually(lambda: fake.disconnects == 1)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_close_cancels_what_runs_and_a_closed_runtime_refuses(fake: FakeOllama) -> None:
    fake.mode = "hang"

    async def main() -> None:
        rt = await AsyncRuntime.from_config(config(fake.url)).start()
        handle = await rt.chat("llama3.2", HI, stream=True)
        assert await eventually(lambda: len(fake.posts()) == 1)
        await rt.aclose()
        with pytest.raises(Cancelled):
            await handle.result()
        with pytest.raises(ProviderUnavailable, match="closed"):
            await rt.chat("llama3.2", HI)

    run(main)


def test_the_sync_runtime_is_unchanged_beside_it(fake: FakeOllama) -> None:
    with Runtime.from_config(config(fake.url)) as rt:
        assert rt.chat("llama3.2", HI).message.content == ANSWER
