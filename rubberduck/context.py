"""A conversation kept as a system prompt, a history and the current message.

>>> ctx = Context(system_prompt="Be brief.", history=["Hi", "Hello!"], current_message="Why?")
>>> [m.role for m in ctx]
['system', 'user', 'assistant', 'user']

Pass it wherever messages go: ``rt.chat(model, ctx)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from rubberduck.errors import InvalidRequest
from rubberduck.messages import Message

__all__ = ["Context"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})


class Context:
    """Maps ``system_prompt`` / ``history`` / ``current_message`` onto chat messages
    (Ollama ``/api/chat`` ``messages``): the system prompt first, then the history,
    then the current message as the user's.

    Args:
        current_message: The user's new message.
        system_prompt: Becomes a ``system`` message; ``None`` or ``""`` for none.
        history: Earlier turns, oldest first, each one of: a :class:`Message`; a
            mapping with ``role`` and ``content`` (Ollama/OpenAI shape); a
            ``(role, content)`` pair; or a plain string, where plain strings
            alternate ``user``, ``assistant``, ``user``, ... by their position.

    Raises:
        InvalidRequest: a history item has another shape or an unknown role.
    """

    def __init__(
        self,
        current_message: str,
        *,
        system_prompt: str | None = None,
        history: Sequence[Message | Mapping[str, Any] | tuple[str, str] | str] = (),
    ) -> None:
        self.current_message = current_message
        self.system_prompt = system_prompt
        self.history = [_turn(item, i) for i, item in enumerate(history)]

    def to_messages(self) -> list[Message]:
        """The messages, in order."""
        out = [Message("system", self.system_prompt)] if self.system_prompt else []
        out.extend(self.history)
        out.append(Message("user", self.current_message))
        return out

    def __iter__(self) -> Iterator[Message]:
        return iter(self.to_messages())

    def __repr__(self) -> str:
        return (
            f"Context(system_prompt={self.system_prompt!r}, history={len(self.history)} "
            f"turns, current_message={self.current_message!r})"
        )


def _turn(item: Message | Mapping[str, Any] | tuple[str, str] | str, index: int) -> Message:
    if isinstance(item, Message):
        message = item
    elif isinstance(item, str):
        message = Message("user" if index % 2 == 0 else "assistant", item)
    elif isinstance(item, tuple) and len(item) == 2:
        message = Message(str(item[0]), str(item[1]))
    elif isinstance(item, Mapping):
        try:
            message = msgspec.convert(dict(item), Message)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"history[{index}] is not a chat message: {exc}") from None
    else:
        raise InvalidRequest(
            f"history[{index}] is a {type(item).__name__} — use a string, a (role, content) "
            'pair or {"role": ..., "content": ...}'
        )
    if message.role not in _ROLES:
        raise InvalidRequest(
            f"history[{index}] has role {message.role!r} — use one of {sorted(_ROLES)}"
        )
    return message
