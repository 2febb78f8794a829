"""What requests cost: a price table, the cost of each answer, and running totals.

Local backends (Ollama, the embedded model, an OpenAI-compatible server on a
private address) cost exactly 0.0 USD. A cloud backend's answer costs its
prompt and completion tokens at the model's price per million tokens, from the
``[cost.prices]`` table over :data:`DEFAULT_PRICES`. An optional *shadow cost*
prices a local answer as if a named cloud model had produced the same tokens:
what running locally saved.

Costing happens once per request, on its ``Done`` event, never per chunk. The
subscribers (``Runtime.subscribe_usage``) are called off the data path, on the
ledger's own thread, so a slow or failing one never delays or breaks a request.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Annotated

import msgspec

from rubberduck.messages import Done

__all__ = [
    "DEFAULT_PRICES",
    "PRICES_AS_OF",
    "Price",
    "UsageLedger",
    "UsageReport",
    "UsageTotals",
]

log = logging.getLogger("rubberduck.cost")


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A model's list price, USD per million tokens.

    Attributes:
        input: Per million prompt (input) tokens, USD.
        output: Per million completion (output) tokens, USD.
    """

    input: Annotated[float, msgspec.Meta(ge=0, le=1e6)]
    output: Annotated[float, msgspec.Meta(ge=0, le=1e6)]

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost in USD of that many tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


#: When :data:`DEFAULT_PRICES` were read off the vendors' pricing pages. Prices
#: change: set your own in ``[cost.prices]``.
PRICES_AS_OF = "2025-10"

#: List prices (standard tier, no caching or batch discounts), USD per million
#: tokens, as published by OpenAI and Anthropic on :data:`PRICES_AS_OF`.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
}


def find_price(prices: Mapping[str, Price], model: str) -> Price | None:
    """The price of ``model``: an exact entry, else the longest entry that the
    name starts with (``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``)."""
    if model in prices:
        return prices[model]
    best = max((name for name in prices if model.startswith(name)), key=len, default=None)
    return prices[best] if best is not None else None


class UsageTotals(msgspec.Struct, kw_only=True):
    """Running totals for one backend or one model.

    Attributes:
        requests: Requests that ended with ``Done``.
        prompt_tokens: Prompt tokens, as the backends reported them.
        completion_tokens: Completion tokens, as the backends reported them.
        cost_usd: Total cost, USD.
        shadow_cost_usd: What the local answers would have cost on the shadow
            model, USD (0.0 without one).
        unpriced: Cloud answers whose model has no price (counted at 0.0).
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    shadow_cost_usd: float = 0.0
    unpriced: int = 0

    def add(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        shadow_cost_usd: float | None,
        *,
        unpriced: bool = False,
    ) -> None:
        """Count one more answer."""
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd
        self.shadow_cost_usd += shadow_cost_usd or 0.0
        self.unpriced += unpriced


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    """``Runtime.usage()``: totals since the runtime started.

    Attributes:
        by_backend: Backend name → totals.
        by_model: Model name (as the backend reported it) → totals.
        shadow_model: The cloud model local answers are shadow-priced at, if any.
        prices_as_of: Date of the shipped default prices.
    """

    by_backend: dict[str, UsageTotals]
    by_model: dict[str, UsageTotals]
    shadow_model: str | None = None
    prices_as_of: str = PRICES_AS_OF


class UsageLedger:
    """Prices each finished request, keeps the totals and tells the subscribers.

    :meth:`price` is on the data path (a worker calls it before the caller gets
    its ``Done``): it fills in the cost and adds to the totals under a lock, and
    queues the ``Done`` for the subscribers. They are called one at a time, in
    the order the requests finished, on one thread (``rubberduck-usage``, started
    by the first :meth:`subscribe`, ended by :meth:`close`).

    Args:
        local: Backend name → ``True`` if it is local (free).
        prices: Overrides and additions to :data:`DEFAULT_PRICES`.
        shadow_model: Price local answers at this cloud model, as ``shadow_cost_usd``.

    Raises:
        ConfigError: (from the Runtime) ``shadow_model`` has no price.
    """

    def __init__(
        self,
        local: Mapping[str, bool],
        prices: Mapping[str, Price] | None = None,
        shadow_model: str | None = None,
    ) -> None:
        self.local = dict(local)
        self.prices = {**DEFAULT_PRICES, **(prices or {})}
        self.shadow_model = shadow_model
        self.shadow_price = find_price(self.prices, shadow_model) if shadow_model else None
        self._by_backend: dict[str, UsageTotals] = {}
        self._by_model: dict[str, UsageTotals] = {}
        self._subscribers: list[Callable[[Done], None]] = []
        self._lock = threading.Lock()
        # Done (to dispatch), Event (a flush marker) or None (stop).
        self._pending: queue.SimpleQueue[Done | threading.Event | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        self._closed = False

    def price(self, done: Done) -> Done:
        """``done`` with ``cost_usd`` and ``shadow_cost_usd`` filled in, added to the
        totals and queued for the subscribers (who get it on the usage thread)."""
        usage = done.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens)
        unpriced = False
        shadow = None
        if self.local.get(done.provider, False):
            cost = 0.0
            if self.shadow_price is not None:
                shadow = self.shadow_price.of(*tokens)
        else:
            price = find_price(self.prices, done.model)
            unpriced = price is None
            cost = price.of(*tokens) if price is not None else 0.0
        done = msgspec.structs.replace(done, cost_usd=cost, shadow_cost_usd=shadow)
        with self._lock:
            for key, table in ((done.provider, self._by_backend), (done.model, self._by_model)):
                table.setdefault(key, UsageTotals()).add(*tokens, cost, shadow, unpriced=unpriced)
            notify = bool(self._subscribers) and not self._closed
        if notify:
            self._pending.put(done)
        return done

    def subscribe(self, callback: Callable[[Done], None]) -> Callable[[], None]:
        """Call ``callback(done)`` for every request finished from now on, on the
        usage thread, never on the request's path (the caller does not wait for
        it, nor it for the caller); an exception in it
        is logged on ``rubberduck.cost``. After :meth:`close` it is never called.
        Returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)
            if self._dispatcher is None and not self._closed:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="rubberduck-usage", daemon=True
                )
                self._dispatcher.start()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (up to ``timeout`` seconds) until the subscribers were given every
        ``Done`` priced so far. Returns ``False`` on a timeout."""
        with self._lock:
            running = self._dispatcher is not None and not self._closed
        if not running:
            return True
        marker = threading.Event()
        self._pending.put(marker)
        return marker.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Give the subscribers what is queued, then stop the usage thread
        (waiting up to ``timeout`` seconds for a slow subscriber). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._dispatcher
        if thread is not None:
            self._pending.put(None)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _dispatch(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            with self._lock:
                subscribers = list(self._subscribers)
            for callback in subscribers:
                try:
                    callback(item)
                except Exception:
                    log.exception("a usage subscriber failed")

    def report(self) -> UsageReport:
        """A copy of the totals."""
        with self._lock:
            return UsageReport(
                by_backend={k: msgspec.structs.replace(v) for k, v in self._by_backend.items()},
                by_model={k: msgspec.structs.replace(v) for k, v in self._by_model.items()},
                shadow_model=self.shadow_model,
            )
