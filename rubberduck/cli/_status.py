"""``rubberduck health``, ``models`` and ``usage``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from rubberduck import usage_log
from rubberduck.cli._human import ago, human_bytes
from rubberduck.cost import UsageTotals
from rubberduck.errors import RubberDuckError
from rubberduck.ollama_types import ListedModel
from rubberduck.runtime import Runtime

__all__ = ["register", "table"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``health``, ``models`` and ``usage`` to the subcommands."""
    sub.add_parser(
        "health", parents=[common], help="each backend's circuit state, latency and last error"
    ).set_defaults(run=_health)
    sub.add_parser(
        "models", aliases=["list", "ls"], parents=[common], help="each backend's models"
    ).set_defaults(run=_models)
    usage = sub.add_parser(
        "usage", parents=[common], help="tokens and cost of past answers from this command line"
    )
    usage.add_argument("--days", type=float, help="only the last DAYS days")
    usage.set_defaults(run=_usage, offline=True)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Rows as aligned columns under ``header``; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [f"{c!s:<{w}}" for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f} ms"


def _health(rt: Runtime, args: argparse.Namespace) -> int:
    rt.wait_for_probes()
    snapshot = rt.health()
    if args.json:
        print(json.dumps({name: msgspec.to_builtins(h) for name, h in snapshot.items()}))
        return 0
    rows = [
        (
            name,
            h.kind,
            "up" if h.up else h.state.replace("_", "-"),
            _ms(h.latency_p50_s),
            str(h.requests),
            str(h.failures),
            h.detail or "-",
            h.last_error or "-",
        )
        for name, h in snapshot.items()
    ]
    header = ("BACKEND", "KIND", "STATE", "P50", "REQUESTS", "FAILURES", "DETAIL", "LAST ERROR")
    print(table(rows, header))
    return 0


def _models(rt: Runtime, args: argparse.Namespace) -> int:
    result = rt.models()
    if args.json:
        out = {k: v if isinstance(v, list) else {"error": str(v)} for k, v in result.items()}
        print(json.dumps(out))
        return 0
    now = datetime.now(UTC)
    rows: list[tuple[str, ...]] = []
    for name, models in result.items():
        if not isinstance(models, list):
            rows.append((name, f"unavailable — {models}", "", ""))
            continue
        listed = _listed(rt, name)
        for model in models:
            entry = listed.get(model) or listed.get(f"{model}:latest")
            if entry is None:
                rows.append((name, model, "-", "-"))
            else:
                rows.append((name, model, human_bytes(entry.size), ago(entry.modified_at, now)))
        if not models:
            rows.append((name, "(no models)", "", ""))
    print(table(rows, ("BACKEND", "NAME", "SIZE", "MODIFIED")))
    return 0


def _listed(rt: Runtime, backend: str) -> dict[str, ListedModel]:
    """An Ollama backend's models by name, with size and modification time
    (``{}`` for other backends, which do not report them)."""
    try:
        return {m.name or m.model: m for m in rt.list(backend=backend).models}
    except RubberDuckError:
        return {}


def _usage(_: None, args: argparse.Namespace) -> int:
    since = time.time() - args.days * 86400 if args.days else None
    report = usage_log.totals(since)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report)))
        return 0
    if not report.by_backend:
        print(f"no answers logged yet ({usage_log.log_path()})", file=sys.stderr)
        return 0
    for title, totals in (("BACKEND", report.by_backend), ("MODEL", report.by_model)):
        print(table([_usage_row(k, t) for k, t in totals.items()], (title, *_USAGE_COLUMNS)))
        print()
    print(f"log: {usage_log.log_path()}", file=sys.stderr)
    return 0


_USAGE_COLUMNS = ("ANSWERS", "PROMPT TOK", "COMPLETION TOK", "COST USD", "SHADOW USD")


def _usage_row(key: str, t: UsageTotals) -> tuple[str, ...]:
    return (
        key,
        str(t.requests),
        str(t.prompt_tokens),
        str(t.completion_tokens),
        f"{t.cost_usd:.4f}",
        f"{t.shadow_cost_usd:.4f}",
    )
