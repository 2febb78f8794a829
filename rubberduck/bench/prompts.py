"""Benchmark prompts: a built-in synthetic set with controlled lengths, or a JSONL file.

Synthetic prompts are made of common English words, about one token each for the
usual tokenizers (the exact count is the backend's ``prompt_eval_count``, which the
figures report beside the nominal length). Each prompt starts with its own number,
so that no two share a prefix and the backend's prompt cache does not flatter the
figures; the output length is set with Ollama's ``num_predict``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from rubberduck.errors import InvalidRequest

__all__ = ["BenchPrompt", "load_jsonl", "synthetic"]

_WORDS = (
    "the river carries stone and light through a quiet valley where old mills turn "
    "slowly under green hills while farmers count sheep and children read books about "
    "ships stars maps winter bread music rain gardens bridges clocks letters lamps"
).split()


class BenchPrompt(msgspec.Struct, frozen=True, kw_only=True):
    """One benchmark prompt.

    Attributes:
        text: The prompt (generate, embed) or the user message (chat).
        messages: A whole chat instead of ``text`` (from a JSONL file), else ``None``.
        input_tokens: Nominal prompt length, tokens (words for synthetic prompts).
        output_tokens: ``num_predict`` to send, tokens; ``None``: the model decides.
    """

    text: str = ""
    messages: list[dict[str, Any]] | None = None
    input_tokens: int = 0
    output_tokens: int | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """The prompt as chat messages."""
        return self.messages or [{"role": "user", "content": self.text}]

    def as_text(self) -> str:
        """The prompt as one text (a chat's message contents joined)."""
        if self.messages is None:
            return self.text
        return "\n".join(str(m.get("content", "")) for m in self.messages)


def synthetic(input_tokens: int, output_tokens: int | None) -> Iterator[BenchPrompt]:
    """Endless distinct prompts of about ``input_tokens`` tokens each.

    Raises:
        InvalidRequest: at once, ``input_tokens`` is below 1 or ``output_tokens`` below 1.
    """
    if input_tokens < 1:
        raise InvalidRequest(f"--input-tokens must be at least 1 (got {input_tokens})")
    if output_tokens is not None and output_tokens < 1:
        raise InvalidRequest(f"--output-tokens must be at least 1 (got {output_tokens})")
    return _synthetic(input_tokens, output_tokens)


def _synthetic(input_tokens: int, output_tokens: int | None) -> Iterator[BenchPrompt]:
    for n in itertools.count():
        head = f"{n}: write a long story about"
        words = itertools.islice(itertools.cycle(_WORDS), n % len(_WORDS), None)
        body = list(itertools.islice(words, max(input_tokens - len(head.split()), 0)))
        yield BenchPrompt(
            text=" ".join([head, *body]), input_tokens=input_tokens, output_tokens=output_tokens
        )


def load_jsonl(path: str | Path, output_tokens: int | None = None) -> list[BenchPrompt]:
    """Prompts from a JSONL file, one a line: a JSON string, ``{"prompt": ...}`` or
    ``{"messages": [...]}``, optionally with ``"output_tokens"`` (else ``output_tokens``).

    Raises:
        InvalidRequest: the file cannot be read, is empty, or a line is not one
            of those shapes (the message names the line).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequest(f"cannot read prompts file {path}: {exc.strerror}") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            prompts.append(_parse(json.loads(line), output_tokens))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f'{path}:{number}: expected a string, {{"prompt": ...}} or '
                f'{{"messages": [...]}} ({exc})'
            ) from None
    if not prompts:
        raise InvalidRequest(f"{path} has no prompts")
    return prompts


def _parse(obj: Any, output_tokens: int | None) -> BenchPrompt:
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if not isinstance(obj, dict):
        raise TypeError(f"got {type(obj).__name__}")
    out = obj.get("output_tokens", output_tokens)
    if out is not None and (not isinstance(out, int) or out < 1):
        raise ValueError(f"output_tokens must be a positive integer (got {out!r})")
    if isinstance(obj.get("messages"), list):
        messages = obj["messages"]
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("each message needs a role")
        prompt = BenchPrompt(messages=messages, output_tokens=out)
    elif isinstance(obj.get("prompt"), str):
        prompt = BenchPrompt(text=obj["prompt"], output_tokens=out)
    else:
        raise ValueError("no prompt or messages")
    return msgspec.structs.replace(prompt, input_tokens=len(prompt.as_text().split()))
