"""Warm-model routing against a real Ollama server (``smollm2:135m``): the
runtime reads ``/api/ps`` and sees where the model is loaded."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.e2e.conftest import FIXED, MODEL, runtime, send

pytestmark = pytest.mark.ollama

HI = [{"role": "user", "content": "Say hi."}]


def unload(url: str) -> None:
    send("POST", f"{url}/api/generate", {"model": MODEL, "keep_alive": 0})


def test_the_runtime_sees_the_model_loaded_through_api_ps(ollama_url: str) -> None:
    """Two backends of equal priority on the one server (so ``balance = "warm"``
    reads ``/api/ps``): the model loaded by a request sent around the runtime
    shows in ``Runtime.health()``, and goes once the server unloads it."""
    unload(ollama_url)
    equal = {"a": {"priority": 0}, "b": {"priority": 0}}
    with runtime({"a": ollama_url, "b": ollama_url}, provider=equal) as rt:

        def loaded() -> tuple[str, ...] | None:
            return rt.health()["a"].loaded_models

        assert wait_until(lambda: loaded() == (), 30), loaded()
        # Only /api/ps can tell the runtime about a request it did not send.
        load = {"model": MODEL, "prompt": "", "keep_alive": "5m"}
        send("POST", f"{ollama_url}/api/generate", load, timeout=120)
        assert wait_until(lambda: loaded() == (MODEL,), 30), loaded()

        reply = rt.chat(MODEL, HI, options=FIXED)
        assert rt.health()[reply.provider].loaded_models == (MODEL,)

        unload(ollama_url)
        assert wait_until(lambda: loaded() == (), 30), loaded()
