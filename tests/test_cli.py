"""The command line, in process, against a fake Ollama: output streams, exit codes,
--json, the conversation mode and the usage log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rubberduck.cli import main
from rubberduck.cli._human import human_bytes
from tests.conftest import ANSWER
from tests.fake_ollama import FakeOllama, free_port


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def config(ollama: FakeOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUBBERDUCK_USAGE_LOG", str(tmp_path / "usage.jsonl"))
    path = tmp_path / "rubberduck.toml"
    path.write_text(f'[provider.ollama]\nbase_url = "{ollama.url}"\nmodel = "llama3.2"\n')
    return str(path)


def test_chat_streams_the_answer_to_stdout_and_the_report_to_stderr(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "Why is the sky blue?", "--config", config, "--temperature", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == ANSWER + "\n"
    assert "answered by ollama (llama3.2)" in err


def test_chat_json(config: str, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "hi", "--config", config, "--json", "--num-predict", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["response"] == ANSWER
    assert result["done"]["provider"] == "ollama" and result["done"]["cost_usd"] == 0.0
    assert ollama.posts()[0]["options"] == {"num_predict": 5}


def test_generate(config: str, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Once upon", "--config", config, "--raw"]) == 0
    assert capsys.readouterr().out.strip()
    assert [path for method, path, _ in ollama.requests if method == "POST"] == ["/api/generate"]
    assert ollama.posts()[0]["raw"] is True


def test_conversation_keeps_the_history(
    config: str,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    lines = iter(["Hi", "And then?", "/bye"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--config", config]) == 0
    second = ollama.posts()[1]["messages"]
    assert [(m["role"], m["content"]) for m in second] == [
        ("user", "Hi"),
        ("assistant", ANSWER),
        ("user", "And then?"),
    ]


def test_usage_sums_the_logged_answers(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(["chat", "hi", "--config", config]) == 0
    capsys.readouterr()
    assert main(["usage", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["by_backend"]["ollama"]["requests"] == 2
    assert report["by_model"]["llama3.2"]["completion_tokens"] == 2 * 282
    assert main(["usage"]) == 0
    assert "ANSWERS" in capsys.readouterr().out


def test_health_and_models_tables(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--config", config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["BACKEND", "KIND", "STATE"]
    assert out.splitlines()[1].split()[:3] == ["ollama", "ollama", "up"]
    assert main(["models", "--config", config, "--json"]) == 0
    assert "llama3.2:latest" in json.loads(capsys.readouterr().out)["ollama"]


def test_a_failed_request_exits_1_with_the_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[provider.ollama]\nbase_url = "127.0.0.1:{free_port()}"\nmodel = "m"\n')
    assert main(["chat", "hi", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ollama serve" in err


def test_a_rejected_key_exits_1_not_2(
    config: str, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama.mode = "unauthorized"  # HTTP 401: the server said no, the config is fine
    assert main(["pull", "llama3.2", "--config", config]) == 1
    assert "401" in capsys.readouterr().err


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[provider.ollama]\nbase_ur = 1\n")
    assert main(["health", "--config", str(path)]) == 2
    assert "base_ur" in capsys.readouterr().err


def test_embed(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "Why is the sky blue?", "--config", config]) == 0
    out, err = capsys.readouterr()
    assert out.split()[1] == "dims" and "embedded by ollama" in err
    assert main(["embed", "hi", "--config", config, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["embeddings"]) == 1


def test_show_ps_and_rm(
    config: str, ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "llama3.2", "--config", config]) == 0
    assert "quantization" in capsys.readouterr().out
    assert main(["ps", "--config", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"]
    assert main(["rm", "duck", "goose", "--config", config]) == 0
    assert capsys.readouterr().out == "deleted 'duck'\ndeleted 'goose'\n"
    assert [b["model"] for m, p, b in ollama.requests if m == "DELETE"] == ["duck", "goose"]


def test_pull_draws_progress_and_json_lines(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "llama3.2", "--config", config]) == 0
    err = capsys.readouterr().err
    assert "pulling manifest" in err and "success" in err and "done" in err
    assert main(["pull", "llama3.2", "--config", config, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["status"] == "success"


def test_human_bytes_are_decimal_as_ollamas() -> None:
    assert human_bytes(2019393189) == "2.0 GB"
    assert human_bytes(1536) == "1.5 KB" and human_bytes(12) == "12 B"


def test_a_reader_that_goes_away_is_not_an_error(config: str) -> None:
    command = (
        f"{sys.executable} -m rubberduck.cli generate --config {config} hi | head -c 1 >/dev/null;"
        " echo ${PIPESTATUS[0]}"
    )
    result = subprocess.run(
        command, shell=True, executable="/bin/bash", capture_output=True, text=True
    )
    assert result.stdout.strip() == "0"
    assert "Traceback" not in result.stderr
