"""ProviderActor: one per backend; runs requests on a bounded worker pool.

The actor thread only admits work (a non-blocking slot check, then a hand-off to
the pool), so it never blocks on HTTP. A worker runs the provider's blocking call
with the request handle's ``emit`` as the callback: chunks go straight to the
caller's queue. When the call ends, the worker tells the HealthMonitor the outcome
and, for a failure before the first chunk, tells the Router to try elsewhere.

Mid-stream policy: once a chunk has reached the caller, a failure is not retried
or re-routed; the caller gets :class:`~rubberduck.errors.StreamInterrupted` with
the partial text.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rubberduck.actors.health import HEALTH
from rubberduck.actors.supervisor import Registry, SupervisedActor
from rubberduck.errors import (
    AllProvidersFailed,
    ProtocolError,
    ProviderUnavailable,
    RubberDuckError,
    ServerBusy,
    StreamInterrupted,
)
from rubberduck.handle import RequestHandle
from rubberduck.messages import AttemptFailed, Dispatch, Outcome
from rubberduck.providers.base import Provider

__all__ = ["ProviderActor", "provider_actor_name"]

ROUTER = "router"
#: Failures worth another try on the same backend (when ``retries`` > 0).
_RETRYABLE = frozenset({"busy", "timeout"})


def provider_actor_name(backend: str) -> str:
    """Registry name of a backend's actor."""
    return f"provider:{backend}"


class ProviderActor(SupervisedActor):
    """Admits requests for one backend and runs them on its worker pool.

    Args:
        registry: Where the Router and HealthMonitor are found.
        provider: The backend's provider.
        max_in_flight: Requests running at once (pool size).
        max_queue: Requests waiting for a worker; past it, ``ServerBusy``.
        retries: Extra attempts on this backend after a busy/timeout failure.
    """

    def __init__(
        self,
        registry: Registry,
        provider: Provider,
        *,
        max_in_flight: int = 4,
        max_queue: int = 64,
        retries: int = 0,
    ) -> None:
        super().__init__(registry, provider_actor_name(provider.name))
        self.provider = provider
        self.backend = provider.name
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retries = retries

    def started(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix=f"rubberduck-{self.backend}"
        )
        self._slots = threading.Semaphore(self.max_in_flight + self.max_queue)

    def cleanup(self, crashed: bool) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            # Queued work still runs, so each request still gets its outcome. After
            # a crash the replacement actor takes new work at once; at a normal
            # stop the runtime has already cancelled every request, so the wait
            # is short.
            pool.shutdown(wait=not crashed)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Dispatch):
            self._admit(message.handle)
        return None

    def _admit(self, handle: RequestHandle) -> None:
        if handle.finished:
            return
        if not self._slots.acquire(blocking=False):
            busy = ServerBusy(
                f"{self.max_in_flight} requests running and {self.max_queue} waiting — "
                "raise max_in_flight/max_queue for this provider, or add a backend",
                provider=self.backend,
            )
            self._report_failed(handle, busy)
            return
        try:
            self._pool.submit(self._work, handle)
        except RuntimeError:  # the pool is shutting down
            self._slots.release()
            self._report_failed(
                handle, ProviderUnavailable("backend is shutting down", provider=self.backend)
            )

    # --- worker threads -----------------------------------------------------------

    def _work(self, handle: RequestHandle) -> None:
        try:
            attempt = 0
            while not handle.finished:
                error = self._attempt(handle)
                if error is None or handle.finished:
                    return
                if handle.delivered:
                    handle.fail(
                        StreamInterrupted(
                            f"the stream broke after it started: {error.message}",
                            provider=self.backend,
                            partial_text="".join(handle.partial),
                        )
                    )
                    return
                backoff = _backoff(attempt, error)
                if (
                    error.kind in _RETRYABLE
                    and attempt < self.retries
                    and handle.time_left() > backoff
                ):
                    attempt += 1
                    time.sleep(backoff)
                    continue
                self._report_failed(handle, error)
                return
        finally:
            self._slots.release()

    def _attempt(self, handle: RequestHandle) -> RubberDuckError | None:
        """One call to the backend; returns the error, or ``None`` on success."""
        started = time.monotonic()
        scope = handle.new_scope()
        error: RubberDuckError | None = None
        try:
            self.provider.run(handle.request, handle.emit, scope)
        except RubberDuckError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a provider bug must not lose the request
            error = ProtocolError(f"provider failed unexpectedly: {exc!r}", provider=self.backend)
        if handle.cancelled or (error is not None and scope.cancelled):
            kind = "cancelled"
        elif error is None:
            kind = "ok"
        elif isinstance(error, ProviderUnavailable) and error.refused:
            kind = "refused"
        else:
            kind = error.kind
        self.registry.tell(
            HEALTH,
            Outcome(self.backend, kind, time.monotonic() - started, error.message if error else ""),
        )
        if error is not None and not error.provider:
            error.provider = self.backend
        return error

    def _report_failed(self, handle: RequestHandle, error: RubberDuckError) -> None:
        if not self.registry.tell(ROUTER, AttemptFailed(handle, self.backend, error)):
            handle.causes[self.backend] = error
            handle.fail(AllProvidersFailed(handle.causes, model=handle.request.model))


def _backoff(attempt: int, error: RubberDuckError) -> float:
    """Seconds before retry ``attempt + 1``: exponential with jitter, or the
    server's ``Retry-After``."""
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        return float(retry_after)
    return min(2.0, 0.05 * 2.0**attempt) * (0.5 + random.random() / 2)
