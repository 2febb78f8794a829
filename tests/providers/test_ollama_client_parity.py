"""RubberDuck sends what the official ``ollama`` Python client sends.

For each public method of ``ollama.Client`` (listed from the class, so a method a
new client version adds fails ``test_every_public_method_is_accounted_for``), the
official client and :class:`OllamaProvider` make the same call, with the same
arguments, against ``tests/fake_ollama.py``, which answers with the transcripts
so both finish; the HTTP method, path and JSON body (parsed, so key order and
``0`` vs ``0.0`` do not count) must be equal. So must the headers, for the same
``OLLAMA_API_KEY`` and ``headers`` (:func:`test_same_headers_as_the_official_client`),
but for those that name the client or belong to the HTTP library.

The deliberate differences are listed in :data:`DIFFERENCES`, each with a test
that pins it exactly; nothing is normalized away in the parametrized comparison,
whose cases avoid the inputs that differ.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import ollama
import pytest

from rubberduck.errors import InvalidRequest
from rubberduck.messages import ChatRequest, EmbedRequest, GenerateRequest, Message
from rubberduck.providers.base import CancelScope
from rubberduck.providers.ollama import OllamaProvider
from tests.fake_ollama import FakeOllama

#: (method, path, JSON body or raw bytes or None) of each request, in order.
Sent = list[tuple[str, str, Any]]

#: The official client's public methods that have no RubberDuck counterpart, and why.
NOT_MAPPED = {
    "close": "not an endpoint: closes the client's pool (OllamaProvider.close())",
    "web_search": "calls https://ollama.com/api/web_search, a hosted service that needs "
    "OLLAMA_API_KEY, not the Ollama server RubberDuck talks to",
    "web_fetch": "calls https://ollama.com/api/web_fetch, as web_search",
    "systemone": "POST /v1/systemone is no route of the Ollama server (server/routes.go); "
    "it is a third-party scoring API, not part of Ollama's HTTP API",
}

#: What RubberDuck sends differently on purpose; each has a test below.
DIFFERENCES = {
    "default_stream": "the official chat/generate/pull/push/create default to stream=False; "
    "ChatRequest/GenerateRequest default to stream=True (Ollama's own default; "
    "Runtime.chat/generate default to False like the official client) and "
    "OllamaProvider.pull/push/create stream progress unless told not to. Given the "
    "same `stream`, the bodies are equal, so every case below passes it",
    "tool_schema_keywords": "the official client passes tools through its pydantic Tool "
    "model, which drops JSON-schema keywords it does not model (additionalProperties, "
    "minimum, default, nested properties, ...); RubberDuck sends the schema as given",
    "tool_call_ids": "the official client drops `id` (and `type`, `function.index`) from "
    "tool calls in the history; RubberDuck sends them on (Ollama's ToolCall has an id)",
    "image_path_strings": "the official client opens a str naming an existing file; "
    "RubberDuck opens only pathlib.Path and refuses a str that is not base64",
    "empty_prompt": "generate(prompt='') sends `prompt: \"\"` officially; RubberDuck leaves "
    'it out (Go reads a missing prompt as "": both only load the model)',
    "image_generation": "GenerateRequest has no width/height/steps (experimental image "
    "generation): no RubberDuck event carries the generated image",
    "callable_tools": "the official client turns Python functions into tool schemas from "
    "their docstrings; RubberDuck takes dict schemas only and refuses a function",
}

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
HI = [{"role": "user", "content": "Why is the sky blue?"}]
OPTIONS = {
    "temperature": 0.2,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "num_predict": 128,
    "num_ctx": 8192,
    "stop": ["\n\n", "User:"],
    "seed": 42,
    "repeat_penalty": 1.1,
}
SCHEMA = {
    "type": "object",
    "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
    "required": ["age", "available"],
}
#: The tool of docs/api.md "Chat request (with tools)": only keywords both clients keep.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. Paris, FR"},
                "format": {
                    "type": "string",
                    "description": "celsius or fahrenheit",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location", "format"],
        },
    },
}
TOOL_HISTORY = [
    {"role": "user", "content": "What is the weather today in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "function": {
                    "name": "get_current_weather",
                    "arguments": {"location": "Paris, FR", "format": "celsius"},
                }
            }
        ],
    },
    {"role": "tool", "content": "22 degrees", "tool_name": "get_current_weather"},
]


# --- the calls ------------------------------------------------------------------------


def _messages(messages: list[dict[str, Any]]) -> list[Message]:
    # What Runtime.chat does with mappings.
    return [msgspec.convert(m, Message) for m in messages]


def _run(provider: OllamaProvider, request: ChatRequest | GenerateRequest) -> None:
    provider.run(request, lambda event: None, CancelScope())


#: Official method name → how RubberDuck makes the same call with the same arguments.
OURS: dict[str, Callable[..., Any]] = {
    "chat": lambda p, model, messages, **kw: _run(
        p, ChatRequest(model=model, messages=_messages(messages), **kw)
    ),
    "generate": lambda p, model, **kw: _run(p, GenerateRequest(model=model, **kw)),
    "embed": lambda p, model, input, **kw: p.embed(EmbedRequest(model=model, input=input, **kw)),
    "embeddings": lambda p, *args, **kw: p.embeddings(*args, **kw),
    "pull": lambda p, *args, **kw: p.pull(*args, **kw),
    "push": lambda p, *args, **kw: p.push(*args, **kw),
    "create": lambda p, *args, **kw: p.create(*args, **kw),
    "create_blob": lambda p, path: p.create_blob(path),
    "delete": lambda p, model: p.delete(model),
    "copy": lambda p, source, destination: p.copy(source, destination),
    "show": lambda p, model: p.show(model),
    "list": lambda p: p.list(),
    "ps": lambda p: p.ps(),
}


@dataclass
class Case:
    """One call: ``ollama.Client.<method>(*args, **kwargs)`` and ``OURS[method]``
    with the same arguments. ``args`` may be a function of a scratch directory
    (for files)."""

    method: str
    name: str
    args: tuple[Any, ...] | Callable[[Path], tuple[Any, ...]] = ()
    kwargs: dict[str, Any] | Callable[[Path], dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method}-{self.name}"


def _png_file(tmp: Path) -> Path:
    path = tmp / "pixel.png"
    path.write_bytes(PNG)
    return path


def _image_message(image: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "What is in this picture?", "images": [image]}]


CASES = [
    # chat: options, formats, keep_alive forms, think levels, tools, images, logprobs
    Case("chat", "plain", ("llama3.2", HI), {"stream": False}),
    Case("chat", "streamed", ("llama3.2", HI), {"stream": True}),
    Case(
        "chat",
        "options",
        ("llama3.2", HI),
        {"options": OPTIONS, "keep_alive": "5m", "stream": False},
    ),
    Case(
        "chat",
        "json_mode",
        ("llama3.2", HI),
        {"format": "json", "keep_alive": 300, "stream": False},
    ),
    Case(
        "chat", "format_empty", ("llama3.2", HI), {"format": "", "keep_alive": 2.5, "stream": True}
    ),
    Case(
        "chat",
        "schema_stream",
        ("llama3.2", HI),
        {"format": SCHEMA, "keep_alive": -1, "stream": True, "options": {"temperature": 0}},
    ),
    *[
        Case(
            "chat",
            f"think_{level}",
            ("qwen3", HI),
            {"think": level, "keep_alive": 0, "stream": False},
        )
        for level in (True, False, "low", "medium", "high")
    ],
    Case("chat", "tools", ("llama3.2", TOOL_HISTORY), {"tools": [WEATHER_TOOL], "stream": False}),
    Case("chat", "image_bytes", ("llava", _image_message(PNG)), {"stream": False}),
    Case(
        "chat",
        "image_path",
        lambda tmp: ("llava", _image_message(_png_file(tmp))),
        {"stream": True},
    ),
    Case(
        "chat",
        "image_base64",
        ("llava", _image_message(base64.b64encode(PNG).decode())),
        {"stream": False},
    ),
    Case(
        "chat", "logprobs", ("llama3.2", HI), {"logprobs": True, "top_logprobs": 5, "stream": False}
    ),
    Case(
        "chat",
        "history",
        (
            "qwen3",
            [
                {"role": "system", "content": "Answer briefly."},
                *HI,
                {"role": "assistant", "content": "Rayleigh scattering.", "thinking": "Easy."},
                {"role": "user", "content": "And at sunset?", "images": []},
                {"role": "assistant", "content": ""},
            ],
        ),
        {"stream": True, "think": "medium"},
    ),
    # generate
    Case("generate", "plain", ("llama3.2",), {"prompt": "Why is the sky blue?", "stream": False}),
    Case("generate", "streamed", ("gemma4",), {"prompt": "Hi", "stream": True}),
    Case(
        "generate",
        "every_field",
        ("codellama:code",),
        {
            "prompt": "def compute_gcd(a, b):",
            "suffix": "    return result",
            "system": "You write Python.",
            "template": "{{ .Prompt }}",
            "context": [1, 2, 3],
            "options": OPTIONS,
            "format": SCHEMA,
            "keep_alive": "10m",
            "think": "high",
            "logprobs": True,
            "top_logprobs": 3,
            "stream": False,
        },
    ),
    Case(
        "generate",
        "raw",
        ("mistral",),
        {"prompt": "[INST] why is the sky blue? [/INST]", "raw": True, "stream": True},
    ),
    Case(
        "generate",
        "image_bytes",
        ("llava",),
        {"prompt": "What is this?", "images": [PNG], "stream": False},
    ),
    Case(
        "generate",
        "image_path",
        ("llava",),
        lambda tmp: {"prompt": "What is this?", "images": [_png_file(tmp)], "stream": True},
    ),
    Case("generate", "load", ("llama3.2",), {"stream": False}),
    Case("generate", "unload", ("llama3.2",), {"keep_alive": 0, "stream": False}),
    # embeddings
    Case("embed", "one_text", ("all-minilm", "Why is the sky blue?")),
    Case(
        "embed",
        "every_field",
        ("all-minilm", ["Why is the sky blue?"]),
        {"truncate": False, "options": {"num_ctx": 512}, "keep_alive": "1m", "dimensions": 8},
    ),
    Case(
        "embeddings",
        "every_field",
        ("all-minilm", "Here is an article about llamas..."),
        {"options": {"temperature": 0}, "keep_alive": 0},
    ),
    Case("embeddings", "load_only", ("all-minilm",)),
    # model management
    *[
        Case(method, f"stream_{stream}_insecure_{insecure}", ("llama3.2",), kw)
        for method in ("pull", "push")
        for stream, insecure in ((True, False), (False, False), (True, True))
        for kw in [{"stream": stream, "insecure": insecure}]
    ],
    Case(
        "create",
        "from_model",
        ("mario",),
        {
            "from_": "llama3.2",
            "system": "You are Mario from Super Mario Bros.",
            "parameters": {"temperature": 0.7, "num_ctx": 4096},
            "license": ["MIT", "Llama 3.2 Community License"],
            "stream": True,
        },
    ),
    Case(
        "create",
        "from_files",
        ("mine",),
        {
            "files": {"model.gguf": "sha256:" + "a" * 64},
            "adapters": {"lora.gguf": "sha256:" + "b" * 64},
            "template": "{{ .Prompt }}",
            "license": "MIT",
            "quantize": "q4_K_M",
            "stream": False,
        },
    ),
    Case(
        "create",
        "messages",
        ("pirate",),
        {
            "from_": "llama3.2",
            "messages": [
                {"role": "user", "content": "Ahoy?"},
                {"role": "assistant", "content": "Arr!"},
            ],
            "stream": True,
        },
    ),
    Case("create_blob", "file", lambda tmp: (_png_file(tmp),)),
    Case("delete", "model", ("llama3-backup",)),
    Case("copy", "model", ("llama3.2", "llama3-backup")),
    Case("show", "model", ("llama3.2",)),
    Case("list", "all"),
    Case("ps", "all"),
]


# --- the harness -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def _consume(result: Any) -> None:
    if inspect.isgenerator(result) or isinstance(result, Iterator):
        for _ in result:
            pass


def _sent(fake: FakeOllama) -> Sent:
    out: Sent = []
    for (method, path, _), raw in zip(fake.requests, fake.raw_bodies, strict=True):
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        out.append((method, path, body))
    fake.requests.clear()
    fake.raw_bodies.clear()
    fake.headers.clear()
    return out


def official_sends(fake: FakeOllama, method: str, *args: Any, **kwargs: Any) -> Sent:
    _sent(fake)
    with ollama.Client(host=fake.url) as client:
        _consume(getattr(client, method)(*args, **kwargs))
    return _sent(fake)


def rubberduck_sends(
    fake: FakeOllama, call: Callable[[OllamaProvider], Any], default_model: str | None = None
) -> Sent:
    _sent(fake)
    provider = OllamaProvider(base_url=fake.url, default_model=default_model)
    try:
        _consume(call(provider))
    finally:
        provider.close()
    return _sent(fake)


# --- the comparison --------------------------------------------------------------------


def test_every_public_method_is_accounted_for() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(ollama.Client, inspect.isfunction)
        if not name.startswith("_")
    }
    unaccounted = public - OURS.keys() - NOT_MAPPED.keys()
    assert not unaccounted, (
        f"ollama.Client has methods RubberDuck does not map: {sorted(unaccounted)} — add "
        "an OURS entry and CASES, or a NOT_MAPPED reason"
    )
    assert not OURS.keys() - public, "mapped methods that no longer exist"
    assert {case.method for case in CASES} == OURS.keys(), "a mapped method without a case"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_same_request_as_the_official_client(case: Case, fake: FakeOllama, tmp_path: Path) -> None:
    args = case.args(tmp_path) if callable(case.args) else case.args
    kwargs = case.kwargs(tmp_path) if callable(case.kwargs) else case.kwargs
    official = official_sends(fake, case.method, *args, **kwargs)
    ours = rubberduck_sends(fake, lambda p: OURS[case.method](p, *args, **kwargs))
    assert len(official) == 1, official
    assert ours == official


@pytest.mark.parametrize(
    ("official_call", "ours_call"),
    [
        (("generate", "llama3.2"), lambda p: p.warm_up("llama3.2")),
        (("generate", "llama3.2"), lambda p: p.warm_up()),
        (
            ("generate", "llama3.2"),
            lambda p: _run(p, GenerateRequest(stream=False)),
        ),
        (("generate", "llama3.2", None, None), lambda p: p.warm_up("llama3.2", keep_alive=None)),
        (("show", "llama3.2"), lambda p: p.has_model("llama3.2")),
        (("list",), lambda p: p.list_models(5)),
    ],
    ids=[
        "warm_up",
        "warm_up_default_model",
        "default_model",
        "warm_up_no_keep_alive",
        "has_model",
        "list_models",
    ],
)
def test_helpers_send_what_the_official_call_sends(
    fake: FakeOllama, official_call: tuple[Any, ...], ours_call: Callable[[OllamaProvider], Any]
) -> None:
    method, *args = official_call
    official = official_sends(fake, method, *args)
    assert rubberduck_sends(fake, ours_call, default_model="llama3.2") == official


def test_unload_sends_what_the_official_call_sends(fake: FakeOllama) -> None:
    official = official_sends(fake, "generate", "llama3.2", keep_alive=0)
    ours = rubberduck_sends(fake, lambda p: p.unload("llama3.2"))
    assert (
        ours
        == official
        == [("POST", "/api/generate", {"model": "llama3.2", "stream": False, "keep_alive": 0})]
    )


# --- the differences, each pinned ------------------------------------------------------


def test_difference_default_stream(fake: FakeOllama) -> None:
    official = official_sends(fake, "chat", "llama3.2", HI)
    ours = rubberduck_sends(fake, lambda p: OURS["chat"](p, "llama3.2", HI))
    assert official[0][2]["stream"] is False
    assert ours[0][2]["stream"] is True
    for method in ("pull", "push"):
        assert official_sends(fake, method, "llama3.2")[0][2]["stream"] is False
        ours_default = rubberduck_sends(fake, lambda p, m=method: OURS[m](p, "llama3.2"))
        assert ours_default[0][2]["stream"] is True


def test_every_case_says_stream(tmp_path: Path) -> None:
    for case in CASES:
        kwargs = case.kwargs(tmp_path) if callable(case.kwargs) else case.kwargs
        if "stream" in inspect.signature(getattr(ollama.Client, case.method)).parameters:
            assert "stream" in kwargs, case.id


def test_no_tools_is_an_empty_list_as_officially(fake: FakeOllama) -> None:
    # The official chat always sends `tools: []` (list(_copy_tools(None))); so do we,
    # though Ollama reads a missing list the same (len(req.Tools) > 0 checks).
    official = official_sends(fake, "chat", "llama3.2", HI)
    ours = rubberduck_sends(fake, lambda p: OURS["chat"](p, "llama3.2", HI, stream=False))
    assert official[0][2]["tools"] == ours[0][2]["tools"] == []
    assert ours == official


def test_difference_tool_schema_keywords(fake: FakeOllama) -> None:
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1, "default": "Paris"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "units": {"type": "object", "properties": {"temp": {"type": "string"}}},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "forecast", "parameters": parameters}}
    official = official_sends(fake, "chat", "llama3.2", HI, tools=[tool])
    ours = rubberduck_sends(
        fake, lambda p: OURS["chat"](p, "llama3.2", HI, tools=[tool], stream=False)
    )
    assert ours[0][2]["tools"] == [tool]  # as given
    assert official[0][2]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "forecast",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "units": {"type": "object"},
                    },
                },
            },
        }
    ]


def test_difference_tool_call_ids(fake: FakeOllama) -> None:
    call = {
        "id": "call_ab12cd34",
        "type": "function",
        "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
    }
    history = [*HI, {"role": "assistant", "content": "", "tool_calls": [call]}]
    official = official_sends(fake, "chat", "llama3.2", history)
    ours = rubberduck_sends(fake, lambda p: OURS["chat"](p, "llama3.2", history, stream=False))
    assert ours[0][2]["messages"][1]["tool_calls"] == [call]
    assert official[0][2]["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    ]


def test_difference_image_path_strings(fake: FakeOllama, tmp_path: Path) -> None:
    path = str(_png_file(tmp_path))
    official = official_sends(fake, "generate", "llava", prompt="?", images=[path])
    assert official[0][2]["images"] == [base64.b64encode(PNG).decode()]  # it read the file
    with pytest.raises(ValueError, match=r"pathlib\.Path"):
        GenerateRequest(model="llava", prompt="?", images=[path])
    assert fake.requests == []


def test_difference_empty_prompt(fake: FakeOllama) -> None:
    official = official_sends(fake, "generate", "llama3.2", "")
    ours = rubberduck_sends(
        fake, lambda p: OURS["generate"](p, "llama3.2", prompt="", stream=False)
    )
    assert official[0][2] == {"model": "llama3.2", "stream": False, "prompt": ""}
    assert ours[0][2] == {"model": "llama3.2", "stream": False}


def test_difference_image_generation(fake: FakeOllama) -> None:
    official = official_sends(
        fake, "generate", "x/z-image", "a duck", width=512, height=512, steps=4
    )
    assert {"width": 512, "height": 512, "steps": 4}.items() <= official[0][2].items()
    with pytest.raises(TypeError, match="width"):
        GenerateRequest(model="x/z-image", prompt="a duck", width=512)  # type: ignore[call-arg]


def test_difference_callable_tools(fake: FakeOllama) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
          a: The first number
          b: The second number

        Returns:
          int: The sum
        """
        return a + b

    official = official_sends(fake, "chat", "llama3.2", HI, tools=[add])
    assert official[0][2]["tools"][0]["function"]["name"] == "add"
    with pytest.raises(InvalidRequest, match="not Python functions"):
        rubberduck_sends(fake, lambda p: OURS["chat"](p, "llama3.2", HI, tools=[add]))
    assert fake.requests == []


