"""Serve every RubberDuck metric for Prometheus to scrape.

Uses the OpenTelemetry Prometheus exporter (``PrometheusMetricReader``) rather
than a second set of ``prometheus_client`` instruments: the metrics are the
same whether they leave by OTLP or by a scrape, and the exporter applies the
OpenTelemetry → Prometheus naming rules (``gen_ai.client.operation.duration``
in s becomes ``gen_ai_client_operation_duration_seconds``, counters get
``_total``). Install with ``pip install rubberduck[prometheus]``.

An application that configures its own SDK adds the reader itself::

    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    start_http_server(9464)

:func:`serve_prometheus` does exactly that when no meter provider is set yet.
"""

from __future__ import annotations

from typing import Any

from rubberduck.errors import ConfigError
from rubberduck.telemetry import otel

__all__ = ["PrometheusServer", "serve_prometheus"]


class PrometheusServer:
    """A running ``/metrics`` endpoint.

    Attributes:
        address: The address it listens on.
        port: The port it listens on (the one chosen, for port 0).
    """

    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread
        self.address, self.port = server.server_address[:2]

    def close(self) -> None:
        """Stop serving (the meter provider stays)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(port: int, address: str = "127.0.0.1", registry: Any = None) -> PrometheusServer:
    """Serve ``registry`` (default: prometheus_client's global one) over HTTP.

    Raises:
        ConfigError: ``prometheus_client`` is not installed, or the port is taken.
    """
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "metrics for Prometheus need the extra — pip install 'rubberduck[prometheus]'"
        ) from None
    kwargs = {} if registry is None else {"registry": registry}
    try:
        server, thread = prometheus_client.start_http_server(port, address, **kwargs)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {address}:{port}: {exc}") from None
    return PrometheusServer(server, thread)


def serve_prometheus(port: int = 9464, address: str = "127.0.0.1") -> PrometheusServer:
    """Set a global OpenTelemetry meter provider with a Prometheus reader and
    serve ``/metrics`` on ``address:port``.

    Args:
        port: TCP port (9464 is the exporter's conventional one; 0 picks one).
        address: Where to listen; loopback by default, ``"0.0.0.0"`` for a
            scraper on another host.

    Returns:
        The running server (:attr:`PrometheusServer.port`, ``close()``).

    Raises:
        ConfigError: the ``prometheus`` extra is missing, a meter provider is
            already set (add ``PrometheusMetricReader()`` to its readers
            instead, as the module docstring shows), or the port is taken.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        raise ConfigError(
            "metrics for Prometheus need the extra — pip install 'rubberduck[prometheus]'"
        ) from None
    if otel.instruments() is not None:
        raise ConfigError(
            "a meter provider is already set — add PrometheusMetricReader() to its "
            "metric_readers and call prometheus_client.start_http_server(port)"
        )
    server = serve(port, address)
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return server
