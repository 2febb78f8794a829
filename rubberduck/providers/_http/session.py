"""One pooled session per backend: bounded keep-alive pool, cancellable
requests, no automatic retries, same-origin redirects only."""

from __future__ import annotations

import platform
import urllib.parse
from collections.abc import Mapping

import requests

from rubberduck._version import __version__
from rubberduck.providers._http.cancellable import CancellableAdapter
from rubberduck.providers.cancel import quietly

__all__ = ["USER_AGENT", "close_session", "new_session", "read_timeouts"]

USER_AGENT = (
    f"rubberduck/{__version__} ({platform.machine()} {platform.system().lower()}) "
    f"Python/{platform.python_version()}"
)


class _SameOriginSession(requests.Session):
    """A session that follows a redirect only for GET and HEAD and only to the
    same scheme, host and port: a POST is never re-sent (the prompt would go
    twice), and credentials (``Authorization``, ``x-api-key``, custom headers)
    never reach another host. A redirect not followed comes back as the 3xx
    answer, which the providers map with
    :func:`~rubberduck.providers._http.errors.redirect_error`."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        request = resp.request
        if target is None or request.method not in ("GET", "HEAD") or not request.url:
            return None
        here = urllib.parse.urlsplit(str(request.url))
        there = urllib.parse.urlsplit(urllib.parse.urljoin(str(request.url), target))
        if (here.scheme, here.hostname, here.port) != (there.scheme, there.hostname, there.port):
            return None
        return target


def new_session(
    *, pool_size: int, trust_env: bool, headers: Mapping[str, str] | None = None
) -> requests.Session:
    """A session for one backend: one bounded pool of ``pool_size`` keep-alive
    connections whose requests a :class:`CancelScope` can close (see
    :class:`CancellableAdapter`), no automatic retries, JSON headers plus
    ``headers``. ``trust_env`` reads proxies and .netrc from the environment (on
    every request: slower). Redirects are followed only for GET/HEAD to the same
    origin (see :class:`_SameOriginSession`)."""
    session = _SameOriginSession()
    session.trust_env = trust_env
    adapter = CancellableAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(
        {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    )
    session.headers.update(headers or {})
    return session


def close_session(session: requests.Session) -> None:
    """Close a session's pooled connections now, then the session.

    ``Session.close()`` alone only forgets the pools with urllib3 2.8 (its pool
    container no longer closes what it drops), so idle keep-alive sockets stay
    open until garbage collection and the server keeps a thread on each.
    """
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None:
            for key in list(manager.pools.keys()):
                pool = manager.pools.get(key)
                if pool is not None:
                    quietly(pool.close)
    session.close()


def read_timeouts(configured: tuple[float, float], timeout: float | None) -> tuple[float, float]:
    """(connect, read) seconds for one call: the provider's, each shortened to
    ``timeout`` (what is left of the request's deadline). The read timeout stays
    the longest silence accepted, so a stalled backend fails over before the
    deadline instead of holding the request to its end."""
    if timeout is None:
        return configured
    return (min(timeout, configured[0]), min(timeout, configured[1]))
