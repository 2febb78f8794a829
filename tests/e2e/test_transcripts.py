"""Keep the fakes honest: the real server's answers have the shape of the
transcripts in ``tests/fixtures/ollama/`` that the fake servers replay.

For each transcript the same request goes to the real server; the status, the
content type, the NDJSON framing (one JSON object per ``\\n``-terminated line) and
the shape of every kind of object (keys and JSON types, recursively) must match.
What cannot match (the transcript's model has capabilities SmolLM2 lacks, a field
only one model family sends) is listed in :data:`EXPECTED`, with the reason; any
other difference fails the test. With ``RUBBERDUCK_RECORD_DIR`` set, the real
answers are written there under the transcripts' names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from rubberduck import Runtime
from tests.conftest import FIXTURES_DIR
from tests.e2e.conftest import CALL_SCHEMA, MODEL, WEATHER_TOOL
from tests.e2e.ollama_server import OllamaServer
from tests.e2e.scenarios import SHORT, full_queue, http, lost_runner
from tests.fake_ollama import free_port

pytestmark = pytest.mark.ollama

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"

#: Differences that are not the transcripts' fault, each with its reason.
EXPECTED: dict[str, dict[str, str]] = {
    "push_progress.ndjson": {
        "transfer lines: only in the transcript": "no registry can be reached here: the "
        "push fails after its first line",
        "error lines: only in the real answer": "the push's error, as a line with status "
        "200 (the shape of pull_midstream_error.ndjson)",
    },
}


#: Objects whose keys are data, not protocol: a model's GGUF metadata.
FREE_FORM = frozenset({"model_info", "projector_info"})


def shape(value: Any) -> Any:
    """The JSON type skeleton of ``value``: objects keep their keys (but those of
    :data:`FREE_FORM`), arrays the shape of their first element."""
    if isinstance(value, dict):
        return {
            key: "object" if key in FREE_FORM and isinstance(item, dict) else shape(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]


def differences(fixture: Any, real: Any, path: str = "") -> list[str]:
    """Where the shapes of ``fixture`` and ``real`` differ, as readable lines."""
    here = path or "(top)"
    if isinstance(fixture, dict) and isinstance(real, dict):
        out = [f"{path}{key}: only in the transcript" for key in fixture if key not in real]
        out += [f"{path}{key}: only in the real answer" for key in real if key not in fixture]
        for key in fixture.keys() & real.keys():
            out += differences(fixture[key], real[key], f"{path}{key}.")
        return out
    if isinstance(fixture, list) and isinstance(real, list):
        if fixture and real:
            return differences(fixture[0], real[0], f"{path}[].")
        return []
    if fixture != real:
        return [f"{here.rstrip('.')}: {fixture} in the transcript, {real} in the real answer"]
    return []


def role(line: dict[str, Any]) -> str:
    """The kind of an NDJSON line: chunk, final, error, or a progress kind."""
    if "error" in line:
        return "error"
    if "done" in line:
        return "final" if line["done"] else "chunk"
    return "transfer" if "digest" in line else "status"


class Answer:
    """A recorded HTTP answer: status, content type and body."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body

    @classmethod
    def of(cls, reply: requests.Response) -> Answer:
        return cls(reply.status_code, reply.headers.get("Content-Type", ""), reply.content)


def compare(name: str, real: Answer, status: int, content_type: str) -> list[str]:
    """Every difference between transcript ``name`` and the real answer."""
    record = os.environ.get("RUBBERDUCK_RECORD_DIR")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / name).write_bytes(real.body)
    out = []
    if real.status != status:
        out.append(f"status: {status} in the transcript, {real.status} in the real answer")
    if real.content_type != content_type:
        out.append(f"content type: {content_type} in the transcript, {real.content_type} real")
    text = (FIXTURES_DIR / name).read_text()
    if name.endswith(".ndjson"):
        if not real.body.endswith(b"\n") or b"\n\n" in real.body:
            out.append("framing: not one object per \\n-terminated line")
        fixture_lines = [json.loads(line) for line in text.splitlines() if line]
        real_lines = [json.loads(line) for line in real.body.splitlines() if line]
        by_role = {role(line): line for line in reversed(real_lines)}
        seen: set[str] = set()
        for line in fixture_lines:
            kind = role(line)
            if kind in seen:
                continue
            seen.add(kind)
            if kind not in by_role:
                out.append(f"{kind} lines: only in the transcript")
            else:
                out += differences(shape(line), shape(by_role[kind]), f"{kind} line: ")
        out += [f"{kind} lines: only in the real answer" for kind in by_role if kind not in seen]
    else:
        out += differences(shape(json.loads(text)), shape(json.loads(real.body)))
    return out


def check(name: str, real: Answer, status: int = 200, content_type: str = JSON) -> None:
    found = set(compare(name, real, status, content_type))
    expected = set(EXPECTED.get(name, {}))
    assert found == expected, f"{name}: unexpected {found - expected}, gone {expected - found}"


