"""Fleet simulation: many replicas in front of many Ollama hosts, in simulated time.

Usage: ``python benchmarks/fleet_sim.py [--requests N] [--seed S] [--smoke]``

50 replicas (each a service embedding a Runtime) send requests to 20 hosts that
all have every model on disk. Each replica routes with RubberDuck's own policy
code — :func:`rubberduck.actors.balance.order`, the function
``RoutingTable.candidates`` calls — over its *own* view: its own
:class:`~rubberduck.actors.channels.Load` (its requests in flight, per host and
model) and :class:`~rubberduck.actors.residency.Residency` (each host's
``/api/ps`` read every health interval, plus what its own answers taught it,
latency EWMA included), exactly as a Runtime fills them. Replicas share nothing
(no Redis): that is the limit this shows. ``--shared-load`` gives them one
``Load`` instead (every replica sees every request in flight), as the
``[cluster]`` slots shared through Redis will.

A simulated host behaves as Ollama's scheduler does, simplified: a model must
be loaded before it answers (a load takes the model's load time); at most
``--max-loaded`` models are loaded (``OLLAMA_MAX_LOADED_MODELS``), the least
recently used *idle* one is evicted for a new one, and a load waits while every
loaded model is busy; each model runs ``--parallel`` requests at once
(``OLLAMA_NUM_PARALLEL``) and queues the rest. TTFT is arrival to first token
(queueing + any load + prompt evaluation). Not modelled: ``keep_alive``
expiry, memory-based eviction, network time, replicas holding requests back.

The workload is the same for every policy (same seed): Poisson arrivals, a few
hot models and a long tail (Zipf), load times and answer lengths per model.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import statistics
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rubberduck.actors.balance import order
from rubberduck.actors.channels import Load
from rubberduck.actors.residency import Residency
from rubberduck.actors.routing import Route

POLICIES = ("priority", "least_loaded", "warm")


@dataclass(frozen=True)
class Model:
    name: str
    load_s: float  # seconds to load into memory
    prompt_s: float  # prompt evaluation: the first token comes after it
    token_s: float  # seconds per generated token


@dataclass
class Request:
    id: int
    at: float  # arrival, seconds
    model: Model
    tokens: int
    replica: int
    host: int = -1
    started: float = 0.0
    cold: bool = False


@dataclass
class Resident:
    """A model on a host: loading or loaded."""

    ready: bool = False
    running: int = 0
    queue: deque[Request] = field(default_factory=deque)


class Host:
    """One simulated Ollama server."""

    def __init__(self, index: int, sim: Sim) -> None:
        self.index, self.sim = index, sim
        self.models: OrderedDict[str, Resident] = OrderedDict()  # LRU first
        self.waiting_load: deque[Request] = deque()  # no runner free to load into

    def loaded(self) -> list[str]:
        """What ``/api/ps`` lists: the models loaded (not those still loading)."""
        return [name for name, r in self.models.items() if r.ready]

    def arrive(self, req: Request) -> None:
        name = req.model.name
        resident = self.models.get(name)
        if resident is None:
            if not self._make_room():
                self.waiting_load.append(req)
                return
            resident = self._load(req)
        self.models.move_to_end(name)
        resident.queue.append(req)
        self._start(resident)

    def _make_room(self) -> bool:
        if len(self.models) < self.sim.max_loaded:
            return True
        for name, r in self.models.items():  # least recently used first
            if r.ready and not r.running and not r.queue:
                del self.models[name]
                self.sim.evictions += 1
                return True
        return False

    def _load(self, req: Request) -> Resident:
        resident = self.models[req.model.name] = Resident()
        req.cold = True
        self.sim.cold_loads += 1
        self.sim.at(self.sim.now + req.model.load_s, lambda: self._loaded(resident))
        return resident

    def _loaded(self, resident: Resident) -> None:
        resident.ready = True
        self._start(resident)

    def _start(self, resident: Resident) -> None:
        while resident.ready and resident.queue and resident.running < self.sim.parallel:
            req = resident.queue.popleft()
            resident.running += 1
            req.started = self.sim.now
            first = self.sim.now + req.model.prompt_s
            done = first + req.tokens * req.model.token_s
            self.sim.ttft.append(first - req.at)
            self.sim.at(done, lambda r=req, m=resident: self._done(r, m))

    def _done(self, req: Request, resident: Resident) -> None:
        resident.running -= 1
        self.sim.finished(req)
        self._start(resident)
        while self.waiting_load and self._make_room():
            self.arrive(self.waiting_load.popleft())


class Replica:
    """One service's Runtime: its own view of the fleet, as a Runtime fills it."""

    def __init__(self, routes: list[Route], policy: str, rng: random.Random, load: Load) -> None:
        self.routes, self.policy, self.rng = routes, policy, rng
        self.load = load
        self.residency = Residency(cold_load_threshold=0.5)

    def route(self, req: Request) -> int:
        best = order(self.routes, req.model.name, self.load, self.residency, self.policy, self.rng)
        host = int(best[0].name[1:])
        self.load.add(best[0].name, 1, req.model.name)
        return host


