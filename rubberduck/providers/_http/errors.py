"""Failures below HTTP (refused, timed out, TLS, broken) and redirects not
followed, as typed :mod:`rubberduck.errors`."""

from __future__ import annotations

import urllib.parse

import requests
import urllib3.exceptions

from rubberduck.errors import ProtocolError, ProviderUnavailable, RequestTimeout, RubberDuckError
from rubberduck.providers._http.secret import Secret

__all__ = ["redirect_error", "transport_error"]


def redirect_error(resp: requests.Response, *, provider: str, base_url: str) -> RubberDuckError:
    """The error for a 3xx answer that was not followed (see
    :func:`~rubberduck.providers._http.session.new_session`):
    :class:`ProviderUnavailable` naming the host it pointed to (never the whole
    target, which may carry a token)."""
    target = urllib.parse.urlsplit(resp.headers.get("Location", ""))
    where = f"to {target.hostname}" if target.hostname else "elsewhere"
    return ProviderUnavailable(
        f"HTTP {resp.status_code}: {base_url} redirects {where}; redirects of a POST or to "
        "another host are not followed — set `base_url` to where the server answers",
        provider=provider,
    )


def transport_error(
    exc: BaseException, *, provider: str, base_url: str, hint: str, secret: Secret | None = None
) -> RubberDuckError:
    """Map a requests/urllib3 exception onto a typed error.

    Args:
        exc: The exception raised by requests or urllib3.
        provider: Backend name, for the error.
        base_url: The URL the backend was expected at.
        hint: What to do if it is not running (``"start it with `ollama serve`"``).
        secret: Credentials to redact from an unexpected exception's text.
    """
    if isinstance(exc, RubberDuckError):
        return exc
    if isinstance(exc, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
        return ProviderUnavailable(
            f"no answer from {base_url} while connecting — is the host up? {hint}",
            provider=provider,
        )
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return RequestTimeout(
            f"{base_url} stopped sending within the read timeout — raise `timeout` "
            "for this provider if the model is slow to load",
            provider=provider,
        )
    if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        # Not the start hint: something answers, but the TLS handshake failed.
        return ProviderUnavailable(
            f"TLS with {base_url} failed ({type(exc).__name__}) — check the server's "
            "certificate (a private CA: REQUESTS_CA_BUNDLE with trust_env) and that "
            "base_url says https:// only for a TLS server",
            provider=provider,
        )
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        cause = exc.args[0] if exc.args else exc
        if isinstance(cause, urllib3.exceptions.MaxRetryError) and isinstance(
            cause.reason, urllib3.exceptions.NewConnectionError
        ):
            return ProviderUnavailable(
                f"not reachable at {base_url} — {hint}", provider=provider, refused=True
            )
        return ProviderUnavailable(
            f"connection to {base_url} failed ({type(exc).__name__}) — {hint}", provider=provider
        )
    if isinstance(
        exc,
        (
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.HTTPError,
            OSError,
        ),
    ):
        return ProviderUnavailable(
            f"connection to {base_url} broke mid-response ({type(exc).__name__})",
            provider=provider,
        )
    text = secret.excerpt(repr(exc), 300) if secret is not None else f"{type(exc).__name__}"
    return ProtocolError(f"unexpected failure talking to {base_url}: {text}", provider=provider)
