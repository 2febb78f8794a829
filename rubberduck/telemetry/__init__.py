"""Observability: logs, OpenTelemetry metrics and traces, Prometheus.

- :mod:`~rubberduck.telemetry.logs`: a logger per component under
  ``rubberduck.``, structured ``extra`` fields, rate-limited warnings.
- :mod:`~rubberduck.telemetry.otel`: the optional OpenTelemetry API and the
  instruments (GenAI client conventions, and ``rubberduck.*`` runtime metrics).
- :mod:`~rubberduck.telemetry.requests`: one span per request, one child span
  per attempt, the GenAI metrics at the request's end.
- :mod:`~rubberduck.telemetry.recorder`: the thread that makes the SDK calls
  off the request path; :func:`flush`.
- :mod:`~rubberduck.telemetry.events`: the Router's, HealthMonitor's and
  Supervisor's decisions.
- :mod:`~rubberduck.telemetry.gauges`: in flight, queued and circuit state.
- :mod:`~rubberduck.telemetry.prometheus`: serve it all for scraping.
"""

from rubberduck.telemetry import gauges as gauges
from rubberduck.telemetry.logs import LIMITER, WarningLimiter
from rubberduck.telemetry.otel import SEMCONV
from rubberduck.telemetry.prometheus import serve_prometheus
from rubberduck.telemetry.recorder import flush

__all__ = ["LIMITER", "SEMCONV", "WarningLimiter", "flush", "serve_prometheus"]
