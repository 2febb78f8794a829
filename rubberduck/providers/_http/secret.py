"""One holder for the credentials a provider sends, and the one rule for keeping
them out of text: redact first, then cut, with one placeholder."""

from __future__ import annotations

__all__ = ["PLACEHOLDER", "Secret"]

#: What replaces a credential in any message, repr or log record.
PLACEHOLDER = "***"
#: Header values shorter than this are not treated as secrets ("1", "yes" would
#: redact ordinary words); an API key is a secret whatever its length.
_MIN_HEADER_SECRET_CHARS = 8


class Secret:
    """The credentials of one provider (an API key, header values that carry
    credentials), never shown by ``repr``, ``vars()`` or a debugger.

    Args:
        key: The API key, or ``""`` for none.
        headers: Other values to hide (the values of configured headers); values
            under 8 characters are ignored.
    """

    __slots__ = ("_values",)

    def __init__(self, key: str = "", headers: tuple[str, ...] = ()) -> None:
        values = {key} if key else set()
        values.update(v for v in headers if len(v) >= _MIN_HEADER_SECRET_CHARS)
        # Longest first, so a value containing another is replaced whole.
        self._values = tuple(sorted(values, key=len, reverse=True))

    def __repr__(self) -> str:
        return f"Secret(<{len(self._values)} hidden>)"

    def __bool__(self) -> bool:
        return bool(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by :data:`PLACEHOLDER`."""
        for value in self._values:
            text = text.replace(value, PLACEHOLDER)
        return text

    def excerpt(self, data: str | bytes, limit: int) -> str:
        """At most ``limit`` characters of ``data`` (bytes are read as UTF-8) for a
        message: credentials are replaced *before* the cut, so a credential
        straddling the cut leaves nothing of itself; ``…`` marks a cut.

        Args:
            data: Text from a server (an error body, an answer it could not read).
            limit: Longest excerpt, characters.
        """
        # The whole text is redacted before the cut: a window just past the limit
        # would miss a credential straddling its end, which the redaction of an
        # earlier one then pulls in front of the cut. Bodies are bounded (64 KiB).
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        text = self.redact(text).strip()
        return text[:limit] + "…" if len(text) > limit else text
