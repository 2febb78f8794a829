"""OTP-style supervision for pykka actors (pykka has none of its own).

- :class:`Registry` maps stable names (``"router"``, ``"provider:ollama"``) to the
  current :class:`pykka.ActorRef`, so a sender never holds a stale ref: after a
  restart the same name reaches the new actor.
- :class:`SupervisedActor` reports its death to the supervisor however it happens:
  an exception while handling a ``tell`` (pykka calls ``on_failure``), an exception
  in ``on_start`` (pykka calls neither ``on_failure`` nor ``on_stop``), or a stop.
  Messages still in a dead actor's mailbox go to its :meth:`~SupervisedActor.dead_letter`
  hook instead of vanishing (pykka drops unanswered ``tell``-s at teardown).
- :class:`Supervisor` restarts children by its :class:`RestartStrategy`
  (``one_for_one``, ``one_for_all``, ``rest_for_one``) and each child's restart type
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
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pykka

from rubberduck.actors._pykka import ThreadingActor, actor_of, empty_mailbox
from rubberduck.actors.channels import Admissions, Circuits, OutcomeLog
from rubberduck.actors.residency import Residency
from rubberduck.messages import ChildExited, Crash
from rubberduck.scheduler import Scheduler
from rubberduck.telemetry import events

if TYPE_CHECKING:
    from rubberduck.actors.routing import RoutingTable

__all__ = [
    "ChildSpec",
    "InjectedCrash",
    "Registry",
    "Restart",
    "RestartStrategy",
    "SupervisedActor",
    "Supervisor",
]

log = logging.getLogger("rubberduck.supervisor")
SUPERVISOR = "supervisor"


class RestartStrategy(enum.Enum):
    """Which children a supervisor restarts when one dies (OTP names).

    - ``ONE_FOR_ONE``: only the dead child (the runtime's choice: each backend's
      actor fails alone).
    - ``ONE_FOR_ALL``: every child is stopped (reverse start order) and all are
      started again (start order).
    - ``REST_FOR_ONE``: the children started after the dead one are stopped, then
      it and they are started again.

    As in OTP, a ``temporary`` sibling stopped this way is not started again.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class InjectedCrash(RuntimeError):
    """Raised by an actor that received :class:`~rubberduck.messages.Crash`."""


class Restart(enum.Enum):
    """When a dead child is restarted (OTP child restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never


class Registry:
    """Stable name → current actor ref. Written by the supervisor, read by anyone.

    It also holds what must outlive any one actor: the threads to join at
    shutdown, the :class:`~rubberduck.scheduler.Scheduler` that runs retry
    backoffs (and the runtime's deadlines), and the paths around the mailboxes
    (:mod:`rubberduck.actors.channels`).
    """

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        #: Every thread an actor ran on, so that shutdown can join them.
        self.threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        #: Timed calls (retry backoffs), on one thread; stopped by :meth:`stop_scheduler`.
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        #: Worker pools of crashed actors, still finishing; shutdown joins them.
        self.leftovers: list[Executor] = []
        #: Backend name → its live ProviderActor's admission (Router → worker pool).
        self.admissions = Admissions()
        #: Attempt outcomes, workers → HealthMonitor, in the order attempts ended.
        self.outcomes = OutcomeLog()
        #: Backend name → its circuit breaker, set by the HealthMonitor; read
        #: (state only) by the metrics reader's thread.
        self.breakers: dict[str, Any] = {}
        #: Open circuits, HealthMonitor → whoever routes (no mailbox hop).
        self.circuits = Circuits()
        #: The Router's view of the backends, published for callers to route
        #: new requests from (``None`` until a Router started).
        self.routing: RoutingTable | None = None
        #: Models loaded and latency per backend: written by the HealthMonitor
        #: (``/api/ps``, outcomes) and the ProviderActors (answers), read by routing.
        self.residency = Residency()

    def add_thread(self, thread: threading.Thread) -> None:
        """Remember ``thread`` so that shutdown joins it (forgets finished ones)."""
        with self._threads_lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)

    def stop_scheduler(self) -> None:
        """Drop every pending timed call and stop the scheduler's thread. Idempotent."""
        self.scheduler.stop()

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
        if ref.is_alive():
            return True
        # pykka's tell checks that the actor lives, then puts: if it died in
        # between, the message may sit in a mailbox nobody reads any more. (The
        # actor object outlives its thread's last steps.)
        actor = actor_of(ref)
        dead_letter = actor.dead_letter if isinstance(actor, SupervisedActor) else None
        return not empty_mailbox(ref.actor_inbox, str(ref), dead_letter, taking=message)

    def tell_eventually(self, name: str, message: Any, within_s: float = 1.0) -> bool:
        """:meth:`tell`, retried every 5 ms for up to ``within_s`` seconds (at
        most one) while ``name`` is being restarted.

        Returns:
            ``False`` if no actor took the message in time.
        """
        give_up = time.monotonic() + min(1.0, max(within_s, 0.0))
        while not self.tell(name, message):
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.005)
        return True


