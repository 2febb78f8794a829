"""Soak: availability under partial faults, and how soon a restarted backend serves.

Three Ollama-protocol servers on loopback (``tests/fake_ollama.py``), each failing
about 10 % of requests independently with a mix of 503, 500, TCP resets, an
error line mid-stream and a stall past the 1 s read timeout. 32 caller threads
stream chats (``mid_stream="restart"``) through one Runtime with
``max_in_flight = 32`` per backend, a 1 s read timeout and otherwise the
default settings (breaker, retries, deadlines). Reported: the share of requests
that ended with the whole answer, and what the others ended with.

Recovery: two healthy backends; requests run back to back; the first backend's
server stops (its port refuses connections) for an outage of 10 s and of 60 s,
then listens again on the same port. Reported: seconds from the restart to the
first request it serves (median and worst of three rounds).

Run: ``python benchmarks/soak.py [requests] [max_seconds] [outage_s ...] [--smoke]``
(defaults: 5000 requests, 300 s, outages 10 and 60; ``--smoke``: 40 requests and
one outage of 0.5 s). ``benchmarks/resilience.py`` runs the peers under the same
fault mix.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._peers import smoke
from rubberduck import Delta, Done, Restart, RubberDuckError, Runtime
from tests.fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
ANSWER = "The sky is blue."  # tests/fixtures/ollama/chat_stream.ndjson
THREADS = 32
ROUNDS = 3  # restarts measured per outage length
FAULT_RATE = 0.1


def soak_config(urls: list[str]) -> dict[str, Any]:
    """The issue's setting: a 1 s read timeout, 32 in flight, otherwise defaults."""
    return {
        "provider": {
            f"ollama{i}": {
                "kind": "ollama",
                "base_url": url,
                "model": "llama3.2",
                "timeout": 1.0,
                "max_in_flight": THREADS,
            }
            for i, url in enumerate(urls)
        },
        "router": {"mid_stream": "restart"},
    }


def one_request(rt: Runtime) -> str:
    """Stream one chat; ``"ok"`` if the whole answer came, else what it ended with."""
    text: list[str] = []
    try:
        for event in rt.stream_chat("llama3.2", MESSAGES, mid_stream="restart"):
            if type(event) is Restart:
                text.clear()
            elif type(event) is Delta:
                text.append(event.text)
            elif type(event) is Done:
                return "ok" if "".join(text) == ANSWER else "wrong answer"
    except RubberDuckError as exc:
        return type(exc).__name__
    return "no Done"


def soak(requests: int, max_s: float) -> tuple[Counter[str], float, Counter[str]]:
    """Run up to ``requests`` requests from 32 threads, for at most ``max_s`` seconds.

    Returns:
        How the requests ended, the seconds it took, and the faults injected.
    """
    servers = [FakeOllama(fault_rate=FAULT_RATE, seed=i).start() for i in range(3)]
    results: Counter[str] = Counter()
    lock = threading.Lock()
    issued = 0
    try:
        with Runtime.from_config(soak_config([s.url for s in servers])) as rt:
            deadline = time.monotonic() + max_s
            started = time.monotonic()

            def caller() -> None:
                nonlocal issued
                while time.monotonic() < deadline:
                    with lock:
                        if issued >= requests:
                            return
                        issued += 1
                    outcome = one_request(rt)
                    with lock:
                        results[outcome] += 1

            threads = [threading.Thread(target=caller) for _ in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.monotonic() - started
    finally:
        for s in servers:
            s.stop()
    faults = Counter(f for s in servers for f in s.faults_injected)
    return results, took, faults


def recovery(outage_s: float) -> float:
    """Seconds from a backend's restart, after ``outage_s`` seconds down, to the
    first request it serves (requests run back to back meanwhile)."""
    first, backup = FakeOllama().start(), FakeOllama().start()
    port = first.port
    config = {
        "provider": {
            "first": {"kind": "ollama", "base_url": first.url, "model": "llama3.2"},
            "backup": {"kind": "ollama", "base_url": backup.url, "model": "llama3.2"},
        }
    }
    restarted: FakeOllama | None = None
    try:
        with Runtime.from_config(config) as rt:
            assert rt.chat("llama3.2", MESSAGES).provider == "first"
            first.mode = "drop"  # open keep-alive connections die with the process, too
            first.stop()
            down_until = time.monotonic() + outage_s
            while time.monotonic() < down_until:
                rt.chat("llama3.2", MESSAGES)
                time.sleep(0.01)
            restarted = FakeOllama(port=port).start()
            back = time.monotonic()
            while rt.chat("llama3.2", MESSAGES).provider != "first":
                time.sleep(0.01)
                if time.monotonic() - back > 120:
                    return float("inf")
            return time.monotonic() - back
    finally:
        backup.stop()
        if restarted is not None:
            restarted.stop()


def main(argv: list[str]) -> None:
    tiny, argv = smoke(argv)
    if tiny:
        argv = ["40", "30", "0.5"]
    requests = int(argv[0]) if argv else 5000
    max_s = float(argv[1]) if len(argv) > 1 else 300.0
    outages = [float(a) for a in argv[2:]] or [10.0, 60.0]

    results, took, faults = soak(requests, max_s)
    total = sum(results.values())
    ok = results["ok"]
    print(
        f"soak: 3 fake Ollama backends, {FAULT_RATE:.0%} independent faults each, "
        f"{THREADS} threads, max_in_flight={THREADS}, read timeout 1 s, "
        'mid_stream="restart", defaults otherwise'
    )
    print(f"{'requests':<34}{total:>10}")
    print(f"{'succeeded':<34}{ok:>10}{ok / max(total, 1):>10.2%}")
    for outcome, n in results.most_common():
        if outcome != "ok":
            print(f"{'  ended with ' + outcome:<34}{n:>10}")
    print(f"{'seconds':<34}{took:>10.1f}{total / took:>9.0f}/s")
    print(f"{'faults injected':<34}{sum(faults.values()):>10}")
    for fault, n in faults.most_common():
        print(f"{'  ' + fault:<34}{n:>10}")
    print()
    print(f"restart → first request served, {ROUNDS} rounds per outage")
    print(f"{'outage (s)':<34}{'median s':>10}{'max s':>10}")
    for outage in outages:
        samples = [recovery(outage) for _ in range(ROUNDS)]
        print(f"{outage:<34g}{statistics.median(samples):>10.2f}{max(samples):>10.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
