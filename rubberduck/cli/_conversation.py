"""The interactive ``rubberduck chat``: a conversation on a terminal, with slash
commands in the manner of ``ollama run``.

The history, model, system prompt and options live in one :class:`Conversation`.
Ctrl-C stops an answer (the turn is dropped and the conversation goes on); a failed
request prints one line and the conversation goes on; Ctrl-D or ``/bye`` ends it.
Lines are read with :mod:`readline` where Python has it: arrow keys edit the line
and walk the history, which is kept in ``$XDG_STATE_HOME/rubberduck/history``
(``~/.local/state/rubberduck/history``) across conversations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rubberduck.context import Context
from rubberduck.errors import InvalidRequest, RubberDuckError
from rubberduck.messages import Message
from rubberduck.ollama_options import check_options
from rubberduck.runtime import Runtime

__all__ = ["HELP", "HISTORY_LENGTH", "Conversation", "history_path", "line_editing"]

#: Lines kept in the history file.
HISTORY_LENGTH = 1000

HELP = '''\
Commands:
  /set system <text>            set the system prompt (/set system alone clears it)
  /set parameter <name> <value> set an Ollama option: temperature, num_ctx,
                                num_predict, top_k, top_p, min_p, seed, stop, ...
  /set format json|none         ask for JSON answers, or plain ones
  /unset parameter <name>       drop an option
  /load <model>                 talk to another model (the history stays)
  /clear                        forget the conversation so far
  /show                         model, system prompt, options and turns so far
  /help, /?                     this help
  /bye                          end the conversation (also Ctrl-D)
Write """ on a line to begin a message of several lines, and """ again to end it.
Ctrl-C stops an answer.'''

#: ``stop`` takes several strings; every other option one value.
_LIST_OPTIONS = frozenset({"stop"})


class Conversation:
    """One interactive chat: history, model, system prompt and Ollama options.

    Args:
        rt: The runtime that answers.
        args: The ``chat`` command's arguments (``model``, ``system``, ``format``,
            ``timeout``, ``on_break``).
        options: The Ollama options to start with (``{"temperature": 0.2}``).
        stream: Prints a handle's events and returns the answer's text (the
            one-shot command's printer).
        routing: ``backends`` / ``fallback`` / ``allow_substitute`` for every
            turn (from ``--backend`` and ``--no-fallback``).
    """

    def __init__(
        self,
        rt: Runtime,
        args: argparse.Namespace,
        options: dict[str, Any],
        stream: Callable[[Any, argparse.Namespace], str],
        routing: dict[str, Any] | None = None,
    ) -> None:
        self.rt = rt
        self.routing = routing or {}
        self.args = args
        self.model: str | None = args.model
        self.system: str | None = args.system
        self.format: str | None = args.format
        self.options = dict(options)
        self.history: list[Message] = []
        self._stream = stream

    def run(self) -> int:
        """Read and answer until ``/bye`` or Ctrl-D; returns the exit code (0)."""
        with line_editing():
            return self._loop()

    def _loop(self) -> int:
        _say('chatting — /? for help, /bye or Ctrl-D to end, """ for several lines')
        while True:
            try:
                line = self._message()
            except EOFError:
                print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:
                _say("\nuse Ctrl-D or /bye to end")
                continue
            if not line.strip():
                continue
            if line.startswith("/"):
                if not self.command(line.strip()):
                    return 0
                continue
            self.ask(line)

    def _message(self) -> str:
        """One line, or the lines between two ``\"\"\"``, joined by newlines."""
        line = input(">>> ")
        if not line.lstrip().startswith('"""'):
            return line
        lines = [line.lstrip()[3:]]
        while not lines[-1].rstrip().endswith('"""'):
            lines.append(input("... "))
        lines[-1] = lines[-1].rstrip()[:-3]
        return "\n".join(lines).strip("\n")

    def ask(self, text: str) -> None:
        """Send ``text`` with the history; keep the turn only if it was answered."""
        messages = list(Context(text, system_prompt=self.system, history=self.history))
        handle = None
        try:
            handle = self.rt.stream_chat(
                self.model,
                messages,
                options=self.options or None,
                format=self.format,
                timeout=self.args.timeout,
                mid_stream=self.args.on_break,
                **self.routing,
            )
            answer = self._stream(handle, self.args)
        except KeyboardInterrupt:  # the call ends (even if Ctrl-C came before _stream)
            if handle is not None:
                handle.close()
            _say("\n(stopped; that turn is not kept)")
            return
        except RubberDuckError as exc:
            _say(f"rubberduck: {exc}")
            return
        self.history += [Message("user", text), Message("assistant", answer)]

    def command(self, line: str) -> bool:
        """Carry out a slash command; ``False`` ends the conversation."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name == "/bye":
            return False
        if name in ("/help", "/?"):
            print(HELP, file=sys.stderr)
        elif name == "/clear":
            self.history.clear()
            _say("the conversation so far is forgotten")
        elif name == "/load" and rest:
            self.model = rest
            _say(f"now talking to {rest}")
        elif name == "/show":
            self._show()
        elif name == "/set":
            self._set(rest)
        elif name == "/unset" and rest.startswith("parameter "):
            key = rest.removeprefix("parameter ").strip()
            _say(f"{key} unset" if self.options.pop(key, None) is not None else f"{key} is not set")
        else:
            _say(f"unknown command {line!r} — /? lists the commands")
        return True

    def _set(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        value = value.strip()
        if what == "system":
            self.system = value or None
            _say("system prompt set" if value else "system prompt cleared")
        elif what == "format" and value in ("json", "none"):
            self.format = "json" if value == "json" else None
            _say(f"format: {value}")
        elif what == "parameter" and len(value.split(maxsplit=1)) == 2:
            key, raw = value.split(maxsplit=1)
            parsed = raw.split() if key in _LIST_OPTIONS else _scalar(raw)
            try:  # refused now, not on every turn after
                check_options({key: parsed}, "parameter")
            except InvalidRequest as exc:
                _say(f"rubberduck: {exc}")
                return
            self.options[key] = parsed
            _say(f"{key} = {json.dumps(parsed)}")
        else:
            _say("usage: /set system <text>, /set parameter <name> <value>, /set format json|none")

    def _show(self) -> None:
        options = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.options.items()) or "none"
        _say(f"model: {self.model or '(each backend its default)'}")
        _say(f"system prompt: {self.system or 'none'}")
        _say(f"format: {self.format or 'none'}")
        _say(f"options: {options}")
        _say(f"turns so far: {len(self.history) // 2}")


def history_path() -> Path:
    """``$XDG_STATE_HOME/rubberduck/history`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "rubberduck" / "history"


@contextlib.contextmanager
def line_editing() -> Iterator[None]:
    """Line editing and history for ``input()`` while the block runs: loads the
    history file, and writes it back (the last :data:`HISTORY_LENGTH` lines) at
    the end. Without :mod:`readline` (Windows) ``input()`` stays as it is."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Python without readline
        yield
        return
    path = history_path()
    readline.clear_history()
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    try:
        yield
    finally:
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)


def _scalar(raw: str) -> Any:
    """``"0.2"`` → 0.2, ``"42"`` → 42, ``"true"`` → True, anything else stays a string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _say(text: str) -> None:
    print(text, file=sys.stderr)
