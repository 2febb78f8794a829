"""The same call through the official ``ollama`` client and through RubberDuck gets
the same answer from a real server (fixed seed, temperature 0)."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from rubberduck import ChatResponse, Delta, GenerateResponse, RequestHandle, Runtime
from tests.e2e.conftest import FIXED, MODEL, get_json

pytestmark = pytest.mark.ollama

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]


@pytest.fixture(scope="module")
def client(ollama_url: str) -> Iterator[ollama.Client]:
    official = ollama.Client(host=ollama_url, trust_env=False)
    yield official
    official.close()


def test_chat(client: ollama.Client, rt: Runtime) -> None:
    theirs = client.chat(MODEL, MESSAGES, options=FIXED)
    ours = rt.chat(MODEL, MESSAGES, options=FIXED)
    assert isinstance(ours, ChatResponse)
    assert ours.message.content == theirs.message.content
    assert ours.done_reason == theirs.done_reason
    assert ours.usage.prompt_tokens == theirs.prompt_eval_count
    assert ours.usage.completion_tokens == theirs.eval_count


def test_chat_streamed(client: ollama.Client, rt: Runtime) -> None:
    theirs = "".join(
        part.message.content for part in client.chat(MODEL, MESSAGES, stream=True, options=FIXED)
    )
    handle = rt.stream_chat(MODEL, MESSAGES, options=FIXED)
    ours = "".join(e.text for e in handle if isinstance(e, Delta))
    assert ours == theirs


def test_generate(client: ollama.Client, rt: Runtime) -> None:
    theirs = client.generate(MODEL, "Once upon a time", options=FIXED)
    ours = rt.generate(MODEL, "Once upon a time", options=FIXED)
    assert isinstance(ours, GenerateResponse)
    assert ours.response == theirs.response
    assert ours.usage.completion_tokens == theirs.eval_count

    streamed = rt.generate(MODEL, "Once upon a time", stream=True, options=FIXED)
    assert isinstance(streamed, RequestHandle)
    assert "".join(e.text for e in streamed if isinstance(e, Delta)) == theirs.response


def test_generate_with_json_format(client: ollama.Client, rt: Runtime) -> None:
    options = {**FIXED, "num_predict": 48}
    theirs = client.generate(MODEL, "A JSON object about Paris:", format="json", options=options)
    ours = rt.generate(MODEL, "A JSON object about Paris:", format="json", options=options)
    assert isinstance(ours, GenerateResponse)
    assert ours.response == theirs.response


def test_embed(client: ollama.Client, rt: Runtime) -> None:
    texts = ["The sky is blue.", "Grass is green."]
    theirs = client.embed(MODEL, texts)
    ours = rt.embed(MODEL, texts)
    assert len(ours.embeddings) == len(theirs.embeddings) == 2
    for mine, official in zip(ours.embeddings, theirs.embeddings, strict=True):
        assert mine == pytest.approx(list(official), abs=1e-6)
    assert ours.usage.prompt_tokens == theirs.prompt_eval_count


def test_model_management(client: ollama.Client, rt: Runtime, ollama_url: str) -> None:
    assert rt.version() == get_json(f"{ollama_url}/api/version")["version"]
    assert sorted(m.name for m in rt.list().models) == sorted(
        str(m.model) for m in client.list().models
    )
    theirs, ours = client.show(MODEL), rt.show(MODEL)
    assert ours.template == theirs.template and ours.parameters == (theirs.parameters or "")
    assert ours.capabilities == list(theirs.capabilities or [])
    assert ours.model_info == dict(theirs.modelinfo or {})
    assert rt.embeddings(MODEL, "hi").embedding == pytest.approx(
        list(client.embeddings(MODEL, "hi").embedding), abs=1e-6
    )
