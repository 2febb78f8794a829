"""Router: picks the backend for each request and falls back when one fails.

Candidates, in configured priority: backends whose circuit is closed and that
serve the requested model (a request with no model, a model in the backend's
catalogue, a backend whose catalogue is not known yet, or one configured with
``serve_any_model``). A failure before the first chunk with ``fallback = True``
(refused, timeout, 5xx, 503, model not found, protocol error) moves the request
to the next candidate; when none is left the caller gets
:class:`~rubberduck.errors.AllProvidersFailed` with every backend's cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rubberduck.actors.health import HEALTH
from rubberduck.actors.provider import ROUTER, provider_actor_name
from rubberduck.actors.supervisor import Registry, SupervisedActor
from rubberduck.errors import (
    AllProvidersFailed,
    ModelNotFound,
    ProviderUnavailable,
    RequestTimeout,
)
from rubberduck.handle import RequestHandle
from rubberduck.messages import (
    AttemptFailed,
    Dispatch,
    ProviderDown,
    ProviderUp,
    Resync,
    Submit,
)

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    """What the Router knows of a backend from configuration.

    Attributes:
        name: Backend name.
        models: Models to treat as served before the catalogue is read.
        serve_any_model: Accept any model (answering with its own).
    """

    name: str
    models: tuple[str, ...] = ()
    serve_any_model: bool = False


def _model_names(models: tuple[str, ...] | list[str]) -> set[str]:
    """Names as given plus, for Ollama's ``name:latest``, the bare name."""
    names = set(models)
    names.update(m[: -len(":latest")] for m in models if m.endswith(":latest"))
    return names


class Router(SupervisedActor):
    """Args:
    registry: Where ProviderActors and the HealthMonitor are found.
    routes: Backends in priority order.
    """

    def __init__(self, registry: Registry, routes: list[Route]) -> None:
        super().__init__(registry, ROUTER)
        self.routes = routes

    def started(self) -> None:
        self.down: dict[str, str] = {}
        self.catalogue: dict[str, set[str]] = {}
        # After a restart our view is empty: ask for the current one.
        self.registry.tell(HEALTH, Resync())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Submit):
            self._route(message.handle)
        elif isinstance(message, AttemptFailed):
            self._attempt_failed(message)
        elif isinstance(message, ProviderUp):
            self.down.pop(message.provider, None)
            if message.models is not None:
                self.catalogue[message.provider] = _model_names(message.models)
        elif isinstance(message, ProviderDown):
            self.down[message.provider] = message.reason
        return None

    def serves(self, route: Route, model: str | None) -> bool:
        """Whether ``route`` can take a request for ``model``."""
        if model is None or route.serve_any_model:
            return True
        if model in route.models or f"{model}:latest" in route.models:
            return True
        known = self.catalogue.get(route.name)
        return known is None or model in known or f"{model}:latest" in known

    def _route(self, handle: RequestHandle) -> None:
        if handle.finished:
            return
        if handle.time_left() <= 0:
            handle.fail(RequestTimeout("the request's deadline passed before a backend was free"))
            return
        model = handle.request.model
        for route in self.routes:
            name = route.name
            if name in handle.tried:
                continue
            if not self.serves(route, model):
                handle.causes.setdefault(
                    name,
                    ModelNotFound(
                        f"does not have model {model!r}", provider=name, model=model or ""
                    ),
                )
                continue
            if name in self.down:
                handle.causes.setdefault(
                    name,
                    ProviderUnavailable(f"skipped, circuit open: {self.down[name]}", provider=name),
                )
                continue
            handle.tried.append(name)
            if self.registry.tell(provider_actor_name(name), Dispatch(handle)):
                return
            handle.causes[name] = ProviderUnavailable("its actor is restarting", provider=name)
        handle.fail(AllProvidersFailed(handle.causes, model=model))

    def _attempt_failed(self, msg: AttemptFailed) -> None:
        handle, error = msg.handle, msg.error
        handle.causes[msg.provider] = error
        if isinstance(error, ModelNotFound) and error.model:
            # Until the next catalogue read, skip this backend for that model.
            known = self.catalogue.get(msg.provider)
            if known is not None:
                known.discard(error.model)
                known.discard(f"{error.model}:latest")
        if handle.finished:
            return
        if not error.fallback:
            handle.fail(error)
            return
        self._route(handle)
