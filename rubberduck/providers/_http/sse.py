"""Server-Sent Events, as OpenAI-compatible servers and Anthropic stream them,
read with sseclient-py over a normalized, bounded byte stream.

sseclient-py parses the events (fields, comments, multi-line ``data``, the
``event`` type). :func:`read_events` feeds it and covers two gaps of its 1.x line:

- **Line ends.** SSE allows CRLF, LF and CR in any mix (WHATWG HTML, "Server-sent
  events", 9.2.5); sseclient-py ends an event only at a uniform pair (LF LF,
  CR CR, CRLF CRLF), so an LF line followed by a CRLF blank line never ends its
  event. Every CRLF and lone CR becomes LF first, across reads too.
- **Cost.** sseclient-py builds each event line by line (``data += line``), which
  is quadratic in the event's line count. Each event is bounded to
  ``max_event_bytes`` bytes and :data:`MAX_EVENT_LINES` lines. Real events have
  one to three lines (OpenAI, Anthropic, vLLM, llama.cpp and LM Studio send their
  JSON on one ``data:`` line), so the bound never bites them, and a broken or
  hostile server costs at most a fraction of a second per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sseclient  # type: ignore[import-untyped]

from rubberduck.errors import ProtocolError

__all__ = ["MAX_EVENT_LINES", "read_events"]

#: Most lines in one event (fields and comments, up to its blank line).
MAX_EVENT_LINES = 256
_READ_BYTES = 65536


def read_events(
    read: Callable[[int], bytes], max_event_bytes: int, *, provider: str = ""
) -> Iterator[sseclient.Event]:
    """The events of an SSE body, as they arrive.

    Args:
        read: Returns up to ``n`` bytes as soon as some arrive, ``b""`` at the end
            (``resp.raw.read1``).
        max_event_bytes: Most bytes from one blank line to the next.
        provider: The backend's configured name, for the errors.

    Yields:
        ``sseclient.Event`` values: ``.event`` (``"message"`` unless named) and
        ``.data`` (the ``data:`` lines joined by ``"\\n"``). Events without data
        are skipped; an unfinished event at the end of the body is still given.

    Raises:
        ProtocolError: an event is longer than ``max_event_bytes`` or
            :data:`MAX_EVENT_LINES`, or is not UTF-8.
        urllib3 / requests exceptions from ``read``: the connection broke.
    """
    try:
        yield from sseclient.SSEClient(_lf_chunks(read, max_event_bytes, provider)).events()
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"an SSE event is not UTF-8 ({exc.reason})", provider=provider
        ) from None


def _lf_chunks(
    read: Callable[[int], bytes], max_event_bytes: int, provider: str
) -> Iterator[bytes]:
    """The body's reads with LF line ends only, each event checked against the
    bounds before sseclient-py sees it whole."""
    cr_pending = False  # the last read ended in CR: an LF opening this one is its pair
    last = b""  # the previous chunk's last byte: a blank line may straddle two reads
    size = lines = 0  # of the event being read, so far
    while chunk := read(_READ_BYTES):
        if cr_pending and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        cr_pending = chunk.endswith(b"\r")
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = (last + chunk).split(b"\n\n")
        # The first piece goes on with the event in progress (``last`` was counted).
        size += len(events[0]) - len(last)
        lines += events[0].count(b"\n") - last.count(b"\n")
        _check(size, lines, max_event_bytes, provider)
        for event in events[1:]:
            size, lines = len(event), event.count(b"\n")
            _check(size, lines, max_event_bytes, provider)
        last = chunk[-1:]
        yield chunk


def _check(size: int, lines: int, max_event_bytes: int, provider: str) -> None:
    if size > max_event_bytes:
        raise ProtocolError(
            f"an SSE event is longer than {max_event_bytes} bytes", provider=provider
        )
    if lines > MAX_EVENT_LINES:
        raise ProtocolError(
            f"an SSE event has more than {MAX_EVENT_LINES} lines — not an OpenAI or "
            "Anthropic stream",
            provider=provider,
        )
