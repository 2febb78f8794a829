"""Checks every HTTP provider runs on its settings when it is built, before any
request: a ``base_url`` without credentials, and no API key in clear text to a
host other than this machine."""

from __future__ import annotations

import ipaddress
import urllib.parse

from rubberduck.errors import ConfigError

__all__ = [
    "check_clear_text_key",
    "check_no_credentials",
    "is_local_host",
    "is_loopback_host",
]


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


def is_loopback_host(host: str) -> bool:
    """``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ``::1``; names are not
    resolved."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_no_credentials(base_url: str, name: str) -> None:
    """Refuse a ``base_url`` with ``user:password@``, before any message quotes it.

    Raises:
        ConfigError: the URL carries credentials; the message does not quote it.
    """
    text = base_url.strip()
    authority = (text.partition("://")[2] or text).partition("/")[0]  # OLLAMA_HOST: no scheme
    if "@" in authority:
        raise ConfigError(
            f"[provider.{name}] base_url must not carry credentials (user:password@) — "
            "put the key in an environment variable and name it in `api_key_env`",
            provider=name,
        )


def check_clear_text_key(
    base_url: str, name: str, *, sends_key: bool, allow_insecure_key: bool
) -> None:
    """The one rule for keys over plain HTTP: refused unless the host is this
    machine (loopback) or the configuration says ``allow_insecure_key = true``.

    Args:
        base_url: The provider's URL.
        name: Configured backend name, for the message.
        sends_key: Requests carry an API key or an ``Authorization`` header.
        allow_insecure_key: The ``[provider]`` table allows clear text anyway
            (a trusted network).

    Raises:
        ConfigError: a key would go in clear text to another host.
    """
    split = urllib.parse.urlsplit(base_url)
    if not sends_key or allow_insecure_key or split.scheme != "http":
        return
    if is_loopback_host(split.hostname or ""):
        return
    raise ConfigError(
        f"[provider.{name}] the API key would go in clear text to {split.hostname} — use "
        "https://, or set `allow_insecure_key = true` if the network is trusted",
        provider=name,
    )
