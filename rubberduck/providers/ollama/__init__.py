"""The ollama provider: Ollama's native HTTP API.

The provider is in :mod:`.provider`; the modules beside it each hold one concept.
"""

from rubberduck.providers.ollama.provider import (
    DEFAULT_OLLAMA_HOST,
    FEATURES,
    OllamaProvider,
    parse_ollama_host,
)

__all__ = ["DEFAULT_OLLAMA_HOST", "FEATURES", "OllamaProvider", "parse_ollama_host"]
