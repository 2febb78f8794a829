"""parse_ollama_host: OLLAMA_HOST values → base URLs, as Ollama's official client parses them."""

from __future__ import annotations

import pytest

from rubberduck.errors import ConfigError
from rubberduck.providers.ollama import DEFAULT_OLLAMA_HOST, parse_ollama_host

# The doctest table of the official Python client (ollama-python, ``_parse_host``).
OFFICIAL = [
    (None, "http://127.0.0.1:11434"),
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":56789", "http://127.0.0.1:56789"),
    ("1.2.3.4:56789", "http://1.2.3.4:56789"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
    ("example.com", "http://example.com:11434"),
    ("example.com:56789", "http://example.com:56789"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("https://example.com:56789", "https://example.com:56789"),
    ("example.com/", "http://example.com:11434"),
    ("example.com:56789/", "http://example.com:56789"),
    ("example.com/path", "http://example.com:11434/path"),
    ("example.com:56789/path", "http://example.com:56789/path"),
    ("https://example.com:56789/path", "https://example.com:56789/path"),
    ("example.com:56789/path/", "http://example.com:56789/path"),
    ("[0001:002:003:0004::1]", "http://[0001:002:003:0004::1]:11434"),
    ("[0001:002:003:0004::1]:56789", "http://[0001:002:003:0004::1]:56789"),
    ("http://[0001:002:003:0004::1]", "http://[0001:002:003:0004::1]:80"),
    ("https://[0001:002:003:0004::1]", "https://[0001:002:003:0004::1]:443"),
    ("https://[0001:002:003:0004::1]:56789", "https://[0001:002:003:0004::1]:56789"),
    ("[0001:002:003:0004::1]/", "http://[0001:002:003:0004::1]:11434"),
    ("[0001:002:003:0004::1]:56789/", "http://[0001:002:003:0004::1]:56789"),
    ("[0001:002:003:0004::1]/path", "http://[0001:002:003:0004::1]:11434/path"),
    ("[0001:002:003:0004::1]:56789/path", "http://[0001:002:003:0004::1]:56789/path"),
    ("https://[0001:002:003:0004::1]:56789/path", "https://[0001:002:003:0004::1]:56789/path"),
    ("[0001:002:003:0004::1]:56789/path/", "http://[0001:002:003:0004::1]:56789/path"),
]

# This project's rule: listen-on-all addresses mean "connect to loopback".
UNSPECIFIED = [
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:8080", "http://127.0.0.1:8080"),
    ("https://0.0.0.0", "https://127.0.0.1:443"),
    ("[::]", "http://[::1]:11434"),
    ("[::]:11434", "http://[::1]:11434"),
    # A bare IPv6 address (OLLAMA_HOST=:: makes the server listen on every address;
    # Ollama's Go client reads it with net.ParseIP). The official Python client fails.
    ("::", "http://[::1]:11434"),
    ("::1", "http://[::1]:11434"),
    ("https://::", "https://[::1]:443"),
]

BARE_IPV6 = [
    ("fe80::1", "http://[fe80::1]:11434"),
    ("0001:002:003:0004::1/path", "http://[1:2:3:4::1]:11434/path"),
]


@pytest.mark.parametrize(("host", "expected"), BARE_IPV6, ids=[repr(h) for h, _ in BARE_IPV6])
def test_bare_ipv6_address(host: str, expected: str) -> None:
    assert parse_ollama_host(host) == expected


@pytest.mark.parametrize(("host", "expected"), OFFICIAL, ids=[repr(h) for h, _ in OFFICIAL])
def test_official_client_table(host: str | None, expected: str) -> None:
    assert parse_ollama_host(host) == expected


@pytest.mark.parametrize(("host", "expected"), UNSPECIFIED, ids=[repr(h) for h, _ in UNSPECIFIED])
def test_unspecified_address_maps_to_loopback(host: str, expected: str) -> None:
    assert parse_ollama_host(host) == expected


def test_default_is_the_documented_default() -> None:
    assert parse_ollama_host(None) == DEFAULT_OLLAMA_HOST == "http://127.0.0.1:11434"


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_ollama_host("  example.com:56789\n") == "http://example.com:56789"


@pytest.mark.parametrize("host", ["host:notaport", "1.2.3.4:99999", "http://example.com:-1"])
def test_bad_port_is_config_error(host: str) -> None:
    with pytest.raises(ConfigError, match="port"):
        parse_ollama_host(host)
