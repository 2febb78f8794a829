"""The one Redis connection of a runtime, and what happens when Redis fails.

Every Redis call of the cluster code goes through :meth:`RedisLink.call`. A
call that fails (refused, reset, slower than ``socket_timeout``) returns
``None`` instead of raising: the caller carries on with its local state. The
failure is counted (``rubberduck.cluster.redis_errors``), logged at WARNING on
``rubberduck.cluster`` (rate-limited) and, for ``retry_after`` seconds, no
call is tried at all — so an outage costs one timeout, not one per request.
After that, one caller at a time tries Redis (the others carry on with local
state meanwhile, as in the pause): a Redis that still does not answer costs
one more timeout, not one per concurrent caller. The first call that
succeeds logs that the runtime rejoined.

``redis`` (the ``cluster`` extra) is imported here only, when a link is built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rubberduck.config import ClusterConfig
from rubberduck.errors import ConfigError
from rubberduck.telemetry import events
from rubberduck.telemetry.logs import component, fields, warn

__all__ = ["RedisLink"]

log = component("cluster")
_T = TypeVar("_T")


class RedisLink:
    """A Redis client with short timeouts that never raises into a request.

    Args:
        config: The ``[cluster]`` table.

    Raises:
        ConfigError: ``redis`` is not installed (install the ``cluster``
            extra) or ``redis_url`` is not a Redis URL.

    Thread-safe: the client is a connection pool; the up/down state is under a lock.
    """

    def __init__(self, config: ClusterConfig) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "[cluster] needs the redis client — pip install 'rubberduck[cluster]'"
            ) from None
        if not config.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"[cluster] redis_url must be redis://HOST:PORT/DB, rediss:// or unix:// "
                f"(got {config.redis_url!r})"
            )
        try:
            self.client: Any = redis.Redis.from_url(
                config.redis_url,
                socket_timeout=config.socket_timeout,
                socket_connect_timeout=config.socket_timeout,
                health_check_interval=0,
                retry_on_timeout=False,
            )
        except ValueError as exc:
            raise ConfigError(f"[cluster] redis_url {config.redis_url!r}: {exc}") from None
        self.url = config.redis_url
        self.retry_after = config.retry_after
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False
        self._probing = False  # a caller is trying Redis again after retry_after
        self._errors = (redis.RedisError, OSError)

    @property
    def up(self) -> bool:
        """Whether the last call succeeded (or none failed yet)."""
        return not self._down

    def call(self, what: str, fn: Callable[[Any], _T]) -> _T | None:
        """``fn(client)``, or ``None`` when Redis fails, is in its
        ``retry_after`` pause, or another caller is trying it again after
        that pause; never raises a Redis or socket error.

        Args:
            what: What the call does, for the warning ("take a slot", ...).
            fn: The calls to make on the client (one round trip, ideally).
        """
        probing = False
        if self._down:
            with self._lock:
                if self._probing or time.monotonic() < self._down_until:
                    return None
                self._probing = probing = True
        try:
            result = fn(self.client)
        except self._errors as exc:
            self._failed(what, exc)
            return None
        finally:
            if probing:
                with self._lock:
                    self._probing = False
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                log.warning(
                    "Redis at %s answers again: sharing limits and state with the cluster",
                    self.url,
                    extra=fields(error_kind="redis"),
                )
                events.cluster_rejoined()
        return result

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._down = True
            self._down_until = time.monotonic() + self.retry_after
        events.cluster_redis_error(what)
        warn(
            log,
            "Redis at %s failed to %s (%s): carrying on with local limits and state, "
            "retrying in %g s",
            self.url,
            what,
            type(exc).__name__,
            self.retry_after,
            extra=fields(error_kind="redis"),
        )

    def close(self) -> None:
        """Close the connection pool."""
        try:
            self.client.close()
        except self._errors:
            pass
