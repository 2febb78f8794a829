"""The openai provider: OpenAI-compatible servers (llama.cpp, vLLM, LM Studio, OpenAI).

The provider is in :mod:`.provider`; the modules beside it each hold one concept.
"""

from rubberduck.providers.openai.provider import FEATURES, OpenAIProvider, ProviderInfo

__all__ = ["FEATURES", "OpenAIProvider", "ProviderInfo"]
