"""Every provider keeps the same contract: the Provider protocol plus info(),
supports_feature(), validate_config() and count_tokens()."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
    makers: dict[str, Callable[[], Provider]] = {
        "ollama": lambda: OllamaProvider("ollama", base_url="http://127.0.0.1:9"),
        "local": lambda: LocalProvider("local"),
        "openai": lambda: OpenAIProvider(
            "openai", base_url="https://api.openai.com/v1", api_key_env="RD_CONTRACT_KEY",
            default_model="gpt-4o-mini",
        ),
        "anthropic": lambda: AnthropicProvider(
            "anthropic", api_key_env="RD_CONTRACT_KEY", default_model="claude-sonnet-4-5"
        ),
    }  # fmt: skip
    made = makers[request.param]()
    yield made
    made.close()


def test_the_contract(provider: Provider) -> None:
    assert isinstance(provider, Provider)
    info = provider.info()
    assert isinstance(info, ProviderInfo) and info.name == provider.name
    assert info.kind == provider.kind and info.is_local == provider.is_local
    assert "sk-test" not in repr(provider) and "sk-test" not in repr(info)
    assert all(type(provider.supports_feature(f)) is bool for f in FEATURES)
    assert provider.supports_feature("streaming")
    assert provider.supports_feature("no-such-feature") is False
    provider.validate_config()  # raises nothing
    estimate = provider.count_tokens("The quick brown fox jumps over the lazy dog.")
    assert isinstance(estimate, int) and 5 <= estimate <= 20
    assert provider.count_tokens("") == 0


def test_the_protocol_names_the_whole_contract() -> None:
    members = {"run", "embed", "health_check", "list_models", "close"}
    members |= {"info", "supports_feature", "validate_config", "count_tokens"}
    assert members <= set(dir(Provider))
