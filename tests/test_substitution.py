"""Which backend and which model may answer is the caller's policy: ``backends=``,
``fallback=False`` and ``allow_substitute`` per request, ``[router]
allow_substitute`` in config, ``--backend`` / ``--no-fallback`` on the command
line; an answer from another model says so (``substituted_for``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubberduck import AllProvidersFailed, Done, InvalidRequest, ModelNotFound, Runtime, ServerBusy
from rubberduck.cli import main
from tests.conftest import HI, runtime_for
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")

#: Not in tags.json: neither fake server has it.
ABSENT = "qwen3:0.6b"


@pytest.fixture
def any_model(servers: tuple[FakeOllama, FakeOllama]) -> Iterator[tuple[FakeOllama, FakeOllama]]:
    """The "primary" is a plain Ollama; "backup" is a last resort that answers any
    model with its own (``serve_any_model``), as the embedded backend does."""
    yield servers


def _runtime(primary: FakeOllama, backup: FakeOllama, **router: Any) -> Runtime:
    """Both catalogues read (tags.json: llama3.2, nomic-embed-text) before it returns."""
    rt = runtime_for(primary.url, backup.url, router=router, backup_cfg={"serve_any_model": True})
    rt.wait_for_probes()
    return rt


def _chats(server: FakeOllama) -> list[dict[str, Any]]:
    return [body for body in server.posts() if "messages" in body]


def test_a_substitute_answer_says_which_model_was_asked_for(
    any_model: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = any_model
    with _runtime(primary, backup) as rt:
        reply = rt.chat(ABSENT, HI)
        streamed = [e for e in rt.stream_chat(ABSENT, HI) if isinstance(e, Done)]
    assert reply.provider == "backup"
    assert reply.substituted_for == ABSENT
    assert reply.done.substituted_for == ABSENT
    assert streamed[0].substituted_for == ABSENT


def test_an_answer_from_the_model_asked_for_is_no_substitute(
    any_model: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = any_model
    with _runtime(primary, backup) as rt:
        assert rt.chat("llama3.2", HI).substituted_for is None
        assert rt.chat(None, HI).substituted_for is None
        # The last resort itself has llama3.2 once its catalogue is known.
        assert rt.chat("llama3.2", HI, backends=["backup"]).substituted_for is None


@pytest.mark.parametrize("where", ["request", "config"])
def test_a_caller_can_refuse_another_model(
    any_model: tuple[FakeOllama, FakeOllama], where: str
) -> None:
    primary, backup = any_model
    router = {"allow_substitute": False} if where == "config" else {}
    per_request = {"allow_substitute": False} if where == "request" else {}
    with _runtime(primary, backup, **router) as rt, pytest.raises(AllProvidersFailed) as info:
        rt.chat(ABSENT, HI, **per_request)
    assert all(isinstance(c, ModelNotFound) for c in info.value.causes.values())
    assert "allows no substitute" in str(info.value.causes["backup"])
    assert _chats(backup) == []


def test_the_request_can_overrule_the_config_either_way(
    any_model: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = any_model
    with _runtime(primary, backup, allow_substitute=False) as rt:
        assert rt.chat(ABSENT, HI, allow_substitute=True).substituted_for == ABSENT


def test_backends_limits_where_a_request_goes(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        assert rt.chat("llama3.2", HI, backends=["backup"]).provider == "backup"
        primary.mode = "busy"
        with pytest.raises(AllProvidersFailed) as info:
            rt.chat("llama3.2", HI, backends=["primary"], timeout=5)
    assert set(info.value.causes) == {"primary"}
    assert len(_chats(backup)) == 1


@pytest.mark.parametrize(
    ("backends", "says"),
    [(["nope"], "'nope', which is not configured"), ([], "backends is empty"), ("primary", "list")],
)
def test_a_bad_backends_list_is_refused_before_any_request(
    servers: tuple[FakeOllama, FakeOllama], backends: Any, says: str
) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt, pytest.raises(InvalidRequest) as info:
        rt.chat("llama3.2", HI, backends=backends)
    assert says in str(info.value)
    assert _chats(primary) == _chats(backup) == []


def test_without_fallback_the_first_backends_error_is_the_answer(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    with runtime_for(primary.url, backup.url, router={"retries": 0}) as rt:
        with pytest.raises(ServerBusy):
            rt.chat("llama3.2", HI, fallback=False)
        assert rt.chat("llama3.2", HI).provider == "backup"  # the default falls back
    assert len(_chats(backup)) == 1


def test_without_fallback_retry_rounds_stay_on_the_first_backend(
    servers: tuple[FakeOllama, FakeOllama],
) -> None:
    primary, backup = servers
    primary.script.extend(["busy"])  # the first answer is a 503, then healthy
    with runtime_for(primary.url, backup.url, router={"retries": 2, "retry_backoff": 0.01}) as rt:
        reply = rt.chat("llama3.2", HI, fallback=False)
    assert reply.provider == "primary"
    assert _chats(backup) == []


@pytest.mark.parametrize("value", ["no", 0, None])
def test_fallback_must_be_a_bool(servers: tuple[FakeOllama, FakeOllama], value: Any) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt, pytest.raises(InvalidRequest):
        rt.chat("llama3.2", HI, fallback=value)


# --- the command line ---------------------------------------------------------------


@pytest.fixture
def cli_config(
    any_model: tuple[FakeOllama, FakeOllama], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    primary, backup = any_model
    primary.mode = "not_found"  # as Ollama answers a model it lacks: 404
    monkeypatch.setenv("RUBBERDUCK_USAGE_LOG", str(tmp_path / "usage.jsonl"))
    path = tmp_path / "rubberduck.toml"
    path.write_text(
        f'[provider.ollama]\nbase_url = "{primary.url}"\n'
        f'[provider.last]\nkind = "ollama"\nbase_url = "{backup.url}"\nserve_any_model = true\n'
    )
    return str(path)


def test_the_cli_says_in_one_line_that_another_model_answered(
    cli_config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "hi", "-m", ABSENT, "--config", cli_config]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "was not available" in line]
    assert len(notes) == 1
    assert f"{ABSENT!r}" in notes[0] and "last" in notes[0]


def test_the_cli_without_fallback_fails_rather_than_substitute(
    cli_config: str, capsys: pytest.CaptureFixture[str], any_model: tuple[FakeOllama, FakeOllama]
) -> None:
    assert main(["chat", "hi", "-m", ABSENT, "--no-fallback", "--config", cli_config]) == 1
    assert "was not available" not in capsys.readouterr().err
    assert _chats(any_model[1]) == []


def test_the_cli_sends_only_to_the_named_backend(
    cli_config: str, capsys: pytest.CaptureFixture[str], any_model: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, _ = any_model
    primary.mode = "ok"
    assert main(["chat", "hi", "-m", "llama3.2", "--backend", "last", "--config", cli_config]) == 0
    assert "answered by last" in capsys.readouterr().err
    assert _chats(primary) == []
