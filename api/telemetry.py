"""OpenTelemetry: spans per stage (retrieve, generate, verify), exported over OTLP/HTTP when
``ATTEST_OTEL_ENDPOINT`` is set (e.g. http://127.0.0.1:4318); otherwise the API's no-op tracer."""

from __future__ import annotations

import logging

log = logging.getLogger("attest.api")


def setup_tracing(settings):
    """A tracer for the question path, and a shutdown function (flushes the exporter)."""
    from opentelemetry import trace

    if not settings.otel_endpoint:
        return trace.get_tracer("attest.question"), lambda: None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = settings.otel_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    log.info("exporting spans over OTLP to %s", endpoint)
    return provider.get_tracer("attest.question"), provider.shutdown
