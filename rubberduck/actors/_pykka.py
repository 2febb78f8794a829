"""Every use of pykka's internals, in one place, behind a version check.

pykka has no supervision of its own, and two things the supervisor needs are
not in its public API:

- the actor object behind a ref (``ActorRef._actor_weakref``): to hand a tell
  that met a dying actor to that actor's ``dead_letter``;
- the end of the actor's loop (``Actor._actor_loop_teardown``, and the
  ``messages._ActorStop`` envelope it answers): pykka answers pending asks with
  ``ActorDeadError`` there but drops pending tells, which would lose requests.

These exist, unchanged, in pykka 4.1 to 4.x (``setup.cfg`` pins ``pykka>=4.1,<5``);
importing this module with another pykka raises ``ImportError`` at once rather
than losing mail at run time. ``tests/actors/test_pykka_seams.py`` checks each
seam against the installed pykka.
"""

from __future__ import annotations

import importlib.metadata
import queue
from collections.abc import Callable
from typing import Any

import pykka
import pykka.messages
from pykka._envelope import Envelope

__all__ = [
    "SUPPORTED",
    "ThreadingActor",
    "actor_of",
    "check_version",
    "empty_mailbox",
    "envelope",
]

#: The pykka versions whose internals this module was checked against: [low, high).
SUPPORTED = ((4, 1), (5, 0))


def check_version(version: str) -> None:
    """Refuse a pykka whose internals this module does not know.

    Args:
        version: pykka's version string (``"4.5.0"``).

    Raises:
        ImportError: ``version`` is outside :data:`SUPPORTED`, or unreadable.
    """
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    low, high = SUPPORTED
    if len(major_minor) != 2 or not low <= major_minor < high:
        raise ImportError(
            f"rubberduck needs pykka>={low[0]}.{low[1]},<{high[0]} (found {version}) — "
            f"install it with: pip install 'pykka>={low[0]}.{low[1]},<{high[0]}'"
        )


check_version(importlib.metadata.version("pykka"))


def actor_of(ref: pykka.ActorRef[Any]) -> pykka.Actor | None:
    """The actor object behind ``ref``; ``None`` once it was garbage-collected
    (it outlives its thread's last steps)."""
    actor: pykka.Actor | None = ref._actor_weakref()
    return actor


def envelope(message: Any) -> Any:
    """A tell's envelope, as pykka puts it in a mailbox (for tests that strand
    mail in a dead actor's mailbox)."""
    return Envelope(message)


class _Forget:
    """A no-op message: see :meth:`ThreadingActor.forget_last_message`."""

    __slots__ = ()


FORGET = _Forget()


class ThreadingActor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` that gives its pending tells to
    :meth:`dead_letter` when its loop ends, instead of dropping them, and can
    let go of the last message it handled."""

    def on_receive(self, message: Any) -> Any:
        if message is FORGET:
            return None
        return self.receive(message)

    def receive(self, message: Any) -> Any:
        """Handle one message (pykka's ``on_receive``)."""
        return None

    def forget_last_message(self) -> None:
        """pykka's loop keeps the envelope it handled last until the next one
        arrives: an idle actor would keep the last request it routed alive. When
        the mailbox is empty, send a no-op, handled at once on this thread (no
        wake-up), so that the loop holds that instead. Call it from ``receive``."""
        if self.actor_inbox.empty():
            self.actor_ref.tell(FORGET)

    def dead_letter(self, message: Any) -> None:
        """A ``tell`` still in the mailbox when the actor's loop ended."""

    def _actor_loop_teardown(self) -> None:
        # pykka's own teardown answers pending asks with ActorDeadError but drops
        # pending tells; this one hands those on.
        empty_mailbox(self.actor_inbox, str(self.actor_ref), self.dead_letter)


def empty_mailbox(
    inbox: Any,
    owner: str,
    dead_letter: Callable[[Any], None] | None,
    *,
    taking: Any = None,
) -> bool:
    """Empty the mailbox of a dead actor (it handles no more mail, so any thread
    may; ``get_nowait`` lets two threads do it at once).

    Pending tells go to ``dead_letter``; with none (the actor object is gone),
    they are put back for their own senders to take back. Pending asks get
    ActorDeadError, a pending stop its answer.

    Args:
        inbox: The actor's mailbox (a ``queue.Queue`` of pykka envelopes).
        owner: The actor, as error messages name it.
        dead_letter: Where pending tells go, or ``None``.
        taking: A message a sender just put there, to take back out.

    Returns:
        ``True`` if ``taking`` was found and taken back (it was never handled).
    """
    found, kept = False, []
    while True:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            break
        if taking is not None and item.message is taking and not found:
            found = True
        elif dead_letter is None:
            kept.append(item)
        elif item.reply_to is None:
            dead_letter(item.message)
        elif isinstance(item.message, pykka.messages._ActorStop):
            item.reply_to.set(None)
        else:
            error = pykka.ActorDeadError(f"{owner} stopped before handling it")
            item.reply_to.set_exception(exc_info=(type(error), error, None))
    for item in kept:
        inbox.put(item)
    return found
