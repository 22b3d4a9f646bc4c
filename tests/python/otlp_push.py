"""Exports metrics to Strata with the real OpenTelemetry Python SDK over OTLP/HTTP
(protobuf): a cumulative counter, a delta counter, an explicit-bucket histogram and an
observable gauge, from a resource with service.name and host.name. Prints one JSON line
with what was recorded, so the test can compare it with what Strata stored.

usage: otlp_push.py ENDPOINT   (e.g. http://127.0.0.1:7070/v1/metrics?db=otel)
"""

import json
import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource


class RecordingExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP exporter, noting each export's result."""

    results = []

    def export(self, *args, **kwargs):
        result = super().export(*args, **kwargs)
        RecordingExporter.results.append(result.name)
        return result


def provider(endpoint, temporality):
    exporter = RecordingExporter(
        endpoint=endpoint, preferred_temporality=temporality, timeout=10
    )
    # A long interval: exports happen on force_flush only.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [
        View(
            instrument_name="request.duration",
            aggregation=ExplicitBucketHistogramAggregation([0.1, 0.5, 1.0]),
        )
    ]
    resource = Resource.create({"service.name": "checkout", "host.name": "h1"})
    return MeterProvider(
        resource=resource, metric_readers=[reader], views=views, shutdown_on_exit=False
    )


def main():
    endpoint = sys.argv[1]
    cumulative = provider(endpoint, {})
    meter = cumulative.get_meter("strata.test", "1.0")
    requests = meter.create_counter("http.requests", unit="1")
    duration = meter.create_histogram("request.duration", unit="s")
    meter.create_observable_gauge(
        "queue.depth", callbacks=[lambda _opts: [Observation(7, {"queue": "q1"})]]
    )
    for code, n in (("200", 5), ("500", 2)):
        requests.add(n, {"code": code})
    for v in (0.05, 0.2, 0.3, 0.7, 2.0):
        duration.record(v, {"route": "/pay"})

    delta = provider(endpoint, {Counter: AggregationTemporality.DELTA})
    jobs = delta.get_meter("strata.test.delta").create_counter("jobs.done")
    jobs.add(3)

    # Shutting down collects and exports once more, the only export of each provider.
    cumulative.shutdown()
    delta.shutdown()
    results = RecordingExporter.results
    ok = len(results) == 2 and all(r == "SUCCESS" for r in results)
    print(
        json.dumps(
            {
                "flushed": ok,
                "exports": results,
                "requests": {"200": 5, "500": 2},
                "duration": {"count": 5, "sum": 3.25, "buckets": [1, 2, 1, 1]},
                "queue_depth": 7,
                "jobs_done": 3,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
