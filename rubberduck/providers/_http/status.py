"""The one table from HTTP statuses to :mod:`rubberduck.errors`, shared by the
HTTP providers (as httpx's ``map_exceptions`` maps lower-level errors): each
provider handles what only it can tell (a 404 about a model, a server's error
code), then hands the status here with its remedies."""

from __future__ import annotations

from collections.abc import Mapping

import requests

from rubberduck.errors import (
    AuthError,
    InvalidRequest,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.providers._http.errors import redirect_error
from rubberduck.providers._http.retry_after import retry_after

__all__ = ["STATUS_ERRORS", "Remedies", "error_for_status"]

#: Status → error type. Not listed: a 3xx not followed (see
#: :func:`~rubberduck.providers._http.errors.redirect_error`), other 5xx
#: :class:`ProviderUnavailable`, other 4xx :class:`InvalidRequest`.
STATUS_ERRORS: Mapping[int, type[RubberDuckError]] = {
    401: AuthError,  # no key, or a wrong one
    402: AuthError,  # gateways: no credit left
    403: AuthError,  # a key without access
    404: ProviderUnavailable,  # a path this server does not serve (a wrong base_url)
    408: RequestTimeout,  # the server gave up waiting for the request
    429: ServerBusy,  # rate limited
    503: ServerBusy,  # at capacity (Ollama: its queue is full)
    529: ServerBusy,  # Anthropic: overloaded
}

#: What to do next, by status or by error type (the status wins).
Remedies = Mapping[int | type[RubberDuckError], str]


def error_for_status(
    resp: requests.Response,
    detail: str,
    *,
    provider: str,
    base_url: str,
    remedies: Remedies,
    status: int | None = None,
) -> RubberDuckError:
    """The error for an answer that is not 200, built complete.

    Args:
        resp: The answer (its headers give ``Retry-After`` for :class:`ServerBusy`).
        detail: What the server said, redacted and cut (``"HTTP 429: slow down"``).
        provider: The backend's configured name.
        base_url: For a redirect's message.
        remedies: What to do next, by status or by error type; the message is
            ``"<detail> — <remedy>"``.
        status: The status to map, when a server's error code says more than its
            status (default: ``resp.status_code``).

    Returns:
        The error from :data:`STATUS_ERRORS`; ``ServerBusy`` carries
        ``retry_after_s`` in seconds.
    """
    status = resp.status_code if status is None else status
    if 300 <= status < 400:
        return redirect_error(resp, provider=provider, base_url=base_url)
    kind = STATUS_ERRORS.get(status) or (ProviderUnavailable if status >= 500 else InvalidRequest)
    remedy = remedies.get(status) or remedies.get(kind)
    message = f"{detail} — {remedy}" if remedy else detail
    if kind is ServerBusy:
        return ServerBusy(message, provider=provider, retry_after_s=retry_after(resp.headers))
    return kind(message, provider=provider)
