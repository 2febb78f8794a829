"""The command line as a person who knows ``ollama`` expects it (issue 14): help
with no arguments, global flags before the command, ollama's command names, a
user config, stdin joined with the prompt, readline, progress without redraws in
logs, "Forever", size and modified columns, the last error, --verbose timings."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rubberduck import Progress
from rubberduck.cli import main
from rubberduck.cli._human import ago, until
from rubberduck.cli._models import PullProgress
from rubberduck.cli._status import _health
from rubberduck.messages import BackendHealth
from rubberduck.ollama_types import ProcessList, RunningModel
from rubberduck.runtime import Runtime
from tests.conftest import ANSWER
from tests.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG home: no user config, history and usage log in tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("RUBBERDUCK_USAGE_LOG", str(tmp_path / "usage.jsonl"))
    monkeypatch.delenv("RUBBERDUCK_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
def config(ollama: FakeOllama, home: Path) -> str:
    path = home / "rubberduck.toml"
    path.write_text(f'[provider.ollama]\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\n')
    return str(path)


def test_no_arguments_prints_the_help(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rubberduck") and "bench" in out and "chat" in out
    # ... which names where the config comes from.
    assert "RUBBERDUCK_CONFIG" in out and "~/.config/rubberduck/config.toml" in out


def test_global_flags_before_the_command(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--config", config, "models"]) == 0
    assert json.loads(capsys.readouterr().out)["ollama"]
    # After the command they still work, and one before is not undone by it.
    assert main(["--json", "models", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["ollama"]


@pytest.mark.parametrize("name", ["list", "ls", "models"])
def test_list_and_ls_are_models_with_size_and_modified(
    config: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([name, "--config", config]) == 0
    header, first, *_ = capsys.readouterr().out.splitlines()
    assert header.split() == ["BACKEND", "NAME", "SIZE", "MODIFIED"]
    assert "llama3.2:latest" in first and "2.0 GB" in first and "ago" in first


def test_run_model_prompt_is_a_one_shot_chat(
    config: str, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", "llama3.2:latest", "Why", "is", "the", "sky", "blue?", "--config", config])
        == 0
    )
    assert capsys.readouterr().out == ANSWER + "\n"
    body = ollama.posts()[0]
    assert (
        body["model"] == "llama3.2:latest"
        and body["messages"][-1]["content"] == "Why is the sky blue?"
    )


def test_run_without_a_prompt_on_a_terminal_is_a_conversation(
    config: str, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    lines = iter(["Hi", "/bye"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["run", "llama3.2:latest", "--config", config]) == 0
    assert [b["model"] for b in ollama.posts()] == ["llama3.2:latest"]


def test_rubberduck_config_and_the_user_config_file(
    ollama: FakeOllama,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = f'[provider.mine]\nkind = "ollama"\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\n'
    user = home / "config" / "rubberduck" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(toml)
    assert main(["--json", "models"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["mine"]
    other = home / "other.toml"
    other.write_text(toml.replace("provider.mine", "provider.env"))
    monkeypatch.setenv("RUBBERDUCK_CONFIG", str(other))
    assert main(["--json", "models"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["env"]
    monkeypatch.setenv("RUBBERDUCK_CONFIG", str(home / "missing.toml"))
    assert main(["models"]) == 2
    assert "RUBBERDUCK_CONFIG" in capsys.readouterr().err


def test_piped_text_is_joined_with_the_prompt(
    config: str, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("The duck sat on the mat.\n"))
    assert main(["chat", "summarize this", "--config", config]) == 0
    content = ollama.posts()[0]["messages"][-1]["content"]
    assert content == "The duck sat on the mat.\n summarize this"  # as `llm` joins them


@pytest.mark.parametrize("command", ["chat", "generate"])
def test_an_empty_prompt_is_refused(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main([command, "  ", "--config", config]) == 2
    assert main([command, "--config", config]) == 2  # nothing piped, not a terminal
    assert "empty" in capsys.readouterr().err and not ollama.posts()


def test_verbose_prints_ollamas_timings(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "hi", "--verbose", "--config", config]) == 0
    err = capsys.readouterr().err
    for label in (
        "time to first token:",
        "load duration:",
        "prompt eval count:    26 token(s)",
        "prompt eval rate:     75.90 tokens/s",
        "eval rate:            62.17 tokens/s",
    ):
        assert label in err


def test_health_shows_the_last_error_of_a_backend_that_is_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Stub:
        def wait_for_probes(self) -> None:
            pass

        def health(self) -> dict[str, BackendHealth]:
            return {
                "ollama": BackendHealth(
                    name="ollama",
                    kind="ollama",
                    state="closed",
                    since=0.0,
                    detail="ollama 0.12.6",
                    last_error="503 server busy",
                )
            }

    args = type("Args", (), {"json": False})()
    assert _health(Stub(), args) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "LAST ERROR" in out and "503 server busy" in out and "ollama 0.12.6" in out


def test_ps_says_forever_for_a_model_kept_loaded(
    config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    far = datetime(2318, 1, 1, tzinfo=UTC)  # what keep_alive=-1 gives
    loaded = ProcessList(models=[RunningModel(name="llama3.2", size=10**9, expires_at=far)])
    monkeypatch.setattr(Runtime, "ps", lambda self, **kw: loaded)
    assert main(["ps", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "Forever" in out and "min" not in out


def test_human_times() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert until(now + timedelta(minutes=4, seconds=5), now) == "4 minutes from now"
    assert until(now - timedelta(seconds=1), now) == "Stopping..."
    assert until(None, now) == "Never"
    assert until(now + timedelta(days=365 * 300), now) == "Forever"
    assert ago(now - timedelta(days=3, hours=2), now) == "3 days ago"
    assert ago(now - timedelta(hours=1), now) == "1 hour ago"


PULL = [
    Progress(status="pulling manifest"),
    Progress(status="pulling 26bd", digest="sha256:26bd", total=4_000_000),
    Progress(status="pulling 26bd", digest="sha256:26bd", total=4_000_000, completed=1_000_000),
    Progress(status="pulling 26bd", digest="sha256:26bd", total=4_000_000, completed=4_000_000),
    Progress(status="verifying sha256 digest"),
    Progress(status="success"),
]


def test_pull_progress_in_a_log_is_plain_lines() -> None:
    out = io.StringIO()
    shown = PullProgress(out, terminal=False)
    for p in PULL:
        shown.show(p)
    shown.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [
        "pulling manifest",
        "pulling 26bd: 4.0 MB started",
        "pulling 26bd: 4.0 MB done",
        "verifying sha256 digest",
        "success",
    ]


def test_pull_progress_on_a_terminal_keeps_each_layers_bar() -> None:
    out = io.StringIO()
    shown = PullProgress(out, terminal=True)
    for p in PULL:
        shown.show(p)
    shown.close()
    final = out.getvalue().replace("\r", "\n").splitlines()
    assert any("100%" in line and "4.00M" in line for line in final)
    assert final[-1].startswith("pulling 26bd") or "success" in out.getvalue()


def test_pull_to_a_log_end_to_end(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "llama3.2", "--config", config]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "pulling manifest" in err and err.rstrip().endswith("success")


def _read_until(fd: int, needle: bytes, timeout: float = 30.0) -> bytes:
    seen = b""
    give_up = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < give_up:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_the_conversation_edits_lines_with_readline(
    config: str, ollama: FakeOllama, home: Path
) -> None:
    """On a real (pseudo-)terminal: the left arrow moves the cursor instead of
    being sent as ``^[[D``, and the line goes to the history file."""
    main_fd, child_fd = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rubberduck.cli", "chat", "--config", config],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env=env,
        close_fds=True,
    )
    os.close(child_fd)
    try:
        assert b">>> " in _read_until(main_fd, b">>> ")
        os.write(main_fd, b"sky blue\x1b[D\x1b[D\x1b[D\x1b[Dthe \r")  # 4 x left arrow
        assert ANSWER.encode() in _read_until(main_fd, ANSWER.encode())
        assert b">>> " in _read_until(main_fd, b">>> ")
        os.write(main_fd, b"/bye\r")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        os.close(main_fd)
    assert ollama.posts()[0]["messages"][-1]["content"] == "sky the blue"
    history = (home / "state" / "rubberduck" / "history").read_text()
    assert "sky the blue" in history
