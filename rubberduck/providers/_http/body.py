"""Reading answers: a streamed request's response, a whole bounded body, the
lines of an NDJSON stream, an error body; and giving the connection back to the
pool afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import requests

from rubberduck.errors import Cancelled, ProtocolError, RubberDuckError
from rubberduck.providers._http.cancellable import response_closer, sending
from rubberduck.providers._http.secret import Secret
from rubberduck.providers.cancel import CancelScope

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "MAX_ERROR_BYTES",
    "decode_answer",
    "end_response",
    "error_detail",
    "iter_lines",
    "open_stream",
    "read_body",
    "read_error_body",
    "read_ok_body",
    "undecodable",
]

#: Bytes read after a complete answer to reach the end of the HTTP body (Ollama's
#: chunked body ends right after its ``done`` line), so the connection can be reused.
_DRAIN_BYTES = 64 * 1024

#: Longest NDJSON/SSE line accepted, bytes. An Ollama chunk is ~150 bytes; a
#: non-streamed answer with a long text or a big embedding fits easily.
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024

#: Bodies of error answers are read up to this many bytes.
MAX_ERROR_BYTES = 64 * 1024


def read_ok_body(
    resp: requests.Response,
    *,
    max_bytes: int,
    http_error: Callable[[requests.Response], RubberDuckError],
    provider: str = "",
    ok: tuple[int, ...] = (200,),
) -> bytes:
    """The body of an ``ok`` answer (at most ``max_bytes``); the connection goes
    back to the pool after it. Other statuses raise ``http_error(resp)``.

    Raises:
        RubberDuckError: from ``http_error``, or ``ProtocolError`` for a body
            over ``max_bytes``.
        requests / urllib3 exceptions: the connection broke (map them with
            :func:`transport_error`).
    """
    complete = False
    try:
        if resp.status_code not in ok:
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


def decode_answer(
    decode: Callable[[Any], Any], raw: str | bytes, *, what: str, provider: str, secret: Secret
) -> Any:
    """``decode(raw)`` (a msgspec decoder's ``decode``).

    Args:
        what: What ``raw`` failed to be, for the message (``"an Ollama JSON answer"``).

    Raises:
        ProtocolError: ``raw`` is not that JSON shape; the message quotes no JSON
            (a truncated answer holds the model's text), see :func:`undecodable`.
    """
    try:
        return decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(
            f"not {what} ({exc}){undecodable(raw, secret)}", provider=provider
        ) from None


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
