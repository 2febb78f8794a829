"""OTP-style supervision for pykka actors (pykka has none of its own).

- :class:`Registry` maps stable names (``"router"``, ``"provider:ollama"``) to the
  current :class:`pykka.ActorRef`, so a sender never holds a stale ref: after a
  restart the same name reaches the new actor.
- :class:`SupervisedActor` reports its death to the supervisor however it happens:
  an exception while handling a ``tell`` (pykka calls ``on_failure``), an exception
  in ``on_start`` (pykka calls neither ``on_failure`` nor ``on_stop``), or a stop.
- :class:`Supervisor` restarts children ``one_for_one`` by their restart type
  (``permanent``: always, ``transient``: after a crash, ``temporary``: never), with a
  restart intensity of at most ``max_restarts`` in ``within_s`` seconds; past it,
  it stops every child in reverse start order and escalates.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from rubberduck.messages import ChildExited

__all__ = ["ChildSpec", "Registry", "Restart", "RestartStrategy", "SupervisedActor", "Supervisor"]

log = logging.getLogger("rubberduck.supervisor")
SUPERVISOR = "supervisor"


class RestartStrategy(enum.Enum):
    """Which children a supervisor restarts when one dies (OTP names).

    Only ``ONE_FOR_ONE`` is implemented so far: each backend's actor fails alone.
    """

    ONE_FOR_ONE = "one_for_one"


class Restart(enum.Enum):
    """When a dead child is restarted (OTP child restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never


class Registry:
    """Stable name → current actor ref. Written by the supervisor, read by anyone."""

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        #: Every thread an actor ran on, so that shutdown can join them.
        self.threads: list[threading.Thread] = []

    def set(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Point ``name`` at ``ref``."""
        self._refs[name] = ref

    def remove(self, name: str) -> None:
        """Forget ``name``."""
        self._refs.pop(name, None)

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        """The current ref for ``name``, or ``None``."""
        return self._refs.get(name)

    def tell(self, name: str, message: Any) -> bool:
        """Send ``message`` to the actor now called ``name``.

        Returns:
            ``False`` if no live actor has that name (it is being restarted or
            was stopped); the caller decides what that means for the message.
        """
        ref = self._refs.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that tells its supervisor when it dies.

    Subclasses override :meth:`started`, :meth:`cleanup` and ``on_receive``
    instead of pykka's ``on_start``/``on_stop``/``on_failure``.
    """

    def __init__(self, registry: Registry, name: str) -> None:
        super().__init__()
        self.registry = registry
        self.name = name

    def started(self) -> None:
        """Set-up after the thread starts; an exception here is a crash."""

    def cleanup(self, crashed: bool) -> None:
        """Release resources; runs after a stop (``crashed=False``) and after a crash."""

    def on_start(self) -> None:
        self.registry.threads.append(threading.current_thread())
        try:
            self.started()
        except Exception as exc:
            self._exited(abnormal=True, reason=f"failed to start: {exc!r}")
            raise

    def on_stop(self) -> None:
        self._exited(abnormal=False, reason="stopped")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exited(abnormal=True, reason=f"crashed: {exception_value!r}")

    def _exited(self, *, abnormal: bool, reason: str) -> None:
        try:
            self.cleanup(crashed=abnormal)
        finally:
            message = ChildExited(self.name, self.actor_urn, abnormal, reason)
            self.registry.tell(SUPERVISOR, message)


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child.

    Attributes:
        name: Stable registry name.
        start: Starts the actor and returns its ref.
        restart: When to restart it.
    """

    name: str
    start: Callable[[], pykka.ActorRef[Any]]
    restart: Restart = Restart.PERMANENT


class Supervisor(pykka.ThreadingActor):
    """Starts children in order, restarts them ``one_for_one``, escalates past the
    restart intensity.

    Args:
        specs: Children in start order.
        registry: Where children are found by name.
        max_restarts: Restarts allowed within ``within_s`` seconds (OTP intensity).
        within_s: The intensity window (OTP period), seconds.
        on_escalate: Called with a reason once the supervisor gives up; by then
            every child has been stopped.
        stop_timeout: Seconds to wait for each child to stop at shutdown.
    """

    def __init__(
        self,
        specs: list[ChildSpec],
        registry: Registry,
        *,
        max_restarts: int = 3,
        within_s: float = 5.0,
        on_escalate: Callable[[str], None] | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.specs = {spec.name: spec for spec in specs}
        self.order = [spec.name for spec in specs]
        self.registry = registry
        self.max_restarts = max_restarts
        self.within_s = within_s
        self.on_escalate = on_escalate
        self.stop_timeout = stop_timeout
        self.restarts: deque[float] = deque()
        self.restart_log: list[tuple[str, float]] = []  # (child, monotonic time of restart)
        self._urns: dict[str, str] = {}
        self._stopping = threading.Event()

    def on_start(self) -> None:
        self.registry.threads.append(threading.current_thread())
        self.registry.set(SUPERVISOR, self.actor_ref)
        for name in self.order:
            self._start_child(name)

    def _start_child(self, name: str) -> None:
        ref = self.specs[name].start()
        self._urns[name] = ref.actor_urn
        self.registry.set(name, ref)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._child_exited(message)
        return None

    def _child_exited(self, msg: ChildExited) -> None:
        if self._stopping.is_set() or self._urns.get(msg.name) != msg.urn:
            return  # a shutdown in progress, or news of an actor already replaced
        spec = self.specs[msg.name]
        if spec.restart is Restart.TEMPORARY or (
            spec.restart is Restart.TRANSIENT and not msg.abnormal
        ):
            log.info("%s exited (%s); not restarted (%s)", msg.name, msg.reason, spec.restart.value)
            self.registry.remove(msg.name)
            del self._urns[msg.name]
            return
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > self.within_s:
            self.restarts.popleft()
        if len(self.restarts) > self.max_restarts:
            reason = (
                f"{msg.name} {msg.reason}; more than {self.max_restarts} restarts in "
                f"{self.within_s:g} s, so the supervisor gave up"
            )
            log.error("rubberduck runtime stopped: %s", reason)
            self._stop_children()
            if self.on_escalate is not None:
                self.on_escalate(reason)
            self.actor_ref.stop(block=False)
            return
        log.warning("restarting %s (%s)", msg.name, msg.reason)
        self._start_child(msg.name)
        self.restart_log.append((msg.name, time.monotonic()))

    def _stop_children(self) -> None:
        self._stopping.set()
        for name in reversed(self.order):
            ref = self.registry.get(name)
            if ref is None:
                continue
            try:
                ref.stop(block=True, timeout=self.stop_timeout)
            except pykka.Timeout:
                log.error("%s did not stop within %g s", name, self.stop_timeout)
            self.registry.remove(name)

    def on_stop(self) -> None:
        self._stop_children()
        self.registry.remove(SUPERVISOR)
