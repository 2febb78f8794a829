"""Ollama's model options (``options`` in a request), and their check.

Ollama ignores an option it does not know (it logs "invalid option provided" on
the server and answers anyway), so a misspelled ``tempreature`` silently does
nothing. :func:`check_options` refuses such names before any HTTP call, with a
suggestion, and checks each value's type the way Ollama's ``Options.FromMap``
does (an integer option takes any JSON number, a float option any number, a
boolean option only ``true``/``false``, ``stop`` only a list of strings).

Source of the names and types: the ``Options`` struct and the ``Runner`` struct it
embeds in Ollama's ``api/types.go`` (github.com/ollama/ollama, commit
b8761ab020a91873a4f27e6008deeace9b2d101f), plus the older names that the official
Python client's ``ollama.Options`` still sends (``numa``, ``tfs_z``,
``embedding_only``), so that everything the official client accepts is accepted.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rubberduck.errors import InvalidRequest

__all__ = ["OLLAMA_OPTIONS", "OptionValue", "check_options", "suggest"]

#: What an option may be set to: a number, a boolean, or ``stop``'s strings.
OptionValue = float | bool | Sequence[str] | None

_INT, _FLOAT, _BOOL, _STRINGS = "integer", "number", "boolean", "list of strings"

#: Option name → the JSON type Ollama reads it as.
OLLAMA_OPTIONS: dict[str, str] = {
    # api/types.go, Runner: set when the model is loaded.
    "num_ctx": _INT,
    "num_batch": _INT,
    "num_gpu": _INT,
    "main_gpu": _INT,
    "low_vram": _BOOL,
    "f16_kv": _BOOL,  # deprecated by Ollama: ignored
    "logits_all": _BOOL,
    "vocab_only": _BOOL,
    "use_mmap": _BOOL,
    "use_mlock": _BOOL,
    "num_thread": _INT,
    # api/types.go, Options: read on every request.
    "num_keep": _INT,
    "seed": _INT,
    "num_predict": _INT,
    "top_k": _INT,
    "top_p": _FLOAT,
    "min_p": _FLOAT,
    "typical_p": _FLOAT,
    "repeat_last_n": _INT,
    "temperature": _FLOAT,
    "repeat_penalty": _FLOAT,
    "presence_penalty": _FLOAT,
    "frequency_penalty": _FLOAT,
    "mirostat": _INT,
    "mirostat_tau": _FLOAT,
    "mirostat_eta": _FLOAT,
    "penalize_newline": _BOOL,
    "stop": _STRINGS,
    # ollama-python's Options (older servers read them).
    "numa": _BOOL,
    "tfs_z": _FLOAT,
    "embedding_only": _BOOL,
}

#: Request parameters that are not options, and what to write instead: the usual
#: reason a non-option name arrives as an option keyword.
_NOT_OPTIONS = {
    "system": 'use a {"role": "system", "content": ...} message (chat), or generate(system=...)',
    "images": 'use a message\'s "images" (chat), or generate(images=...)',
    "tools": "use chat(tools=...)",
    "suffix": "use generate(suffix=...)",
    "template": "use generate(template=...)",
    "raw": "use generate(raw=...)",
    "context": "use generate(context=...)",
    "prompt": "use generate(prompt=...)",
    "messages": "use chat(messages=...)",
    "input": "use embed(input=...)",
    "truncate": "use embed(truncate=...)",
    "dimensions": "use embed(dimensions=...)",
    "stream": "use chat(stream=...) or generate(stream=...)",
    "max_tokens": "use num_predict",
    "n_ctx": "use num_ctx",
}


def suggest(name: str, known: Any) -> str:
    """`` — did you mean 'x'?`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _type_ok(kind: str, value: Any) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STRINGS:
        return isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value)
    # JSON numbers; a bool is not one (Ollama refuses ``true`` for a number).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def check_options(options: Any, where: str = "options") -> dict[str, Any] | None:
    """Check a request's Ollama options; returns them as a new dict (``None`` if empty).

    Args:
        options: A mapping of option name to value, or ``None``.
        where: How the message names them (``"options"``, ``"keyword argument"``).

    Returns:
        The options, ``None`` when there are none.

    Raises:
        InvalidRequest: ``options`` is not a mapping with string keys, a name is
            not an Ollama option (the message suggests the closest one, or where
            the parameter belongs), or a value has a type Ollama refuses; numbers
            must be finite (NaN and infinity cannot be sent as JSON).
    """
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise InvalidRequest(
            f"options must be a mapping such as {{'temperature': 0.2}} "
            f"(got {type(options).__name__})"
        )
    out: dict[str, Any] = {}
    for name, value in options.items():
        if not isinstance(name, str):
            raise InvalidRequest(f"{where} names must be strings (got {name!r})")
        kind = OLLAMA_OPTIONS.get(name)
        if kind is None:
            hint = (
                f" — {_NOT_OPTIONS[name]}"
                if name in _NOT_OPTIONS
                else suggest(name, OLLAMA_OPTIONS)
            )
            raise InvalidRequest(
                f"{where} {name!r} is not an Ollama option, which Ollama would "
                f"ignore{hint} (see rubberduck.ollama_options.OLLAMA_OPTIONS)"
            )
        if value is not None and not _type_ok(kind, value):
            finite = "a finite " if kind in (_INT, _FLOAT) else ""
            raise InvalidRequest(f"option {name!r} must be {finite or 'a '}{kind} (got {value!r})")
        out[name] = list(value) if isinstance(value, tuple) else value
    return out or None
