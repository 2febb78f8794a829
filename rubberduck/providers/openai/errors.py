"""The OpenAI-compatible provider's API key and error mapping, apart from its HTTP.

- :class:`ApiKey`: the key, read once from the environment, never shown in a
  repr or a message (servers echo a rejected key in their errors, whole or cut).
- :func:`http_error`: an HTTP error answer (OpenAI's ``{"error": {"message",
  "type", "code"}}``; vLLM's top-level ``{"message", ...}``; LM Studio's
  ``{"error": "..."}``; plain text) onto :mod:`rubberduck.errors`, each with what
  to do next.
- :func:`check_base_url`: the ``base_url`` checks done at construction.

Units: ``retry_after_s`` is seconds (from ``retry-after-ms``, OpenAI's, or
``Retry-After`` in seconds or as an HTTP date, RFC 9110 section 10.2.3).
"""

from __future__ import annotations

import os
import urllib.parse

import msgspec
import requests

from rubberduck.errors import (
    AuthError,
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.providers._http.body import error_detail, read_error_body
from rubberduck.providers._http.checks import check_no_credentials
from rubberduck.providers._http.secret import Secret
from rubberduck.providers._http.status import error_for_status
from rubberduck.providers.openai.wire import ERROR_DECODER, ErrorInfo, error_text

__all__ = ["ApiKey", "check_base_url", "http_error"]


class ApiKey:
    """The API key named by ``api_key_env``, read once; its repr never shows it.

    Args:
        env: Name of the environment variable holding the key, or ``None`` for a
            server that needs none. The value is stripped of surrounding blanks.
    """

    __slots__ = ("_value", "env", "secret")

    def __init__(self, env: str | None) -> None:
        self.env = env or None
        self._value = os.environ.get(self.env or "", "").strip()
        self.secret = Secret(self._value)

    def __repr__(self) -> str:
        return f"ApiKey(env={self.env!r})"

    @property
    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}`` for a usable key, else ``{}``."""
        return {"Authorization": f"Bearer {self._value}"} if self._usable() else {}

    def _usable(self) -> bool:
        # Printable ASCII only: requests would quote another value in its error.
        return bool(self._value) and all(" " < ch < "\x7f" for ch in self._value)

    def check(self, provider: str) -> None:
        """Raise before anything is sent if a key is wanted and cannot be sent.

        Raises:
            ConfigError: ``env`` is unset or empty, or its value holds whitespace,
                control or non-ASCII characters (the message names the variable,
                never the value).
        """
        if self.env and not self._value:
            raise ConfigError(
                f"[provider.{provider}] ${self.env} is not set — export it with the API "
                "key, or remove `api_key_env` for a server that needs none",
                provider=provider,
            )
        if self._value and not self._usable():
            raise ConfigError(
                f"[provider.{provider}] the API key in ${self.env} contains whitespace or "
                "control characters — set it again without them",
                provider=provider,
            )

    @property
    def remedy(self) -> str:
        """What to do when the server rejects the key: says where it comes from."""
        if self.env:
            return f"check the API key in ${self.env}"
        return "set `api_key_env` for this provider to the variable holding the key"


def http_error(
    resp: requests.Response, *, model: str | None, key: ApiKey, provider: str, base_url: str
) -> RubberDuckError:
    """The typed error for an answer that is not 200; reads at most 64 KiB of its body.

    Args:
        resp: The answer, body unread (``stream=True``).
        model: The model asked for, or ``None`` (``GET /models``).
        key: For the remedy of an :class:`AuthError` and to redact the message.
        provider: The backend's configured name.
        base_url: For the messages.

    Returns:
        ``AuthError`` for 401/402/403, ``invalid_api_key`` or ``insufficient_quota``;
        ``InvalidRequest`` with ``fallback`` True for 501 or llama.cpp's
        ``not_supported_error``; ``RequestTimeout`` for 408; ``ModelNotFound`` for
        a 404 about the model; ``ServerBusy`` for 429/503; ``ProviderUnavailable``
        for another 404 (a wrong ``base_url``) or 5xx; else ``InvalidRequest``.
    """
    status = resp.status_code
    raw = read_error_body(resp)
    error: ErrorInfo | str | None = None
    try:
        body = ERROR_DECODER.decode(raw)
        error = body.error if body.error is not None else body.message
    except msgspec.DecodeError:
        pass
    if error is None:
        text = error_detail(raw, resp, key.secret, 300)
    else:
        text = key.secret.excerpt(error_text(error), 300)
    text = text or resp.reason or f"HTTP {status}"
    code = kind = ""
    if isinstance(error, ErrorInfo):
        code = "" if error.code is None else str(error.code)
        kind = error.type or ""
    what = f"HTTP {status}: {text}"
    if status == 404 and model and (code == "model_not_found" or "model" in text.lower()):
        return ModelNotFound(
            f"model {model!r} not found at {base_url} ({text}) — pick one that `GET /models` lists",
            provider=provider,
            model=model,
        )
    if status == 501 or kind == "not_supported_error":  # llama.cpp: a feature not enabled
        return InvalidRequest(
            f"{what} — this server does not offer it; another backend may",
            provider=provider,
            fallback=True,
        )
    # The error code says more than the status some servers send with it.
    mapped = {"invalid_api_key": 401, "insufficient_quota": 402}.get(code, status)
    too_long = kind == "exceed_context_size_error" or code == "context_length_exceeded"
    return error_for_status(
        resp,
        what,
        provider=provider,
        base_url=base_url,
        status=mapped,
        remedies={
            AuthError: key.remedy,
            402: f"the account has no credit or quota left — {key.remedy}",
            408: "the server gave up waiting",
            404: f"check `base_url` (it usually ends in /v1; asked {resp.url})",
            ServerBusy: "the server is at capacity; retry later or add a backend",
            InvalidRequest: "shorten the prompt or raise the server's context size"
            if too_long
            else "",
        },
    )


def check_base_url(base_url: str | None, name: str) -> str:
    """``base_url`` stripped of blanks and a trailing ``/``.

    Raises:
        ConfigError: it is missing, not http(s)://host, has a port that is not
            0-65535, a query or a fragment (request paths are appended to it), or
            carries credentials (they belong in ``api_key_env``).
    """
    if not base_url:
        raise ConfigError(
            f"[provider.{name}] needs base_url, e.g. http://127.0.0.1:8080/v1 (llama.cpp) "
            "or https://api.openai.com/v1",
            provider=name,
        )
    check_no_credentials(base_url, name)  # first: the messages below quote the URL
    split = urllib.parse.urlsplit(base_url.strip())
    if split.scheme not in ("http", "https") or not split.hostname or not _has_valid_port(split):
        raise ConfigError(
            f"[provider.{name}] base_url {base_url!r} must be http(s)://host[:port]/v1",
            provider=name,
        )
    if split.query or split.fragment:
        raise ConfigError(
            f"[provider.{name}] base_url {base_url!r} must not have a query or fragment: "
            "request paths (/chat/completions, ...) are appended to it",
            provider=name,
        )
    return base_url.strip().rstrip("/")


def _has_valid_port(split: urllib.parse.SplitResult) -> bool:
    """No port, or a number in 0-65535 (``SplitResult.port`` raises otherwise)."""
    try:
        split.port  # noqa: B018 - the property validates
    except ValueError:
        return False
    return True
