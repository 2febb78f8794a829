"""The connection to one Ollama server, on the shared HTTP base
(:class:`~rubberduck.providers._http.backend.HTTPBackend`): its settings checked
when built (host, key and headers are read by
:mod:`rubberduck.providers.ollama.settings`), and Ollama's error answers mapped
onto :mod:`rubberduck.errors` through the shared status table.

Errors (ollama/ollama ``server/routes.go``): a failure before any output is an HTTP
status with ``{"error": "..."}`` — 404 for an unknown model, 400 for a bad request,
503 when the queue is full (``OLLAMA_MAX_QUEUE``), 500 for a failed load or pull.
After output has started, it is one more NDJSON line ``{"error": "..."}`` with the
status still 200.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping

import msgspec
import requests

from rubberduck.errors import (
    AuthError,
    ConfigError,
    ModelNotFound,
    RubberDuckError,
)
from rubberduck.providers._http.backend import HTTPBackend
from rubberduck.providers._http.body import (
    DEFAULT_MAX_LINE_BYTES,
    error_detail,
    read_error_body,
)
from rubberduck.providers._http.checks import (
    check_clear_text_key,
    check_no_credentials,
    is_local_host,
)
from rubberduck.providers._http.secret import Secret
from rubberduck.providers._http.status import error_for_status
from rubberduck.providers.ollama.settings import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_OLLAMA_HOST,
    check_credentials,
    extra_headers,
    parse_ollama_host,
)

__all__ = ["FEATURES", "OllamaHTTP"]

#: Features :meth:`OllamaHTTP.supports_feature` reports: the server takes the
#: fields for every model and answers HTTP 400 for a model that lacks one;
#: ``show(model).capabilities`` says what one model has.
FEATURES = frozenset({"streaming", "tools", "vision", "embeddings", "json_mode", "thinking"})

START_HINT = "start it with `ollama serve`, or set OLLAMA_HOST to where it runs"
#: Headers of requests whose answer is read line by line, undecoded.
_STREAM_HEADERS = {"Accept-Encoding": "identity"}

#: A Go duration (``time.ParseDuration``), as Ollama reads a ``keep_alive`` string.
_GO_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")


class _ErrorBody(msgspec.Struct):
    error: str = ""


_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)


class OllamaHTTP(HTTPBackend):
    """The connection to one Ollama server (see :class:`OllamaProvider` for the
    arguments)."""

    kind = "ollama"
    features = FEATURES
    start_hint = START_HINT
    wire_name = "an Ollama JSON answer"

    def __init__(
        self,
        name: str = "ollama",
        *,
        base_url: str | None = None,
        default_model: str | None = None,
        api_key_env: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 3.0,
        keep_alive: float | str | None = None,
        pool_size: int = 8,
        trust_env: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        allow_insecure_key: bool = False,
    ) -> None:
        self.name = name
        host = base_url if base_url is not None else os.environ.get("OLLAMA_HOST", "")
        check_no_credentials(host, name)
        self.base_url = parse_ollama_host(host)
        # From the host: ollama.com's cloud is not free, a local server is.
        self.is_local = is_local_host(urllib.parse.urlsplit(self.base_url).hostname or "")
        self.default_model = default_model
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        self.keep_alive = keep_alive
        self.max_line_bytes = self._max_body = max_line_bytes
        self.pool_size = pool_size
        self._timeout = (connect_timeout, timeout)
        self.validate_config()
        key = os.environ.get(self.api_key_env, "").strip()
        given = extra_headers(headers, "")
        check_credentials(name, self.api_key_env, bool(api_key_env), key, given)
        # Where the Authorization header comes from: "headers" (they win), "key" or "".
        self._auth = "headers" if given.get("authorization") else "key" if key else ""
        check_clear_text_key(
            self.base_url, name, sends_key=bool(self._auth), allow_insecure_key=allow_insecure_key
        )
        self.secret = Secret(key, tuple(given.values()))
        self._connect(pool_size=pool_size, trust_env=trust_env, headers=extra_headers(headers, key))

    def validate_config(self) -> None:
        """Check the settings without a network call; construction runs it, so a
        bad ``[provider]`` table fails at start-up, not on every request.

        Raises:
            ConfigError: the URL is not http(s), a timeout or the pool size is not
                positive, ``max_line_bytes`` is under 1 KiB, or ``keep_alive`` is a
                string Ollama cannot read; the message says what to write instead.
        """
        where = f"[provider.{self.name}]"
        if urllib.parse.urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"{where} base_url {self.base_url!r} is not http(s) — use "
                f"{DEFAULT_OLLAMA_HOST} or set OLLAMA_HOST to host:port",
                provider=self.name,
            )
        if min(self._timeout) <= 0:
            raise ConfigError(
                f"{where} needs timeout and connect_timeout > 0 (seconds)", provider=self.name
            )
        if self.pool_size < 1:
            raise ConfigError(f"{where} needs a pool size of at least 1", provider=self.name)
        if self.max_line_bytes < 1024:
            raise ConfigError(
                f"{where} max_line_bytes {self.max_line_bytes} is too small for Ollama's "
                "lines — use at least 1024 (the default is 8 MiB)",
                provider=self.name,
            )
        keep_alive = self.keep_alive
        if isinstance(keep_alive, str) and not _GO_DURATION.fullmatch(keep_alive):
            raise ConfigError(
                f"{where} keep_alive {keep_alive!r} is not a duration Ollama reads — use "
                'seconds as a number (300), or a string with a unit ("5m", "1h30m"); '
                "negative keeps the model loaded, 0 unloads it at once",
                provider=self.name,
            )

    def _sends_key(self) -> bool:
        """An Authorization header goes with requests (a key, or in ``headers``)."""
        return bool(self._auth)

    # --- sending ----------------------------------------------------------------

    def _exists(self, path: str, timeout: float | None) -> bool:
        """``HEAD path``: ``True`` for 200, ``False`` for 404.

        Raises:
            RubberDuckError: another status, or the connection failed.
        """
        try:
            resp = self._session.head(self.base_url + path, timeout=self._timeouts(timeout))
            with resp:
                if resp.status_code in (200, 404):
                    return resp.status_code == 200
                raise self._http_error(resp, "")
        except RubberDuckError:
            raise
        except Exception as exc:
            raise self._transport_error(exc) from exc

    # --- errors -------------------------------------------------------------------

    def _error_text(self, resp: requests.Response) -> str:
        """The ``error`` of an error body, else its start (not an HTML page), else
        the reason phrase; credentials a server echoes are replaced before the cut."""
        raw = read_error_body(resp)
        try:
            message = self.secret.excerpt(_ERROR_DECODER.decode(raw).error, 300)
        except msgspec.DecodeError:
            message = error_detail(raw, resp, self.secret, 200)
        return message or resp.reason or f"HTTP {resp.status_code}"

    def _http_error(
        self, resp: requests.Response, model: str, missing: str = ""
    ) -> RubberDuckError:
        """Map an HTTP error answer; ``model`` is the model the call was about
        (``""`` for calls about none, where a 404 means a missing endpoint), and
        ``missing`` the remedy when it is not there (default: pull it)."""
        status = resp.status_code
        message = self._error_text(resp)
        if status == 404 and model:
            return ModelNotFound(
                f"model {model!r} not found at {self.base_url} — "
                + (missing or f"run `ollama pull {model}`"),
                provider=self.name,
                model=model,
            )
        path = urllib.parse.urlsplit(resp.url).path if resp.url else "?"
        return error_for_status(
            resp,
            f"HTTP {status}: {message}",
            provider=self.name,
            base_url=self.base_url,
            remedies={
                404: f"{path} not found: is {self.base_url} an Ollama server, and new "
                "enough for this endpoint? (`ollama --version`)",
                503: "Ollama's queue is full: raise OLLAMA_MAX_QUEUE or retry later",
                429: "rate limited; retry later",
                AuthError: self._auth_remedy(),
            },
        )

    def _auth_remedy(self) -> str:
        """What to do about a 401/403: Ollama answers 401 for cloud models until
        `ollama signin`; ollama.com and a proxy in front of a server answer 401/403
        for a missing or wrong key."""
        if self._auth == "key":
            return (
                f"check the API key in ${self.api_key_env} (sent as a Bearer token), "
                "or run `ollama signin` if a local server runs the cloud model"
            )
        if self._auth == "headers":
            return "check the Authorization header in this provider's `headers`"
        return (
            "run `ollama signin` for cloud models, or check the credentials a "
            "proxy in front of Ollama expects"
        )
