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

from rubberduck import __version__
from rubberduck.cli import _bench, _chat, _models, _status
from rubberduck.cli._settings import CONFIG_HELP, add_common, config_for
from rubberduck.errors import ConfigError, RubberDuckError
from rubberduck.runtime import Runtime
from rubberduck.telemetry import serve_prometheus

__all__ = ["main"]

#: Command modules: each has ``register(subparsers, common)``; the parsers they add
#: carry a ``run(rt, args) -> int`` default.
_COMMANDS = (_chat, _models, _status, _bench)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rubberduck",
        description="Talk to local LLMs: Ollama first, an embedded model when Ollama is down.",
        epilog=f"{CONFIG_HELP}\n\nexit codes: 0 ok, 1 the request failed, 2 bad usage or "
        "config, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rubberduck {__version__}")
    add_common(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    add_common(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no command: what a new user needs is the help
        parser.print_help()
        return 0
    metrics = None
    try:
        if getattr(args, "offline", False):  # needs no backend
            return int(args.run(None, args))
        if getattr(args, "metrics_port", None) is not None:
            metrics = serve_prometheus(args.metrics_port)
        with Runtime(config_for(args)) as rt:
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
    finally:
        if metrics is not None:
            metrics.close()
