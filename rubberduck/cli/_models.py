"""``rubberduck embed``, ``show``, ``ps``, ``pull`` and ``rm`` (an Ollama backend)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from rubberduck.cli._status import table
from rubberduck.ollama_types import Progress
from rubberduck.runtime import Runtime

__all__ = ["ProgressBar", "human_bytes", "register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the model commands to the subcommands."""
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", metavar="NAME", help="Ollama backend (default: the first)")

    embed = sub.add_parser("embed", parents=[common], help="embed texts (one vector per text)")
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    embed.add_argument("--model", "-m", help="embedding model (default: each backend's own)")
    embed.add_argument("--dimensions", type=int, help="keep the first N values")
    embed.set_defaults(run=_embed)

    show = sub.add_parser("show", parents=[common, backend], help="a model's details")
    show.add_argument("model")
    show.add_argument("--modelfile", action="store_true", help="print its Modelfile")
    show.set_defaults(run=_show)

    sub.add_parser(
        "ps", parents=[common, backend], help="models loaded in memory now"
    ).set_defaults(run=_ps)

    pull = sub.add_parser("pull", parents=[common, backend], help="download a model")
    pull.add_argument("model")
    pull.add_argument("--insecure", action="store_true", help="allow an HTTP registry")
    pull.set_defaults(run=_pull)

    rm = sub.add_parser("rm", parents=[common, backend], help="delete models")
    rm.add_argument("models", nargs="+", metavar="MODEL")
    rm.set_defaults(run=_rm)


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KB"`` (decimal units, as Ollama prints sizes)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _embed(rt: Runtime, args: argparse.Namespace) -> int:
    answer = rt.embed(args.model, args.texts, dimensions=args.dimensions)
    if args.json:
        print(json.dumps(msgspec.to_builtins(answer)))
        return 0
    for text, vector in zip(args.texts, answer.embeddings, strict=True):
        head = ", ".join(f"{x:.4f}" for x in vector[:4])
        print(f"{len(vector)} dims  [{head}, ...]  {text[:50]}")
    print(f"— embedded by {answer.provider} ({answer.model})", file=sys.stderr)
    return 0


def _show(rt: Runtime, args: argparse.Namespace) -> int:
    info = rt.show(args.model, backend=args.backend)
    if args.json:
        print(json.dumps(msgspec.to_builtins(info)))
        return 0
    if args.modelfile:
        print(info.modelfile)
        return 0
    d = info.details
    context = next((v for k, v in info.model_info.items() if k.endswith(".context_length")), None)
    rows = [
        ("family", d.family),
        ("parameters", d.parameter_size),
        ("quantization", d.quantization_level),
        ("format", d.format),
        ("context length", f"{context} tokens" if context else "-"),
        ("capabilities", ", ".join(info.capabilities) or "-"),
    ]
    print(table(rows, ("MODEL", args.model)))
    if info.parameters:
        print("\nparameters:\n" + "\n".join("  " + p for p in info.parameters.splitlines()))
    if info.system:
        print(f"\nsystem prompt: {info.system}")
    return 0


def _ps(rt: Runtime, args: argparse.Namespace) -> int:
    running = rt.ps(backend=args.backend)
    if args.json:
        print(json.dumps(msgspec.to_builtins(running)))
        return 0
    now = datetime.now(UTC)
    rows = []
    for m in running.models:
        gpu = m.size_vram / m.size if m.size else 0.0
        until = "-"
        if m.expires_at is not None:
            minutes = (m.expires_at - now).total_seconds() / 60
            until = f"in {minutes:.0f} min" if minutes >= 1 else "soon"
        rows.append((m.name, human_bytes(m.size), f"{gpu:.0%} GPU", until))
    if not rows:
        print("no model is loaded", file=sys.stderr)
        return 0
    print(table(rows, ("NAME", "SIZE", "PROCESSOR", "UNLOADS")))
    return 0


class ProgressBar:
    """Draws pull progress on one terminal line: status, percent, bar, bytes, rate.

    Args:
        out: Where to draw (a terminal: the line is redrawn with ``\\r``).
        width: Bar width, characters.
        clock: Seconds, for the transfer rate.
    """

    def __init__(self, out: TextIO, width: int = 24, clock: Any = time.monotonic) -> None:
        self.out = out
        self.width = width
        self.clock = clock
        self._digest: str | None = None
        self._started = 0.0
        self._start_bytes = 0

    def line(self, p: Progress) -> str:
        """The text for one progress line (no ``\\r``)."""
        if not p.total:
            return p.status
        done = p.completed or 0
        if p.digest != self._digest:
            self._digest, self._started, self._start_bytes = p.digest, self.clock(), done
        elapsed = self.clock() - self._started
        rate = (done - self._start_bytes) / elapsed if elapsed > 0 else 0.0
        filled = int(self.width * done / p.total)
        bar = "█" * filled + " " * (self.width - filled)
        speed = f"  {human_bytes(rate)}/s" if rate else ""
        return (
            f"{p.status[:30]:<30} {done / p.total:4.0%} ▕{bar}▏ "
            f"{human_bytes(done)}/{human_bytes(p.total)}{speed}"
        )

    def draw(self, p: Progress) -> None:
        """Redraw the line for ``p``; a status without bytes ends the line."""
        text = self.line(p)
        self.out.write(f"\r{text}\033[K")
        if not p.total:
            self.out.write("\n")
        self.out.flush()


def _pull(rt: Runtime, args: argparse.Namespace) -> int:
    bar = ProgressBar(sys.stderr)
    for progress in rt.pull(args.model, insecure=args.insecure, stream=True, backend=args.backend):
        if args.json:
            print(json.dumps(msgspec.to_builtins(progress)), flush=True)
        else:
            bar.draw(progress)
    return 0


def _rm(rt: Runtime, args: argparse.Namespace) -> int:
    for model in args.models:
        rt.delete(model, backend=args.backend)
        if args.json:
            print(json.dumps({"deleted": model}))
        else:
            print(f"deleted '{model}'")
    return 0
