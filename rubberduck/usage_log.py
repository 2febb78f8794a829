"""The command line's usage log: one JSON line per answer, summed by ``rubberduck usage``.

A Runtime keeps totals in memory (``Runtime.usage()``); a command-line run ends
after one answer, so the CLI appends each answer's usage to a file instead:
``$RUBBERDUCK_USAGE_LOG``, else ``$XDG_STATE_HOME/rubberduck/usage.jsonl``, else
``~/.local/state/rubberduck/usage.jsonl``. Nothing of the prompt or answer is kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from rubberduck.cost import UsageReport, UsageTotals
from rubberduck.messages import Done

__all__ = ["append", "log_path", "totals"]


class _Entry(msgspec.Struct, kw_only=True):
    time: float
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    shadow_cost_usd: float | None = None


def log_path() -> Path:
    """Where the log is (see the module docstring)."""
    if explicit := os.environ.get("RUBBERDUCK_USAGE_LOG"):
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rubberduck" / "usage.jsonl"


def append(done: Done) -> None:
    """Add one answer's usage. A log that cannot be written is skipped silently:
    it must never cost the user their answer."""
    entry = _Entry(
        time=time.time(),
        provider=done.provider,
        model=done.model,
        prompt_tokens=done.usage.prompt_tokens,
        completion_tokens=done.usage.completion_tokens,
        cost_usd=done.cost_usd,
        shadow_cost_usd=done.shadow_cost_usd,
    )
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            f.write(msgspec.json.encode(entry) + b"\n")
    except OSError:
        pass


def totals(since: float | None = None) -> UsageReport:
    """Sum the log per backend and per model, from Unix time ``since`` (seconds)
    on; lines that do not parse are skipped."""
    by_backend: dict[str, UsageTotals] = {}
    by_model: dict[str, UsageTotals] = {}
    decoder = msgspec.json.Decoder(_Entry)
    try:
        lines = log_path().read_bytes().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = decoder.decode(line)
        except msgspec.DecodeError:
            continue
        if since is not None and entry.time < since:
            continue
        for key, table in ((entry.provider, by_backend), (entry.model, by_model)):
            table.setdefault(key, UsageTotals()).add(
                entry.prompt_tokens, entry.completion_tokens, entry.cost_usd, entry.shadow_cost_usd
            )
    return UsageReport(by_backend=by_backend, by_model=by_model)
