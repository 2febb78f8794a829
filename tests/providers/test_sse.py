"""The SSE reader in front of sseclient-py: any mix of line ends, any cut of the
bytes, and bounded events."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from rubberduck.errors import ProtocolError
from rubberduck.providers._http.sse import MAX_EVENT_LINES, read_events


def events(chunks: Iterable[bytes], max_event_bytes: int = 1 << 20) -> list[tuple[str, str]]:
    """(event type, data) of each event, one read per chunk."""
    pieces = iter(chunks)
    return [(e.event, e.data) for e in read_events(lambda _n: next(pieces, b""), max_event_bytes)]


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def test_events_end_at_any_blank_line_whatever_the_line_ends() -> None:
    """WHATWG: a line ends in CRLF, LF or CR, and an event at the first blank line,
    so ``data: a`` + LF followed by a CRLF blank line is a whole event."""
    body = b"data: a\n\r\ndata: b\r\rdata: c\r\n\ndata: d1\rdata: d2\n\n"
    expected = [("message", "a"), ("message", "b"), ("message", "c"), ("message", "d1\nd2")]
    assert events([body]) == expected
    assert events(bytewise(body)) == expected
    assert events([b"data: [DONE]"]) == [("message", "[DONE]")]  # unfinished at the end


def test_types_comments_and_a_crlf_cut_between_reads() -> None:
    body = b": ping\r\n\r\nevent: message_stop\r\ndata: {}\r\n\r\n"
    cut = body.index(b"\r\n") + 1  # CR at the end of one read, LF at the start of the next
    for chunks in ([body], [body[:cut], body[cut:]], bytewise(body)):
        assert events(chunks) == [("message_stop", "{}")]


def test_mixed_line_ends_do_not_let_events_pile_up() -> None:
    """Many small events, each well under the limit, are not buffered as one."""
    assert [data for _, data in events([b"data: {}\n\r\n" * 500], 64)] == ["{}"] * 500


@pytest.mark.parametrize("cut", [None, 7], ids=["one read", "7-byte reads"])
def test_an_event_over_the_byte_bound_is_a_protocol_error(cut: int | None) -> None:
    body = b"data: " + b"x" * 200 + b"\n\n"
    chunks = [body] if cut is None else [body[i : i + cut] for i in range(0, len(body), cut)]
    with pytest.raises(ProtocolError, match="longer than 128 bytes"):
        events(chunks, 128)
    assert events(chunks, 256) == [("message", "x" * 200)]


def test_an_event_of_too_many_lines_is_refused_before_it_is_joined() -> None:
    """sseclient-py joins an event line by line, in quadratic time: a body of
    short ``data:`` lines is stopped at the line bound, not parsed for minutes."""
    ok = b"data: x\n" * MAX_EVENT_LINES + b"\n"
    assert events([ok]) == [("message", "\n".join(["x"] * MAX_EVENT_LINES))]
    flood = b"data: x\n" * 1_000_000
    with pytest.raises(ProtocolError, match=f"more than {MAX_EVENT_LINES} lines"):
        events(flood[i : i + 65536] for i in range(0, len(flood), 65536))


def test_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not UTF-8"):
        events([b"data: \xff\xfe\n\n"])