class SupervisedActor(ThreadingActor):
    """A pykka actor that tells its supervisor when it dies.

    Subclasses override :meth:`started`, :meth:`receive`, :meth:`cleanup` and
    :meth:`dead_letter` instead of pykka's hooks. Every such actor raises on a
    :class:`~rubberduck.messages.Crash` message (fault injection).
    """

    def __init__(self, registry: Registry, name: str) -> None:
        super().__init__()
        self.registry = registry
        self.name = name

    def started(self) -> None:
        """Set-up after the thread starts; an exception here is a crash."""

    def receive(self, message: Any) -> Any:
        """Handle one message (pykka's ``on_receive``); an exception is a crash."""
        return None

    def cleanup(self, crashed: bool) -> None:
        """Release resources; runs after a stop (``crashed=False``) and after a crash."""

    def dead_letter(self, message: Any) -> None:
        """A ``tell`` this actor will never handle: it was still in the mailbox when
        the actor died. Actors that carry requests hand them on from here."""

    def on_receive(self, message: Any) -> Any:
        if type(message) is Crash:
            raise InjectedCrash(message.reason)
        return super().on_receive(message)

    def on_start(self) -> None:
        self.registry.add_thread(threading.current_thread())
        # Reachable by name before started() runs (the supervisor registers the
        # ref only once start() returns): an answer to what started() sends —
        # the Router's Resync — must not be lost.
        self.registry.set(self.name, self.actor_ref)
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
    """Starts children in order, restarts them by ``strategy``, escalates past the
    restart intensity.

    Args:
        specs: Children in start order.
        registry: Where children are found by name.
        strategy: Which children restart together (default ``ONE_FOR_ONE``).
        max_restarts: Restarts allowed within ``within_s`` seconds (OTP intensity).
        within_s: The intensity window (OTP period), seconds.
        on_escalate: Called with a reason once the supervisor gives up, before
            it stops the children (on the supervisor's thread: keep it quick).
        stop_timeout: Seconds to wait for each child to stop.
    """

    def __init__(
        self,
        specs: list[ChildSpec],
        registry: Registry,
        *,
        strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within_s: float = 5.0,
        on_escalate: Callable[[str], None] | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.specs = {spec.name: spec for spec in specs}
        self.order = [spec.name for spec in specs]
        self.registry = registry
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within_s = within_s
        self.on_escalate = on_escalate
        self.stop_timeout = stop_timeout
        self.restarts: deque[float] = deque()
        self._urns: dict[str, str] = {}
        self._stopping = threading.Event()

    def on_start(self) -> None:
        self.registry.add_thread(threading.current_thread())
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
        if not _restarts(spec.restart, msg.abnormal):
            log.info("%s exited (%s); not restarted (%s)", msg.name, msg.reason, spec.restart.value)
            self._forget(msg.name)
            return
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > self.within_s:
            self.restarts.popleft()
        if len(self.restarts) > self.max_restarts:
            self._give_up(
                f"{msg.name} {msg.reason}; more than {self.max_restarts} restarts in "
                f"{self.within_s:g} s, so the supervisor gave up"
            )
            return
        group = self._restart_group(msg.name)
        log.warning(
            "restarting %s (%s; %s)",
            ", ".join(group),
            msg.reason,
            self.strategy.value,
            extra={"actor": msg.name, "error_kind": "crash"},
        )
        events.actor_restarted(msg.name, msg.reason)  # telemetry
        siblings = [name for name in group if name != msg.name]
        self._stop_children(siblings)
        for name in group:
            if name != msg.name and self.specs[name].restart is Restart.TEMPORARY:
                self._forget(name)
                continue
            try:
                self._start_child(name)
            except Exception as exc:  # noqa: BLE001 - a child that cannot start: give up
                self._give_up(f"{name} could not be restarted: {exc!r}")
                return

    def _give_up(self, reason: str) -> None:
        """Escalate: tell the parent, stop every child (reverse start order), stop.

        The parent hears first, so that the work the children hold ends at once
        with this reason; the children's teardown (which hands work on to
        siblings that are stopping too) would end it one piece at a time, each
        with a cause of its own.
        """
        log.error("rubberduck runtime stopped: %s", reason, extra={"error_kind": "escalation"})
        events.escalated(reason)  # telemetry
        if self.on_escalate is not None:
            try:
                self.on_escalate(reason)
            except Exception:
                log.exception("on_escalate failed")
        self._stop_children(self.order)
        self.actor_ref.stop(block=False)

    def _restart_group(self, name: str) -> list[str]:
        """The live children to restart with ``name``, in start order."""
        if self.strategy is RestartStrategy.ONE_FOR_ONE:
            return [name]
        first = 0 if self.strategy is RestartStrategy.ONE_FOR_ALL else self.order.index(name)
        return [n for n in self.order[first:] if n == name or n in self._urns]

    def _forget(self, name: str) -> None:
        self.registry.remove(name)
        self._urns.pop(name, None)

    def _stop_children(self, names: list[str]) -> None:
        """Stop ``names`` in reverse order; their exit reports are then ignored."""
        for name in reversed(names):
            ref = self.registry.get(name)
            self._urns.pop(name, None)
            if ref is None:
                continue
            try:
                ref.stop(block=True, timeout=self.stop_timeout)
            except pykka.Timeout:
                log.error("%s did not stop within %g s", name, self.stop_timeout)
            self.registry.remove(name)

    def on_stop(self) -> None:
        self._stopping.set()
        self._stop_children(self.order)
        self.registry.remove(SUPERVISOR)


def _restarts(restart: Restart, abnormal: bool) -> bool:
    """Whether a child of this restart type comes back after this exit."""
    return restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and abnormal)
