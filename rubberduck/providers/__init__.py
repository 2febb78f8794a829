"""Backends: plain classes that speak one server's protocol (no actors here)."""

from __future__ import annotations

from typing import Any, get_args

from rubberduck.config import ProviderConfig, ProviderKind
from rubberduck.errors import ConfigError
from rubberduck.providers.anthropic.provider import AnthropicProvider
from rubberduck.providers.base import CancelScope, Emit, Provider
from rubberduck.providers.local.provider import LocalProvider
from rubberduck.providers.ollama.provider import OllamaProvider, parse_ollama_host
from rubberduck.providers.openai.provider import OpenAIProvider

__all__ = [
    "AnthropicProvider",
    "CancelScope",
    "Emit",
    "LocalProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "Provider",
    "create_provider",
    "parse_ollama_host",
]


def create_provider(name: str, cfg: ProviderConfig) -> Provider:
    """Build the provider a ``[provider.NAME]`` table describes.

    Raises:
        ConfigError: the kind is unknown or a value is out of range.
    """
    kind = cfg.kind or name
    if cfg.max_in_flight < 1 or cfg.max_queue < 0:
        raise ConfigError(f"[provider.{name}] needs max_in_flight >= 1 and max_queue >= 0")
    # What every HTTP provider takes the same way (seconds; a pool a bit larger
    # than the requests in flight, for probes).
    http: dict[str, Any] = {
        "base_url": cfg.base_url,
        "default_model": cfg.model,
        "timeout": cfg.timeout,
        "connect_timeout": cfg.connect_timeout,
        "pool_size": cfg.max_in_flight + 2,
        "trust_env": cfg.trust_env,
        "allow_insecure_key": cfg.allow_insecure_key,
    }
    if cfg.headers and kind != "ollama":
        raise ConfigError(f'[provider.{name}] `headers` is only for kind "ollama"')
    if kind == "ollama":
        return OllamaProvider(
            name,
            keep_alive=cfg.keep_alive,
            api_key_env=cfg.api_key_env,
            headers=cfg.headers,
            **http,
        )
    if kind == "local":
        return LocalProvider(
            name,
            model=cfg.model,
            n_ctx=cfg.n_ctx,
            n_parallel=cfg.max_in_flight,
            max_tokens=cfg.max_tokens,
            embeddings=cfg.embeddings,
        )
    if kind == "anthropic":
        return AnthropicProvider(
            name,
            api_key_env=cfg.api_key_env,
            models=cfg.models,
            max_tokens=cfg.max_tokens,
            **http,
        )
    if kind == "openai":
        return OpenAIProvider(name, api_key_env=cfg.api_key_env, **http)
    kinds = ", ".join(f'"{k}"' for k in get_args(ProviderKind))
    raise ConfigError(f"[provider.{name}] has unknown kind {kind!r} — use one of {kinds}")
