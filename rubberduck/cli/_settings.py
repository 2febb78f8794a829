"""Which configuration the command line uses, and the flags every command takes.

The first that exists wins: ``--config FILE``, the ``RUBBERDUCK_CONFIG``
environment variable, the user's config file (``$XDG_CONFIG_HOME/rubberduck/
config.toml``, by default ``~/.config/rubberduck/config.toml``), then the built-in
default (Ollama, then the embedded model). ``--host`` then overrides the URL of
every Ollama backend.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import msgspec

from rubberduck.config import Config, default_config, load_config
from rubberduck.errors import ConfigError

__all__ = ["CONFIG_HELP", "add_common", "config_for", "user_config_path"]

CONFIG_HELP = """\
config, the first found:
  --config FILE
  $RUBBERDUCK_CONFIG
  $XDG_CONFIG_HOME/rubberduck/config.toml (default ~/.config/rubberduck/config.toml)
  built in: Ollama at $OLLAMA_HOST (or 127.0.0.1:11434), then the embedded model"""


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/rubberduck/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "rubberduck" / "config.toml"


def add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Add ``--config``, ``--host``, ``--json`` and ``--metrics-port``. On a
    subcommand (``top=False``) they default to "not given", so that one given before
    the subcommand (``rubberduck --json models``) is not overwritten by the
    subcommand's default."""
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    where = "see below" if top else "default: see `rubberduck --help`"
    parser.add_argument("--config", metavar="FILE", help=f"TOML config ({where})", **unset)
    parser.add_argument("--host", metavar="HOST", help="Ollama host, as in OLLAMA_HOST", **unset)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts", **unset)
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT while the command runs "
        "(long-running commands; needs rubberduck[prometheus])",
        **unset,
    )


def config_for(args: argparse.Namespace) -> Config:
    """The configuration the arguments and the environment select (see above).

    Raises:
        ConfigError: ``RUBBERDUCK_CONFIG`` names a file that does not exist, or
            the chosen file is invalid (the message names the key).
    """
    path = args.config or os.environ.get("RUBBERDUCK_CONFIG")
    if path is None and user_config_path().is_file():
        path = str(user_config_path())
    if path is not None and not Path(path).is_file() and not args.config:
        raise ConfigError(f"RUBBERDUCK_CONFIG names {path}, which does not exist")
    config = load_config(path) if path else default_config()
    if args.host:
        config = msgspec.structs.replace(
            config,
            provider={
                name: msgspec.structs.replace(p, base_url=args.host)
                if (p.kind or name) == "ollama"
                else p
                for name, p in config.provider.items()
            },
        )
    return config
