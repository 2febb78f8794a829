"""The local provider: llama.cpp in this process (xllamacpp), with a model from a PyPI package.

The provider is in :mod:`.provider`; the modules beside it each hold one concept.
"""

from rubberduck.providers.local.provider import (
    DEFAULT_LOCAL_MODEL,
    LocalProvider,
    find_packaged_model,
)

__all__ = ["DEFAULT_LOCAL_MODEL", "LocalProvider", "find_packaged_model"]
