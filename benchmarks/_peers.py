"""The peers every benchmark sets RubberDuck beside, made the same way everywhere:
a plain ``requests`` client, the official ``ollama`` client and LiteLLM's Router
with ``ollama_chat/`` deployments (extra ``bench``; skipped with a note when it
does not install or import), plus the ``--smoke`` switch every script takes.

Each ``*_sender`` returns a :data:`rubberduck.bench.clients.Sender`: it sends one
streamed chat and returns a :class:`RequestRecord` (TTFT, chunk times, E2EL), so
that :func:`rubberduck.bench.run_load` can drive any of them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rubberduck.bench.clients import Sender, direct_sender
from rubberduck.bench.metrics import RequestRecord
from rubberduck.bench.prompts import BenchPrompt
from rubberduck.config import ProviderConfig

MODEL = "llama3.2"
# LiteLLM fetches its model price map from the network at import: use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def smoke(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """``(True, rest)`` when ``--smoke`` is among ``argv`` (a tiny N, as CI runs
    every benchmark once), else ``(False, argv)``."""
    rest = [a for a in argv if a != "--smoke"]
    return len(rest) != len(argv), rest


def official_ollama() -> Any | None:
    """The ``ollama`` module, or ``None`` (with a note) when not installed."""
    try:
        import ollama
    except ImportError:
        print("(official ollama client not installed: pip install -e '.[bench]')")
        return None
    return ollama


def litellm_router(urls: Sequence[str], **router_args: Any) -> Any | None:
    """A LiteLLM ``Router`` with one ``ollama_chat/`` deployment per URL, all under
    the model name :data:`MODEL`; ``None`` (with a note) when LiteLLM is missing."""
    try:
        import litellm
    except Exception as exc:  # noqa: BLE001 - an import that needs the network fails anyhow
        print(f"(LiteLLM skipped: {type(exc).__name__}: {exc} — pip install -e '.[bench]')")
        return None
    litellm.suppress_debug_info = True
    deployments = [
        {"model_name": MODEL, "litellm_params": {"model": f"ollama_chat/{MODEL}", "api_base": u}}
        for u in urls
    ]
    return litellm.Router(model_list=deployments, **router_args)


def requests_sender(url: str, timeout: float = 600.0) -> Sender:
    """A plain ``requests`` client (one keep-alive session) streaming ``/api/chat``;
    ``timeout`` is its connect and read timeout, seconds."""
    cfg = ProviderConfig(kind="ollama", base_url=url)
    return direct_sender(cfg, "chat", MODEL, url, timeout=timeout)


def try_in_turn(senders: Sequence[Sender]) -> Sender:
    """Hand-written failover around any client: on a failed request (an error, or
    a stream that broke) send it to the next server; the record covers every try."""

    def send(prompt: BenchPrompt) -> RequestRecord:
        start = time.monotonic()
        tried: list[str] = []
        for one in senders:
            record = one(prompt)
            tried.append(record.provider or str(len(tried)))
            if record.ok:
                break
        if record.ttft_s is not None:
            record.ttft_s = record.chunk_times[0] - start
        record.start, record.e2el_s, record.tried = start, time.monotonic() - start, tuple(tried)
        return record

    return send


def _timed(
    stream: Callable[[BenchPrompt], Any], text: Callable[[Any], str], provider: str = ""
) -> Sender:
    """A sender from a call that returns an iterator of chunks and a function that
    reads a chunk's text; an exception is a failed request."""

    def send(prompt: BenchPrompt) -> RequestRecord:
        start = time.monotonic()
        record = RequestRecord(
            ok=False, start=start, prompt_tokens_sent=prompt.input_tokens, provider=provider
        )
        try:
            for chunk in stream(prompt):
                if text(chunk):
                    now = time.monotonic()
                    if record.ttft_s is None:
                        record.ttft_s = now - start
                    record.chunk_times.append(now)
            record.ok = True
            record.output_tokens = len(record.chunk_times)
        except Exception as exc:  # noqa: BLE001 - each client raises its own errors
            record.error = f"{type(exc).__name__}: {exc}"
        record.e2el_s = time.monotonic() - start
        return record

    return send


def ollama_sender(module: Any, url: str, timeout: float | None = None) -> Sender:
    """The official client (``ollama.Client.chat(stream=True)``) on one server."""
    client = module.Client(host=url, timeout=timeout)
    return _timed(
        lambda p: client.chat(model=MODEL, messages=p.chat_messages(), stream=True),
        lambda part: part.message.content,
        url,
    )


def litellm_sender(router: Any) -> Sender:
    """LiteLLM's ``Router.completion(stream=True)``."""
    return _timed(
        lambda p: router.completion(model=MODEL, messages=p.chat_messages(), stream=True),
        lambda chunk: chunk.choices[0].delta.content if chunk.choices else "",
    )


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Rows as aligned columns: the first left-aligned, numbers right-aligned with
    two decimals, ``None`` as a dash."""

    def cell(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    cells = [list(header), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    )


def together(callers: int, work: Callable[[], object]) -> tuple[float, float]:
    """Run ``work`` once on each of ``callers`` threads, released at once (a
    barrier); returns the wall seconds from the release until the last one
    ended, and the process CPU seconds spent meanwhile (every thread's)."""
    barrier = threading.Barrier(callers + 1)

    def run() -> None:
        barrier.wait()
        work()

    pool = [threading.Thread(target=run) for _ in range(callers)]
    for t in pool:
        t.start()
    cpu, wall = time.process_time(), time.perf_counter()
    barrier.wait()
    for t in pool:
        t.join()
    return time.perf_counter() - wall, time.process_time() - cpu
