"""Wire types: requests, stream events, responses and actor messages.

Every type here is a frozen :mod:`msgspec` Struct. Request structs encode to the
exact JSON body of Ollama's native API, field for field what the official ``ollama``
Python client (0.6.x) sends for the same arguments (``omit_defaults`` drops unset
fields; ``stream`` is always sent, as that client sends it), so a provider can send
them without copying. Durations are seconds (Ollama sends nanoseconds; providers
convert), token counts are tokens, sizes are bytes, costs are USD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from rubberduck.images import check_base64, encode_image, encode_images

if TYPE_CHECKING:  # actor messages carry these by reference; never encoded
    from rubberduck.errors import RubberDuckError
    from rubberduck.request_state import RequestState

__all__ = [
    "BackendHealth",
    "ChatRequest",
    "ChatResponse",
    "Delta",
    "Done",
    "Durations",
    "EmbedRequest",
    "EmbedResponse",
    "Event",
    "GenerateRequest",
    "GenerateResponse",
    "Message",
    "Request",
    "Restart",
    "ToolCall",
    "Usage",
    "encode_image",
]


class ToolCall(msgspec.Struct, frozen=True, omit_defaults=True, tag="tool_call", tag_field="type"):
    """A function call requested by the model (Ollama ``message.tool_calls[]``).

    Attributes:
        name: Function name.
        arguments: Arguments as a JSON object (Ollama sends an object; OpenAI-style
            servers send a string, which providers decode).
        id: Call id where the backend gives one, else ``None``.
    """

    name: str
    arguments: dict[str, Any] = {}
    id: str | None = None


#: ``msgspec.structs.force_setattr`` (msgspec >= 0.18.5) sets a field of a frozen
#: struct in ``__post_init__``.
_force_setattr = getattr(msgspec.structs, "force_setattr", None)


def _set(struct: msgspec.Struct, field: str, value: Any) -> None:
    if _force_setattr is None:
        raise TypeError(f"converting {field} needs msgspec >= 0.18.5")
    _force_setattr(struct, field, value)


def _normalize_images(struct: Message | GenerateRequest) -> None:
    images = struct.images
    if images is not None and not (
        isinstance(images, list) and images and all(type(i) is str for i in images)
    ):
        _set(struct, "images", encode_images(images))
    elif images:
        for image in images:
            check_base64(image)


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One chat message (Ollama /api/chat ``messages[]``).

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
        content: Text content.
        images: Images for vision models. Each may be given as raw bytes, a
            :class:`pathlib.Path` to a file, or a base64 string (see
            :func:`encode_image`); the message holds base64 strings.
        tool_calls: Tool calls made by an assistant message, in Ollama's shape
            ``{"function": {"name": ..., "arguments": {...}}}`` (arguments are a
            JSON object); an ``id`` given with a call is sent on.
        tool_name: For ``role="tool"``, the tool whose result this is.
        thinking: A thinking model's reasoning, where the backend separates it.

    Empty values (``[]``, ``""``) of the optional fields count as unset and are
    not sent, as the official client drops them.

    Raises:
        ValueError: an image is not bytes, a readable path or base64.
    """

    role: str
    content: str = ""
    # list[Any]: bytes and paths are accepted and become base64 strings here.
    images: list[Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    thinking: str | None = None

    def __post_init__(self) -> None:
        if self.images is not None:
            _normalize_images(self)
        if self.tool_calls is not None and not self.tool_calls:
            _set(self, "tool_calls", None)
        if self.tool_name == "":
            _set(self, "tool_name", None)
        if self.thinking == "":
            _set(self, "thinking", None)


def _true() -> bool:
    # A default_factory other than an empty collection is never omitted by
    # omit_defaults, so ``stream`` is always in the body, as the official client
    # sends it.
    return True


class ChatRequest(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A chat request; encodes to the body of Ollama ``POST /api/chat``.

    Attributes:
        model: Model name (``"llama3.2"``). ``None`` lets each backend use its
            configured default model.
        messages: The conversation so far.
        stream: Stream the answer as events (Ollama's default is ``True``).
        options: Ollama runtime options (``temperature``, ``num_predict`` in
            tokens, ``num_ctx`` in tokens, ``seed``, ``stop``, ...).
        format: ``"json"`` or a JSON schema to constrain the output.
        keep_alive: How long the backend keeps the model loaded: seconds, or a
            duration string such as ``"5m"``; negative keeps it forever, ``0``
            unloads it at once.
        tools: Tool definitions as dicts in Ollama's (OpenAI-style) function
            schema ``{"type": "function", "function": {"name", "description",
            "parameters": {JSON schema}}}``, sent as given (``None``: no tools;
            the Ollama provider then sends ``[]``, as the official client does).
            Python callables are not turned into schemas (the official client
            does that from docstrings): pass the dict.
        think: For thinking models: ``True``/``False`` or ``"low"``/``"medium"``/
            ``"high"``.
        logprobs: Ask for the log probability of each generated token.
        top_logprobs: Alternatives per token with their log probabilities (0–20).
            The events do not carry log probabilities yet.
    """

    model: str | None = None
    messages: list[Message]
    stream: bool = msgspec.field(default_factory=_true)
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None
    tools: list[dict[str, Any]] | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class GenerateRequest(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A completion request; encodes to the body of Ollama ``POST /api/generate``.

    Attributes:
        model: Model name, or ``None`` for each backend's default model.
        prompt: The prompt text.
        system: System prompt that overrides the model's.
        suffix: Text after the insertion point, for fill-in-the-middle models.
        template: Prompt template that overrides the model's.
        raw: Send ``prompt`` as-is, without the model's template.
        context: Token ids from a previous answer's ``context`` (deprecated by
            Ollama in favour of chat).
        images: Images, as in :class:`Message` (bytes, a path or base64).
        stream, options, format, keep_alive, think, logprobs, top_logprobs: As in
            :class:`ChatRequest`.

    An empty ``prompt`` is not sent; with no prompt Ollama only loads the model
    (``done_reason: "load"``).

    Raises:
        ValueError: an image is not bytes, a readable path or base64.
    """

    model: str | None = None
    prompt: str = ""
    system: str | None = None
    suffix: str | None = None
    template: str | None = None
    raw: bool | None = None
    context: list[int] | None = None
    images: list[Any] | None = None
    stream: bool = msgspec.field(default_factory=_true)
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.images is not None:
            _normalize_images(self)


class EmbedRequest(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """An embedding request; encodes to the body of Ollama ``POST /api/embed``.

    Attributes:
        model: Model name.
        input: One text or a list of texts.
        truncate: Truncate inputs longer than the context (Ollama default ``True``).
        dimensions: Output dimensions, for models that support it.
        options, keep_alive: As in :class:`ChatRequest`.
    """

    model: str | None = None
    input: str | list[str]
    truncate: bool | None = None
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None


Request = ChatRequest | GenerateRequest
#: Anything ``Runtime.submit`` takes.
AnyRequest = ChatRequest | GenerateRequest | EmbedRequest


class Usage(msgspec.Struct, frozen=True):
    """Token counts as the backend reported them.

    Attributes:
        prompt_tokens: Tokens in the prompt (Ollama ``prompt_eval_count``).
        completion_tokens: Tokens generated (Ollama ``eval_count``).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class Durations(msgspec.Struct, frozen=True):
    """Server-side timings in seconds (Ollama reports nanoseconds).

    Attributes:
        total_s: Whole request on the server (Ollama ``total_duration``).
        load_s: Loading the model (``load_duration``).
        prompt_eval_s: Evaluating the prompt (``prompt_eval_duration``).
        eval_s: Generating the completion (``eval_duration``).
    """

    total_s: float | None = None
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None


class EmbedResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an :class:`EmbedRequest` (Ollama ``POST /api/embed``).

    Attributes:
        embeddings: One vector per input, in input order. Ollama normalizes them
            to unit length.
        model: The model that answered.
        provider: The configured name of the backend that answered.
        usage: ``prompt_tokens`` is the tokens read across all inputs (Ollama
            ``prompt_eval_count``).
        durations: ``total_s`` and ``load_s`` in seconds (Ollama
            ``total_duration`` / ``load_duration``, nanoseconds on the wire).
        substituted_for: The model asked for, when another model answered
            (see :attr:`Done.substituted_for`).
    """

    embeddings: list[list[float]]
    model: str = ""
    provider: str = ""
    usage: Usage = Usage()
    durations: Durations = Durations()
    substituted_for: str | None = None


class Delta(msgspec.Struct, frozen=True, tag="delta", tag_field="type"):
    """A piece of streamed text.

    Attributes:
        text: The new text (may be empty for a thinking-only chunk).
        thinking: New reasoning text from a thinking model, else ``""``.
    """

    text: str
    thinking: str = ""


class Done(msgspec.Struct, frozen=True, tag="done", tag_field="type", kw_only=True):
    """The terminal event of a successful request.

    Attributes:
        done_reason: Why generation stopped: ``"stop"``, ``"length"``, ``"load"``,
            ``"unload"`` (Ollama's values; OpenAI ``finish_reason`` maps onto them).
        usage: Token counts, zeros where the backend reported none.
        model: The model that answered, as the backend named it.
        provider: The configured name of the backend that answered.
        cost_usd: Cost of the request in USD; exactly 0.0 for local backends.
        shadow_cost_usd: For a local answer, what the same tokens would have
            cost on the configured shadow cloud model (``[cost] shadow_model``),
            USD; ``None`` otherwise.
        durations: Server-side timings in seconds.
        fallbacks: ``"backend: reason"`` for each backend tried before this one.
        substituted_for: The model the request asked for, when another model
            answered it (a backend with ``serve_any_model`` that lacks that
            model; see ``allow_substitute``); ``None`` when the model asked for
            (or the backend's default, for a request naming none) answered.
    """

    done_reason: str | None = None
    usage: Usage = Usage()
    model: str = ""
    provider: str = ""
    cost_usd: float = 0.0
    shadow_cost_usd: float | None = None
    durations: Durations = Durations()
    fallbacks: tuple[str, ...] = ()
    substituted_for: str | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per second of generation, where both are known."""
        if self.durations.eval_s and self.usage.completion_tokens:
            return self.usage.completion_tokens / self.durations.eval_s
        return None


class Restart(msgspec.Struct, frozen=True, tag="restart", tag_field="type", kw_only=True):
    """The stream broke after it started and the request runs again on another
    backend (per-request policy ``mid_stream="restart"``): discard the events
    received so far; the full answer follows.

    Attributes:
        provider: The backend whose stream broke.
        reason: What broke.
        discarded_text: The text received before the break.
    """

    provider: str
    reason: str
    discarded_text: str = ""


Event = Delta | ToolCall | Restart | Done


class ChatResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a non-streamed chat (``Runtime.chat(stream=False)``).

    Attributes:
        message: The assistant's message; ``message.content`` is the text.
        tool_calls: Tool calls the model asked for, as :class:`ToolCall`.
        done: The terminal event, with usage, durations, provider and cost.
    """

    message: Message
    tool_calls: tuple[ToolCall, ...] = ()
    done: Done

    @property
    def done_reason(self) -> str | None:
        """Why generation stopped (``"stop"``, ``"length"``, ...)."""
        return self.done.done_reason

    @property
    def usage(self) -> Usage:
        """Prompt and completion token counts."""
        return self.done.usage

    @property
    def provider(self) -> str:
        """The configured name of the backend that answered."""
        return self.done.provider

    @property
    def model(self) -> str:
        """The model that answered."""
        return self.done.model

    @property
    def cost_usd(self) -> float:
        """Cost in USD; 0.0 for local backends."""
        return self.done.cost_usd

    @property
    def fallbacks(self) -> tuple[str, ...]:
        """``"backend: reason"`` for each backend tried before the one that answered."""
        return self.done.fallbacks

    @property
    def substituted_for(self) -> str | None:
        """The model asked for, when another model answered (else ``None``)."""
        return self.done.substituted_for


class GenerateResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a non-streamed generate (``Runtime.generate(stream=False)``).

    Attributes:
        response: The generated text.
        done: The terminal event, with usage, durations, provider and cost.
    """

    response: str
    done: Done

    @property
    def done_reason(self) -> str | None:
        """Why generation stopped."""
        return self.done.done_reason

    @property
    def usage(self) -> Usage:
        """Prompt and completion token counts."""
        return self.done.usage

    @property
    def provider(self) -> str:
        """The configured name of the backend that answered."""
        return self.done.provider

    @property
    def cost_usd(self) -> float:
        """Cost in USD; 0.0 for local backends."""
        return self.done.cost_usd

    @property
    def substituted_for(self) -> str | None:
        """The model asked for, when another model answered (else ``None``)."""
        return self.done.substituted_for


def _after_last_restart(events: list[Event]) -> list[Event]:
    for i in range(len(events) - 1, -1, -1):
        if type(events[i]) is Restart:
            return events[i + 1 :]
    return events


def assemble_chat(events: list[Event]) -> ChatResponse:
    """Fold a request's events, ending in :class:`Done`, into a :class:`ChatResponse`
    (events before a :class:`Restart` are dropped)."""
    events = _after_last_restart(events)
    done = events[-1]
    assert isinstance(done, Done)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    thinking = "".join(e.thinking for e in events if isinstance(e, Delta))
    calls = tuple(e for e in events if isinstance(e, ToolCall))
    message = Message(
        role="assistant",
        content=text,
        thinking=thinking or None,
        tool_calls=[{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        or None,
    )
    return ChatResponse(message=message, tool_calls=calls, done=done)


def assemble_generate(events: list[Event]) -> GenerateResponse:
    """Fold a request's events, ending in :class:`Done`, into a :class:`GenerateResponse`
    (events before a :class:`Restart` are dropped)."""
    events = _after_last_restart(events)
    done = events[-1]
    assert isinstance(done, Done)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    return GenerateResponse(response=text, done=done)


# --- actor messages (control path) -------------------------------------------------
# The request's state travels by reference: it owns the reply channel that events go
# to, so chunks never pass through an actor.


class Submit(msgspec.Struct, frozen=True):
    """Caller → Router: route this request (its internal state, by reference)."""

    handle: RequestState


class AttemptFailed(msgspec.Struct, frozen=True):
    """ProviderActor → Router: the backend failed before the first chunk."""

    handle: RequestState
    provider: str
    error: RubberDuckError


class Outcome(msgspec.Struct, frozen=True):
    """ProviderActor → HealthMonitor: how one attempt ended (the Router hears of
    failures through :class:`AttemptFailed`).

    Attributes:
        provider: Backend name.
        kind: ``"ok"`` or an error kind (``"unavailable"``, ``"timeout"``,
            ``"busy"``, ``"protocol"``, ``"model_not_found"``, ``"invalid"``,
            ``"interrupted"``, ``"cancelled"``).
        latency_s: Time from dispatch to the terminal event, seconds.
        error: Human-readable cause, ``""`` for ``"ok"``.
    """

    provider: str
    kind: str
    latency_s: float
    error: str = ""


class CatalogueRead(msgspec.Struct, frozen=True):
    """HealthMonitor → Router: the backend's catalogue (``models``), as a probe
    read it. (Circuit states do not travel by message: see
    :class:`~rubberduck.actors.channels.Circuits`.)"""

    provider: str
    models: tuple[str, ...]


class ChildExited(msgspec.Struct, frozen=True):
    """Child → Supervisor: an actor stopped (``abnormal`` when it crashed)."""

    name: str
    urn: str
    abnormal: bool
    reason: str = ""


class Crash(msgspec.Struct, frozen=True):
    """Anyone → any supervised actor: raise now, as a bug would (fault injection,
    like Erlang's ``exit(Pid, kill)``; used by tests and benchmarks)."""

    reason: str = "crash requested"


class ProbeResult(msgspec.Struct, frozen=True):
    """Probe worker → HealthMonitor: how one active probe ended.

    Attributes:
        provider: Backend name.
        ok: The probe succeeded.
        detail: What the probe learned (``"ollama 0.12.6"``), or the error.
        models: The catalogue, when it was read this time.
        latency_s: Probe duration, seconds.
        refused: The connection was refused (nothing listens there).
        loaded: The models in memory (Ollama ``GET /api/ps``), when read this time.
    """

    provider: str
    ok: bool
    detail: str
    models: tuple[str, ...] | None = None
    latency_s: float = 0.0
    refused: bool = False
    loaded: tuple[str, ...] | None = None


class Tick(msgspec.Struct, frozen=True):
    """Timer → HealthMonitor: time to see which backends are due a probe."""


class Resync(msgspec.Struct, frozen=True):
    """Router → HealthMonitor: publish every backend's state again (after a restart)."""


class Snapshot(msgspec.Struct, frozen=True):
    """Runtime → HealthMonitor (ask): return ``dict[str, BackendHealth]``."""


class BackendHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One backend's health, as ``Runtime.health()`` returns it.

    Attributes:
        name: Configured backend name.
        kind: ``"ollama"`` or ``"local"``.
        state: Circuit state: ``"closed"`` (in use), ``"open"`` (skipped),
            ``"half_open"`` (a probe is deciding).
        since: Unix time (seconds) of the last state change.
        detail: What the last successful probe said (``"ollama 0.12.6"``).
        last_error: The last failure, ``""`` if none yet.
        models: The backend's catalogue, ``None`` if not read yet.
        requests: Requests that ended on this backend.
        failures: Requests and probes that failed.
        failure_ratio: Failed share (0–1) of the outcomes in the breaker's
            window (``[health] window``), ``None`` when there were none.
        in_flight: Requests dispatched to the backend and not finished.
        latency_p50_s: Median latency of successful requests, seconds.
        latency_p95_s: 95th-percentile latency of successful requests, seconds.
        checked: At least one probe has finished since the runtime started.
        loaded_models: Models in memory there as routing knows them (Ollama
            ``/api/ps`` read on the health interval under ``[router] balance =
            "warm"``, and answers since), names without ``:latest``; ``None``
            when not known.
        cold_loads: Answers whose ``load_duration`` was above ``[router]
            cold_load_threshold`` (the host loaded the model for them).
    """

    name: str
    kind: str
    state: Literal["closed", "open", "half_open"]
    since: float
    detail: str = ""
    last_error: str = ""
    models: tuple[str, ...] | None = None
    requests: int = 0
    failures: int = 0
    failure_ratio: float | None = None
    in_flight: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    checked: bool = False
    loaded_models: tuple[str, ...] | None = None
    cold_loads: int = 0

    @property
    def up(self) -> bool:
        """``True`` when requests are routed to the backend (circuit closed)."""
        return self.state == "closed"
