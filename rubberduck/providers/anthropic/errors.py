"""What Anthropic's failures mean: HTTP statuses and error bodies
(https://docs.anthropic.com/en/api/errors), ``error`` events mid-stream and features
the Messages API lacks, each as a typed :class:`~rubberduck.errors.RubberDuckError`
whose message never holds the API key.
"""

from __future__ import annotations

import msgspec
import requests

from rubberduck.errors import (
    AuthError,
    InvalidRequest,
    ModelNotFound,
    ProviderUnavailable,
    RubberDuckError,
    ServerBusy,
)
from rubberduck.providers._http.body import error_detail, read_error_body
from rubberduck.providers._http.retry_after import retry_after
from rubberduck.providers._http.secret import Secret
from rubberduck.providers._http.status import error_for_status

__all__ = ["DEFAULT_ANTHROPIC_URL", "AnthropicErrors", "decode_error_body"]

DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
#: Longest excerpt of a server's error text put in an error message, characters.
_MAX_DETAIL_CHARS = 300


class _ErrorInfo(msgspec.Struct):
    type: str = ""
    message: str = ""


class _ErrorBody(msgspec.Struct):
    """``{"type": "error", "error": {"type": ..., "message": ...}}``."""

    error: _ErrorInfo


_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)


def decode_error_body(raw: bytes) -> tuple[str, str] | None:
    """(error type, message) of an error body; ``None`` if it is not Anthropic's
    error JSON. Neither is shortened: callers redact, then cut."""
    try:
        error = _ERROR_DECODER.decode(raw).error
        return error.type, error.message
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class AnthropicErrors:
    """Builds the typed errors of one Anthropic backend.

    Args:
        provider: Configured backend name, put in every error.
        base_url: The API's URL, for hints.
        api_key_env: The variable holding the key, named in :class:`AuthError`
            messages.
        api_key: The key itself, only to redact it from what servers send back;
            it is in no repr.
    """

    __slots__ = ("api_key_env", "base_url", "provider", "secret")

    def __init__(self, provider: str, *, base_url: str, api_key_env: str, api_key: str) -> None:
        self.provider = provider
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.secret = Secret(api_key)

    def __repr__(self) -> str:
        return f"AnthropicErrors(provider={self.provider!r}, api_key_env={self.api_key_env!r})"

    def excerpt(self, text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
        """At most ``limit`` characters of ``text`` for an error message, the API
        key redacted before the cut (see :meth:`Secret.excerpt`)."""
        return self.secret.excerpt(text, limit)

    def not_offered(self, what: str) -> InvalidRequest:
        """An :class:`InvalidRequest` that another backend may still serve
        (``fallback`` True): ``what`` is a feature the Messages API lacks."""
        return InvalidRequest(
            f"{what} — Anthropic's Messages API does not offer it; use a backend that does",
            provider=self.provider,
            fallback=True,
        )

    def stream_error(self, error_type: str, message: str) -> RubberDuckError:
        """The error for an ``error`` event after the 200: ServerBusy for
        ``overloaded_error``, else ProviderUnavailable."""
        detail = self.excerpt(f"{error_type or 'error'}: {message}")
        if error_type == "overloaded_error":
            return ServerBusy(
                f"Anthropic is overloaded ({detail}) mid-stream — retry later",
                provider=self.provider,
            )
        return ProviderUnavailable(
            f"Anthropic sent an error mid-stream: {detail}", provider=self.provider
        )

    def http_error(self, resp: requests.Response, model: str) -> RubberDuckError:
        """The error for a non-200 answer; reads at most 64 KiB of its body.

        Args:
            resp: The response, its body unread.
            model: The model asked for, or ``""`` for calls that name none.

        Returns:
            AuthError (401/402/403), ModelNotFound (a 404 naming ``model``),
            ProviderUnavailable (another 404, 5xx), ServerBusy (429/503/529,
            with ``retry_after_s``), RequestTimeout (408), else InvalidRequest
            (400, 413, other 4xx): see :data:`~rubberduck.providers._http.status.STATUS_ERRORS`.
        """
        status = resp.status_code
        raw = read_error_body(resp)
        error_type, message = decode_error_body(raw) or ("", "")
        if not error_type and not message:
            message = error_detail(raw, resp, self.secret, _MAX_DETAIL_CHARS)
        heading = f"HTTP {status} {error_type or resp.reason or ''}".strip()
        detail = self.excerpt(f"{heading}: {message}" if message else heading)
        if status == 404 and model and (message.startswith("model:") or model in message):
            # The API names the model ("model: claude-x") when it is the model that
            # is missing; any other 404 is a path this base_url does not serve.
            return ModelNotFound(
                f"model {model!r} not found ({detail}) — check the name against "
                "`rubberduck models` (GET /v1/models)",
                provider=self.provider,
                model=model,
            )
        wait_s = retry_after(resp.headers)
        wait = f"after {wait_s:g} s" if wait_s is not None else "later"
        key = f"the account whose key is in ${self.api_key_env}"
        return error_for_status(
            resp,
            detail,
            provider=self.provider,
            base_url=self.base_url,
            remedies={
                AuthError: f"Anthropic refused the API key: check the API key in "
                f"${self.api_key_env}",
                402: f"check billing for {key}",
                404: f"is {self.base_url} the Anthropic API? Set base_url to the host "
                f"alone, without /v1 (e.g. {DEFAULT_ANTHROPIC_URL})",
                429: f"rate limited; retry {wait} or raise the account's rate limit",
                529: "Anthropic is overloaded; retry later",
                413: "the request is too large; send a shorter conversation or smaller images",
                InvalidRequest: "fix the request",
            },
        )
