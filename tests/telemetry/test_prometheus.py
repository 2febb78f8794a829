"""Every metric scraped over HTTP in Prometheus' text exposition format, and
parsed with prometheus_client's parser."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests

pytest.importorskip("opentelemetry.exporter.prometheus")

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from rubberduck import ConfigError
from rubberduck.telemetry import serve_prometheus
from rubberduck.telemetry.prometheus import serve
from tests.conftest import HI, runtime_for
from tests.fake_ollama import FakeOllama
from tests.telemetry.conftest import install, reset_globals

pytestmark = pytest.mark.usefixtures("no_thread_left")

ROOT = Path(tests.__file__).resolve().parent.parent  # the checkout (tests/ is a package)


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A global SDK whose Prometheus reader writes to a registry of its own."""
    registry = CollectorRegistry()
    meter_provider, tracer_provider, _ = install(PrometheusMetricReader(registry=registry))
    yield registry
    reset_globals()
    meter_provider.shutdown()
    tracer_provider.shutdown()


def _scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_the_metrics_endpoint_serves_every_metric(
    registry: CollectorRegistry, servers: tuple[FakeOllama, FakeOllama]
) -> None:
    primary, backup = servers
    primary.mode = "busy"
    server = serve(0, registry=registry)
    try:
        with runtime_for(primary.url, backup.url) as rt:
            rt.chat("llama3.2", HI)
            families = _scrape(server.port)
    finally:
        server.close()
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    count = [s for s in duration.samples if s.name.endswith("_count")]
    assert [s.value for s in count] == [1.0]
    labels = count[0].labels
    assert (labels["gen_ai_operation_name"], labels["gen_ai_provider_name"]) == ("chat", "ollama")
    assert labels["rubberduck_backend"] == "backup"
    tokens = families["gen_ai_client_token_usage"]
    sums = {
        s.labels["gen_ai_token_type"]: s.value for s in tokens.samples if s.name.endswith("_sum")
    }
    assert sums == {"input": 26.0, "output": 282.0}
    [fallback] = families["rubberduck_fallbacks"].samples
    assert fallback.name == "rubberduck_fallbacks_total" and fallback.value == 1.0
    assert fallback.labels["rubberduck_fallback_to"] == "backup"
    circuit = families["rubberduck_circuit_state"]
    states = {
        (s.labels["rubberduck_backend"], s.labels["rubberduck_state"]) for s in circuit.samples
    }
    assert states >= {("primary", "closed"), ("backup", "open"), ("backup", "half_open")}
    assert {"rubberduck_backend_in_flight", "rubberduck_backend_queued"} <= set(families)


def test_serve_prometheus_refuses_when_a_meter_provider_is_set(registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigError, match="add PrometheusMetricReader"):
        serve_prometheus(0)


def test_the_cli_serves_metrics_while_a_command_runs(
    servers: tuple[FakeOllama, FakeOllama], tmp_path: Path
) -> None:
    primary, _ = servers
    scraped = tmp_path / "metrics.txt"
    # The scrape happens just before the endpoint closes, after the command ran.
    script = textwrap.dedent(
        f"""
        import sys, urllib.request
        from rubberduck.telemetry import prometheus
        close = prometheus.PrometheusServer.close
        def scrape_then_close(self):
            url = f"http://127.0.0.1:{{self.port}}/metrics"
            with open({str(scraped)!r}, "w") as out:
                out.write(urllib.request.urlopen(url, timeout=5).read().decode())
            close(self)
        prometheus.PrometheusServer.close = scrape_then_close
        from rubberduck.cli import main
        sys.exit(main(["chat", "hi", "--host", {primary.url!r}, "--metrics-port", "0"]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    families = {f.name: f for f in text_string_to_metric_families(scraped.read_text())}
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert [s.value for s in duration.samples if s.name.endswith("_count")] == [1.0]
