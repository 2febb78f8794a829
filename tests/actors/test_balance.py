"""The ``[router] balance`` policy without HTTP: warm placement, per-model
fullness, eviction avoidance, power of two choices, latency and weights."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rubberduck.actors.balance import (
    COLD,
    EVICTING,
    FULL,
    WARM,
    order,
    placement,
)
from rubberduck.actors.channels import Load
from rubberduck.actors.residency import Residency, model_key
from rubberduck.actors.routing import Route

M = "llama3.2"


def names(routes: list[Route]) -> list[str]:
    return [r.name for r in routes]


def fleet(n: int, **route: object) -> list[Route]:
    return [Route(f"h{i}", **route) for i in range(n)]  # type: ignore[arg-type]


def ordered(routes: list[Route], load: Load, res: Residency, policy: str = "warm") -> list[str]:
    return names(order(routes, M, load, res, policy, random.Random(0)))


def test_a_warm_host_goes_before_an_idle_cold_one() -> None:
    res = Residency()
    res.set_loaded("h0", ["other:latest"])
    res.set_loaded("h1", ["llama3.2:latest"])
    assert ordered(fleet(2), Load(), res) == ["h1", "h0"]
    # Without the warm policy, configured order decides between idle hosts.
    assert ordered(fleet(2), Load(), res, "priority") == ["h0", "h1"]
    assert ordered(fleet(2), Load(), res, "least_loaded") == ["h0", "h1"]


def test_a_warm_host_with_its_model_slots_full_goes_after_a_free_cold_one() -> None:
    res, load = Residency(), Load()
    res.set_loaded("h0", [])
    res.set_loaded("h1", [M])
    load.add("h1", 1, M)
    routes = fleet(2, max_in_flight_per_model=1)
    assert placement(routes[1], M, load, res) == FULL
    assert ordered(routes, load, res) == ["h0", "h1"]


def test_requests_in_flight_for_a_model_make_the_host_warm_for_it() -> None:
    """Sent there, not yet seen in /api/ps: it is loading there."""
    load, res = Load(), Residency()
    load.add("h1", 1, M)
    routes = fleet(2, max_in_flight_per_model=2)
    assert placement(routes[1], M, load, res) == WARM
    assert placement(routes[0], M, load, res) == COLD
    assert ordered(routes, load, res) == ["h1", "h0"]
    # Without max_in_flight_per_model, Ollama's default of one slot is assumed.
    assert placement(Route("h1"), M, load, res) == FULL
    assert ordered(fleet(2), load, res) == ["h0", "h1"]


def test_a_host_whose_every_loaded_model_is_in_use_is_not_sent_a_new_model() -> None:
    res, load = Residency(), Load()
    res.set_loaded("h0", ["a", "b"])
    res.set_loaded("h1", ["a", "c"])
    load.add("h0", 1, "a")
    load.add("h0", 1, "b")
    load.add("h1", 1, "a")
    routes = fleet(2, max_loaded_models=2)
    assert placement(routes[0], M, load, res) == EVICTING
    assert placement(routes[1], M, load, res) == COLD  # "c" is idle: evicting it is fine
    assert ordered(routes, load, res) == ["h1", "h0"]


def test_a_backend_at_max_in_flight_counts_as_full() -> None:
    load, res = Load(), Residency()
    res.set_loaded("h0", [M])
    load.add("h0", 2, "other")
    routes = fleet(2, max_in_flight=2)
    assert placement(routes[0], M, load, res) == FULL
    assert ordered(routes, load, res) == ["h1", "h0"]


def test_a_cold_host_goes_first_when_the_warm_one_is_slower_than_a_load() -> None:
    """Requests queued at the warm host cost more than loading the model
    elsewhere (its load time as learnt from a cold answer's load_duration)."""
    res = Residency()
    res.set_loaded("h0", [M])
    res.set_loaded("h1", [])
    res.answered("h2", M, 3.0)  # a cold load of 3 s, seen elsewhere
    routes = fleet(2, max_in_flight_per_model=4)
    res.observe("h0", 1.0)
    res.observe("h1", 1.0)
    assert ordered(routes, Load(), res) == ["h0", "h1"]  # 1 s against 1 + 3 s
    for _ in range(20):
        res.observe("h0", 10.0)  # its answers now take 10 s: a queue there
    assert ordered(routes, Load(), res) == ["h1", "h0"]


def test_a_slower_host_by_its_latency_ewma_goes_after_a_faster_one() -> None:
    res = Residency()
    for _ in range(5):
        res.observe("h0", 2.0)
        res.observe("h1", 0.5)
    assert ordered(fleet(2), Load(), res, "least_loaded") == ["h1", "h0"]
    assert ordered(fleet(2), Load(), res, "priority") == ["h0", "h1"]


def test_weights_scale_the_share() -> None:
    load = Load()
    load.add("h0", 3)
    load.add("h1", 1)
    routes = [Route("h0", weight=3.0), Route("h1", weight=1.0)]
    # cost: 4 x 1 / 3 against 2 x 1 / 1
    assert ordered(routes, load, Residency(), "least_loaded") == ["h0", "h1"]


def test_priorities_stay_absolute() -> None:
    res = Residency()
    res.set_loaded("backup", [M])
    res.set_loaded("primary", [])
    routes = [Route("backup", priority=1), Route("primary", priority=0)]
    assert ordered(routes, Load(), res) == ["primary", "backup"]


def test_the_draws_are_seedable() -> None:
    routes = fleet(8)
    first = [order(routes, M, Load(), Residency(), "warm", random.Random(7))[0] for _ in range(5)]
    assert len(set(first)) == 1
    many = {order(routes, M, Load(), Residency(), "warm", random.Random(s))[0] for s in range(50)}
    assert len(many) > 1, "power of two choices spreads idle hosts"


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown balance policy"):
        order(fleet(2), M, Load(), Residency(), "random", random.Random())


def test_residency_learns_from_answers_and_counts_cold_loads() -> None:
    res = Residency(cold_load_threshold=0.5)
    assert res.loaded("h0") is None
    assert res.answered("h0", "llama3.2:latest", 2.5) is True
    assert res.answered("h0", "qwen3", 0.001) is False
    assert res.loaded("h0") == {"llama3.2", "qwen3"}
    assert res.cold_loads == {"h0": 1}
    res.set_loaded("h0", ["qwen3:latest"])  # /api/ps is the authority
    assert res.loaded("h0") == {"qwen3"}
    assert model_key("a:latest") == "a" and model_key("a:7b") == "a:7b" and model_key(None) is None


# --- properties ---------------------------------------------------------------------

MODELS = ["a", "b", "c", M]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Route], Load, Residency]:
    """Hosts of one or two priorities, each with models loaded and requests in flight."""
    n = draw(st.integers(1, 6))
    load, res = Load(), Residency()
    routes = []
    for i in range(n):
        name = f"h{i}"
        routes.append(
            Route(
                name,
                priority=draw(st.integers(0, 1)),
                weight=draw(st.sampled_from([0.5, 1.0, 2.0])),
                max_in_flight=draw(st.none() | st.integers(1, 4)),
                max_in_flight_per_model=draw(st.none() | st.integers(1, 2)),
                max_loaded_models=draw(st.none() | st.integers(1, 3)),
            )
        )
        if draw(st.booleans()):
            res.set_loaded(name, draw(st.lists(st.sampled_from(MODELS), max_size=3, unique=True)))
        for model in draw(st.lists(st.sampled_from(MODELS), max_size=4)):
            load.add(name, 1, model)
        if draw(st.booleans()):
            res.observe(name, draw(st.floats(0.01, 10.0)))
    return routes, load, res


