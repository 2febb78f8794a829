"""OllamaProvider beyond chat/generate: embed, embeddings, show, ps, list, version,
``GET /``, pull/push/create progress, blobs, copy, delete, load/unload, and the
provider contract (info, features, config check, token estimate).

Against ``tests/fake_ollama.py`` serving the transcripts, and the scripted server
where a test needs a hand-made answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubberduck.config import ProviderConfig
from rubberduck.errors import (
    Cancelled,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ProviderUnavailable,
)
from rubberduck.messages import Done, Durations, EmbedRequest, EmbedResponse, Usage
from rubberduck.ollama_types import ListedModel, ModelDetails, Progress, RunningModel
from rubberduck.providers import create_provider
from rubberduck.providers.base import CancelScope, ProviderInfo
from rubberduck.providers.ollama import OllamaProvider
from tests.conftest import load_fixture, wait_until
from tests.fake_ollama import FakeOllama, free_port
from tests.providers.scripted_server import Chunked, ScriptedServer, data_reply, json_reply
from tests.strategies import ProgressStream, chunkings, ollama_progress_streams

NDJSON = "application/x-ndjson"

PULL_PROGRESS = [
    Progress(**json.loads(line)) for line in load_fixture("pull_progress.ndjson").splitlines()
]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def provider(fake: FakeOllama) -> Iterator[OllamaProvider]:
    provider = OllamaProvider(base_url=fake.url, default_model="llama3.2", timeout=5)
    yield provider
    provider.close()


@pytest.fixture
def on_server(server: ScriptedServer) -> Iterator[OllamaProvider]:
    provider = OllamaProvider(base_url=server.url, default_model="llama3.2", timeout=5)
    yield provider
    provider.close()


def last_request(fake: FakeOllama) -> tuple[str, str, dict[str, Any]]:
    return fake.requests[-1]


# --- embeddings -----------------------------------------------------------------------


def test_embed_one_text(provider: OllamaProvider, fake: FakeOllama) -> None:
    answer = provider.embed(EmbedRequest(model="all-minilm", input="Why is the sky blue?"))
    assert answer == EmbedResponse(
        embeddings=[json.loads(load_fixture("embed.json"))["embeddings"][0]],
        model="all-minilm",
        provider="ollama",
        usage=Usage(prompt_tokens=8),
        durations=Durations(total_s=14143917 / 1e9, load_s=1019500 / 1e9),
    )
    assert last_request(fake) == (
        "POST",
        "/api/embed",
        {"model": "all-minilm", "input": "Why is the sky blue?"},
    )


def test_embed_sends_every_field_and_the_default_keep_alive(fake: FakeOllama) -> None:
    provider = OllamaProvider(base_url=fake.url, default_model="all-minilm", keep_alive="10m")
    request = EmbedRequest(input=["a"], truncate=False, dimensions=256, options={"num_ctx": 512})
    provider.embed(request)
    provider.close()
    assert last_request(fake)[2] == {
        "model": "all-minilm",
        "input": ["a"],
        "truncate": False,
        "dimensions": 256,
        "options": {"num_ctx": 512},
        "keep_alive": "10m",
    }


def test_embed_vector_count_must_match(provider: OllamaProvider) -> None:
    with pytest.raises(ProtocolError, match="asked for 2 embeddings, got 1"):
        provider.embed(EmbedRequest(model="all-minilm", input=["a", "b"]))


def test_embed_unknown_model(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "not_found"
    with pytest.raises(ModelNotFound, match="ollama pull nomic-embed-text") as info:
        provider.embed(EmbedRequest(model="nomic-embed-text", input="x"))
    assert info.value.model == "nomic-embed-text"


def test_legacy_embeddings(provider: OllamaProvider, fake: FakeOllama) -> None:
    answer = provider.embeddings("all-minilm", "Here is an article about llamas...")
    assert answer.embedding == json.loads(load_fixture("embeddings.json"))["embedding"]
    assert last_request(fake)[1:] == (
        "/api/embeddings",
        {"model": "all-minilm", "prompt": "Here is an article about llamas..."},
    )
    provider.embeddings(options={"seed": 1}, keep_alive=0)
    assert last_request(fake)[2] == {"model": "llama3.2", "options": {"seed": 1}, "keep_alive": 0}


# --- the catalogue ----------------------------------------------------------------------


def test_show(provider: OllamaProvider, fake: FakeOllama) -> None:
    info = provider.show("llama3.2")
    assert info.details == ModelDetails(
        parent_model="",
        format="gguf",
        family="llama",
        families=["llama"],
        parameter_size="8.0B",
        quantization_level="Q4_0",
    )
    assert info.capabilities == ["completion"]
    assert info.model_info["llama.embedding_length"] == 4096
    assert info.context_length == 8192
    assert info.template.startswith("{{ if .System }}")
    assert "num_keep" in info.parameters
    assert info.modified_at == datetime(
        2025, 5, 4, 17, 37, 44, 706015, tzinfo=timezone(timedelta(hours=-7))
    )
    assert last_request(fake) == ("POST", "/api/show", {"model": "llama3.2"})
    provider.show(verbose=True)
    assert last_request(fake)[2] == {"model": "llama3.2", "verbose": True}


def test_show_and_has_model_when_missing(provider: OllamaProvider, fake: FakeOllama) -> None:
    assert provider.has_model("llama3.2") is True
    fake.mode = "not_found"
    with pytest.raises(ModelNotFound, match=re.escape("run `ollama pull qwen3:0.6b`")):
        provider.show("qwen3:0.6b")
    assert provider.has_model("qwen3:0.6b") is False


def test_has_model_invalid_name(on_server: OllamaProvider, server: ScriptedServer) -> None:
    server.on("/api/show", json_reply({"error": 'invalid model name "a b"'}, status=400))
    with pytest.raises(InvalidRequest, match="invalid model name"):
        on_server.has_model("a b")


def test_ps(provider: OllamaProvider, fake: FakeOllama) -> None:
    running = provider.ps()
    assert running.models == [
        RunningModel(
            name="llama3.2:latest",
            model="llama3.2:latest",
            size=5137025024,
            size_vram=5137025024,
            digest="a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            details=ModelDetails(
                format="gguf",
                family="llama",
                families=["llama"],
                parameter_size="3.2B",
                quantization_level="Q4_K_M",
            ),
            expires_at=datetime(
                2025, 5, 4, 18, 42, 57, 226436, tzinfo=timezone(-timedelta(hours=7))
            ),
            context_length=4096,
        )
    ]
    assert last_request(fake)[:2] == ("GET", "/api/ps")


def test_list(provider: OllamaProvider) -> None:
    assert provider.info().models == ("llama3.2",)
    models = provider.list()
    assert models.names == ["llama3.2:latest", "nomic-embed-text:latest"]
    first = models.models[0]
    assert isinstance(first, ListedModel)
    assert first.size == 2019393189
    assert first.details.quantization_level == "Q4_K_M"
    assert first.modified_at is not None and first.modified_at.year == 2025
    assert provider.info().models == ("llama3.2:latest", "nomic-embed-text:latest")
    assert provider.list_models(1) == models.names


def test_list_decodes_fields_ollama_adds_later(
    on_server: OllamaProvider, server: ScriptedServer
) -> None:
    answer = json.loads(load_fixture("tags.json"))
    answer["models"][0]["some_future_field"] = {"x": 1}
    answer["next_page"] = None
    server.on("/api/tags", json_reply(answer))
    assert on_server.list().names == ["llama3.2:latest", "nomic-embed-text:latest"]


# --- the server -------------------------------------------------------------------------


def test_version_and_is_running(provider: OllamaProvider) -> None:
    assert provider.version() == "0.12.6"
    assert provider.health_check(1) == "ollama 0.12.6"
    assert provider.is_running() is True


def test_is_running_false(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on("/", data_reply("hello from nginx"))
    assert on_server.is_running() is False
    refused = OllamaProvider(base_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1)
    assert refused.is_running() is False
    refused.close()


def test_missing_endpoint_is_not_a_missing_model(
    server: ScriptedServer, on_server: OllamaProvider
) -> None:
    server.on("/api/ps", data_reply("404 page not found", status=404))
    with pytest.raises(ProviderUnavailable, match=r"is .* an Ollama server"):
        on_server.ps()


# --- load and unload ----------------------------------------------------------------


def test_warm_up_and_unload(provider: OllamaProvider, fake: FakeOllama) -> None:
    done = provider.warm_up(keep_alive="1h")
    assert done.done_reason == "load"
    assert last_request(fake)[1:] == (
        "/api/generate",
        {"model": "llama3.2", "stream": False, "keep_alive": "1h"},
    )
    done = provider.unload("llama3.2")
    assert done == Done(done_reason="unload", model="llama3.2", provider="ollama")
    assert last_request(fake)[2] == {"model": "llama3.2", "stream": False, "keep_alive": 0}


def test_warm_up_an_embedding_model(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on(
        "/api/generate",
        json_reply({"error": '"nomic-embed-text" does not support generate'}, status=400),
    )
    server.on("/api/embed", json_reply({"model": "nomic-embed-text", "embeddings": []}))
    done = on_server.warm_up("nomic-embed-text")
    assert done.done_reason == "load"
    assert json.loads(server.received[-1].body) == {
        "model": "nomic-embed-text",
        "input": [],
    }


def test_warm_up_missing_model(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "not_found"
    with pytest.raises(ModelNotFound, match=re.escape("ollama pull llama3.2")):
        provider.warm_up()


# --- pull, push, create -----------------------------------------------------------------


def test_pull_progress_through_a_callback(provider: OllamaProvider, fake: FakeOllama) -> None:
    seen: list[Progress] = []
    final = provider.pull("llama3.2", emit_progress=seen.append)
    assert seen == PULL_PROGRESS
    assert final == Progress(status="success") and final.done
    assert seen[2].fraction == pytest.approx(123970144 / 408734816)
    assert seen[1].completed is None and seen[1].fraction == 0.0
    assert seen[0].fraction is None
    assert last_request(fake) == (
        "POST",
        "/api/pull",
        {"model": "llama3.2", "stream": True, "insecure": False},
    )


def test_pull_progress_through_an_iterator(provider: OllamaProvider, fake: FakeOllama) -> None:
    lines = provider.iter_pull("llama3.2", insecure=True)
    assert fake.requests == []  # nothing is sent before the first next()
    assert list(lines) == PULL_PROGRESS
    assert last_request(fake)[2]["insecure"] is True
    # the connection went back to the pool: the next call reuses it
    provider.version()
    assert len(fake.client_ports) == 1


def test_pull_without_streaming(provider: OllamaProvider, fake: FakeOllama) -> None:
    seen: list[Progress] = []
    assert provider.pull("llama3.2", stream=False, emit_progress=seen.append) == Progress(
        status="success"
    )
    assert seen == [Progress(status="success")]
    assert last_request(fake)[2] == {"model": "llama3.2", "stream": False, "insecure": False}


def test_pull_error_mid_stream(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on(
        "/api/pull", data_reply(load_fixture("pull_midstream_error.ndjson"), content_type=NDJSON)
    )
    seen: list[Progress] = []
    with pytest.raises(ModelNotFound, match="registry has no model 'llama9'") as info:
        on_server.pull("llama9", emit_progress=seen.append)
    assert seen == [Progress(status="pulling manifest")]
    assert "file does not exist" in info.value.message
    assert info.value.provider == "ollama"


def test_pull_other_error_mid_stream(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "error_line"
    seen: list[Progress] = []
    with pytest.raises(ProviderUnavailable, match=re.escape("during the pull of 'llama3.2'")):
        provider.pull("llama3.2", emit_progress=seen.append)
    assert seen == PULL_PROGRESS[:2]


def test_pull_error_without_streaming(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on(
        "/api/pull", json_reply({"error": "pull model manifest: file does not exist"}, status=500)
    )
    with pytest.raises(ModelNotFound, match="registry has no model"):
        on_server.pull("llama9", stream=False)


@pytest.mark.parametrize("lines", [3, 0], ids=["cut", "empty"])
def test_pull_stream_without_success(
    server: ScriptedServer, on_server: OllamaProvider, lines: int
) -> None:
    body = b"".join(load_fixture("pull_progress.ndjson").splitlines(keepends=True)[:lines])
    server.on("/api/pull", data_reply(body, content_type=NDJSON))
    seen: list[Progress] = []
    with pytest.raises(ProtocolError, match="success"):
        on_server.pull("llama3.2", emit_progress=seen.append)
    assert seen == PULL_PROGRESS[:lines]


def test_pull_garbage_line(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on(
        "/api/pull", data_reply(b'{"status":"pulling manifest"}\n<html>\n', content_type=NDJSON)
    )
    with pytest.raises(ProtocolError, match="not an Ollama JSON answer"):
        on_server.pull("llama3.2")


def test_cancel_a_pull_mid_stream(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "stall"  # one progress line, then silence
    scope = CancelScope()
    seen: list[Progress] = []
    timer = threading.Timer(0.2, scope.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled, match=re.escape("pull of 'llama3.2' was cancelled")):
            provider.pull("llama3.2", emit_progress=seen.append, scope=scope)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 2
    assert seen == PULL_PROGRESS[:1]
    assert wait_until(lambda: fake.disconnects == 1, 2)  # the server saw the client go


def test_cancel_before_a_pull(provider: OllamaProvider, fake: FakeOllama) -> None:
    scope = CancelScope()
    scope.cancel()
    with pytest.raises(Cancelled):
        provider.pull("llama3.2", scope=scope)


def test_closing_the_iterator_closes_the_connection(
    provider: OllamaProvider, fake: FakeOllama
) -> None:
    fake.mode = "stall"
    lines = provider.iter_pull("llama3.2")
    assert next(lines) == PULL_PROGRESS[0]
    lines.close()
    assert wait_until(lambda: fake.disconnects == 1, 2)
    fake.mode = "ok"
    assert provider.pull("llama3.2").done


def test_a_failing_callback_closes_the_transfer(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "stall"

    def explode(progress: Progress) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        provider.pull("llama3.2", emit_progress=explode)
    assert wait_until(lambda: fake.disconnects == 1, 2)


def test_push(provider: OllamaProvider, fake: FakeOllama) -> None:
    seen: list[Progress] = []
    assert provider.push("mattw/pygmalion:latest", emit_progress=seen.append).done
    assert [p.status for p in seen] == [
        "retrieving manifest",
        "starting upload",
        "starting upload",
        "pushing manifest",
        "success",
    ]
    assert seen[1].total == 1928429856
    assert last_request(fake)[1:] == (
        "/api/push",
        {"model": "mattw/pygmalion:latest", "stream": True, "insecure": False},
    )
    assert list(provider.iter_push("mattw/pygmalion:latest")) == seen


def test_create(provider: OllamaProvider, fake: FakeOllama) -> None:
    seen: list[Progress] = []
    final = provider.create(
        "mario",
        from_="llama3.2",
        system="You are Mario from Super Mario Bros.",
        parameters={"temperature": 0.7, "stop": ["<|eot_id|>"]},
        license=["MIT", "Llama 3.2 Community License"],
        emit_progress=seen.append,
    )
    assert final.done and len(seen) == 11
    assert seen[7].status.startswith("writing layer sha256:")
    assert last_request(fake)[1:] == (
        "/api/create",
        {
            "model": "mario",
            "stream": True,
            "from": "llama3.2",
            "system": "You are Mario from Super Mario Bros.",
            "parameters": {"temperature": 0.7, "stop": ["<|eot_id|>"]},
            "license": ["MIT", "Llama 3.2 Community License"],
        },
    )
    assert list(provider.iter_create("mario", from_="llama3.2")) == seen


def test_create_from_an_uploaded_file(
    provider: OllamaProvider, fake: FakeOllama, tmp_path: Path
) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = provider.create_blob(weights)
    assert digest == "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert fake.blobs == {digest}
    assert fake.raw_bodies[-1] == weights.read_bytes()
    assert provider.blob_exists(digest) is True
    assert provider.blob_exists("sha256:" + "0" * 64) is False
    assert provider.create("mine", files={"model.gguf": digest}, quantize="q4_K_M").done
    assert last_request(fake)[2] == {
        "model": "mine",
        "stream": True,
        "quantize": "q4_K_M",
        "files": {"model.gguf": digest},
    }


def test_create_refused(server: ScriptedServer, on_server: OllamaProvider) -> None:
    server.on(
        "/api/create", json_reply({"error": "neither 'from' or 'files' was specified"}, status=400)
    )
    with pytest.raises(InvalidRequest, match="neither 'from' or 'files'"):
        on_server.create("empty")


# --- copy and delete --------------------------------------------------------------------


def test_copy_and_delete(provider: OllamaProvider, fake: FakeOllama) -> None:
    assert provider.copy("llama3.2", "llama3-backup").status == "success"
    assert last_request(fake) == (
        "POST",
        "/api/copy",
        {"source": "llama3.2", "destination": "llama3-backup"},
    )
    assert provider.delete("llama3-backup").status == "success"
    assert last_request(fake) == ("DELETE", "/api/delete", {"model": "llama3-backup"})


def test_copy_and_delete_missing(provider: OllamaProvider, fake: FakeOllama) -> None:
    fake.mode = "not_found"
    with pytest.raises(ModelNotFound, match="'nope'"):
        provider.copy("nope", "other")
    with pytest.raises(ModelNotFound, match="'gone'"):
        provider.delete("gone")


# --- property: any chunking of a progress stream ----------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stream=st.none() | ollama_progress_streams(), data=st.data())
def test_progress_any_chunking(
    server: ScriptedServer,
    on_server: OllamaProvider,
    stream: ProgressStream | None,
    data: st.DataObject,
) -> None:
    """Whatever the pull (``None``: the fixture) and however TCP cuts it, the
    same Progress events arrive, then the final one is returned."""
    body = load_fixture("pull_progress.ndjson") if stream is None else stream.to_ndjson()
    expected = [Progress(**json.loads(line)) for line in body.splitlines()]
    chunks = data.draw(chunkings(body), label="chunks")
    server.on("/api/pull", Chunked(tuple(chunks)))
    seen: list[Progress] = []
    assert on_server.pull("m", emit_progress=seen.append) == expected[-1]
    assert seen == expected


# --- the provider contract --------------------------------------------------------------


def test_info_features_and_token_estimate(provider: OllamaProvider, fake: FakeOllama) -> None:
    assert provider.info() == ProviderInfo(
        name="ollama",
        kind="ollama",
        base_url=fake.url,
        models=("llama3.2",),
        requires_api_key=False,
        is_local=True,
    )
    remote = OllamaProvider(base_url="https://ollama.example.com")
    assert remote.info().is_local is False
    assert remote.info().models == ()
    remote.close()
    for feature in ("streaming", "tools", "vision", "embeddings", "json_mode", "thinking"):
        assert provider.supports_feature(feature)
    assert not provider.supports_feature("audio")
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("Why is the sky blue?") == 5  # 20 bytes / 4


@pytest.mark.parametrize(
    "keep_alive", [None, 300, -1, 0, 2.5, "5m", "1h30m", "-1m", "0", ".5h", "2.5s"]
)
def test_validate_config_accepts(keep_alive: Any) -> None:
    provider = OllamaProvider(keep_alive=keep_alive)
    provider.validate_config()
    provider.close()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"keep_alive": "300"}, 'a unit ("5m"'),
        ({"keep_alive": "-1"}, "not a duration"),
        ({"keep_alive": "five minutes"}, "not a duration"),
        # Go's time.ParseDuration trims nothing: Ollama would answer HTTP 400.
        ({"keep_alive": " 5m"}, "not a duration"),
        ({"keep_alive": "5m\n"}, "not a duration"),
        ({"timeout": 0}, "timeout and connect_timeout > 0"),
        ({"connect_timeout": -1}, "timeout and connect_timeout > 0"),
        ({"pool_size": 0}, "pool size of at least 1"),
        ({"max_line_bytes": 100}, "at least 1024"),
        ({"base_url": "ftp://example.com"}, "is not http(s)"),
    ],
)
def test_validate_config_refuses(kwargs: dict[str, Any], text: str) -> None:
    # Construction checks, so a bad [provider] table fails at start-up.
    with pytest.raises(ConfigError, match=r"\[provider\.local-ollama\]") as info:
        OllamaProvider("local-ollama", **kwargs)
    assert text in info.value.message


def test_create_provider_refuses_a_bad_ollama_table() -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        create_provider("ollama", ProviderConfig(keep_alive="five minutes"))
    with pytest.raises(ConfigError, match="timeout and connect_timeout > 0"):
        create_provider("ollama", ProviderConfig(timeout=0))


def test_bad_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="host:port"):
        OllamaProvider(base_url="localhost:notaport")
