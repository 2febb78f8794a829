"""The ``rubberduck`` command: ``chat``, ``models``, ``health``.

The answer goes to stdout as it streams; which backend served it (and why others
were skipped) goes to stderr, so ``rubberduck chat "..." > answer.txt`` keeps only
the answer.

Exit codes: 0 success, 1 the request failed (a one-line reason with the remedy
is on stderr), 2 bad usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import msgspec

from rubberduck import __version__
from rubberduck.config import Config, default_config, load_config
from rubberduck.errors import ConfigError, RubberDuckError
from rubberduck.messages import Delta, Done, Restart
from rubberduck.runtime import Runtime

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rubberduck",
        description="Talk to local LLMs: Ollama first, an embedded model when Ollama is down.",
    )
    parser.add_argument("--version", action="version", version=f"rubberduck {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config (default: built-in)")
    common.add_argument("--host", metavar="HOST", help="Ollama host, as in OLLAMA_HOST")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", parents=[common], help="ask a question, stream the answer")
    chat.add_argument("prompt", nargs="?", help="the question (default: read stdin)")
    chat.add_argument("--model", "-m", help="model name (default: each backend's own)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--num-predict", type=int, metavar="TOKENS", help="most tokens to generate")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--timeout", type=float, metavar="SECONDS", help="deadline of the request")

    sub.add_parser("models", parents=[common], help="list each backend's models")
    sub.add_parser("health", parents=[common], help="show each backend's state")
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
        config = _config(args)
        with Runtime(config) as rt:
            if args.command == "chat":
                return _chat(rt, args)
            if args.command == "models":
                return _models(rt, args)
            return _health(rt, args)
    except ConfigError as exc:
        print(f"rubberduck: {exc}", file=sys.stderr)
        return 2
    except RubberDuckError as exc:
        print(f"rubberduck: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _chat(rt: Runtime, args: argparse.Namespace) -> int:
    prompt = args.prompt
    if prompt is None:
        if sys.stdin.isatty():
            print('rubberduck: give a prompt: rubberduck chat "your question"', file=sys.stderr)
            return 2
        prompt = sys.stdin.read()
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    options = {
        key: value
        for key, value in (("num_predict", args.num_predict), ("temperature", args.temperature))
        if value is not None
    }
    out = sys.stdout
    text: list[str] = []
    with rt.stream_chat(
        args.model, messages, options=options or None, timeout=args.timeout
    ) as stream:
        for event in stream:
            if isinstance(event, Delta):
                if args.json:
                    text.append(event.text)
                else:
                    out.write(event.text)
                    out.flush()
            elif isinstance(event, Restart):
                text.clear()
                if not args.json:
                    out.write("\n")
                print(
                    f"— {event.provider} broke off ({event.reason}); starting over elsewhere",
                    file=sys.stderr,
                )
            elif isinstance(event, Done):
                _report(event, "".join(text), args.json)
    return 0


def _report(done: Done, text: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"response": text, "done": msgspec.to_builtins(done)}))
    else:
        print(flush=True)  # end the answer's line before the report on stderr
    parts = [f"answered by {done.provider} ({done.model})"]
    if done.durations.total_s is not None:
        parts.append(f"{done.durations.total_s:.2f} s")
    parts.append(f"{done.usage.completion_tokens} tokens")
    if done.tokens_per_second:
        parts.append(f"{done.tokens_per_second:.0f} tokens/s")
    print("— " + ", ".join(parts), file=sys.stderr)
    for note in done.fallbacks:
        print(f"  fell back from {note}", file=sys.stderr)


def _models(rt: Runtime, args: argparse.Namespace) -> int:
    result = rt.models()
    if args.json:
        print(
            json.dumps(
                {k: v if isinstance(v, list) else {"error": str(v)} for k, v in result.items()}
            )
        )
        return 0
    for name, models in result.items():
        if isinstance(models, list):
            print(f"{name}: " + (", ".join(models) if models else "(no models)"))
        else:
            print(f"{name}: unavailable — {models}")
    return 0


def _health(rt: Runtime, args: argparse.Namespace) -> int:
    rt.wait_for_probes()
    snapshot = rt.health()
    if args.json:
        print(json.dumps({name: msgspec.to_builtins(h) for name, h in snapshot.items()}))
        return 0
    width = max(len(name) for name in snapshot)
    for name, h in snapshot.items():
        state = "up" if h.up else h.state.replace("_", "-")
        info = h.detail if h.up else h.last_error
        print(f"{name:<{width}}  {h.kind:<6}  {state:<9}  {info}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
