"""A real OpenTelemetry SDK per test: in-memory metric reader and span exporter,
set as the global providers (as an application does) and unset afterwards, so
that no other test runs with an SDK listening."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.util._once import Once

from rubberduck.telemetry import LIMITER, flush


def reset_globals() -> None:
    """Unset the global providers (what opentelemetry-test-utils does)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()


@dataclass
class Sdk:
    """The SDK a test records to."""

    reader: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected now."""
        flush()
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def metric(self, name: str) -> Any:
        """The metric ``name`` (its unit, description) collected now."""
        flush()
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        return metric
        raise AssertionError(f"no metric {name}")

    def finished(self) -> list[ReadableSpan]:
        flush()
        return list(self.spans.get_finished_spans())


def install(*readers: MetricReader) -> tuple[MeterProvider, TracerProvider, InMemorySpanExporter]:
    reset_globals()
    meter_provider = MeterProvider(metric_readers=list(readers))
    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics.set_meter_provider(meter_provider)
    trace.set_tracer_provider(tracer_provider)
    return meter_provider, tracer_provider, exporter


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """A fresh SDK, global for the test's duration."""
    reader = InMemoryMetricReader()
    meter_provider, tracer_provider, exporter = install(reader)
    yield Sdk(reader, exporter)
    reset_globals()
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture(autouse=True)
def fresh_limiter() -> Iterator[None]:
    """Every test starts with no warning suppressed."""
    LIMITER.reset()
    yield
    LIMITER.reset()
