"""The base of the HTTP providers: one pooled session, encoding, non-streamed
calls, streamed requests, reading an answer, and failures mapped with the
provider's name and secret at construction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec
import requests

from rubberduck.errors import Cancelled, InvalidRequest, ProtocolError, RubberDuckError
from rubberduck.providers._http.body import (
    decode_answer,
    end_response,
    open_stream,
    read_body,
    read_ok_body,
)
from rubberduck.providers._http.errors import transport_error
from rubberduck.providers._http.secret import Secret
from rubberduck.providers._http.session import close_session, new_session, read_timeouts
from rubberduck.providers.base import ProviderInfo, estimate_tokens, resolve_model
from rubberduck.providers.cancel import CancelScope

__all__ = ["HTTPBackend"]

_ENCODER = msgspec.json.Encoder()
HTTPError = Callable[[requests.Response], RubberDuckError]


class HTTPBackend:
    """What the Ollama, OpenAI-compatible and Anthropic providers share.

    A subclass sets, before :meth:`_connect`: ``name``, ``base_url``,
    ``default_model``, ``secret`` (what to keep out of messages), ``_timeout``
    ((connect, read) seconds) and ``_max_body`` (longest answer body, bytes); and
    implements :meth:`_http_error`.

    Attributes:
        start_hint: What a "not reachable" error tells the user to do.
        stream_headers: Headers of a request whose answer is read as it arrives:
            uncompressed, since its lines are read raw (a proxy would gzip them).
        wire_name: What an undecodable answer is not (``"an Ollama JSON answer"``).
    """

    start_hint = "start the server, or fix `base_url` for this provider"
    stream_headers: Mapping[str, str] = {"Accept-Encoding": "identity"}
    wire_name = "the server's JSON"

    #: Features :meth:`supports_feature` reports.
    features: frozenset[str] = frozenset()

    name: str
    kind: str
    base_url: str
    default_model: str | None
    is_local: bool
    secret: Secret
    #: The model names from the last ``list_models`` (``None`` before the first).
    _catalogue: tuple[str, ...] | None = None
    _timeout: tuple[float, float]
    _max_body: int
    _session: requests.Session

    def _connect(
        self, *, pool_size: int, trust_env: bool, headers: Mapping[str, str] | None = None
    ) -> None:
        """Open the session (after the settings were checked)."""
        self._session = new_session(pool_size=pool_size, trust_env=trust_env, headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        close_session(self._session)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # --- description (no network call) --------------------------------------------

    def info(self) -> ProviderInfo:
        """What this backend is: name, kind, URL, the models it is known to serve
        (the last catalogue read, else the default model), whether requests carry
        an API key (never the key), and whether the host is local."""
        return ProviderInfo(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            models=self._known_models(),
            requires_api_key=self._sends_key(),
            is_local=self.is_local,
        )

    def _known_models(self) -> tuple[str, ...]:
        if self._catalogue is not None:
            return self._catalogue
        return (self.default_model,) if self.default_model else ()

    def _sends_key(self) -> bool:
        raise NotImplementedError

    def supports_feature(self, name: str) -> bool:
        """Whether this provider sends the request fields of feature ``name`` (one
        of :attr:`features`; whether a model honours them is up to the server).
        Other names give ``False``."""
        return name in self.features

    def count_tokens(self, text: str) -> int:
        """An *estimate* of the tokens in ``text`` (see :func:`estimate_tokens`):
        the server has no tokenizer endpoint; the exact prompt size comes back as
        ``Done.usage.prompt_tokens``."""
        return estimate_tokens(text)

    # --- building a request ---------------------------------------------------------

    def _model(self, model: str | None) -> str:
        return resolve_model(model, self.default_model, self.name)

    def _timeouts(self, timeout: float | None) -> tuple[float, float]:
        """(connect, read) seconds within ``timeout`` (see :func:`read_timeouts`)."""
        return read_timeouts(self._timeout, timeout)

    def _not_json(self, exc: Exception) -> InvalidRequest:
        """The error for a request value that cannot be sent as JSON."""
        return InvalidRequest(
            f"the request cannot be sent as JSON ({exc}) — options, format, tools, "
            "messages and parameters must hold JSON values; tools are dict schemas, "
            "not Python functions",
            provider=self.name,
        )

    def _encode(self, body: Any) -> bytes:
        """The JSON bytes of a request body.

        Raises:
            InvalidRequest: a value is not JSON (a Python function as a tool, a set
                in ``options``, ...); nothing is sent.
        """
        try:
            return _ENCODER.encode(body)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise self._not_json(exc) from None

    # --- sending --------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``Session.request``; a subclass may send again where that is safe."""
        return self._session.request(method, url, **kwargs)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        http_error: HTTPError | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> bytes:
        """A non-streamed call; returns the body of an ``ok`` answer (at most
        ``_max_body`` bytes) and gives the connection back to the pool.

        Args:
            body: Bytes, or a file to stream from.
            timeout: Seconds left for the call (see :func:`read_timeouts`).
            model: The model the call is about (``""``: none), for a 404.
            http_error: Maps another status (default: :meth:`_http_error`).

        Raises:
            RubberDuckError: another status, or the connection failed (see
                :func:`transport_error`).
        """
        try:
            # stream=True leaves an error body unread, for the error to read.
            resp = self._send(
                method,
                self.base_url + path,
                data=body,
                params=params,
                headers=headers,
                stream=True,
                timeout=self._timeouts(timeout),
            )
            return read_ok_body(
                resp,
                max_bytes=self._max_body,
                provider=self.name,
                http_error=http_error or (lambda r: self._http_error(r, model)),
                ok=ok,
            )
        except RubberDuckError:
            raise
        except Exception as exc:
            raise self._transport_error(exc) from exc

    def _open(
        self,
        path: str,
        body: bytes,
        scope: CancelScope,
        model: str,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        http_error: HTTPError | None = None,
    ) -> requests.Response:
        """POST a request whose answer is read as it arrives (see
        :func:`~rubberduck.providers._http.body.open_stream`), with
        :attr:`stream_headers` and ``headers``."""
        timeouts = self._timeouts(timeout)
        sent = {**self.stream_headers, **(headers or {})}
        return open_stream(
            lambda: self._send(
                "POST", self.base_url + path, data=body, headers=sent, stream=True, timeout=timeouts
            ),
            scope,
            http_error=http_error or (lambda resp: self._http_error(resp, model)),
            transport=self._transport_error,
            provider=self.name,
        )

    @contextmanager
    def _reading(
        self,
        resp: requests.Response,
        scope: CancelScope,
        cancelled: str = "the request was cancelled",
    ) -> Iterator[None]:
        """Read a 200 answer inside this block: a cancel is :class:`Cancelled`
        (it can surface as a clean end of stream as well as a read error), a
        broken connection a typed error; the response is released after it (the
        connection back to the pool when the block completed)."""
        complete = False
        try:
            yield
            complete = True
        except Exception as exc:
            if scope.cancelled:
                raise Cancelled(cancelled, provider=self.name) from None
            if isinstance(exc, RubberDuckError):
                raise
            if isinstance(exc, UnicodeDecodeError):
                raise ProtocolError(
                    f"the answer is not UTF-8 ({exc.reason})", provider=self.name
                ) from None
            raise self._transport_error(exc) from exc
        finally:
            scope.detach()
            end_response(resp, complete=complete)

    def _read_body(self, resp: requests.Response) -> bytes:
        """The whole body of a 200 answer, at most ``_max_body`` bytes."""
        return read_body(resp, max_bytes=self._max_body, provider=self.name)

    def _decode(self, decoder: Any, raw: str | bytes) -> Any:
        """``decoder.decode(raw)`` (see :func:`decode_answer`)."""
        return decode_answer(
            decoder.decode, raw, what=self.wire_name, provider=self.name, secret=self.secret
        )

    # --- errors -----------------------------------------------------------------------

    def _transport_error(self, exc: BaseException) -> RubberDuckError:
        return transport_error(
            exc,
            provider=self.name,
            base_url=self.base_url,
            hint=self.start_hint,
            secret=self.secret,
        )

    def _http_error(self, resp: requests.Response, model: str) -> RubberDuckError:
        """The typed error for a status other than 200 (see the subclass)."""
        raise NotImplementedError
