"""ModelTurns: per-model turns with a waiting list of callbacks, no entry kept
for an idle model."""

from __future__ import annotations

from rubberduck.actors.model_turns import ModelTurns


def test_a_turn_given_back_goes_to_the_first_waiting_request_that_takes_it() -> None:
    turns = ModelTurns(1)
    started: list[str] = []
    assert turns.take("llama3.2", lambda: False)
    assert not turns.try_take("llama3.2")
    assert turns.try_take("qwen3")  # another model's turns are its own
    assert not turns.take("llama3.2", lambda: started.append("ended") is not None and False)
    assert not turns.take("llama3.2", lambda: started.append("second") is None)
    turns.give("llama3.2")  # the first declines (its request ended): the second takes it
    assert started == ["ended", "second"]
    assert not turns.try_take("llama3.2")
    turns.give("llama3.2")
    assert turns.try_take("llama3.2")


def test_an_idle_model_keeps_no_entry() -> None:
    """Model names come from callers: none is kept once idle."""
    turns = ModelTurns(2)
    for n in range(1000):
        assert turns.try_take(f"model-{n}")
        assert turns.take(f"model-{n}", lambda: True)
        assert not turns.take(f"model-{n}", lambda: True)
        turns.give(f"model-{n}")  # to the one waiting
        turns.give(f"model-{n}")
        turns.give(f"model-{n}")
    assert turns.try_take("qwen3")
    assert len(turns) == 1
    turns.give("qwen3")
    assert len(turns) == 0


def test_no_limit_counts_nothing() -> None:
    turns = ModelTurns(None)
    assert all(turns.try_take("llama3.2") for _ in range(10))
    assert turns.take("llama3.2", lambda: False)
    turns.give("llama3.2")
    assert len(turns) == 0
