"""What sends one benchmark request and times it: through a :class:`Runtime`, or
straight to one backend with a plain ``requests`` client (``--compare-direct``).

Both return a :class:`RequestRecord` and never raise for a failed request: a
failure is a figure (``failed``), not the end of the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import requests

from rubberduck.bench.metrics import RequestRecord
from rubberduck.bench.prompts import BenchPrompt
from rubberduck.config import ProviderConfig
from rubberduck.errors import InvalidRequest, RubberDuckError
from rubberduck.messages import Delta, Done, EmbedRequest, EmbedResponse, Restart
from rubberduck.runtime import Runtime

__all__ = ["Endpoint", "Sender", "direct_sender", "runtime_sender"]

#: Which API a benchmark sends to.
Endpoint = Literal["chat", "generate", "embed"]
#: Sends one prompt; returns how it went.
Sender = Callable[[BenchPrompt], RequestRecord]


def runtime_sender(
    rt: Runtime,
    endpoint: Endpoint,
    model: str | None,
    *,
    backends: list[str] | None = None,
    fallback: bool = True,
) -> Sender:
    """A sender that goes through ``rt``'s Router (``backends``/``fallback`` as in
    :meth:`Runtime.submit`; ``fallback=False`` also forbids a substitute model)."""
    routing: dict[str, Any] = {
        "backends": backends,
        "fallback": fallback,
        "allow_substitute": None if fallback else False,
    }

    def send(prompt: BenchPrompt) -> RequestRecord:
        start = time.monotonic()
        record = RequestRecord(ok=False, start=start, prompt_tokens_sent=prompt.input_tokens)
        handle = None
        try:
            if endpoint == "embed":
                handle = rt.submit(EmbedRequest(model=model, input=prompt.as_text()), **routing)
                _embedded(record, handle.result())
            else:
                options = {"num_predict": prompt.output_tokens} if prompt.output_tokens else None
                if endpoint == "chat":
                    handle = rt.chat(
                        model, prompt.chat_messages(), stream=True, options=options, **routing
                    )
                else:
                    handle = rt.generate(
                        model, prompt.as_text(), stream=True, options=options, **routing
                    )
                with handle:
                    for event in handle:
                        _event(record, event)
        except RubberDuckError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.e2el_s = time.monotonic() - start
        if handle is not None:
            record.tried = tuple(handle.tried)
            record.causes = tuple(f"{n}: {e}" for n, e in handle.causes.items())
        return record

    return send


def _event(record: RequestRecord, event: Any) -> None:
    now = time.monotonic()
    if isinstance(event, Delta) and event.text:
        if record.ttft_s is None:
            record.ttft_s = now - record.start
        record.chunk_times.append(now)
    elif isinstance(event, Restart):
        record.restarts += 1
        record.ttft_s = None
        record.chunk_times = []
    elif isinstance(event, Done):
        record.ok = True
        record.provider = event.provider
        record.substituted = event.substituted_for is not None
        usage, durations = event.usage, event.durations
        record.output_tokens = usage.completion_tokens or len(record.chunk_times)
        record.prompt_eval_count = usage.prompt_tokens or None
        record.input_tokens = usage.prompt_tokens or record.prompt_tokens_sent
        record.load_s, record.prompt_eval_s = durations.load_s, durations.prompt_eval_s
        record.eval_s = durations.eval_s


def _embedded(record: RequestRecord, answer: Any) -> None:
    assert isinstance(answer, EmbedResponse)
    record.ok = True
    record.provider = answer.provider
    record.substituted = answer.substituted_for is not None
    record.prompt_eval_count = answer.usage.prompt_tokens or None
    record.input_tokens = answer.usage.prompt_tokens or record.prompt_tokens_sent
    record.load_s = answer.durations.load_s


# --- straight to the backend -----------------------------------------------------

#: The path of each endpoint under the backend's base URL.
_OLLAMA_PATHS = {"chat": "/api/chat", "generate": "/api/generate", "embed": "/api/embed"}
_OPENAI_PATHS = {"chat": "/chat/completions", "generate": "/completions", "embed": "/embeddings"}


def direct_sender(
    cfg: ProviderConfig,
    endpoint: Endpoint,
    model: str | None,
    name: str = "",
    base_url: str | None = None,
    timeout: float = 600.0,
) -> Sender:
    """A sender that posts straight to one Ollama or OpenAI-compatible backend with
    one ``requests.Session`` (keep-alive), parsing the stream line by line: what a
    service without RubberDuck would do. A request on a kept-alive connection that
    the server closed before answering is sent once more, as RubberDuck's
    providers do.

    Args:
        cfg: The backend's configuration.
        endpoint: Which API to send to.
        model: Model name; ``None``: ``cfg.model``.
        name: The backend's configured name (``RequestRecord.provider``).
        base_url: The backend's resolved URL (``cfg.base_url`` may be ``None``
            for Ollama, which then reads ``OLLAMA_HOST``).
        timeout: Connect and read timeout of each request, seconds.

    Raises:
        InvalidRequest: the backend is not an HTTP one (``kind = "local"``) or
            names no model and none is given.
    """
    kind = cfg.kind or name
    base_url = base_url or cfg.base_url
    if kind not in ("ollama", "openai") or not base_url:
        raise InvalidRequest(
            f"--compare-direct needs an Ollama or OpenAI-compatible backend "
            f"(got {name!r}, kind {kind!r})"
        )
    model = model or cfg.model
    if not model:
        raise InvalidRequest("--compare-direct needs --model (the backend names no default)")
    session = requests.Session()
    if cfg.api_key_env and os.environ.get(cfg.api_key_env):
        session.headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"
    base = base_url.rstrip("/")
    openai = kind == "openai"
    url = base + (_OPENAI_PATHS if openai else _OLLAMA_PATHS)[endpoint]

    def send(prompt: BenchPrompt) -> RequestRecord:
        body = _direct_body(openai, endpoint, model, prompt)
        start = time.monotonic()
        record = RequestRecord(
            ok=False, start=start, prompt_tokens_sent=prompt.input_tokens, provider=name
        )
        for attempt in (1, 2):
            try:
                with session.post(
                    url, json=body, stream=endpoint != "embed", timeout=timeout
                ) as resp:
                    resp.raise_for_status()
                    if endpoint == "embed":
                        final = resp.json()
                    else:
                        final = _read_stream(record, resp.iter_lines(), openai)
                _direct_done(record, final, openai)
            except requests.ConnectionError as exc:
                if attempt == 1 and _stale(exc):
                    continue  # a kept-alive connection the server had closed: once more
                record.error = f"{type(exc).__name__}: {exc}"
            except (requests.RequestException, ValueError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            break
        record.e2el_s = time.monotonic() - start
        return record

    return send


def _stale(exc: requests.ConnectionError) -> bool:
    """The server closed a reused keep-alive connection before answering
    (llama.cpp's server closes one after a few requests): safe to send again."""
    return "Connection aborted" in str(exc)


def _direct_body(openai: bool, endpoint: Endpoint, model: str, prompt: BenchPrompt) -> Any:
    if endpoint == "embed":
        return {"model": model, "input": prompt.as_text()}
    body: dict[str, Any] = {"model": model, "stream": True}
    if endpoint == "chat":
        body["messages"] = prompt.chat_messages()
    else:
        body["prompt"] = prompt.as_text()
    if openai:
        body["stream_options"] = {"include_usage": True}
        if prompt.output_tokens:
            body["max_tokens"] = prompt.output_tokens
    elif prompt.output_tokens:
        body["options"] = {"num_predict": prompt.output_tokens}
    return body


def _read_stream(record: RequestRecord, lines: Iterator[bytes], openai: bool) -> dict[str, Any]:
    """Time each text chunk; returns the final fields (Ollama's ``done`` line, or
    the OpenAI chunks with ``usage`` and llama.cpp's ``timings`` merged)."""
    final: dict[str, Any] = {}
    for line in lines:
        if openai:
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            line = line[5:]
        elif not line.strip():
            continue
        obj = json.loads(line)
        if "error" in obj:
            raise ValueError(f"the stream says: {obj['error']}")
        if _text(obj, openai):
            now = time.monotonic()
            if record.ttft_s is None:
                record.ttft_s = now - record.start
            record.chunk_times.append(now)
        if obj.get("done") or obj.get("usage") or obj.get("timings"):
            final = {**final, **obj}
    return final


def _text(obj: dict[str, Any], openai: bool) -> str:
    if openai:
        choices = obj.get("choices") or [{}]
        return str((choices[0].get("delta") or {}).get("content") or choices[0].get("text") or "")
    return str((obj.get("message") or {}).get("content") or obj.get("response") or "")


def _direct_done(record: RequestRecord, final: dict[str, Any], openai: bool) -> None:
    record.ok = True
    if openai:
        usage = final.get("usage") or {}
        prompt_tokens, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
        timings = final.get("timings") or {}  # llama.cpp's extension, milliseconds
        if "predicted_ms" in timings:
            record.eval_s = timings["predicted_ms"] / 1e3
            record.prompt_eval_s = timings.get("prompt_ms", 0.0) / 1e3
    else:
        prompt_tokens, output = final.get("prompt_eval_count"), final.get("eval_count")
        ns = 1e-9
        record.load_s = final["load_duration"] * ns if "load_duration" in final else None
        if "eval_duration" in final:
            record.eval_s = final["eval_duration"] * ns
            record.prompt_eval_s = final.get("prompt_eval_duration", 0) * ns
    record.output_tokens = output or len(record.chunk_times)
    record.prompt_eval_count = prompt_tokens
    record.input_tokens = prompt_tokens or record.prompt_tokens_sent
