"""The interactive ``rubberduck chat``: slash commands, several-line messages,
Ctrl-C during an answer and failed turns, against a fake Ollama."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rubberduck.cli import main
from tests.conftest import ANSWER, wait_until
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.usefixtures("no_thread_left")


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def config(ollama: FakeOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUBBERDUCK_USAGE_LOG", str(tmp_path / "usage.jsonl"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    path = tmp_path / "rubberduck.toml"
    path.write_text(f'[provider.ollama]\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\n')
    return str(path)


def converse(monkeypatch: pytest.MonkeyPatch, config: str, *lines: str) -> list[str]:
    """Run ``rubberduck chat`` on a terminal typing ``lines``; Ctrl-D after them.
    Returns the prompts shown."""
    typed = iter(lines)
    prompts: list[str] = []

    def read(prompt: str = "") -> str:
        prompts.append(prompt)
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", read)
    assert main(["chat", "--config", config]) == 0
    return prompts


def turns(body: dict[str, object]) -> list[tuple[str, str]]:
    messages = body["messages"]
    assert isinstance(messages, list)
    return [(m["role"], m["content"]) for m in messages]


def test_settings_change_the_next_request(
    config: str, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse(
        monkeypatch,
        config,
        "/set system Answer briefly.",
        "/set parameter temperature 0.2",
        "/set parameter num_ctx 4096",
        "/set parameter stop <end> ###",
        "/set format json",
        "/load llama3.2:latest",
        "Hi",
        "/unset parameter temperature",
        "/set format none",
        "/set system",
        "Again",
    )
    first, second = ollama.posts()
    assert first["model"] == "llama3.2:latest" and first["format"] == "json"
    assert first["options"] == {"temperature": 0.2, "num_ctx": 4096, "stop": ["<end>", "###"]}
    assert turns(first) == [("system", "Answer briefly."), ("user", "Hi")]
    assert second["options"] == {"num_ctx": 4096, "stop": ["<end>", "###"]}
    assert "format" not in second
    assert turns(second) == [("user", "Hi"), ("assistant", ANSWER), ("user", "Again")]


def test_clear_forgets_the_history_and_blank_lines_are_skipped(
    config: str, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse(monkeypatch, config, "Hi", "", "   ", "/clear", "Fresh start", "/bye", "unread")
    assert [turns(body) for body in ollama.posts()] == [[("user", "Hi")], [("user", "Fresh start")]]


def test_a_message_of_several_lines(
    config: str, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = converse(monkeypatch, config, '"""First line', "", "second line", 'last"""')
    assert turns(ollama.posts()[0]) == [("user", "First line\n\nsecond line\nlast")]
    assert prompts == [">>> ", "... ", "... ", "... ", ">>> "]


def test_show_help_and_unknown_commands_answer_on_stderr(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    converse(monkeypatch, config, "/set parameter seed 42", "/show", "/?", "/nonsense", "/set x")
    out, err = capsys.readouterr()
    assert out == "" and ollama.posts() == []
    assert "options: seed=42" in err and "turns so far: 0" in err
    assert "/set parameter <name> <value>" in err  # the help
    assert "unknown command '/nonsense' — /? lists the commands" in err
    assert "usage: /set system <text>" in err


def test_a_failed_turn_is_reported_and_the_conversation_goes_on(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ollama.script.append("bad_request")
    converse(monkeypatch, config, "Hi", "Hi again")
    assert "invalid options: num_ctx" in capsys.readouterr().err
    assert turns(ollama.posts()[1]) == [("user", "Hi again")], "the failed turn is not kept"


def test_ctrl_c_stops_the_answer_and_the_conversation_goes_on(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ollama.script.append("stall")  # one chunk, then nothing until the client goes away

    def press_ctrl_c() -> None:
        if wait_until(lambda: len(ollama.posts()) == 1, 60):
            # Straight to the main thread: given to the process (os.kill), the
            # signal may go to another thread, and then the main thread's wait
            # is not interrupted until it wakes (Python runs signal handlers
            # on the main thread only, between bytecodes).
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        converse(monkeypatch, config, "Tell me a long story", "Hi")
    finally:
        presser.join()
    out, err = capsys.readouterr()
    assert "(stopped; that turn is not kept)" in err
    assert out.endswith(ANSWER + "\n"), "the next turn is answered in full"
    assert turns(ollama.posts()[1]) == [("user", "Hi")]


def test_an_unknown_or_mistyped_parameter_is_refused_when_set(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    converse(
        monkeypatch,
        config,
        "/set parameter tempreature 0.2",
        "/set parameter num_ctx lots",
        "/set parameter temperature NaN",
        "Hi",
    )
    err = capsys.readouterr().err
    assert "did you mean 'temperature'" in err
    assert "option 'num_ctx' must be" in err and "option 'temperature' must be" in err
    (body,) = ollama.posts()
    assert "options" not in body  # and the turn was sent without them
