"""The provider contract, cancellation, and helpers shared by HTTP providers.

A provider is a plain class (no actors): it builds the request for its backend,
parses the answer into events, and maps every failure onto
:mod:`rubberduck.errors`. Output is pushed, not pulled: ``run`` calls ``emit``
once per event, in the calling thread, so a chunk costs one function call here and
one queue hand-off to the caller.
"""

from __future__ import annotations

import ipaddress
import math
import platform
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import msgspec
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rubberduck import __version__
from rubberduck.errors import (
    Cancelled,
    InvalidRequest,
    ProtocolError,
    ProviderUnavailable,
    RequestTimeout,
    RubberDuckError,
)
from rubberduck.messages import EmbedRequest, EmbedResponse, Event, Request
from rubberduck.providers._secret import Secret

__all__ = [
    "USER_AGENT",
    "CancelScope",
    "CancellableAdapter",
    "Emit",
    "Provider",
    "ProviderInfo",
    "close_session",
    "current_scope",
    "end_response",
    "error_detail",
    "estimate_tokens",
    "is_local_host",
    "iter_lines",
    "new_session",
    "open_stream",
    "read_body",
    "read_error_body",
    "read_ok_body",
    "read_timeouts",
    "redirect_error",
    "resolve_model",
    "sending",
    "transport_error",
    "undecodable",
]

#: Bytes read after a complete answer to reach the end of the HTTP body (Ollama's
#: chunked body ends right after its ``done`` line), so the connection can be reused.
_DRAIN_BYTES = 64 * 1024

Emit = Callable[[Event], None]

#: Longest NDJSON/SSE line accepted, bytes. An Ollama chunk is ~150 bytes; a
#: non-streamed answer with a long text or a big embedding fits easily.
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


@runtime_checkable
class Provider(Protocol):
    """What the actors need from a backend.

    Attributes:
        name: Configured backend name (``"ollama"``, ``"local"``, ...).
        kind: Backend kind (``"ollama"``, ``"local"``).
        default_model: Model used when a request names none, or ``None``.
        is_local: ``True`` when requests cost nothing (``cost_usd`` is 0.0).
    """

    name: str
    kind: str
    default_model: str | None
    is_local: bool

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Send ``request``; call ``emit`` with each :class:`Delta`/:class:`ToolCall`
        and finally one :class:`Done`.

        Raises:
            RubberDuckError: a subclass saying what failed; ``fallback`` tells
                whether another backend may serve the request.
        """
        ...

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """One vector per input (Ollama ``/api/embed`` semantics).

        Raises:
            InvalidRequest: with ``fallback`` True where the backend has no
                embeddings (the router moves on).
            RubberDuckError: as for :meth:`run`.
        """
        ...

    def health_check(self, timeout: float) -> str:
        """Cheap liveness probe; returns a short description (e.g. the version).

        Raises:
            RubberDuckError: the backend is not usable.
        """
        ...

    def list_models(self, timeout: float) -> list[str]:
        """Names of the models this backend can serve now.

        Raises:
            RubberDuckError: the catalogue could not be read.
        """
        ...

    def close(self) -> None:
        """Release connections and loaded models."""
        ...

    def info(self) -> ProviderInfo:
        """What this backend is (name, kind, URL, known models), without a network
        call."""
        ...

    def supports_feature(self, name: str) -> bool:
        """Whether this provider implements ``name`` (``"streaming"``, ``"tools"``,
        ``"vision"``, ``"embeddings"``, ``"json_mode"``, ``"thinking"``); other
        names give ``False``."""
        ...

    def validate_config(self) -> None:
        """Check the settings without a network call; construction runs it.

        Raises:
            ConfigError: a setting is invalid; the message names it and the fix.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (exact where a tokenizer is loaded, else an estimate,
        see :func:`estimate_tokens`)."""
        ...


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider's ``info()`` reports, without a network call.

    Attributes:
        name: Configured backend name.
        kind: ``"ollama"``, ``"local"``, ``"openai"``, ...
        base_url: The server's URL (``"http://127.0.0.1:11434"``,
            ``"http://127.0.0.1:8080/v1"``); ``""`` for an in-process backend.
        models: The catalogue from the last ``list_models`` or health check, else
            the default model alone, else empty.
        requires_api_key: Requests carry an API key.
        is_local: The host is loopback or a private address (an in-process
            backend is local).
    """

    name: str
    kind: str
    base_url: str
    models: tuple[str, ...]
    requires_api_key: bool
    is_local: bool


def is_local_host(host: str) -> bool:
    """Loopback, private and link-local addresses and ``localhost``; names are not
    resolved, so any other name counts as remote."""
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def estimate_tokens(text: str) -> int:
    """An *estimate* of the tokens in ``text``: one token per 4 bytes of UTF-8,
    rounded up (the usual rule of thumb for English with BPE vocabularies of
    32k–200k entries; code and other languages come out higher). For providers
    that load no tokenizer.

    Returns:
        Estimated tokens (0 for ``""``).
    """
    return math.ceil(len(text.encode("utf-8")) / 4)


