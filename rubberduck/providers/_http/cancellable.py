"""Closing an HTTP request from another thread at any moment, also before its
response headers arrive.

requests hands out no socket until the headers are in, and a server may take a
long time to send them (Ollama loading a model). These connection classes give
the socket to the calling thread's scope as soon as the request goes out, so a
cancel, a deadline or a dying actor can shut it down at any moment.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rubberduck.providers.cancel import CancelScope, quietly

__all__ = ["CancellableAdapter", "current_scope", "response_closer", "sending"]

_sending = threading.local()


@contextmanager
def sending(scope: CancelScope) -> Iterator[None]:
    """Make HTTP requests sent by this thread, through a :class:`CancellableAdapter`,
    closable by ``scope`` from the moment they are sent."""
    _sending.scope = scope
    try:
        yield
    finally:
        _sending.scope = None


def current_scope() -> CancelScope | None:
    """The scope of the :func:`sending` block this thread is in, if any."""
    scope: CancelScope | None = getattr(_sending, "scope", None)
    return scope


class _ScopedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        scope = current_scope()
        if scope is not None:
            if self.sock is None:
                self.connect()
            sock = self.sock
            scope.attach(lambda: sock.shutdown(socket.SHUT_RDWR))
        super().request(*args, **kwargs)


class _ScopedHTTPSConnection(_ScopedConnection, HTTPSConnection):
    pass


class _ScopedPool(HTTPConnectionPool):
    ConnectionCls = _ScopedConnection


class _ScopedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _ScopedHTTPSConnection


class CancellableAdapter(HTTPAdapter):
    """A requests adapter whose requests a :class:`CancelScope` can close while
    they wait for the response headers (inside :func:`sending`). Not through an
    HTTP proxy: proxied requests are closable once the headers arrive.

    Without a proxy it keeps the pool of each origin at hand instead of
    computing its pool key on every request (a backend talks to one origin).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _ScopedPool, "https": _ScopedHTTPSPool}
        self._pools: dict[tuple[Any, ...], Any] = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> Any:
        if proxies or not request.url:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        scheme, _, origin = request.url.split("/", 3)[:3]
        key = (scheme, origin, verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # new, or closed with the session
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            if len(self._pools) >= 16:
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies:
            return super().request_url(request, proxies)
        url = request.path_url
        return f"/{url.lstrip('/')}" if url.startswith("//") else url


def response_closer(resp: requests.Response) -> Callable[[], None]:
    """A closer that shuts the response's socket down, then closes the response.

    ``close()`` alone does not wake a thread blocked in ``recv`` on Linux;
    ``shutdown()`` does, and the server sees the connection drop (Ollama then stops
    generating).
    """

    def close() -> None:
        sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
        if sock is None:
            # urllib3 drops its connection ref when the server said
            # "Connection: close"; the socket is still under the body's file.
            sock = getattr(getattr(getattr(resp.raw, "_fp", None), "fp", None), "raw", None)
            sock = getattr(sock, "_sock", None)
        if isinstance(sock, socket.socket):
            quietly(lambda: sock.shutdown(socket.SHUT_RDWR))
        resp.close()

    return close
