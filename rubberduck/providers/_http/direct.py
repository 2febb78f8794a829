"""Sending a POST on the session's adapter, without ``Session.request``'s per-call work.

``Session.request`` builds a ``Request``, prepares it (URL parsing, merging of
headers, cookies and environment settings, hooks), then resolves redirects and
stores cookies: about 120 µs per call, most of a loopback call's cost. For a POST
with a bytes body on a plain session none of that changes what is sent, so
:func:`send_direct` builds the ``PreparedRequest`` itself (from a cached parse of
the URL and the session's headers) and hands it to the session's adapter,
exactly as ``Session.send`` would: same pool, same TLS settings, same timeouts,
same ``requests`` exceptions (so :func:`~.errors.transport_error` maps them as
before), and a ``requests.Response`` built by the adapter. A POST is never
redirected by our sessions (see :class:`~.session._SameOriginSession`), so the
3xx answer comes back as it would.

Anything else — a session that reads the environment (proxies, .netrc), has
proxies, auth, cookies or hooks, a body that is not bytes, query parameters —
goes through ``Session.request`` as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict

__all__ = ["send_direct"]

#: URL as given → as ``requests`` prepares it (bounded: a backend has few paths).
_urls: dict[str, str] = {}


def _prepared_url(url: str) -> str:
    prepared = _urls.get(url)
    if prepared is None:
        request = PreparedRequest()
        request.prepare_url(url, None)
        prepared = str(request.url)
        if len(_urls) < 1024:
            _urls[url] = prepared
    return prepared


def _plain(session: requests.Session) -> bool:
    """Whether ``Session.request`` would add nothing to a POST on this session."""
    return (
        not session.trust_env
        and not session.proxies
        and session.auth is None
        and not session.cookies
        and not any(session.hooks.get("response", ()))
        and not session.params
    )


def send_direct(
    session: requests.Session,
    method: str,
    url: str,
    *,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
    stream: bool = False,
    timeout: tuple[float, float] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """``session.request(method, url, ...)``, on the session's adapter directly
    when nothing but the sending differs (see the module); the same response and
    the same exceptions either way.

    Args:
        session: The backend's session.
        method, url, data, headers, stream, timeout: As for ``Session.request``
            (``timeout``: (connect, read) seconds).

    Raises:
        requests.RequestException: the request could not be sent or answered.
    """
    if method != "POST" or type(data) is not bytes or kwargs.get("params") or not _plain(session):
        return session.request(
            method, url, data=data, headers=headers, stream=stream, timeout=timeout, **kwargs
        )
    request = PreparedRequest()
    request.method = method
    request.url = _prepared_url(url)
    merged = CaseInsensitiveDict(session.headers)
    if headers:
        merged.update(headers)
    for name in [name for name, value in merged.items() if value is None]:
        del merged[name]
    merged["Content-Length"] = str(len(data))
    request.headers = merged  # type: ignore[assignment]  # str values, as requests sends them
    request.body = data
    request._cookies = None  # type: ignore[attr-defined]  # no jar: nothing to send or keep
    adapter = session.get_adapter(request.url)
    verify = True if session.verify is None else session.verify
    resp = adapter.send(
        request, stream=stream, timeout=timeout, verify=verify, cert=session.cert, proxies={}
    )
    if not stream:
        resp.content  # noqa: B018 - read now, as Session.send does
    return resp
