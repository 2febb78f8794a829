"""Request structs encode to Ollama's bodies: images, empty values, ``stream``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rubberduck.images import check_base64, encode_image
from rubberduck.messages import ChatRequest, EmbedRequest, GenerateRequest, Message

PNG = b"\x89PNG\r\n\x1a\nfake image bytes"
PNG_B64 = base64.b64encode(PNG).decode()


def body(request: msgspec.Struct) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(msgspec.json.encode(request))
    return decoded


@pytest.mark.parametrize("stream", [True, False])
def test_stream_is_always_in_the_body(stream: bool) -> None:
    hi = [Message("user", "hi")]
    assert body(ChatRequest(model="m", messages=hi, stream=stream))["stream"] is stream
    assert body(GenerateRequest(model="m", prompt="p", stream=stream))["stream"] is stream
    assert body(ChatRequest(model="m", messages=hi)) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_stream_key_survives_a_decode() -> None:
    decoded = msgspec.json.decode(b'{"model": "m", "prompt": "p"}', type=GenerateRequest)
    assert decoded.stream is True
    assert body(decoded)["stream"] is True


def test_embed_request_sends_no_stream_key() -> None:
    assert body(EmbedRequest(model="m", input=["a"])) == {"model": "m", "input": ["a"]}


@pytest.mark.parametrize("as_given", ["bytes", "bytearray", "path", "base64"])
def test_images_become_base64(tmp_path: Path, as_given: str) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    image = {"bytes": PNG, "bytearray": bytearray(PNG), "path": path, "base64": PNG_B64}[as_given]
    assert Message("user", "what is this?", images=[image]).images == [PNG_B64]
    assert GenerateRequest(model="m", prompt="p", images=[image]).images == [PNG_B64]
    assert msgspec.convert({"role": "user", "images": [image]}, Message).images == [PNG_B64]


def test_a_string_is_never_opened_as_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    with pytest.raises(ValueError, match=r"pathlib\.Path\("):
        Message("user", images=[str(path)])
    with pytest.raises(msgspec.ValidationError, match="not base64"):
        msgspec.convert({"role": "user", "images": [str(path)]}, Message)


@pytest.mark.parametrize(
    "bad",
    ["cat.png", "data:image/png;base64," + PNG_B64, PNG_B64[:-1], "é" * 8, 42],
    ids=["file_name", "data_url", "unpadded", "non_ascii", "int"],
)
def test_bad_images_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        Message("user", images=[bad])


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read image file"):
        GenerateRequest(model="m", images=[tmp_path / "nope.png"])


def test_a_single_image_must_be_in_a_list() -> None:
    with pytest.raises(ValueError, match="list"):
        Message("user", images=PNG)  # type: ignore[arg-type]


def test_long_base64_is_checked_at_both_ends() -> None:
    long = base64.b64encode(bytes(range(256)) * 200).decode()
    check_base64(long)
    with pytest.raises(ValueError):
        check_base64("!" + long[1:])
    with pytest.raises(ValueError):
        check_base64(long[:-4] + "!!!=")
    assert encode_image(long) is long


def test_empty_optional_message_fields_are_not_sent() -> None:
    message = Message("assistant", "", images=[], tool_calls=[], tool_name="", thinking="")
    assert message == Message("assistant")
    assert body(message) == {"role": "assistant"}


def test_message_keeps_tool_calls_and_tool_name() -> None:
    call = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    assert body(Message("assistant", tool_calls=[call])) == {
        "role": "assistant",
        "tool_calls": [call],
    }
    assert body(Message("tool", "22 C", tool_name="get_weather")) == {
        "role": "tool",
        "content": "22 C",
        "tool_name": "get_weather",
    }
