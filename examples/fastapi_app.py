"""A FastAPI service on RubberDuck's AsyncRuntime.

Run it (``pip install -e ".[examples]"``)::

    RUBBERDUCK_CONFIG=rubberduck.toml uvicorn examples.fastapi_app:app

``RUBBERDUCK_CONFIG`` is the path of a RubberDuck TOML file; without it the app
uses ``AsyncRuntime.default()`` (Ollama at ``OLLAMA_HOST``, then the embedded
model). Endpoints:

- ``POST /chat`` ``{"model": ..., "messages": [...]}``: the whole answer as JSON.
- ``POST /chat/stream``: the answer's text as it is generated (``text/plain``).
  A client that disconnects cancels the request: the upstream connection is
  closed at once and Ollama stops generating.
- ``GET /health``: each backend's circuit state.

A failure (no backend could answer, the deadline passed) is a 502/504 with the
error's message. A stream's response starts at once (status 200), so that a
client that leaves before the first token is noticed too; an error then ends
the body early.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from rubberduck import AsyncRequestHandle, AsyncRuntime, Delta, RequestTimeout, RubberDuckError


class ChatIn(BaseModel):
    """A chat request: Ollama's ``model`` and ``messages``."""

    model: str | None = None
    messages: list[dict[str, Any]]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One runtime for the app's life: started before the first request,
    closed (cancelling what still runs) at shutdown; neither blocks the loop."""
    source = os.environ.get("RUBBERDUCK_CONFIG")
    runtime = AsyncRuntime.from_config(source) if source else AsyncRuntime.default()
    async with runtime:
        app.state.rubberduck = runtime
        yield


app = FastAPI(title="RubberDuck example", lifespan=lifespan)


def runtime(request: Request) -> AsyncRuntime:
    rt: AsyncRuntime = request.app.state.rubberduck
    return rt


@app.exception_handler(RubberDuckError)
async def rubberduck_error(_: Request, exc: RubberDuckError) -> JSONResponse:
    status = 504 if isinstance(exc, RequestTimeout) else 502
    return JSONResponse({"error": exc.message, "kind": exc.kind}, status_code=status)


@app.post("/chat")
async def chat(body: ChatIn, request: Request) -> dict[str, Any]:
    reply = await runtime(request).chat(body.model, body.messages)
    return {"content": reply.message.content, "model": reply.model, "provider": reply.provider}


@app.post("/chat/stream")
async def chat_stream(body: ChatIn, request: Request) -> StreamingResponse:
    handle = await runtime(request).chat(body.model, body.messages, stream=True)
    return StreamingResponse(_texts(handle), media_type="text/plain; charset=utf-8")


async def _texts(handle: AsyncRequestHandle) -> AsyncIterator[str]:
    # Starlette cancels this generator's task when the client disconnects (it
    # listens for it while streaming): the cancellation reaches the handle, which
    # cancels the request and closes its upstream connection.
    async for event in handle:
        if isinstance(event, Delta):
            yield event.text


@app.get("/health")
async def health(request: Request) -> dict[str, str]:
    return {name: h.state for name, h in (await runtime(request).health()).items()}