class Sim:
    def __init__(self, args: argparse.Namespace, policy: str) -> None:
        self.parallel, self.max_loaded = args.parallel, args.max_loaded
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.ttft: list[float] = []
        self.cold_loads = self.evictions = self.done = 0
        self.hosts = [Host(i, self) for i in range(args.hosts)]
        routes = [
            Route(f"h{i}", max_in_flight_per_model=args.parallel, max_loaded_models=args.max_loaded)
            for i in range(args.hosts)
        ]
        shared = Load() if args.shared_load else None
        self.replicas = [
            Replica(routes, policy, random.Random(args.seed * 1000 + i), shared or Load())
            for i in range(args.replicas)
        ]
        self.interval = args.interval
        phases = random.Random(args.seed)
        for replica in self.replicas:  # each reads /api/ps on its own health tick
            self.at(phases.uniform(0, self.interval), lambda r=replica: self._poll(r))

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _poll(self, replica: Replica) -> None:
        for host in self.hosts:
            replica.residency.set_loaded(f"h{host.index}", host.loaded())
        if self.done < self.total:
            self.at(self.now + self.interval, lambda: self._poll(replica))

    def finished(self, req: Request) -> None:
        self.done += 1
        replica, name = self.replicas[req.replica], f"h{req.host}"
        replica.load.add(name, -1, req.model.name)
        load_s = req.model.load_s if req.cold else 0.001
        replica.residency.answered(name, req.model.name, load_s)
        replica.residency.observe(name, self.now - req.at)

    def run(self, workload: list[Request]) -> None:
        self.total = len(workload)
        for req in workload:
            self.at(req.at, lambda r=req: self._arrive(r))
        while self._events:
            self.now, _, action = heapq.heappop(self._events)
            action()

    def _arrive(self, req: Request) -> None:
        req.host = self.replicas[req.replica].route(req)
        self.hosts[req.host].arrive(req)


def workload(args: argparse.Namespace) -> list[Request]:
    """Poisson arrivals; model popularity Zipf(1.1) over ``--models`` models."""
    rng = random.Random(args.seed)
    models = [
        Model(
            f"model-{i:02d}",
            load_s=rng.uniform(2.0, 10.0),
            prompt_s=rng.uniform(0.05, 0.3),
            token_s=rng.uniform(0.01, 0.04),
        )
        for i in range(args.models)
    ]
    popularity = [1 / (rank + 1) ** 1.1 for rank in range(args.models)]
    t, out = 0.0, []
    for i in range(args.requests):
        t += rng.expovariate(args.rate)
        model = rng.choices(models, popularity)[0]
        out.append(Request(i, t, model, rng.randint(50, 300), rng.randrange(args.replicas)))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--models", type=int, default=30, help="3 or so hot, the rest a tail")
    parser.add_argument("--rate", type=float, default=6.0, help="requests per second")
    parser.add_argument("--parallel", type=int, default=2, help="OLLAMA_NUM_PARALLEL")
    parser.add_argument("--max-loaded", type=int, default=3, help="OLLAMA_MAX_LOADED_MODELS")
    parser.add_argument("--interval", type=float, default=5.0, help="[health] interval, s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--shared-load", action="store_true", help="one Load for all replicas (as with Redis)"
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.replicas, args.hosts, args.models, args.rate = 300, 5, 4, 8, 3.0
    jobs = workload(args)
    print(
        f"fleet_sim: {args.replicas} replicas, {args.hosts} hosts, {args.models} models, "
        f"{args.requests} requests at {args.rate}/s, NUM_PARALLEL={args.parallel}, "
        f"MAX_LOADED_MODELS={args.max_loaded}, /api/ps every {args.interval} s, seed {args.seed}"
        + (", one Load shared by all replicas" if args.shared_load else "")
    )
    print()
    print("| balance | TTFT p50 s | TTFT p99 s | mean TTFT s | cold loads / 1,000 |")
    print("|---|---:|---:|---:|---:|")
    for policy in POLICIES:
        sim = Sim(args, policy)
        sim.run([Request(r.id, r.at, r.model, r.tokens, r.replica) for r in jobs])
        per_1000 = 1000 * sim.cold_loads / len(jobs)
        print(
            f"| {policy} | {percentile(sim.ttft, 0.5):.2f} | {percentile(sim.ttft, 0.99):.2f} "
            f"| {statistics.fmean(sim.ttft):.2f} | {per_1000:.1f} |"
        )


if __name__ == "__main__":
    main()