def resolve_model(model: str | None, default: str | None, provider: str) -> str:
    """The model a request goes to: its own, else the backend's default. A blank
    name (``""``) counts as none, the same in every provider.

    Raises:
        InvalidRequest: neither names a model.
    """
    if model and model.strip():
        return model
    if default and default.strip():
        return default
    raise InvalidRequest(
        "the request names no model and this backend has no default — pass "
        "model=... or set `model` in its [provider] table",
        provider=provider,
    )


def read_timeouts(configured: tuple[float, float], timeout: float | None) -> tuple[float, float]:
    """(connect, read) seconds for one call: the provider's, each shortened to
    ``timeout`` (what is left of the request's deadline). The read timeout stays
    the longest silence accepted, so a stalled backend fails over before the
    deadline instead of holding the request to its end."""
    if timeout is None:
        return configured
    return (min(timeout, configured[0]), min(timeout, configured[1]))


class CancelScope:
    """Lets another thread abort a provider's blocking call promptly.

    The provider ``attach``-es a closer (closing the HTTP response and shutting
    its socket down, which wakes a blocked ``recv``); ``cancel()`` runs it at once,
    or later at ``attach`` time if it was cancelled first.
    """

    __slots__ = ("_closer", "_lock", "cancelled")

    def __init__(self) -> None:
        self.cancelled = False
        self._closer: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Mark cancelled and close whatever the provider attached. Idempotent."""
        with self._lock:
            self.cancelled = True
            closer, self._closer = self._closer, None
        if closer is not None:
            _quietly(closer)

    def attach(self, closer: Callable[[], None]) -> None:
        """Register how to abort the current call; runs it now if already cancelled."""
        with self._lock:
            if not self.cancelled:
                self._closer = closer
                return
        _quietly(closer)

    def detach(self) -> None:
        """Forget the closer (the call finished)."""
        with self._lock:
            self._closer = None


# --- cancelling before the response headers arrive ------------------------------------
# requests hands out no socket until the headers are in, and a server may take a
# long time to send them (Ollama loading a model). These connection classes give
# the socket to the calling thread's scope as soon as the request goes out, so a
# cancel, a deadline or a dying actor can shut it down at any moment.

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
    HTTP proxy: proxied requests are closable once the headers arrive."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _ScopedPool, "https": _ScopedHTTPSPool}


USER_AGENT = (
    f"rubberduck/{__version__} ({platform.machine()} {platform.system().lower()}) "
    f"Python/{platform.python_version()}"
)


class _SameOriginSession(requests.Session):
    """A session that follows a redirect only for GET and HEAD and only to the
    same scheme, host and port: a POST is never re-sent (the prompt would go
    twice), and credentials (``Authorization``, ``x-api-key``, custom headers)
    never reach another host. A redirect not followed comes back as the 3xx
    answer, which the providers map with :func:`redirect_error`."""

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


def redirect_error(resp: requests.Response, *, provider: str, base_url: str) -> RubberDuckError:
    """The error for a 3xx answer that was not followed (see :func:`new_session`):
    :class:`ProviderUnavailable` naming the host it pointed to (never the whole
    target, which may carry a token)."""
    target = urllib.parse.urlsplit(resp.headers.get("Location", ""))
    where = f"to {target.hostname}" if target.hostname else "elsewhere"
    return ProviderUnavailable(
        f"HTTP {resp.status_code}: {base_url} redirects {where}; redirects of a POST or to "
        "another host are not followed — set `base_url` to where the server answers",
        provider=provider,
    )


def new_session(
    *, pool_size: int, trust_env: bool, headers: Mapping[str, str] | None = None
) -> requests.Session:
    """A session for one backend: one bounded pool of ``pool_size`` keep-alive
    connections whose requests a :class:`CancelScope` can close (see
    :class:`CancellableAdapter`), no automatic retries, JSON headers plus
    ``headers``. ``trust_env`` reads proxies and .netrc from the environment (on
    every request: slower). Redirects are followed only for GET/HEAD to the same
    origin (see :func:`redirect_error`)."""
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


def read_ok_body(
    resp: requests.Response,
    *,
    max_bytes: int,
    http_error: Callable[[requests.Response], RubberDuckError],
    provider: str = "",
) -> bytes:
    """The body of a 200 answer (at most ``max_bytes``); the connection goes back
    to the pool after it. Other statuses raise ``http_error(resp)``.

    Raises:
        RubberDuckError: from ``http_error``, or ``ProtocolError`` for a body
            over ``max_bytes``.
        requests / urllib3 exceptions: the connection broke (map them with
            :func:`transport_error`).
    """
    complete = False
    try:
        if resp.status_code != 200:
            raise http_error(resp)
        body = read_body(resp, max_bytes=max_bytes, provider=provider)
        complete = True
        return body
    finally:
        end_response(resp, complete=complete)


def open_stream(
    send: Callable[[], requests.Response],
    scope: CancelScope,
    *,
    http_error: Callable[[requests.Response], RubberDuckError],
    transport: Callable[[Exception], RubberDuckError],
    provider: str,
) -> requests.Response:
    """Send a request (``send``, with ``stream=True``) whose answer is read as it
    arrives; ``scope`` can close it from the moment it goes out.

    Returns:
        The 200 response, attached to ``scope`` (``scope.detach()`` when done).

    Raises:
        Cancelled: ``scope`` was cancelled (also while an error body was read).
        RubberDuckError: ``http_error(resp)`` for another status, or
            ``transport(exc)`` when the request could not be sent.
    """
    try:
        with sending(scope):
            resp = send()
    except Exception as exc:
        if scope.cancelled:
            raise Cancelled("the request was cancelled", provider=provider) from None
        raise transport(exc) from exc
    scope.attach(response_closer(resp))
    if resp.status_code != 200:
        try:
            error = http_error(resp)
        finally:
            scope.detach()
            resp.close()
        if scope.cancelled:  # the cancel cut the error body short: it is not the answer
            raise Cancelled("the request was cancelled", provider=provider) from None
        raise error
    return resp


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
                    _quietly(pool.close)
    session.close()


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - closing a dead socket may fail; it is closed either way
        pass


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
            _quietly(lambda: sock.shutdown(socket.SHUT_RDWR))
        resp.close()

    return close


def read_body(resp: requests.Response, *, max_bytes: int, provider: str = "") -> bytes:
    """The whole body of a non-streamed answer, at most ``max_bytes``.

    Raises:
        ProtocolError: the body is longer than ``max_bytes``.
        urllib3 / requests exceptions: the connection broke (map them with
            :func:`transport_error`).
    """
    body: bytes = resp.raw.read(max_bytes + 1, decode_content=True)
    if len(body) > max_bytes:
        raise ProtocolError(f"the answer is longer than {max_bytes} bytes", provider=provider)
    return body


#: Bodies of error answers are read up to this many bytes.
MAX_ERROR_BYTES = 64 * 1024


def read_error_body(resp: requests.Response) -> bytes:
    """At most :data:`MAX_ERROR_BYTES` of an error answer's body; ``b""`` when the
    connection breaks (the status alone still says enough)."""
    try:
        return resp.raw.read(MAX_ERROR_BYTES, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - see above
        return b""


def error_detail(raw: bytes, resp: requests.Response, secret: Secret, limit: int) -> str:
    """An excerpt of an error body that is not the server's JSON, for a message:
    credentials redacted before the cut; ``""`` for an HTML page (a proxy's 502
    page says nothing the status and reason do not)."""
    ctype = resp.headers.get("Content-Type", "").lower()
    if "html" in ctype or raw.lstrip()[:1] == b"<":
        return ""
    return secret.excerpt(raw, limit)


def undecodable(raw: str | bytes, secret: Secret) -> str:
    """What a message quotes of an answer that could not be decoded: nothing of
    JSON (a truncated answer holds the model's text), else ``": '<excerpt>'"``
    (an error page from something that is not the backend)."""
    head = raw.lstrip()[:1]
    if head in (b"{", b"[", "{", "["):
        return ""
    return f": {secret.excerpt(raw, 120)!r}"


def end_response(resp: requests.Response, *, complete: bool) -> None:
    """Finish with a response: after a complete answer, read to the end of the body
    and give the connection back to the pool; otherwise (an error, a cancel) close it.

    Closing is what requests does by default for a body read through ``raw``, which
    would cost every streamed request a new TCP connection.
    """
    if complete:
        try:
            left = _DRAIN_BYTES
            while left > 0 and (data := resp.raw.read1(left)):
                left -= len(data)
            if left > 0:  # reached the end of the body within the bound
                resp.raw.release_conn()
                return
        except Exception:  # noqa: BLE001 - a broken tail only means no reuse
            pass
    resp.close()


def iter_lines(
    resp: requests.Response, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, provider: str = ""
) -> Iterator[bytes]:
    """Yield the non-empty lines of a streamed body as bytes, without the newline.

    Reads whatever the socket has (one HTTP chunk at a time for chunked bodies),
    so each line is yielded as soon as it arrives.

    Raises:
        ProtocolError: a line is longer than ``max_line_bytes``.
        urllib3 / requests exceptions: the connection broke (callers map them with
            :func:`transport_error`).
    """
    read = resp.raw.read1
    buf = b""
    while True:
        data = read(65536)
        if not data:
            break
        buf = buf + data if buf else data
        start = 0
        while (end := buf.find(b"\n", start)) != -1:
            if end - start > max_line_bytes:
                raise ProtocolError(
                    f"a streamed line is longer than {max_line_bytes} bytes", provider=provider
                )
            if end > start:
                yield buf[start:end]
            start = end + 1
        buf = buf[start:]
        if len(buf) > max_line_bytes:
            raise ProtocolError(
                f"a streamed line is longer than {max_line_bytes} bytes", provider=provider
            )
    if buf.strip():
        yield buf


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
