"""The ``rubberduck`` command.

Answers stream to stdout; which backend served them (and why others were skipped)
goes to stderr, so ``rubberduck chat "..." > answer.txt`` keeps only the answer.
Every command takes ``--json`` for scripts.

Exit codes: 0 success; 1 the request failed (one line on stderr says why and what
to do); 2 bad usage or configuration; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import msgspec

from rubberduck import __version__
from rubberduck.cli import _bench, _chat, _models, _status
from rubberduck.config import Config, default_config, load_config
from rubberduck.errors import ConfigError, RubberDuckError
from rubberduck.runtime import Runtime

__all__ = ["main"]

#: Command modules: each has ``register(subparsers, common)``; the parsers they add
#: carry a ``run(rt, args) -> int`` default.
_COMMANDS = (_chat, _models, _status, _bench)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rubberduck",
        description="Talk to local LLMs: Ollama first, an embedded model when Ollama is down.",
        epilog="Exit codes: 0 ok, 1 the request failed, 2 bad usage or config, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"rubberduck {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config (default: built-in)")
    common.add_argument("--host", metavar="HOST", help="Ollama host, as in OLLAMA_HOST")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub, common)
    return parser


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if args.config else default_config()
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "offline", False):  # needs no backend
            return int(args.run(None, args))
        with Runtime(_config(args)) as rt:
            return int(args.run(rt, args))
    except ConfigError as exc:
        print(f"rubberduck: {exc}", file=sys.stderr)
        return 2
    except RubberDuckError as exc:
        print(f"rubberduck: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours. Point stdout at
        # /dev/null so that Python's exit flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
