"""The strict front door: whatever a caller passes to ``chat``, ``generate``,
``embed`` or ``submit`` is either sent as Ollama reads it or refused with a typed
error before any HTTP call — nothing is silently dropped."""

from __future__ import annotations

import base64
import inspect
import math
import typing
from collections.abc import Iterator
from typing import Any

import ollama
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubberduck import (
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    InvalidRequest,
    Message,
    RubberDuckError,
    Runtime,
)
from tests.conftest import HI
from tests.fake_ollama import FakeOllama


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def rt(server: FakeOllama) -> Iterator[Runtime]:
    config = {
        "provider": {"ollama": {"base_url": server.url, "model": "llama3.2"}},
        "health": {"interval": 60.0},
    }
    with Runtime.from_config(config) as runtime:
        yield runtime


@pytest.fixture
def nothing_sent(server: FakeOllama) -> Iterator[None]:
    """Fails the test if any request (a POST) reached the server."""
    before = len(server.posts())
    yield
    assert server.posts()[before:] == []


def refused(match: str, call: Any, *args: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest, match=match) as info:
        call(*args, **kwargs)
    return info.value


# --- explicit parameters --------------------------------------------------------------


@pytest.mark.parametrize("method", ["chat", "generate", "embed"])
def test_every_parameter_of_the_official_client_is_explicit(method: str) -> None:
    official = set(inspect.signature(getattr(ollama.Client, method)).parameters)
    official -= {"self", "width", "height", "steps"}  # image generation: not a text request
    ours = inspect.signature(getattr(Runtime, method)).parameters
    missing = sorted(official - set(ours))
    assert not missing, f"Runtime.{method} lacks {missing}"
    assert {"timeout"} <= set(ours)


@pytest.mark.parametrize("method", ["chat", "generate"])
def test_stream_is_overloaded(method: str) -> None:
    returns = [
        typing.get_type_hints(o)["return"] for o in typing.get_overloads(getattr(Runtime, method))
    ]
    assert len(returns) == 3
    assert any(getattr(r, "__name__", "") == "RequestHandle" for r in returns)


def test_generate_images_go_on_the_wire_as_images(rt: Runtime, server: FakeOllama) -> None:
    rt.generate("llama3.2", "what is this?", images=[b"\x89PNG"], system="be brief", suffix="!")
    body = server.posts()[-1]
    assert body["images"] == [base64.b64encode(b"\x89PNG").decode()]
    assert body["system"] == "be brief" and body["suffix"] == "!"
    assert "options" not in body


def test_option_keywords_and_mapping_reach_ollama_options(rt: Runtime, server: FakeOllama) -> None:
    rt.chat("llama3.2", HI, options={"num_ctx": 2048, "stop": ("\n",)}, temperature=0)
    assert server.posts()[-1]["options"] == {"num_ctx": 2048, "stop": ["\n"], "temperature": 0}


# --- refused before any HTTP call --------------------------------------------------------


@pytest.mark.usefixtures("nothing_sent")
def test_misspelled_option_keyword_is_refused_with_a_suggestion(rt: Runtime) -> None:
    refused("did you mean 'temperature'", rt.chat, "llama3.2", HI, tempreature=0.2)


@pytest.mark.usefixtures("nothing_sent")
def test_options_mapping_keys_are_checked(rt: Runtime) -> None:
    refused("did you mean 'num_ctx'", rt.generate, "llama3.2", "hi", options={"num_ctxx": 1})
    refused("not an Ollama option", rt.embed, "all-minilm", "hi", options={"colour": 1})


@pytest.mark.usefixtures("nothing_sent")
def test_request_parameters_given_where_they_do_not_belong_are_refused(rt: Runtime) -> None:
    refused("system", rt.chat, "llama3.2", HI, system="be brief")
    refused("tools", rt.generate, "llama3.2", "hi", tools=[{"type": "function"}])
    refused("images", rt.chat, "llava", HI, images=[b"x"])


@pytest.mark.usefixtures("nothing_sent")
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": math.nan},
        {"top_p": math.inf},
        {"num_ctx": "big"},
        {"seed": True},
        {"stop": "\n"},
        {"use_mmap": 1},
    ],
    ids=["nan", "inf", "string_for_int", "bool_for_int", "stop_not_a_list", "int_for_bool"],
)
def test_option_values_are_checked_as_ollama_reads_them(
    rt: Runtime, options: dict[str, Any]
) -> None:
    refused("option", rt.chat, "llama3.2", HI, options=options)
    refused("option", rt.chat, "llama3.2", HI, **options)


@pytest.mark.usefixtures("nothing_sent")
def test_non_finite_keep_alive_is_refused(rt: Runtime) -> None:
    refused("keep_alive", rt.chat, "llama3.2", HI, keep_alive=math.nan)


@pytest.mark.usefixtures("nothing_sent")
@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"role": "user", "contnet": "hi"}, "did you mean 'content'"),
        ({"role": "robot", "content": "hi"}, "role 'robot'"),
        ({"role": "usr", "content": "hi"}, "did you mean 'user'"),
        ({"role": "user"}, 'no "content"'),
        ({"content": "hi"}, "role None"),
        ("hi", "not a message"),
        ({"role": "user", "content": 3}, "not a chat message"),
    ],
)
def test_bad_messages_are_refused(rt: Runtime, message: Any, match: str) -> None:
    refused(match, rt.chat, "llama3.2", [message])