@pytest.fixture(scope="module")
def call(ollama_url: str) -> Callable[..., Answer]:
    session = http()

    def request(method: str, path: str, body: Any = None) -> Answer:
        return Answer.of(session.request(method, ollama_url + path, json=body, timeout=120))

    return request


HI = [{"role": "user", "content": "Hi"}]


def test_inference(call: Callable[..., Answer]) -> None:
    check(
        "chat_stream.ndjson",
        call("POST", "/api/chat", {"model": MODEL, "messages": HI, "options": SHORT}),
        content_type=NDJSON,
    )
    check(
        "generate_stream.ndjson",
        call("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "options": SHORT}),
        content_type=NDJSON,
    )
    check("generate_load.json", call("POST", "/api/generate", {"model": MODEL}))
    check("ps.json", call("GET", "/api/ps"))
    check("generate_unload.json", call("POST", "/api/generate", {"model": MODEL, "keep_alive": 0}))
    check("embed.json", call("POST", "/api/embed", {"model": MODEL, "input": "Hi"}))
    check("embeddings.json", call("POST", "/api/embeddings", {"model": MODEL, "prompt": "Hi"}))


def test_tool_calls(call: Callable[..., Answer], tools_model: str) -> None:
    body = {
        "model": tools_model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "format": CALL_SCHEMA,
        "stream": False,
        "options": {**SHORT, "num_predict": 64},
    }
    check("chat_tool_calls.json", call("POST", "/api/chat", body))


def test_errors(call: Callable[..., Answer]) -> None:
    check(
        "error_model_not_found.json",
        call("POST", "/api/chat", {"model": "no-such-model:1b", "messages": HI}),
        status=404,
    )


def test_catalogue(call: Callable[..., Answer]) -> None:
    check("tags.json", call("GET", "/api/tags"))
    check("version.json", call("GET", "/api/version"))
    check("show.json", call("POST", "/api/show", {"model": MODEL}))


def test_create(call: Callable[..., Answer], rt: Runtime) -> None:
    name = "rubberduck-e2e-transcript:latest"
    body = {"model": name, "from": MODEL, "system": "You are terse."}
    try:
        check("create_progress.ndjson", call("POST", "/api/create", body), content_type=NDJSON)
    finally:
        rt.delete(name)


def test_pull(call: Callable[..., Answer], isolated: str) -> None:
    check(
        "pull_midstream_error.ndjson",
        call("POST", "/api/pull", {"model": "smollm2:360m"}),
        content_type=NDJSON,
    )


def test_push(call: Callable[..., Answer], rt: Runtime, isolated: str) -> None:
    # A registry on a loopback port nothing listens on.
    name = f"127.0.0.1:{free_port()}/rubberduck/e2e:latest"
    rt.copy(MODEL, name)
    try:
        real = call("POST", "/api/push", {"model": name, "insecure": True})
    finally:
        rt.delete(name)
    check("push_progress.ndjson", real, content_type=NDJSON)


def test_queue_full(own_server: Callable[..., OllamaServer]) -> None:
    with full_queue(own_server(OLLAMA_MAX_QUEUE="1")) as refused:
        check("error_server_busy.json", Answer.of(refused), status=503)


def test_lost_runner(own_server: Callable[..., OllamaServer]) -> None:
    reply, lines = lost_runner(own_server())
    real = Answer(
        reply.status_code, reply.headers.get("Content-Type", ""), b"\n".join(lines) + b"\n"
    )
    check("generate_midstream_error.ndjson", real, content_type=NDJSON)


def test_other_endpoints(ollama_url: str, rt: Runtime) -> None:
    """The answers the transcripts' README describes without a file."""
    session = http()
    root = session.get(ollama_url + "/", timeout=10)
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["Content-Type"].startswith("text/plain")

    name = "rubberduck-e2e-copy2:latest"
    copied = session.post(
        ollama_url + "/api/copy", json={"source": MODEL, "destination": name}, timeout=30
    )
    deleted = session.delete(ollama_url + "/api/delete", json={"model": name}, timeout=30)
    assert (copied.status_code, copied.content) == (200, b"")
    assert (deleted.status_code, deleted.content) == (200, b"")

    blob = b"rubberduck e2e blob"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    missing = session.head(f"{ollama_url}/api/blobs/{digest}", timeout=10)
    created = session.post(f"{ollama_url}/api/blobs/{digest}", data=blob, timeout=10)
    again = session.post(f"{ollama_url}/api/blobs/{digest}", data=blob, timeout=10)
    there = session.head(f"{ollama_url}/api/blobs/{digest}", timeout=10)
    assert [missing.status_code, created.status_code, again.status_code, there.status_code] == [
        404,
        201,
        200,
        200,
    ]
