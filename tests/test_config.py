"""Configuration values a runtime cannot work with are refused at load time, with
the key named; every caller-provoked config error is a ConfigError."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rubberduck import ConfigError, Runtime
from rubberduck.cli import main
from rubberduck.config import load_config
from rubberduck.providers.ollama import OllamaProvider, parse_ollama_host

OLLAMA = {"kind": "ollama", "base_url": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("provider", "timeout", math.nan),
        ("provider", "timeout", math.inf),
        ("provider", "timeout", -1.0),
        ("provider", "connect_timeout", 0),
        ("provider", "max_in_flight", 0),
        ("provider", "max_queue", -1),
        ("provider", "keep_alive", math.nan),
        ("provider", "n_ctx", 0),
        ("provider", "max_tokens", 0),
        ("router", "request_timeout", math.inf),
        ("router", "retries", -1),
        ("router", "retry_backoff", -0.1),
        ("router", "max_retry_backoff", math.nan),
        ("router", "max_buffered_events", 0),
        ("health", "interval", 0),
        ("health", "timeout", -1),
        ("health", "failure_threshold", 0),
        ("health", "failure_rate", 2),
        ("health", "failure_rate", 0),
        ("health", "window", math.inf),
        ("health", "min_requests", 0),
        ("health", "cooldown", -1),
        ("health", "max_cooldown", math.nan),
        ("health", "catalogue_ttl", -1),
        ("supervisor", "max_restarts", -1),
        ("supervisor", "within", 0),
    ],
)
def test_out_of_range_values_are_refused_with_the_key_named(
    table: str, key: str, value: Any
) -> None:
    if table == "provider":
        config: dict[str, Any] = {"provider": {"ollama": {**OLLAMA, key: value}}}
        named = f"$.provider['ollama'].{key}"
    else:
        config = {"provider": {"ollama": OLLAMA}, table: {key: value}}
        named = f"$.{table}.{key}"
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert named in str(info.value)


def test_prices_must_be_finite_and_not_negative() -> None:
    with pytest.raises(ConfigError, match=r"\$\.cost\.prices\[\.\.\.\]\.input"):
        load_config({"cost": {"prices": {"m": {"input": -1.0, "output": 1.0}}}})


def test_toml_nan_and_inf_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rubberduck.toml"
    path.write_text("[provider.ollama]\ntimeout = nan\n[health]\ninterval = inf\n")
    with pytest.raises(ConfigError, match=r"provider\['ollama'\]\.timeout"):
        load_config(path)


def test_a_non_utf8_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rubberduck.toml"
    path.write_bytes(b'[provider.ollama]\nmodel = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("host", ["[", "http://[::1", "http://[bad", "[::1"])
def test_unparseable_ollama_hosts_are_config_errors(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="Ollama host"):
        parse_ollama_host(host)
    monkeypatch.setenv("OLLAMA_HOST", host)
    with pytest.raises(ConfigError):
        OllamaProvider()


def test_cli_bad_host_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--host", "http://[bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rubberduck: ") and "Traceback" not in err


@pytest.mark.parametrize("source", [None, 42, b"rubberduck.toml", ["provider"]])
def test_a_source_that_is_neither_a_path_nor_a_mapping_is_a_config_error(source: Any) -> None:
    with pytest.raises(ConfigError, match="TOML file path or a mapping"):
        load_config(source)
    with pytest.raises(ConfigError):
        Runtime(source)
