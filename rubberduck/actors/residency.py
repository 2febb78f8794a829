"""Which models each backend holds in memory now (warm), and how fast it answers.

Ollama loads a model on its first request and keeps it ``keep_alive`` long; a
request for a model that is not loaded waits for the load (seconds to
minutes) and, on a host at ``OLLAMA_MAX_LOADED_MODELS``, evicts another model.
:class:`Residency` is what the runtime knows of that, per backend:

- the models loaded, replaced wholesale by each ``GET /api/ps`` read (the
  HealthMonitor reads it on the health interval, beside ``/api/tags``);
- between reads, answers: a model that answered on a backend is loaded there
  now; an answer whose ``load_duration`` is above ``cold_load_threshold`` was a
  cold load (counted in :attr:`Residency.cold_loads`, its duration kept as an
  EWMA per model: what sending the model to a cold host costs);
- a latency EWMA per backend, from the outcomes of successful attempts.

The routing policy that reads it is :mod:`rubberduck.actors.balance`.

Locking: writes under one lock; reads take none (one atomic ``dict.get`` of an
immutable value). Shared by reference (in the
:class:`~rubberduck.actors.supervisor.Registry`), so it survives actor restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["Residency", "model_key"]


def model_key(model: str | None) -> str | None:
    """The name a model is counted and matched under: Ollama's ``name:latest``
    is ``name`` (``/api/ps`` says ``llama3.2:latest`` for a request that said
    ``llama3.2``); ``None`` stays ``None`` (a request naming no model)."""
    if model is None:
        return None
    return model[: -len(":latest")] if model.endswith(":latest") else model


class Residency:
    """Models loaded per backend, cold loads seen, and a latency EWMA.

    Args:
        cold_load_threshold: An answer whose ``load_duration`` is above this,
            seconds, was a cold load (the model was not in memory).
        alpha: Weight of the newest latency in the EWMA (0–1).
    """

    def __init__(self, *, cold_load_threshold: float = 0.5, alpha: float = 0.3) -> None:
        self.cold_load_threshold = cold_load_threshold
        self.alpha = alpha
        self._loaded: dict[str, frozenset[str]] = {}
        self._latency: dict[str, float] = {}
        self._load_time: dict[str, float] = {}
        #: Backend → answers seen that were cold loads.
        self.cold_loads: dict[str, int] = {}
        self._lock = threading.Lock()

    def loaded(self, backend: str) -> frozenset[str] | None:
        """The models loaded on ``backend`` (names as :func:`model_key` gives
        them), or ``None`` when not known (never read, not an Ollama server)."""
        return self._loaded.get(backend)

    def set_loaded(self, backend: str, models: Iterable[str]) -> None:
        """``backend`` holds exactly ``models`` now (an ``/api/ps`` read)."""
        names = frozenset(m for m in map(model_key, models) if m)
        with self._lock:
            self._loaded[backend] = names

    def answered(self, backend: str, model: str | None, load_s: float | None) -> bool:
        """``model`` answered on ``backend``: it is loaded there now.

        Args:
            backend: Backend name.
            model: The model that answered (``Done.model``).
            load_s: Its ``load_duration``, seconds (``None``: not reported).

        Returns:
            Whether it was a cold load (``load_s`` above ``cold_load_threshold``).
        """
        key = model_key(model)
        cold = load_s is not None and load_s > self.cold_load_threshold
        with self._lock:
            if key:
                self._loaded[backend] = self._loaded.get(backend, frozenset()) | {key}
            if cold:
                self.cold_loads[backend] = self.cold_loads.get(backend, 0) + 1
                if key and load_s is not None:
                    self._load_time[key] = self._ewma(self._load_time.get(key), load_s)
        return cold

    def load_time(self, model: str) -> float | None:
        """How long ``model`` took to load, seconds (an EWMA of the cold loads
        seen, on any backend); ``None`` before the first."""
        return self._load_time.get(model)

    def observe(self, backend: str, latency_s: float) -> None:
        """Fold one successful attempt's latency, seconds, into ``backend``'s EWMA."""
        with self._lock:
            self._latency[backend] = self._ewma(self._latency.get(backend), latency_s)

    def _ewma(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def latency(self, backend: str) -> float | None:
        """``backend``'s latency EWMA, seconds (``None`` before its first answer)."""
        return self._latency.get(backend)
