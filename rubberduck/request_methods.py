"""``chat``, ``generate`` and ``embed``: the parameters of ``ollama.Client``'s
methods of the same names, plus ours (``timeout``, ``mid_stream``, and the
routing policy ``backends``, ``fallback``, ``allow_substitute``), over
:meth:`Runtime.submit <rubberduck.runtime.Runtime.submit>`.

Each builds its request on the caller's thread; ``submit`` checks it (see
:mod:`rubberduck.validation`), so a bad argument is an
:class:`~rubberduck.errors.InvalidRequest` before any actor or HTTP call.
Options may also be given as keywords (``temperature=0``): only Ollama's own
option names (:mod:`rubberduck.ollama_options`) are accepted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, cast, overload

from rubberduck.errors import InvalidRequest
from rubberduck.handle import RequestHandle
from rubberduck.messages import (
    AnyRequest,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    GenerateRequest,
    GenerateResponse,
    Message,
)
from rubberduck.ollama_options import OptionValue, check_options
from rubberduck.validation import parse_messages

__all__ = ["Call", "RequestMethods", "prepare"]

_R = TypeVar("_R", ChatRequest, GenerateRequest, EmbedRequest)


class RequestMethods:
    """The request methods :class:`~rubberduck.runtime.Runtime` inherits; they
    need only its ``submit``."""

    def submit(
        self,
        request: AnyRequest,
        *,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
    ) -> RequestHandle:
        """Start a request; see :meth:`rubberduck.runtime.Runtime.submit`."""
        raise NotImplementedError

    def _answer(self, call: Call) -> ChatResponse | GenerateResponse | EmbedResponse:
        """The whole answer of a non-streamed ``call`` (the caller waits for it)."""
        return self.submit(call.request, **call.routing).result()

    @overload
    def chat(
        self,
        model: str | None = ...,
        messages: Iterable[Message | Mapping[str, Any]] | None = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        stream: Literal[False] = ...,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> ChatResponse: ...

    @overload
    def chat(
        self,
        model: str | None = ...,
        messages: Iterable[Message | Mapping[str, Any]] | None = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        stream: Literal[True],
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> RequestHandle: ...

    @overload
    def chat(
        self,
        model: str | None = ...,
        messages: Iterable[Message | Mapping[str, Any]] | None = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        stream: bool,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> ChatResponse | RequestHandle: ...

    def chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        *,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Literal["", "json"] | dict[str, Any] | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> ChatResponse | RequestHandle:
        """Chat with a model (Ollama ``/api/chat``; the parameters of
        ``ollama.Client.chat``, plus ``timeout`` and ``mid_stream``).

        Args:
            model: Model name; ``None`` lets each backend use its default model.
            messages: ``{"role": ..., "content": ...}`` mappings or :class:`Message`;
                roles are ``system``, ``user``, ``assistant``, ``tool``; the keys
                are :class:`Message`'s fields.
            tools: Tool definitions (function schema).
            stream: Return a :class:`RequestHandle` to iterate for events
                (``Delta``, ``ToolCall``, then ``Done``) instead of waiting.
            think: Thinking mode, for models that have one: ``True``/``False`` or
                ``"low"``/``"medium"``/``"high"``.
            logprobs: Ask for each token's log probability.
            top_logprobs: Alternatives per token (0–20).
            format: ``"json"`` or a JSON schema.
            options: Ollama options (``temperature``, ``num_predict`` tokens, ...);
                only the names Ollama knows (``rubberduck.ollama_options``).
            keep_alive: Seconds or a duration string (``"5m"``).
            timeout: Deadline of the whole request, seconds.
            mid_stream: ``"error"`` or ``"restart"``: see :meth:`submit`.
            backends, fallback, allow_substitute: Which backends may serve it
                and which model may answer: see :meth:`submit`.
            **option_keywords: Ollama options as keywords (``temperature=0.2``),
                merged over ``options``; the same names only.

        Returns:
            A :class:`ChatResponse` (``.message.content``, ``.done_reason``,
            ``.usage``, ``.provider``, ``.cost_usd``), or a :class:`RequestHandle`
            when ``stream=True``.

        Raises:
            InvalidRequest: a message, option or parameter is invalid (an unknown
                option name, with the closest known one); nothing was sent.
            AllProvidersFailed: no backend could serve it (``.causes`` says why).
            RequestTimeout, StreamInterrupted, ...: see :mod:`rubberduck.errors`.
        """
        call = prepare(ChatRequest, locals())
        if call.stream:
            return self.submit(call.request, **call.routing)
        return cast(ChatResponse, self._answer(call))

    def stream_chat(
        self,
        model: str | None = None,
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> RequestHandle:
        """``chat(..., stream=True)``: an iterable of events that can be closed early.
        Takes :meth:`chat`'s keyword arguments."""
        handle = self.chat(model, messages, stream=True, **kwargs)
        assert isinstance(handle, RequestHandle)
        return handle

    @overload
    def generate(
        self,
        model: str | None = ...,
        prompt: str = ...,
        suffix: str | None = ...,
        *,
        system: str | None = ...,
        template: str | None = ...,
        context: Sequence[int] | None = ...,
        stream: Literal[False] = ...,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        raw: bool | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        images: Sequence[str | bytes | os.PathLike[str]] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> GenerateResponse: ...

    @overload
    def generate(
        self,
        model: str | None = ...,
        prompt: str = ...,
        suffix: str | None = ...,
        *,
        system: str | None = ...,
        template: str | None = ...,
        context: Sequence[int] | None = ...,
        stream: Literal[True],
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        raw: bool | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        images: Sequence[str | bytes | os.PathLike[str]] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> RequestHandle: ...

    @overload
    def generate(
        self,
        model: str | None = ...,
        prompt: str = ...,
        suffix: str | None = ...,
        *,
        system: str | None = ...,
        template: str | None = ...,
        context: Sequence[int] | None = ...,
        stream: bool,
        think: bool | Literal["low", "medium", "high"] | None = ...,
        logprobs: bool | None = ...,
        top_logprobs: int | None = ...,
        raw: bool | None = ...,
        format: Literal["", "json"] | dict[str, Any] | None = ...,
        images: Sequence[str | bytes | os.PathLike[str]] | None = ...,
        options: Mapping[str, OptionValue] | None = ...,
        keep_alive: float | str | None = ...,
        timeout: float | None = ...,
        mid_stream: Literal["error", "restart"] | None = ...,
        backends: Sequence[str] | None = ...,
        fallback: bool = ...,
        allow_substitute: bool | None = ...,
        **option_keywords: OptionValue,
    ) -> GenerateResponse | RequestHandle: ...

    def generate(
        self,
        model: str | None = None,
        prompt: str = "",
        suffix: str | None = None,
        *,
        system: str | None = None,
        template: str | None = None,
        context: Sequence[int] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool | None = None,
        format: Literal["", "json"] | dict[str, Any] | None = None,
        images: Sequence[str | bytes | os.PathLike[str]] | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        timeout: float | None = None,
        mid_stream: Literal["error", "restart"] | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> GenerateResponse | RequestHandle:
        """Complete a prompt (Ollama ``/api/generate``; the parameters of
        ``ollama.Client.generate``, plus ``timeout`` and ``mid_stream``).

        Arguments and errors are as for :meth:`chat`, plus ``suffix`` (text after
        the insertion point, fill-in-the-middle), ``system`` (overrides the
        model's system prompt), ``template`` (overrides its prompt template),
        ``context`` (token ids from an earlier answer), ``raw`` (send the prompt
        without the template) and ``images`` (bytes, a ``pathlib.Path`` or
        base64, for vision models).

        Returns:
            A :class:`GenerateResponse` (``.response``, ``.done_reason``,
            ``.usage``, ``.provider``), or a :class:`RequestHandle` when
            ``stream=True``.
        """
        call = prepare(GenerateRequest, locals())
        if call.stream:
            return self.submit(call.request, **call.routing)
        return cast(GenerateResponse, self._answer(call))

    def embed(
        self,
        model: str | None = None,
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Mapping[str, OptionValue] | None = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        *,
        timeout: float | None = None,
        backends: Sequence[str] | None = None,
        fallback: bool = True,
        allow_substitute: bool | None = None,
        **option_keywords: OptionValue,
    ) -> EmbedResponse:
        """Embed one text or several (Ollama ``/api/embed``; the parameters of
        ``ollama.Client.embed``, plus ``timeout``), routed and falling back like a
        chat, to backends that can embed.

        Args:
            model: Embedding model; ``None`` lets each backend use its default.
            input: A text, or a list of texts.
            truncate: Cut inputs longer than the context (Ollama's default) or
                fail on them (``False``).
            options: Ollama options, as for :meth:`chat`.
            keep_alive: Seconds or a duration string (``"5m"``).
            dimensions: Keep the first N values (models that allow it).
            timeout: Deadline of the whole request, seconds.
            backends, fallback, allow_substitute: Which backends may serve it
                and which model may answer: see :meth:`Runtime.submit
                <rubberduck.runtime.Runtime.submit>`.
            **option_keywords: Ollama options as keywords (``num_ctx=512``).

        Returns:
            An :class:`EmbedResponse`: ``.embeddings`` (one unit-length vector per
            input, in order), ``.model``, ``.provider``, ``.usage``.

        Raises:
            InvalidRequest: an argument is invalid; nothing was sent.
            AllProvidersFailed: no backend could embed (``.causes`` says why).
            RequestTimeout, ...: see :mod:`rubberduck.errors`.
        """
        call = prepare(EmbedRequest, locals())
        return cast(EmbedResponse, self._answer(call))


#: The request methods' parameters that are routing options, not request fields.
ROUTING_OPTIONS = ("timeout", "mid_stream", "backends", "fallback", "allow_substitute")


class Call(NamedTuple):
    """A request method's arguments, sorted: the request, the routing options
    (:meth:`Runtime.submit <rubberduck.runtime.Runtime.submit>`'s keywords), and
    whether the caller wants a stream."""

    request: AnyRequest
    routing: dict[str, Any]
    stream: bool


def prepare(kind: type[_R], args: Mapping[str, Any]) -> Call:
    """Build a ``kind`` request from a request method's arguments (its
    ``locals()``: ``self``, the request's fields, the routing options and
    ``option_keywords``), shared by :class:`RequestMethods` and
    :class:`~rubberduck.async_runtime.AsyncRuntime`.

    Raises:
        InvalidRequest: an argument cannot be part of the request (a message, an
            option name, a list given as a string, an image); the rest is
            checked at submit.
    """
    skip = {"self", "option_keywords", *ROUTING_OPTIONS}
    fields = {name: value for name, value in args.items() if name not in skip}
    fields["options"] = _options(fields.get("options"), args.get("option_keywords") or {})
    if kind is ChatRequest:
        fields["messages"] = parse_messages(fields["messages"])
    for name in ("context", "images"):
        if fields.get(name) is not None:
            fields[name] = _listed(fields[name], name)
    if kind is EmbedRequest and not isinstance(fields["input"], str):
        fields["input"] = _listed(fields["input"], "input")
    routing = {name: args[name] for name in ROUTING_OPTIONS if name in args}
    return Call(_build(kind, **fields), routing, bool(fields.get("stream", False)))


def _build(cls: type[_R], **fields: Any) -> _R:
    """``cls(**fields)``, with a bad image (``ValueError``) as InvalidRequest;
    :meth:`Runtime.submit` checks the rest."""
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"invalid {cls.__name__}: {exc}") from None


def _listed(values: Any, what: str) -> list[Any]:
    """A list of ``values``; a lone string or a non-iterable is an error."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise InvalidRequest(f"{what} must be a list (got {type(values).__name__})")
    return list(values)


def _options(options: Any, keywords: dict[str, Any]) -> dict[str, Any] | None:
    """``options`` and the option keywords, each checked, merged (keywords win)."""
    checked = check_options(options)
    extra = check_options(keywords, "keyword argument")
    if not checked and not extra:
        return None
    return {**(checked or {}), **(extra or {})}