@given(fleets(), st.sampled_from(["priority", "least_loaded", "warm"]), st.integers(0, 99))
def test_order_is_a_permutation_sorted_by_priority(
    fleet_: tuple[list[Route], Load, Residency], policy: str, seed: int
) -> None:
    routes, load, res = fleet_
    out = order(routes, M, load, res, policy, random.Random(seed))
    assert sorted(names(out)) == sorted(names(routes))
    assert [r.priority for r in out] == sorted(r.priority for r in routes)


@given(fleets(), st.integers(0, 99))
def test_warm_never_puts_a_full_host_before_a_free_one(
    fleet_: tuple[list[Route], Load, Residency], seed: int
) -> None:
    routes, load, res = fleet_
    out = order(routes, M, load, res, "warm", random.Random(seed))
    for priority in {r.priority for r in routes}:
        same = [placement(r, M, load, res) for r in out if r.priority == priority]
        groups = [{WARM: 0, COLD: 0, FULL: 1, EVICTING: 2}[p] for p in same]
        assert groups == sorted(groups), "free (warm or cold), then full, then evicting"
        if WARM in same or COLD in same:
            assert same[0] in (WARM, COLD)


@given(fleets(), st.integers(0, 99))
def test_least_loaded_never_puts_the_costliest_of_three_first(
    fleet_: tuple[list[Route], Load, Residency], seed: int
) -> None:
    """Two are drawn and the cheaper goes first: never the one costliest host."""
    routes, load, res = fleet_
    routes = [r for r in routes if r.priority == routes[0].priority]
    out = order(routes, M, load, res, "least_loaded", random.Random(seed))
    if len(out) >= 3:
        known = [t for r in routes if (t := res.latency(r.name)) is not None]
        default = sum(known) / len(known) if known else 1.0

        def cost(r: Route) -> float:
            latency = res.latency(r.name)
            return (load[r.name] + 1) * (default if latency is None else latency) / r.weight

        costs = sorted(cost(r) for r in routes)
        if costs[-1] > costs[-2]:
            assert cost(out[0]) < costs[-1]