@pytest.mark.usefixtures("nothing_sent")
def test_caller_errors_are_typed(rt: Runtime) -> None:
    refused("messages must be a list", rt.chat, "llama3.2", None)
    refused("messages must be a list", rt.chat, "llama3.2", "hi")
    refused("input", rt.embed, "all-minilm", None)
    refused("timeout", rt.chat, "llama3.2", HI, timeout="5")
    refused("did you mean 'restart'", rt.chat, "llama3.2", HI, mid_stream="restrat")
    refused("model", rt.chat, ["llama3.2"], HI)
    refused("an image must be", rt.generate, "llava", "hi", images=[42])
    refused("think", rt.chat, "llama3.2", HI, think="very")
    refused("format", rt.chat, "llama3.2", HI, format="yaml")
    refused("timeout", rt.health, "5")
    refused("timeout", rt.wait_for_probes, math.nan)


@pytest.mark.usefixtures("nothing_sent")
def test_requests_built_directly_are_checked_at_submit(rt: Runtime) -> None:
    refused("GenerateRequest", rt.submit, "not a request")
    bad: list[Any] = [
        ChatRequest(model=["a"], messages=[Message("user", "hi")]),  # type: ignore[arg-type]
        ChatRequest(messages=[Message("robot", "hi")]),
        ChatRequest(messages="hi"),  # type: ignore[arg-type]
        ChatRequest(messages=[]),
        GenerateRequest(prompt=3),  # type: ignore[arg-type]
        GenerateRequest(prompt="hi", stream="yes"),  # type: ignore[arg-type]
        GenerateRequest(prompt="hi", options={"temperature": math.nan}),
        EmbedRequest(input=None),  # type: ignore[arg-type]
        EmbedRequest(input=[]),
        EmbedRequest(input="x", dimensions=0),
    ]
    for request in bad:
        refused(".", rt.submit, request)


# --- property: junk never gets through ---------------------------------------------------

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.one_of(st.text(max_size=4), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=4), st.floats()), max_size=3),
    st.builds(object),
)
_names = st.sampled_from(
    ["options", "format", "keep_alive", "think", "timeout", "mid_stream", "tools", "images",
     "system", "suffix", "context", "raw", "template", "truncate", "dimensions", "logprobs",
     "top_logprobs", "temperature", "num_ctx", "stop", "seed", "tempreature", "colour"]
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["chat", "generate", "embed", "submit"]),
    first=_junk,
    second=_junk,
    keywords=st.dictionaries(_names, _junk, max_size=3),
)
def test_junk_raises_only_typed_errors_and_sends_nothing(
    rt: Runtime, server: FakeOllama, method: str, first: Any, second: Any, keywords: dict[str, Any]
) -> None:
    """Arguments that are surely invalid (a non-string model, or an option name
    Ollama does not know) raise a RubberDuckError and never reach the server;
    any other outcome is a RubberDuckError or an answer, never a raw exception."""
    keywords.pop("timeout", None)  # a valid junk timeout could make the call wait
    before = len(server.posts())
    surely_invalid = not (first is None or isinstance(first, str)) or method == "submit"
    kwargs = {**keywords, "timeout": 5}
    try:
        if method == "submit":
            rt.submit(first, **{k: v for k, v in kwargs.items() if k in ("timeout", "mid_stream")})
        else:
            getattr(rt, method)(first, second, **kwargs)
    except RubberDuckError:
        pass
    except Exception as exc:  # pragma: no cover - the failure being tested for
        raise AssertionError(f"{method} raised a raw {exc!r}") from exc
    if surely_invalid:
        assert server.posts()[before:] == []


#: Values no request field takes (to_builtins would turn bytes and dates into
#: strings: submit must not let them pass as such).
_invalid_anywhere = st.one_of(
    st.binary(min_size=1),
    st.builds(object),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.datetimes(),
    st.dictionaries(st.integers(), st.integers(), min_size=1),
    st.lists(st.builds(object), min_size=1),
)
_FIELDS = {
    ChatRequest: [
        "model",
        "messages",
        "stream",
        "options",
        "format",
        "keep_alive",
        "tools",
        "think",
    ],
    GenerateRequest: ["model", "prompt", "system", "suffix", "raw", "context", "options", "think"],
    EmbedRequest: ["model", "input", "truncate", "dimensions", "options", "keep_alive"],
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(list(_FIELDS)), data=st.data())
def test_structs_built_with_junk_are_refused_at_submit(
    rt: Runtime, server: FakeOllama, kind: type, data: st.DataObject
) -> None:
    """msgspec does not check types when a Struct is built in Python: submit does."""
    field = data.draw(st.sampled_from(_FIELDS[kind]))
    junk = data.draw(_invalid_anywhere)
    base: dict[str, Any] = {
        ChatRequest: {"messages": [Message("user", "hi")]},
        GenerateRequest: {"prompt": "hi"},
        EmbedRequest: {"input": "hi"},
    }[kind]
    before = len(server.posts())
    try:
        request = kind(**{**base, field: junk})
    except (TypeError, ValueError):
        return  # refused by the Struct itself (images, Message's checks)
    with pytest.raises(InvalidRequest):
        rt.submit(request, timeout=5)
    assert server.posts()[before:] == []
