"""The Context adapter: system prompt, history and current message → chat messages."""

from __future__ import annotations

import pytest

from rubberduck import Context, InvalidRequest, Message
from tests.conftest import runtime_for
from tests.fake_ollama import FakeOllama


def test_every_history_shape_maps_to_messages() -> None:
    ctx = Context(
        "And now?",
        system_prompt="Be brief.",
        history=[
            "Hi",
            "Hello!",
            ("user", "Weather?"),
            {"role": "assistant", "content": "Sunny."},
            Message("user", "Thanks"),
        ],
    )
    assert [(m.role, m.content) for m in ctx] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Weather?"),
        ("assistant", "Sunny."),
        ("user", "Thanks"),
        ("user", "And now?"),
    ]


def test_no_system_prompt_means_no_system_message() -> None:
    assert [m.role for m in Context("Hi", system_prompt="")] == ["user"]


@pytest.mark.parametrize("item", [42, ("robot", "beep"), {"content": "no role"}])
def test_a_bad_history_item_says_what_to_use(item: object) -> None:
    with pytest.raises(InvalidRequest, match=r"history\[0\]"):
        Context("Hi", history=[item])  # type: ignore[list-item]


def test_a_context_goes_where_messages_go(servers: tuple[FakeOllama, FakeOllama]) -> None:
    primary, backup = servers
    with runtime_for(primary.url, backup.url) as rt:
        rt.chat("llama3.2", Context("Why?", system_prompt="Be brief.", history=["Hi", "Hello!"]))
    assert [m["role"] for m in primary.posts()[0]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
