"""One error hierarchy, rooted in :class:`RubberDuckError`.

Every error says what happened and what to do next, names the backend it came
from (``provider``) and says whether another backend could serve the same request
(``fallback``). No exception from a library below (requests, urllib3, msgspec,
llama.cpp) reaches a caller raw: providers map them onto these types.
"""

from __future__ import annotations

__all__ = [
    "AllProvidersFailed",
    "AuthError",
    "Cancelled",
    "ConfigError",
    "InternalError",
    "InvalidRequest",
    "ModelNotFound",
    "ProtocolError",
    "ProviderUnavailable",
    "RequestTimeout",
    "RubberDuckError",
    "ServerBusy",
    "StreamInterrupted",
]


class RubberDuckError(Exception):
    """Base of every error RubberDuck raises.

    Attributes:
        provider: Configured name of the backend the error came from, or ``""``.
        kind: Short machine-readable kind (``"unavailable"``, ``"timeout"``, ...),
            used in health outcomes and logs.
        fallback: ``True`` if another backend may serve the same request.
    """

    kind = "error"
    fallback = False

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


class ConfigError(RubberDuckError):
    """The configuration is invalid; the message names the key and the fix."""

    kind = "config"


class AuthError(RubberDuckError):
    """The backend rejected this provider's credentials: HTTP 401 or 403, or an
    account whose quota or billing is used up.

    Another backend may serve the request (``fallback`` is ``True``), but this one
    is not retried: the same key would be rejected again. The message names the
    environment variable that holds the key. It is not a :class:`ConfigError`:
    the configuration was read and is well formed; a server said no at run time
    (a key missing from the environment is a :class:`ConfigError` when the
    provider is built).
    """

    kind = "auth"
    fallback = True


class InvalidRequest(RubberDuckError):
    """The request is malformed (HTTP 400 or rejected locally); no backend will
    accept it, so it is not retried elsewhere.

    Args:
        fallback: ``True`` when only this backend cannot serve it (a feature it
            lacks: embeddings, an endpoint switched off), so another may.
    """

    kind = "invalid"

    def __init__(self, message: str, *, provider: str = "", fallback: bool = False) -> None:
        super().__init__(message, provider=provider)
        self.fallback = fallback


class InternalError(RubberDuckError):
    """RubberDuck itself failed on this request (a bug: please report it with the
    message). The request was not retried; the actor that failed on it was not
    restarted and goes on serving the others (the failure is logged with its
    traceback on ``rubberduck.router`` or ``rubberduck.provider``)."""

    kind = "internal"


class ProviderUnavailable(RubberDuckError):
    """The backend refused the connection, is not installed, or answered 5xx.

    Attributes:
        refused: Nothing listens at the backend's address (connection refused);
            its circuit opens at once.
    """

    kind = "unavailable"
    fallback = True

    def __init__(self, message: str, *, provider: str = "", refused: bool = False) -> None:
        super().__init__(message, provider=provider)
        self.refused = refused


class ModelNotFound(RubberDuckError):
    """The backend does not have the model (Ollama: HTTP 404 ``model 'x' not found``).

    Attributes:
        model: The model that was asked for.
    """

    kind = "model_not_found"
    fallback = True

    def __init__(self, message: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(message, provider=provider)
        self.model = model


class ServerBusy(RubberDuckError):
    """The backend is at capacity (Ollama: HTTP 503 when its queue is full, or this
    runtime's own bounded queue in front of the backend).

    Attributes:
        retry_after_s: The server's ``Retry-After`` in seconds, if it sent one.
    """

    kind = "busy"
    fallback = True

    def __init__(
        self, message: str, *, provider: str = "", retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.retry_after_s = retry_after_s


class RequestTimeout(RubberDuckError):
    """The backend did not answer in time, or the request's deadline passed."""

    kind = "timeout"
    fallback = True


class ProtocolError(RubberDuckError):
    """The backend answered something that does not follow its protocol (a
    malformed NDJSON line, a line over the size limit, a missing field)."""

    kind = "protocol"
    fallback = True


class StreamInterrupted(RubberDuckError):
    """The stream broke after text had already reached the caller.

    Policy (documented in the README): a stream that has delivered its first
    chunk is not silently restarted on another backend; the caller gets this error
    with everything received so far.

    Attributes:
        partial_text: The text delivered before the break.
    """

    kind = "interrupted"

    def __init__(self, message: str, *, provider: str = "", partial_text: str = "") -> None:
        super().__init__(message, provider=provider)
        self.partial_text = partial_text


class Cancelled(RubberDuckError):
    """The caller cancelled the request (closed its stream or called ``cancel()``)."""

    kind = "cancelled"


class AllProvidersFailed(RubberDuckError):
    """No backend could serve the request.

    Attributes:
        causes: Backend name → the error that backend gave (or why it was skipped),
            in the order they were tried.
    """

    kind = "all_failed"

    def __init__(self, causes: dict[str, RubberDuckError], *, model: str | None = None) -> None:
        what = f"model {model!r}" if model else "the request"
        if causes:
            lines = "; ".join(f"{name}: {err.message}" for name, err in causes.items())
            message = f"no backend could serve {what} — {lines}"
        else:
            message = f"no backend is configured for {what} — add a [provider.NAME] table"
        super().__init__(message)
        self.causes = causes
