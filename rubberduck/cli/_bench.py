"""``rubberduck bench``: the throughput and latency of an LLM setup, as the service
sees it (through the Router, with fallback), in vLLM's figures."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rubberduck.bench import BenchPlan, BenchPrompt, LoadSpec, benchmark, parse_goodput
from rubberduck.bench.metrics import RequestRecord
from rubberduck.bench.prompts import load_jsonl, synthetic
from rubberduck.bench.report import plot_sweep, summary_table
from rubberduck.errors import InvalidRequest
from rubberduck.runtime import Runtime

__all__ = ["register"]

_EPILOG = """\
figures (vLLM's names): TTFT = time to the first text chunk; E2EL = time to the
last event; TPOT = (E2EL - TTFT) / (output tokens - 1); ITL = each gap between two
streamed chunks of a request (a chunk may hold several tokens). Throughputs are
per second of the run's wall time; goodput counts requests that met every SLO.

examples:
  rubberduck bench --model llama3.2 --concurrency 8 --requests 200
  rubberduck bench --rate 4 --duration 60 --goodput ttft:500 tpot:50
  rubberduck bench --sweep 1,8,32 --plot sweep.png --json > results.json
  rubberduck bench --backend ollama --compare-direct
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``bench`` to the subcommands."""
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="benchmark throughput and latency (TTFT, TPOT, ITL, E2EL) of the setup",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--endpoint", choices=("chat", "generate", "embed"), default="chat", help="default: chat"
    )
    p.add_argument("--model", "-m", help="model name (default: each backend's own)")
    load = p.add_argument_group("load")
    load.add_argument("--concurrency", type=int, default=1, metavar="N", help="closed loop")
    load.add_argument("--rate", type=float, metavar="R", help="open loop: Poisson, R req/s")
    load.add_argument(
        "--burstiness", type=float, default=1.0, help="gamma shape of arrival gaps (1: Poisson)"
    )
    load.add_argument("--sweep", metavar="N,N,...", help="run once per concurrency")
    load.add_argument("--requests", type=int, metavar="N", help="measured requests (default 100)")
    load.add_argument("--duration", type=float, metavar="SECONDS", help="stop sending after")
    load.add_argument("--warmup", type=int, default=0, metavar="N", help="unmeasured first")
    load.add_argument("--seed", type=int, help="seed of the open loop's arrivals")
    prompts = p.add_argument_group("prompts")
    prompts.add_argument(
        "--input-tokens", type=int, default=128, metavar="TOKENS", help="synthetic prompt length"
    )
    prompts.add_argument(
        "--output-tokens", type=int, default=128, metavar="TOKENS", help="num_predict to send"
    )
    prompts.add_argument("--prompts", metavar="FILE.jsonl", help="prompts or chats, one a line")
    route = p.add_argument_group("routing (default: the full router, with fallback)")
    route.add_argument("--backend", metavar="NAME", help="only this backend, no fallback")
    route.add_argument("--no-fallback", action="store_true", help="first candidate only")
    out = p.add_argument_group("output")
    out.add_argument("--goodput", nargs="+", metavar="NAME:MS", help="SLOs: ttft, tpot, e2el")
    out.add_argument("--compare-direct", action="store_true", help="also a plain client, ratio")
    out.add_argument("--results", metavar="FILE", help="write the JSON figures there too")
    out.add_argument("--plot", metavar="FILE.png", help="latency and throughput (matplotlib)")
    p.set_defaults(run=_bench)


def _sweep(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        steps = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise InvalidRequest(f"--sweep takes concurrencies such as 1,8,32 (got {text!r})") from None
    if any(n < 1 for n in steps):
        raise InvalidRequest(f"--sweep concurrencies must be at least 1 (got {text!r})")
    return steps


def plan_from(args: argparse.Namespace) -> BenchPlan:
    """The :class:`BenchPlan` the arguments describe.

    Raises:
        InvalidRequest: an argument is out of range.
    """
    requests = args.requests if args.requests or args.duration else 100
    load = LoadSpec(
        concurrency=args.concurrency,
        rate=args.rate,
        burstiness=args.burstiness,
        requests=requests,
        duration_s=args.duration,
        warmup=args.warmup,
        seed=args.seed,
    ).check()
    return BenchPlan(
        endpoint=args.endpoint,
        model=args.model,
        backend=args.backend,
        fallback=not args.no_fallback,
        load=load,
        sweep=_sweep(args.sweep),
        goodput_ms=parse_goodput(args.goodput) if args.goodput else None,
        compare_direct=args.compare_direct,
    )


def _prompts(args: argparse.Namespace) -> Callable[[], Iterable[BenchPrompt]]:
    if args.prompts:
        listed = load_jsonl(args.prompts, args.output_tokens)
        return lambda: listed
    # One endless sequence for every run (each sweep step, the direct client): no
    # run sends a prompt another sent before, whose prefix the server has cached.
    fresh = synthetic(args.input_tokens, args.output_tokens)
    return lambda: fresh


def _bench(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        plan = plan_from(args)
        prompts = _prompts(args)
        if plan.backend is not None and plan.backend not in rt.providers:
            raise InvalidRequest(
                f"--backend {plan.backend!r} is not configured — the backends are: "
                f"{', '.join(rt.providers)}"
            )
    except InvalidRequest as exc:  # bad usage: exit 2, as argparse does
        print(f"rubberduck bench: {exc}", file=sys.stderr)
        return 2
    runs = max(len(plan.sweep), 1) * (2 if plan.compare_direct else 1)
    requests = plan.load.requests
    total = requests * runs if requests is not None and plan.load.duration_s is None else None
    with tqdm(
        total=total,
        unit="req",
        desc="bench",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),  # no redraws in a log file
        dynamic_ncols=True,
    ) as bar:
        failed = 0

        def progress(record: RequestRecord) -> None:
            nonlocal failed
            failed += not record.ok
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()

        result = benchmark(rt, plan, prompts, progress)
    text = json.dumps(result, indent=None if args.json else 2)
    if args.results:
        Path(args.results).write_text(text + "\n", encoding="utf-8")
    if args.plot:
        plot_sweep(result.get("sweep") or [result], args.plot)
    if args.json:
        print(text)
    else:
        for point in result.get("sweep", [])[:-1]:
            print(summary_table(point, f"concurrency {point['concurrency']}"))
        title = f"concurrency {result['concurrency']}" + (
            f", rate {result['rate']}/s" if result["rate"] else ""
        )
        print(summary_table(result, title))
    return 0 if result["completed"] else 1
