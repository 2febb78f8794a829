"""The supervised actor runtime: Supervisor, HealthMonitor, ProviderActors, Router."""

from rubberduck.actors.breaker import CircuitBreaker
from rubberduck.actors.health import HealthMonitor
from rubberduck.actors.provider import ProviderActor
from rubberduck.actors.router import Route, Router
from rubberduck.actors.supervisor import (
    ChildSpec,
    Registry,
    Restart,
    RestartStrategy,
    SupervisedActor,
    Supervisor,
)

__all__ = [
    "ChildSpec",
    "CircuitBreaker",
    "HealthMonitor",
    "ProviderActor",
    "Registry",
    "Restart",
    "RestartStrategy",
    "Route",
    "Router",
    "SupervisedActor",
    "Supervisor",
]
