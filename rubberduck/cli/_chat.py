"""``rubberduck chat`` (one-shot or interactive) and ``rubberduck generate``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec

from rubberduck import usage_log
from rubberduck.cli._conversation import Conversation
from rubberduck.context import Context
from rubberduck.messages import Delta, Done, Restart
from rubberduck.runtime import Runtime

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``chat`` and ``generate`` to the subcommands."""
    chat = sub.add_parser(
        "chat",
        parents=[common],
        help="ask a question and stream the answer; no prompt on a terminal: a conversation "
        "(/? there lists its commands)",
    )
    chat.add_argument("prompt", nargs="?", help="the question (default: stdin, or interactive)")
    chat.add_argument("--system", help="system prompt")
    _request_options(chat)
    chat.set_defaults(run=_chat)

    gen = sub.add_parser("generate", parents=[common], help="complete a prompt (/api/generate)")
    gen.add_argument("prompt", nargs="?", help="the prompt (default: read stdin)")
    gen.add_argument("--system", help="system prompt")
    gen.add_argument("--raw", action="store_true", help="send the prompt without a template")
    _request_options(gen)
    gen.set_defaults(run=_generate)


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", help="model name (default: each backend's own)")
    parser.add_argument("--num-predict", type=int, metavar="TOKENS", help="most tokens to generate")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--format", metavar="json", help='"json" for a JSON answer')
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="deadline of a request")
    parser.add_argument(
        "--on-break",
        choices=("error", "restart"),
        help="a stream that breaks mid-way: fail, or start over on the next backend",
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="send only to this backend (repeat for several); see `rubberduck health`",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="send to the first backend only: no other backend and no other model answers",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"num_predict": args.num_predict, "temperature": args.temperature}
    return {k: v for k, v in options.items() if v is not None}


def _read_prompt(args: argparse.Namespace) -> str | None:
    if args.prompt is not None:
        return str(args.prompt)
    if sys.stdin.isatty():
        return None
    return sys.stdin.read()


def _chat(rt: Runtime, args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    if prompt is None:
        return _conversation(rt, args)
    messages = list(Context(prompt, system_prompt=args.system))
    _stream(rt.stream_chat(args.model, messages, **_kwargs(args)), args)
    return 0


def _generate(rt: Runtime, args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    if prompt is None:
        print('rubberduck: give a prompt: rubberduck generate "text"', file=sys.stderr)
        return 2
    handle = rt.generate(
        args.model, prompt, stream=True, system=args.system, raw=args.raw or None, **_kwargs(args)
    )
    _stream(handle, args)
    return 0


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "options": _options(args) or None,
        "format": args.format,
        "timeout": args.timeout,
        "mid_stream": args.on_break,
        **_routing(args),
    }


def _routing(args: argparse.Namespace) -> dict[str, Any]:
    """``--backend`` and ``--no-fallback`` as ``Runtime.chat`` arguments."""
    return {
        "backends": args.backend,
        "fallback": not args.no_fallback,
        "allow_substitute": False if args.no_fallback else None,
    }


def _conversation(rt: Runtime, args: argparse.Namespace) -> int:
    return Conversation(
        rt, args, options=_options(args), stream=_stream, routing=_routing(args)
    ).run()


def _stream(handle: Any, args: argparse.Namespace) -> str:
    """Print a handle's events as they come; returns the answer's text."""
    out = sys.stdout
    text: list[str] = []
    with handle:
        for event in handle:
            if isinstance(event, Delta):
                text.append(event.text)
                if not args.json:
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
                usage_log.append(event)
                _report(event, "".join(text), args.json)
    return "".join(text)


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
    if done.cost_usd:
        parts.append(f"${done.cost_usd:.6f}")
    print("— " + ", ".join(parts), file=sys.stderr)
    if done.substituted_for is not None:
        print(
            f"— note: {done.substituted_for!r} was not available; {done.provider} answered "
            f"with its own model {done.model!r} (--no-fallback forbids this)",
            file=sys.stderr,
        )
    for note in done.fallbacks:
        print(f"  fell back from {note}", file=sys.stderr)
