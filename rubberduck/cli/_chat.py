"""``rubberduck chat`` (one-shot or interactive) and ``rubberduck generate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
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

    run = sub.add_parser(
        "run",
        parents=[common],
        help="ollama's name for chat: one answer with a prompt, a conversation without",
    )
    run.add_argument("model", help="model name")
    run.add_argument("prompt", nargs="*", help="the question (default: stdin, or interactive)")
    run.add_argument("--system", help="system prompt")
    _request_options(run, model_option=False)
    run.set_defaults(run=_run)

    gen = sub.add_parser("generate", parents=[common], help="complete a prompt (/api/generate)")
    gen.add_argument("prompt", nargs="?", help="the prompt (default: read stdin)")
    gen.add_argument("--system", help="system prompt")
    gen.add_argument("--raw", action="store_true", help="send the prompt without a template")
    _request_options(gen)
    gen.set_defaults(run=_generate)


def _request_options(parser: argparse.ArgumentParser, *, model_option: bool = True) -> None:
    if model_option:
        parser.add_argument("--model", "-m", help="model name (default: each backend's own)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="timings after the answer, as `ollama run --verbose`: time to first token, "
        "load, prompt-eval and eval rates",
    )
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


class _NoPrompt(Exception):
    """No prompt, or an empty one, where one is needed (exit 2)."""


def _piped() -> str | None:
    """What is piped to stdin, ``None`` on a terminal (or none readable)."""
    try:
        return None if sys.stdin.isatty() else sys.stdin.read()
    except (OSError, ValueError):  # closed, or not readable (a test harness)
        return None


def read_prompt(given: str | None) -> str | None:
    """The prompt: piped stdin and ``given`` joined by a space, as ``llm`` does
    (``echo TEXT | rubberduck chat "summarize this"``); ``None`` when neither
    exists and stdin is a terminal (a conversation).

    Raises:
        _NoPrompt: the prompt is empty or blank (nothing is sent).
    """
    piped = _piped()
    parts = [p for p in (piped, given) if p]
    if not parts and given is None and piped is None:
        return None
    prompt = " ".join(parts)
    if not prompt.strip():
        raise _NoPrompt("the prompt is empty")
    return prompt


def _chat(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        prompt = read_prompt(args.prompt)
    except _NoPrompt as exc:
        print(f'rubberduck: {exc} — give one: rubberduck chat "question"', file=sys.stderr)
        return 2
    if prompt is None:
        return _conversation(rt, args)
    messages = list(Context(prompt, system_prompt=args.system))
    _stream(rt.stream_chat(args.model, messages, **_kwargs(args)), args)
    return 0


def _run(rt: Runtime, args: argparse.Namespace) -> int:
    args.prompt = " ".join(args.prompt) if args.prompt else None
    return _chat(rt, args)


def _generate(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        prompt = read_prompt(args.prompt)
        if prompt is None:
            raise _NoPrompt("no prompt")
    except _NoPrompt as exc:
        print(f'rubberduck: {exc} — give one: rubberduck generate "text"', file=sys.stderr)
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
    start, first = time.monotonic(), None
    with handle:
        for event in handle:
            if isinstance(event, Delta):
                if first is None and event.text:
                    first = time.monotonic() - start
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
                if getattr(args, "verbose", False):
                    print(verbose_timings(event, first), file=sys.stderr)
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


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3f}ms" if value < 1 else f"{value:.6f}s"


def verbose_timings(done: Done, ttft_s: float | None) -> str:
    """The timing block of ``ollama run --verbose`` (from Ollama's own durations),
    with the time to the first token as this client saw it; ``-`` for a figure
    the backend did not report."""
    d, u = done.durations, done.usage
    prompt_rate = u.prompt_tokens / d.prompt_eval_s if d.prompt_eval_s else None
    rows = [
        ("time to first token", _seconds(ttft_s)),
        ("total duration", _seconds(d.total_s)),
        ("load duration", _seconds(d.load_s)),
        ("prompt eval count", f"{u.prompt_tokens} token(s)"),
        ("prompt eval duration", _seconds(d.prompt_eval_s)),
        ("prompt eval rate", f"{prompt_rate:.2f} tokens/s" if prompt_rate else "-"),
        ("eval count", f"{u.completion_tokens} token(s)"),
        ("eval duration", _seconds(d.eval_s)),
        ("eval rate", f"{done.tokens_per_second:.2f} tokens/s" if done.tokens_per_second else "-"),
    ]
    return "\n".join(f"{label + ':':<22}{value}" for label, value in rows)
