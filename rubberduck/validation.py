"""The front door: every request is checked on the caller's thread, before any
actor or HTTP call sees it.

msgspec checks types when it decodes, not when a Struct is built, so a
``ChatRequest(model=["a"])`` built in Python carries a list where a string
belongs. :func:`check_request` round-trips a request through msgspec (which
checks every field's type) and then checks what types cannot say: roles, Ollama
option names, finite numbers, ``think`` levels. Whatever a caller passes, the
only exception that comes out is :class:`~rubberduck.errors.InvalidRequest`.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from rubberduck.errors import ConfigError, InvalidRequest
from rubberduck.messages import AnyRequest, ChatRequest, EmbedRequest, GenerateRequest, Message
from rubberduck.ollama_options import check_options, suggest

__all__ = [
    "MID_STREAM_POLICIES",
    "ROLES",
    "check_mid_stream",
    "check_request",
    "check_routing",
    "check_timeout",
    "parse_messages",
]

#: Chat roles Ollama reads (``api/types.go``, ``Message.Role``).
ROLES = ("system", "user", "assistant", "tool")
#: Values of ``mid_stream``.
MID_STREAM_POLICIES = ("error", "restart")
#: ``think`` levels besides ``True``/``False`` (Ollama's ``ThinkValue``).
_THINK_LEVELS = ("low", "medium", "high")
_MESSAGE_KEYS = frozenset(Message.__struct_fields__)
#: Values ``to_builtins`` would turn into strings (bytes into base64, a date
#: into ISO text), which would then pass as a string field: kept, so refused.
_KEPT_AS_IS = (
    bytes,
    bytearray,
    memoryview,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
)
#: Roles whose message says nothing without ``content``.
_NEEDS_CONTENT = ("system", "user", "tool")


def check_timeout(value: Any, error: type[ConfigError | InvalidRequest], what: str) -> None:
    """A deadline must be a finite number of seconds above zero.

    Raises:
        ConfigError | InvalidRequest: (``error``) it is not, naming ``what``.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise error(f"{what} must be a number of seconds above 0 (got {value!r})")


def check_mid_stream(value: Any) -> None:
    """``None``, ``"error"`` or ``"restart"``.

    Raises:
        InvalidRequest: any other value (with the closest valid one).
    """
    if value is not None and value not in MID_STREAM_POLICIES:
        hint = suggest(value, MID_STREAM_POLICIES) if isinstance(value, str) else ""
        raise InvalidRequest(f'mid_stream must be "error" or "restart" (got {value!r}){hint}')


def check_routing(fallback: Any, allow_substitute: Any) -> None:
    """``fallback`` is ``True``/``False``; ``allow_substitute`` also may be ``None``.

    Raises:
        InvalidRequest: another value.
    """
    if not isinstance(fallback, bool):
        raise InvalidRequest(f"fallback must be True or False (got {fallback!r})")
    if allow_substitute is not None and not isinstance(allow_substitute, bool):
        raise InvalidRequest(
            f"allow_substitute must be True, False or None (got {allow_substitute!r})"
        )


def parse_messages(messages: Any) -> list[Message]:
    """Chat messages from :class:`Message` objects or ``{"role", "content", ...}``
    mappings.

    Raises:
        InvalidRequest: ``messages`` is not an iterable of messages, is empty, or a
            message has an unknown key (``contnet``), an unknown role, a wrong type,
            or no ``content`` where its role needs one.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidRequest(
            'messages must be a list such as [{"role": "user", "content": "..."}] '
            f"(got {type(messages).__name__})"
        )
    out = [_message(i, m) for i, m in enumerate(messages)]
    if not out:
        raise InvalidRequest('no messages — pass messages=[{"role": "user", "content": "..."}]')
    return out


def _message(i: int, m: Any) -> Message:
    where = f"messages[{i}]"
    if isinstance(m, Message):
        return m
    if not isinstance(m, Mapping):
        raise InvalidRequest(
            f'{where} is a {type(m).__name__}, not a message — use {{"role": "user", '
            '"content": "..."}'
        )
    for key in m:
        if key not in _MESSAGE_KEYS:
            hint = suggest(key, _MESSAGE_KEYS) if isinstance(key, str) else ""
            raise InvalidRequest(
                f"{where} has an unknown key {key!r}{hint} (keys: {', '.join(_MESSAGE_KEYS)})"
            )
    role = m.get("role")
    _check_role(where, role)
    if role in _NEEDS_CONTENT and "content" not in m and not (role == "user" and m.get("images")):
        raise InvalidRequest(f'{where} (role {role!r}) has no "content"')
    try:
        return msgspec.convert(dict(m), Message)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where} is not a chat message: {exc}") from None


def _check_role(where: str, role: Any) -> None:
    if role not in ROLES:
        hint = suggest(role, ROLES) if isinstance(role, str) else ""
        raise InvalidRequest(
            f"{where} has role {role!r}{hint}; a role is one of {', '.join(ROLES)}"
        )


def check_request(request: Any) -> AnyRequest:
    """Check a request as a whole; returns it with every field of its declared type.

    Args:
        request: What the caller gave ``Runtime.submit``.

    Returns:
        An equal request whose fields all have their declared types.

    Raises:
        InvalidRequest: it is not a :class:`ChatRequest`, :class:`GenerateRequest`
            or :class:`EmbedRequest`, a field has the wrong type, or a value is one
            no backend takes (see :func:`parse_messages` and
            :func:`~rubberduck.ollama_options.check_options`).
    """
    kind = type(request)
    if kind not in (ChatRequest, GenerateRequest, EmbedRequest):
        raise InvalidRequest(
            f"submit takes a ChatRequest, GenerateRequest or EmbedRequest (got {kind.__name__})"
        )
    try:
        builtins = msgspec.to_builtins(request, builtin_types=_KEPT_AS_IS)
        checked: AnyRequest = msgspec.convert(builtins, kind)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"invalid {kind.__name__}: {exc}") from None
    check_options(checked.options)
    _check_keep_alive(checked.keep_alive)
    if isinstance(checked, ChatRequest):
        if not checked.messages:
            raise InvalidRequest("a ChatRequest needs at least one message")
        for i, message in enumerate(checked.messages):
            _check_role(f"messages[{i}]", message.role)
    if isinstance(checked, EmbedRequest):
        if isinstance(checked.input, list) and not checked.input:
            raise InvalidRequest("embed needs input: a text or a non-empty list of texts")
        if checked.dimensions is not None and checked.dimensions < 1:
            raise InvalidRequest(f"dimensions must be 1 or more (got {checked.dimensions})")
        return checked
    think = checked.think
    if isinstance(think, str) and think not in _THINK_LEVELS:
        raise InvalidRequest(f"think must be True, False or one of {_THINK_LEVELS} (got {think!r})")
    if isinstance(checked.format, str) and checked.format not in ("", "json"):
        raise InvalidRequest(f'format must be "json" or a JSON schema (got {checked.format!r})')
    if checked.top_logprobs is not None and not 0 <= checked.top_logprobs <= 20:
        raise InvalidRequest(f"top_logprobs must be 0–20 (got {checked.top_logprobs})")
    return checked


def _check_keep_alive(value: float | str | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(
            f'keep_alive must be finite seconds or a duration such as "5m" (got {value!r})'
        )
