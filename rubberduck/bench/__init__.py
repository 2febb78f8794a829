"""Benchmarking an LLM setup through RubberDuck (``rubberduck bench``).

One concept per module: :mod:`~rubberduck.bench.prompts` (what is sent),
:mod:`~rubberduck.bench.load` (how it arrives), :mod:`~rubberduck.bench.clients`
(what sends and times one request), :mod:`~rubberduck.bench.metrics` (the figures,
vLLM's names and definitions), :mod:`~rubberduck.bench.circuits` (circuit openings
during a run), :mod:`~rubberduck.bench.run` (one benchmark end to end) and
:mod:`~rubberduck.bench.report` (table and plot).
"""

from rubberduck.bench.load import LoadResult, LoadSpec, run_load
from rubberduck.bench.metrics import RequestRecord, summarize
from rubberduck.bench.prompts import BenchPrompt, load_jsonl, synthetic
from rubberduck.bench.run import BenchPlan, benchmark, parse_goodput

__all__ = [
    "BenchPlan",
    "BenchPrompt",
    "LoadResult",
    "LoadSpec",
    "RequestRecord",
    "benchmark",
    "load_jsonl",
    "parse_goodput",
    "run_load",
    "summarize",
    "synthetic",
]
