"""``rubberduck embed``, ``show``, ``ps``, ``pull`` and ``rm`` (an Ollama backend)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
from tqdm import tqdm

from rubberduck.cli._human import human_bytes, until
from rubberduck.cli._status import table
from rubberduck.ollama_types import Progress
from rubberduck.runtime import Runtime

__all__ = ["PullProgress", "human_bytes", "register"]


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
        rows.append((m.name, human_bytes(m.size), f"{gpu:.0%} GPU", until(m.expires_at, now)))
    if not rows:
        print("no model is loaded", file=sys.stderr)
        return 0
    print(table(rows, ("NAME", "SIZE", "PROCESSOR", "UNTIL")))
    return 0


class PullProgress:
    """Shows pull progress: on a terminal one ``tqdm`` bar per layer (bytes, percent,
    rate; kept on screen at the end), elsewhere plain lines with no redraws (each
    status once, and each layer when it starts and when it is complete).

    Args:
        out: Where to write.
        terminal: Draw bars; default: whether ``out`` is a terminal.
    """

    def __init__(self, out: TextIO, terminal: bool | None = None) -> None:
        self.out = out
        self.terminal = out.isatty() if terminal is None else terminal
        self._bars: dict[str, tqdm[Any]] = {}
        self._status = ""
        self._said: set[tuple[str, bool]] = set()

    def show(self, p: Progress) -> None:
        """Show one progress line from the server."""
        if p.digest and p.total:
            if self.terminal:
                self._bar(p)
            else:
                self._plain_layer(p)
        elif p.status != self._status:
            self._status = p.status
            if self.terminal and self._bars:
                tqdm.write(p.status, file=self.out)
            else:
                print(p.status, file=self.out, flush=True)

    def _bar(self, p: Progress) -> None:
        bar = self._bars.get(p.digest or "")
        if bar is None:
            bar = tqdm(
                total=p.total,
                desc=p.status[:30],
                unit="B",
                unit_scale=True,
                unit_divisor=1000,  # decimal, as Ollama prints sizes
                file=self.out,
                leave=True,
                position=len(self._bars),
            )
            self._bars[p.digest or ""] = bar
        bar.update((p.completed or 0) - bar.n)

    def _plain_layer(self, p: Progress) -> None:
        complete = (p.completed or 0) >= (p.total or 0)
        if (p.digest or "", complete) in self._said:
            return
        self._said.add((p.digest or "", complete))
        state = "done" if complete else "started"
        print(f"{p.status}: {human_bytes(p.total or 0)} {state}", file=self.out, flush=True)

    def close(self) -> None:
        """Finish the bars (they stay on screen)."""
        for bar in self._bars.values():
            bar.close()


def _pull(rt: Runtime, args: argparse.Namespace) -> int:
    shown = PullProgress(sys.stderr)
    try:
        for progress in rt.pull(
            args.model, insecure=args.insecure, stream=True, backend=args.backend
        ):
            if args.json:
                print(json.dumps(msgspec.to_builtins(progress)), flush=True)
            else:
                shown.show(progress)
    finally:
        shown.close()
    return 0


def _rm(rt: Runtime, args: argparse.Namespace) -> int:
    for model in args.models:
        rt.delete(model, backend=args.backend)
        if args.json:
            print(json.dumps({"deleted": model}))
        else:
            print(f"deleted '{model}'")
    return 0
