"""End to end on a real model: llama.cpp in-process with SmolLM2-135M (from PyPI).

Ollama is pointed at a closed port, so every answer here comes from the embedded
backend through the full path: Router → ProviderActor → llama.cpp → caller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rubberduck import Cancelled, Delta, Done, Runtime
from tests.fake_ollama import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp", reason="the embedded backend needs the `local` extra")

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture
def ollama_down(monkeypatch: pytest.MonkeyPatch) -> str:
    host = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


@pytest.fixture
def rt(ollama_down: str) -> Iterator[Runtime]:
    with Runtime.default() as runtime:
        yield runtime


def test_default_runtime_answers_through_the_embedded_model(rt: Runtime, ollama_down: str) -> None:
    reply = rt.chat(messages=QUESTION, options={"temperature": 0, "num_predict": 24})
    assert reply.provider == "local"
    assert reply.model == "smollm2-135m-instruct"
    assert "paris" in reply.message.content.lower()
    assert reply.done_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 24
    assert reply.cost_usd == 0.0
    assert reply.fallbacks and reply.fallbacks[0].startswith("ollama: ")
    assert ollama_down in reply.fallbacks[0]
    assert rt.health()["local"].state == "closed"


def test_streaming_from_the_embedded_model(rt: Runtime) -> None:
    events = list(rt.stream_chat(messages=QUESTION, options={"temperature": 0, "num_predict": 16}))
    deltas = [e for e in events if isinstance(e, Delta)]
    assert len(deltas) >= 2, "tokens arrive as separate events"
    assert isinstance(events[-1], Done) and events[-1].provider == "local"
    assert events[-1].usage.completion_tokens == pytest.approx(len(deltas), abs=2)
    assert events[-1].tokens_per_second and events[-1].tokens_per_second > 0


def test_generate_on_the_embedded_model(rt: Runtime) -> None:
    reply = rt.generate(prompt="The capital of France is", raw=True, num_predict=4, temperature=0)
    assert reply.provider == "local"
    assert "paris" in reply.response.lower()


def test_closing_an_embedded_stream_stops_generation(rt: Runtime) -> None:
    stream = rt.stream_chat(
        messages=[{"role": "user", "content": "Write a long story about a duck."}],
        options={"num_predict": 2000},
    )
    first = next(iter(stream))
    assert isinstance(first, Delta)
    stream.close()
    with pytest.raises(Cancelled):
        stream.result()
    # The slot is free again: the next request runs now, not after 2000 tokens.
    started = time.monotonic()
    reply = rt.chat(messages=QUESTION, options={"num_predict": 8})
    assert reply.provider == "local"
    assert time.monotonic() - started < 10


def test_cli_chat_streams_the_answer_and_names_the_backend(ollama_down: str) -> None:
    env = {**os.environ, "OLLAMA_HOST": ollama_down}
    proc = subprocess.run(
        [sys.executable, "-m", "rubberduck.cli", "chat", QUESTION[0]["content"],
         "--temperature", "0", "--num-predict", "24"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "paris" in proc.stdout.lower()
    assert "answered by local (smollm2-135m-instruct)" in proc.stderr
    # The first probe may open Ollama's circuit before the request arrives: then
    # the note says it was skipped; either way it says why and what to do.
    assert "fell back from ollama: " in proc.stderr
    assert "not reachable" in proc.stderr and "ollama serve" in proc.stderr


def test_cli_health_shows_ollama_down_and_local_up(ollama_down: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rubberduck.cli", "health", "--host", ollama_down],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert "open" in lines["ollama"] and "not reachable" in lines["ollama"]
    assert " up " in lines["local"]


@pytest.mark.slow
def test_the_embedded_model_embeds_through_the_runtime() -> None:
    config = {"provider": {"local": {"kind": "local", "embeddings": True, "max_tokens": 8}}}
    with Runtime.from_config(config) as rt:
        answer = rt.embed(None, ["a duck", "tax law"])
        again = rt.embed(None, "a duck")
        reply = rt.chat(None, [{"role": "user", "content": "Say hi."}])
    a, b = answer.embeddings
    assert len(a) == 576 and answer.provider == "local"  # SmolLM2-135M: n_embd 576
    assert sum(x * x for x in a) == pytest.approx(1.0, abs=1e-4)  # unit length, as Ollama
    assert again.embeddings[0] == pytest.approx(a, abs=1e-5) and a != b
    # (SmolLM2 is a chat model: its mean-pooled vectors carry little meaning.)
    assert reply.message.content
