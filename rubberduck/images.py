"""Images for vision models, as Ollama's API carries them: base64 strings.

The official ``ollama`` client accepts bytes, a path or base64 text for each image
and sends base64; so do :class:`~rubberduck.messages.Message` and
:class:`~rubberduck.messages.GenerateRequest`, through :func:`encode_image`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["check_base64", "encode_image", "encode_images"]

#: Longest base64 text checked in full; longer ones are checked at both ends
#: (a file path or a ``data:`` URL fails at the start; Ollama checks the rest).
_B64_CHECK_CHARS = 8192


def encode_image(image: str | bytes | bytearray | memoryview | os.PathLike[str]) -> str:
    """One image as Ollama wants it: a base64 string (standard alphabet, padded).

    Args:
        image: Raw image bytes; a :class:`pathlib.Path` (or other ``os.PathLike``)
            to an image file, read now; or a string that already holds base64.
            A string is never opened as a file, unlike the official client: a
            service passing on a caller's string must not read local files by
            accident.

    Returns:
        The base64 text.

    Raises:
        ValueError: the file cannot be read, or the string is not base64 (the
            message says how to send a file instead).
    """
    if isinstance(image, str):
        check_base64(image)
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return base64.b64encode(image).decode("ascii")
    if isinstance(image, os.PathLike):
        try:
            with open(image, "rb") as f:
                return base64.b64encode(f.read()).decode("ascii")
        except OSError as exc:
            raise ValueError(f"cannot read image file {os.fspath(image)!r}: {exc}") from None
    raise ValueError(
        f"an image must be bytes, a pathlib.Path or a base64 string, not {type(image).__name__}"
    )


def check_base64(text: str) -> None:
    """Raise ``ValueError`` unless ``text`` is standard, padded base64 (texts over
    8192 characters are checked at both ends, in constant time).
    """
    if len(text) <= _B64_CHECK_CHARS:
        parts = [text]
    else:  # both ends, each a whole number of 4-character groups
        tail = len(text) - _B64_CHECK_CHARS // 2
        parts = [text[: _B64_CHECK_CHARS // 2], text[tail - tail % 4 :]]
    try:
        if len(text) % 4:
            raise binascii.Error("length is not a multiple of 4")
        for part in parts:
            binascii.a2b_base64(part, strict_mode=True)
    except (binascii.Error, ValueError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(
            f"image {shown!r} is not base64 — pass raw bytes, or pathlib.Path({shown!r}) "
            "to send a file (strings are not opened as files)"
        ) from None


def encode_images(images: Iterable[Any]) -> list[str] | None:
    """:func:`encode_image` for each image; ``None`` for none.

    Raises:
        ValueError: as :func:`encode_image`, or ``images`` is a single image.
    """
    if isinstance(images, (str, bytes)):
        raise ValueError("images must be a list of images, not a single one")
    return [encode_image(image) for image in images] or None
