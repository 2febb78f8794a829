"""Settings of :class:`~rubberduck.providers.ollama.OllamaProvider` read before any
request: the host (``OLLAMA_HOST``), and the API key and extra headers (as the
official ``ollama`` Python client 0.6.x sends them). Credentials are kept out of
reprs and messages by :class:`~rubberduck.providers._http.secret.Secret`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping

from rubberduck.errors import ConfigError

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_OLLAMA_HOST",
    "check_credentials",
    "extra_headers",
    "parse_ollama_host",
]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
#: The variable the official client reads its API key from (ollama.com, proxies).
DEFAULT_API_KEY_ENV = "OLLAMA_API_KEY"
#: Headers the official client sets itself, whatever ``headers`` says.
_FIXED_HEADERS = frozenset({"content-type", "accept", "user-agent"})
#: An HTTP field name (RFC 9110 token); a field value without controls or spaces
#: around it; an API key (no spaces at all).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?")
_TOKEN = re.compile(r"[^\x00-\x20\x7f]+")


def parse_ollama_host(host: str | None) -> str:
    """Turn an ``OLLAMA_HOST``-style value into a base URL, as Ollama's clients do.

    Accepts ``host``, ``host:port``, ``:port``, ``scheme://host[:port][/path]``,
    bracketed IPv6 (``[::1]:11434``) and a bare IPv6 address without a port
    (``::1``, as Ollama's Go client reads it). A missing port is 11434 (80/443
    with an explicit http/https scheme). ``0.0.0.0`` and ``::`` are addresses a
    server listens on, not ones to connect to, so they map to loopback.

    Args:
        host: The value, or ``None``/``""`` for the default.

    Returns:
        A URL such as ``"http://127.0.0.1:11434"``, without a trailing slash.

    Raises:
        ConfigError: the port is not a number in 0–65535, or the value is not a
            URL (an unclosed ``[``).
    """
    text, port = (host or "").strip(), DEFAULT_PORT
    scheme, _, hostport = text.partition("://")
    if not hostport:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    address, slash, path = hostport.partition("/")
    if address.count(":") > 1 and not address.startswith("["):
        with contextlib.suppress(ValueError):  # a bare IPv6 address, as Go's client takes it
            hostport = f"[{ipaddress.IPv6Address(address)}]{slash}{path}"
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    except ValueError as exc:  # an unclosed "[" of an IPv6 address, ...
        raise ConfigError(
            f"bad Ollama host {host!r} ({exc}) — use host:port, or [ipv6]:port"
        ) from None
    try:
        port = split.port or port
    except ValueError as exc:
        raise ConfigError(f"bad port in Ollama host {host!r} — use host:port") from exc
    name = split.hostname or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        name = "127.0.0.1" if ip.version == 4 else "::1"
        ip = ipaddress.ip_address(name)
    if ip is not None and ip.version == 6:
        name = f"[{name}]"
    path = split.path.strip("/")
    return f"{scheme}://{name}:{port}/{path}" if path else f"{scheme}://{name}:{port}"


def extra_headers(headers: Mapping[str, str] | None, key: str) -> dict[str, str]:
    """What the official client adds to its requests: the given headers (names in
    lower case, ``None`` values dropped, Content-Type, Accept and User-Agent kept
    as the client sets them), then ``authorization: Bearer <key>`` unless the
    headers carry an Authorization already (ollama-python ``BaseClient``)."""
    extra = {
        k.lower(): v
        for k, v in (headers or {}).items()
        if v is not None and k.lower() not in _FIXED_HEADERS
    }
    if key and not extra.get("authorization"):
        extra["authorization"] = f"Bearer {key}"
    return extra


def check_credentials(
    name: str, key_env: str, named: bool, key: str, headers: Mapping[str, str]
) -> None:
    """Refuse, before any request, credentials that could only fail (requests
    would also reject a malformed header with its value in the message).

    Raises:
        ConfigError: ``key_env`` was named in the configuration but is not set,
            the key in it holds whitespace or control characters, or a header
            name or value is malformed; the message names the variable or the
            header, never the value.
    """
    where = f"[provider.{name}]"
    if named and not key:
        raise ConfigError(
            f"{where} ${key_env} is not set — export it with the API key, or remove "
            f"`api_key_env` to send ${DEFAULT_API_KEY_ENV} only when it is set",
            provider=name,
        )
    if key and not _TOKEN.fullmatch(key):
        raise ConfigError(
            f"{where} the API key in ${key_env} contains whitespace or control "
            "characters — set it again without them",
            provider=name,
        )
    for header, value in headers.items():
        if not (
            _HEADER_NAME.fullmatch(header)
            and isinstance(value, str)
            and (value == "" or _HEADER_VALUE.fullmatch(value))
        ):
            raise ConfigError(
                f"{where} header {header!r} is not a valid HTTP header: a token name "
                "and a string value on one line, without spaces around it",
                provider=name,
            )
