"""Limits and state shared across replicas, in Redis (the ``[cluster]`` table).

Every runtime configured with the same ``[cluster] redis_url`` (and
``key_prefix``) holds each backend's ``max_in_flight`` together, and its
``max_in_flight_per_model`` per model (:mod:`~rubberduck.cluster.leases`),
shares circuit states, catalogues,
``/api/ps`` residency and a probe lease per backend
(:mod:`~rubberduck.cluster.state`) and adds its usage to the cluster's totals
(:mod:`~rubberduck.cluster.usage`). Redis down or slow: each runtime carries
on with its local state (:mod:`~rubberduck.cluster.link`).

Importing this package does not import ``redis``: a :class:`ClusterNode` does,
when a runtime with a ``[cluster]`` table starts.
"""

from rubberduck.cluster.leases import Lease, SlotLeases
from rubberduck.cluster.node import ClusterNode
from rubberduck.cluster.state import CircuitNews, SharedState
from rubberduck.cluster.usage import SharedUsage

__all__ = ["CircuitNews", "ClusterNode", "Lease", "SharedState", "SharedUsage", "SlotLeases"]
