"""The anthropic provider: Anthropic's Messages API.

The provider is in :mod:`.provider`; the modules beside it each hold one concept.
"""

from rubberduck.providers.anthropic.provider import (
    ANTHROPIC_VERSION,
    DEFAULT_ANTHROPIC_URL,
    DEFAULT_API_KEY_ENV,
    AnthropicProvider,
)

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_ANTHROPIC_URL", "DEFAULT_API_KEY_ENV", "AnthropicProvider"]
