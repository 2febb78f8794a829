"""Every ``Runtime`` request method against a real Ollama server (``smollm2:135m``)."""

from __future__ import annotations

import json
import math

import pytest

from rubberduck import (
    AllProvidersFailed,
    ChatResponse,
    Delta,
    Done,
    GenerateResponse,
    InvalidRequest,
    ModelNotFound,
    RequestHandle,
    Runtime,
    ToolCall,
)
from tests.conftest import wait_until
from tests.e2e.conftest import CALL_SCHEMA, FIXED, HIDDEN_SIZE, MODEL, WEATHER_TOOL, runtime

pytestmark = pytest.mark.ollama

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def stream_text(handle: RequestHandle) -> tuple[str, Done]:
    """The text of a streamed answer and its ``Done``; checks the event order."""
    events = list(handle)
    assert events and isinstance(events[-1], Done)
    assert all(isinstance(e, Delta) for e in events[:-1])
    return "".join(e.text for e in events[:-1] if isinstance(e, Delta)), events[-1]


def check_done(done: Done, max_tokens: int = FIXED["num_predict"]) -> None:
    """What a real Ollama answer's ``Done`` carries."""
    assert done.done_reason in ("stop", "length")
    assert done.provider == "ollama" and done.model == MODEL
    assert 0 < done.usage.completion_tokens <= max_tokens
    assert done.usage.prompt_tokens > 0
    assert done.cost_usd == 0.0 and done.fallbacks == ()
    assert done.durations.total_s is not None and done.durations.total_s > 0
    assert done.durations.eval_s is not None and done.durations.eval_s > 0


def test_chat_streamed_and_not_give_the_same_answer(rt: Runtime) -> None:
    reply = rt.chat(MODEL, QUESTION, options=FIXED)
    assert isinstance(reply, ChatResponse)
    assert reply.message.role == "assistant" and reply.message.content.strip()
    check_done(reply.done)

    text, done = stream_text(rt.stream_chat(MODEL, QUESTION, options=FIXED))
    check_done(done)
    assert text == reply.message.content
    assert done.usage.completion_tokens == reply.usage.completion_tokens


def test_generate_streamed_and_not_give_the_same_answer(rt: Runtime) -> None:
    reply = rt.generate(MODEL, "The capital of France is", options=FIXED)
    assert isinstance(reply, GenerateResponse) and reply.response.strip()
    check_done(reply.done)

    handle = rt.generate(MODEL, "The capital of France is", stream=True, options=FIXED)
    assert isinstance(handle, RequestHandle)
    text, done = stream_text(handle)
    check_done(done)
    assert text == reply.response


def test_generate_with_system_and_raw(rt: Runtime) -> None:
    raw = rt.generate(
        MODEL, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", raw=True, options=FIXED
    )
    templated = rt.generate(MODEL, "Hi", options=FIXED)
    assert isinstance(raw, GenerateResponse) and isinstance(templated, GenerateResponse)
    # raw=True sends the prompt as given; here it is the template's own rendering
    # (no system prompt), so the answers match.
    assert raw.response == templated.response
    with_system = rt.generate(MODEL, "Hi", system="Answer in French.", options=FIXED)
    assert isinstance(with_system, GenerateResponse)
    assert with_system.usage.prompt_tokens > templated.usage.prompt_tokens


def test_num_predict_caps_the_answer(rt: Runtime) -> None:
    reply = rt.chat(
        MODEL, [{"role": "user", "content": "Count from 1 to 100."}], seed=1, num_predict=3
    )
    assert isinstance(reply, ChatResponse)
    assert reply.done_reason == "length" and reply.usage.completion_tokens == 3


def test_format_json_schema_constrains_the_answer(rt: Runtime) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    reply = rt.chat(MODEL, QUESTION, format=schema, options={**FIXED, "num_predict": 64})
    assert isinstance(reply, ChatResponse)
    answer = json.loads(reply.message.content)
    assert isinstance(answer["city"], str) and isinstance(answer["population"], int)


def test_think_is_refused_by_a_model_without_thinking(rt: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="does not support thinking"):
        rt.chat(MODEL, QUESTION, think=True, options=FIXED)
    # think=False is not an error: there is nothing to turn off.
    reply = rt.chat(MODEL, QUESTION, think=False, options=FIXED)
    assert isinstance(reply, ChatResponse) and reply.message.content


def test_tools_are_refused_by_a_model_whose_template_has_none(rt: Runtime) -> None:
    assert "tools" not in rt.show(MODEL).capabilities
    with pytest.raises(InvalidRequest, match="does not support tools"):
        rt.chat(MODEL, QUESTION, tools=[WEATHER_TOOL], options=FIXED)


