"""A benchmark's results for people: the summary table and the sweep plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rubberduck.bench.metrics import LATENCIES, PERCENTILES
from rubberduck.errors import ConfigError

__all__ = ["plot_sweep", "summary_table"]

_RUNTIME_COUNTS = ("fallbacks", "skipped_open_circuit", "retries", "restarts", "substitutions")


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    return f"{value}{unit}"


def summary_table(result: Mapping[str, Any], title: str = "RubberDuck bench") -> str:
    """The run's figures as an aligned text table, in the order of vLLM's summary,
    then Ollama's rates and the runtime's counts."""
    rows: list[tuple[str, str]] = [
        ("Completed requests", _num(result["completed"])),
        ("Failed requests", _num(result["failed"])),
        ("Duration (s)", _num(result["duration_s"])),
        ("Total input tokens", _num(result["total_input_tokens"])),
        ("Total output tokens", _num(result["total_output_tokens"])),
        ("Request throughput (req/s)", _num(result["request_throughput"])),
        ("Output token throughput (tok/s)", _num(result["output_throughput"])),
        ("Total token throughput (tok/s)", _num(result["total_token_throughput"])),
    ]
    if result.get("request_goodput") is not None:
        rows.append(("Request goodput (req/s)", _num(result["request_goodput"])))
    for name in LATENCIES:
        if result.get(f"mean_{name}_ms") is None:
            continue
        label = name.upper()
        rows.append((f"Mean {label} (ms)", _num(result[f"mean_{name}_ms"])))
        rows.append((f"Median {label} (ms)", _num(result[f"median_{name}_ms"])))
        for p in PERCENTILES:
            rows.append((f"P{p} {label} (ms)", _num(result[f"p{p}_{name}_ms"])))
    rows += [
        ("Prompt eval (tok/s, server)", _num(result["prompt_eval_tokens_per_s"])),
        ("Eval (tok/s, server)", _num(result["eval_tokens_per_s"])),
        ("Model load, total (s)", _num(result["load_s"])),
        ("prompt_eval_count / prompt sent", _prompt_cache(result)),
    ]
    rows += [(name.replace("_", " ").capitalize(), _num(result[name])) for name in _RUNTIME_COUNTS]
    openings = result.get("circuit_openings") or {}
    if openings:
        rows.append(("Circuit openings", ", ".join(f"{k}: {v}" for k, v in openings.items())))
    for name, figures in (result.get("per_backend") or {}).items():
        rows.append(
            (
                f"  {name}",
                f"{figures['completed']} done, {_num(figures['output_throughput'])} tok/s, "
                f"mean E2EL {_num(figures['mean_e2el_ms'])} ms",
            )
        )
    if "direct" in result:
        direct = result["direct"]
        rows.append(("Direct client: mean E2EL (ms)", _num(direct["mean_e2el_ms"])))
        rows.append(("Direct client: output tok/s", _num(direct["output_throughput"])))
        rows.append(("Direct client: eval tok/s (server)", _num(direct["eval_tokens_per_s"])))
        for key, value in result["overhead_ratio"].items():
            rows.append((f"RubberDuck / direct, {key}", _num(value)))
    width = max(len(label) for label, _ in rows)
    bar = "=" * (width + 20)
    lines = [f"{f' {title} ':=^{len(bar)}}"]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    return "\n".join([*lines, bar])


def _prompt_cache(result: Mapping[str, Any]) -> str:
    counted, sent = result.get("prompt_eval_count"), result.get("prompt_tokens_sent")
    if counted is None or not sent:
        return "—"
    return f"{counted} / {sent} ({counted / sent:.0%})"


def plot_sweep(points: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Latency percentiles (TTFT and E2EL) and output throughput against
    concurrency, one PNG.

    Args:
        points: One result per concurrency, each with a ``concurrency`` key.
        path: The PNG to write.

    Raises:
        ConfigError: matplotlib is not installed (``pip install rubberduck[plot]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'rubberduck[plot]'") from None
    x = [p["concurrency"] for p in points]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("ttft", "e2el"):
        for stat in ("median", "p90", "p99"):
            y = [p.get(f"{stat}_{name}_ms") for p in points]
            if any(v is not None for v in y):
                lat.plot(x, y, marker="o", label=f"{stat} {name.upper()}")
    lat.set(xlabel="concurrency", ylabel="latency (ms)", title="Latency", xscale="log")
    lat.legend(fontsize="small")
    thr.plot(x, [p["output_throughput"] for p in points], marker="o", label="output tok/s")
    thr.plot(x, [p["request_throughput"] for p in points], marker="s", label="requests/s")
    thr.set(xlabel="concurrency", title="Throughput", xscale="log")
    thr.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
