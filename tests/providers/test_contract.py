"""Every provider keeps the same contract: the Provider protocol plus info(),
supports_feature(), validate_config() and count_tokens()."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rubberduck.providers import (
    AnthropicProvider,
    LocalProvider,
    OllamaProvider,
    OpenAIProvider,
    Provider,
)
from rubberduck.providers.base import ProviderInfo

FEATURES = ("streaming", "tools", "vision", "embeddings", "json_mode")


@pytest.fixture(params=["ollama", "local", "openai", "anthropic"])
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    monkeypatch.setenv("RD_CONTRACT_KEY", "sk-test-0123456789")
    made: Provider = {
        "ollama": lambda: OllamaProvider("ollama", base_url="http://127.0.0.1:9"),
        "local": lambda: LocalProvider("local"),
        "openai": lambda: OpenAIProvider(
            "openai", base_url="https://api.openai.com/v1", api_key_env="RD_CONTRACT_KEY",
            default_model="gpt-4o-mini",
        ),
        "anthropic": lambda: AnthropicProvider(
            "anthropic", api_key_env="RD_CONTRACT_KEY", default_model="claude-sonnet-4-5"
        ),
    }[request.param]()  # fmt: skip
    yield made
    made.close()


def test_the_contract(provider: Provider) -> None:
    assert isinstance(provider, Provider)
    info = provider.info()  # type: ignore[attr-defined]
    assert isinstance(info, ProviderInfo) and info.name == provider.name
    assert info.kind == provider.kind and info.is_local == provider.is_local
    assert "sk-test" not in repr(provider) and "sk-test" not in repr(info)
    assert all(type(provider.supports_feature(f)) is bool for f in FEATURES)  # type: ignore[attr-defined]
    assert provider.supports_feature("streaming")  # type: ignore[attr-defined]
    assert provider.supports_feature("no-such-feature") is False  # type: ignore[attr-defined]
    assert provider.validate_config() is None  # type: ignore[attr-defined]
    estimate = provider.count_tokens("The quick brown fox jumps over the lazy dog.")  # type: ignore[attr-defined]
    assert isinstance(estimate, int) and 5 <= estimate <= 20
    assert provider.count_tokens("") == 0  # type: ignore[attr-defined]