def test_every_difference_has_a_test() -> None:
    tests = {name for name in globals() if name.startswith("test_difference_")}
    assert tests == {f"test_difference_{key}" for key in DIFFERENCES}


# --- headers: the API key and extra headers -----------------------------------------

#: Headers that differ by design whatever the settings: the client's name and
#: version, what the HTTP library adds (host, connection, length), and
#: Accept-Encoding (httpx's list vs requests'; RubberDuck's streams ask for
#: identity). Everything else is compared.
TRANSPORT_HEADERS = {"user-agent", "accept-encoding", "host", "connection", "content-length"}
KEY = "sk-ollama-0123456789abcdef"


def _headers_sent(fake: FakeOllama) -> list[dict[str, str]]:
    sent = [
        {k: v for k, v in headers.items() if k not in TRANSPORT_HEADERS} for headers in fake.headers
    ]
    _sent(fake)
    return sent


@pytest.mark.parametrize("key", [None, KEY], ids=["no_key", "key"])
@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"X-Proxy-Token": "t0k3n", "x-request-source": "rubberduck-tests"},
        {"Authorization": "Bearer from-headers-abcdef"},
        {"authorization": ""},  # empty: the key is sent instead
        {"Content-Type": "text/plain", "ACCEPT": "text/html", "X-Trace": "1"},
        {"X-Dropped": None},
    ],
    ids=["none", "extra", "authorization", "empty_authorization", "fixed", "none_value"],
)
def test_same_headers_as_the_official_client(
    fake: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    headers: dict[str, Any] | None,
) -> None:
    if key is None:
        monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_API_KEY", key)
    calls = [
        (("chat", "llama3.2", HI), lambda p: OURS["chat"](p, "llama3.2", HI, stream=False)),
        (("pull", "llama3.2"), lambda p: p.pull("llama3.2", stream=True)),
        (("list",), lambda p: p.list()),
    ]
    for (method, *args), ours_call in calls:
        _sent(fake)
        with ollama.Client(host=fake.url, headers=headers) as client:
            _consume(
                getattr(client, method)(*args, **({"stream": True} if method == "pull" else {}))
            )
        official = _headers_sent(fake)
        provider = OllamaProvider(base_url=fake.url, headers=headers)
        try:
            _consume(ours_call(provider))
        finally:
            provider.close()
        ours = _headers_sent(fake)
        assert ours == official, method
    if key is not None and not (headers or {}).get("Authorization"):
        assert official[0]["authorization"] == f"Bearer {KEY}"