def test_tool_calls(rt: Runtime, tools_model: str) -> None:
    assert "tools" in rt.show(tools_model).capabilities
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    options = {**FIXED, "num_predict": 64}
    reply = rt.chat(tools_model, ask, tools=[WEATHER_TOOL], format=CALL_SCHEMA, options=options)
    assert isinstance(reply, ChatResponse)
    (call,) = reply.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id  # Ollama gives each call an id ("call_...")
    assert reply.message.tool_calls and reply.done_reason == "stop"

    handle = rt.chat(
        tools_model, ask, stream=True, tools=[WEATHER_TOOL], format=CALL_SCHEMA, options=options
    )
    assert isinstance(handle, RequestHandle)
    events = list(handle)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert isinstance(events[-1], Done)

    # The tool's answer goes back as a "tool" message; the model answers in text.
    followup = [
        *ask,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 24 degrees."},
    ]
    answer = rt.chat(tools_model, followup, tools=[WEATHER_TOOL], options=FIXED)
    assert isinstance(answer, ChatResponse) and answer.message.content.strip()


def test_keep_alive_loads_and_unloads_as_ps_shows(rt: Runtime) -> None:
    # A model another test loaded from the same file (a copy, a blob; maybe
    # deleted since) shares MODEL's runner, which /api/ps lists under the name
    # it was first loaded as. Unloading MODEL ends that runner.
    rt.unload(MODEL)
    assert wait_until(lambda: not rt.ps().models, 10), rt.ps().models
    loaded = rt.warm_up(MODEL, keep_alive="2m")
    assert loaded.done_reason == "load"
    assert MODEL in [m.name for m in rt.ps().models]

    unloaded = rt.unload(MODEL)
    assert unloaded.done_reason == "unload"
    assert wait_until(lambda: MODEL not in [m.name for m in rt.ps().models], 10)

    # keep_alive=0 on a request: answered, then unloaded.
    reply = rt.chat(MODEL, QUESTION, keep_alive=0, options=FIXED)
    assert isinstance(reply, ChatResponse) and reply.message.content
    assert wait_until(lambda: MODEL not in [m.name for m in rt.ps().models], 10)


def test_embed_gives_unit_vectors_of_the_hidden_size(rt: Runtime) -> None:
    reply = rt.embed(MODEL, ["The sky is blue.", "Paris is in France.", "The sky is blue."])
    assert reply.provider == "ollama" and reply.usage.prompt_tokens > 0
    assert [len(v) for v in reply.embeddings] == [HIDDEN_SIZE] * 3
    for vector in reply.embeddings:
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-3)
    assert reply.embeddings[0] == pytest.approx(reply.embeddings[2], abs=1e-5)
    assert reply.embeddings[0] != pytest.approx(reply.embeddings[1], abs=1e-3)

    single = rt.embed(MODEL, "The sky is blue.")
    assert single.embeddings[0] == pytest.approx(reply.embeddings[0], abs=1e-5)


def test_legacy_embeddings_are_not_normalized(rt: Runtime) -> None:
    reply = rt.embeddings(MODEL, "The sky is blue.")
    assert len(reply.embedding) == HIDDEN_SIZE
    assert not math.isclose(math.fsum(x * x for x in reply.embedding), 1.0, rel_tol=1e-2)
    unit = rt.embed(MODEL, "The sky is blue.").embeddings[0]
    norm = math.sqrt(math.fsum(x * x for x in reply.embedding))
    assert [x / norm for x in reply.embedding] == pytest.approx(unit, abs=1e-4)


def test_a_model_that_does_not_exist(rt: Runtime, ollama_url: str) -> None:
    with pytest.raises((ModelNotFound, AllProvidersFailed)) as info:
        rt.chat("no-such-model:1b", QUESTION, options=FIXED)
    causes = info.value.causes if isinstance(info.value, AllProvidersFailed) else {"": info.value}
    assert all(isinstance(c, ModelNotFound) for c in causes.values())

    with runtime({"primary": ollama_url, "backup": ollama_url}) as two:
        with pytest.raises(AllProvidersFailed) as both:
            two.chat("no-such-model:1b", QUESTION, options=FIXED)
        assert set(both.value.causes) == {"primary", "backup"}
        assert all(isinstance(c, ModelNotFound) for c in both.value.causes.values())
        with pytest.raises((ModelNotFound, AllProvidersFailed)):
            two.embed("no-such-model:1b", "hi")


def test_a_model_that_does_not_exist_names_the_remedy(rt: Runtime) -> None:
    with pytest.raises((ModelNotFound, AllProvidersFailed)) as info:
        rt.chat("no-such-model:1b", QUESTION, options=FIXED)
    assert "ollama pull no-such-model:1b" in str(info.value)
