"""The OpenTelemetry side of ``tracing.py``: imported only when traces are on.

A ``TracerProvider`` with a batching OTLP/HTTP exporter (protobuf over HTTP, the collector's
port 4318), and the W3C trace-context propagator for what comes in and what goes out. The
SDK's ``OTEL_BSP_*`` variables tune the batching (``OTEL_BSP_SCHEDULE_DELAY``, milliseconds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lingyun import __version__

W3C = TraceContextTextMapPropagator()


def traces_url(endpoint: str) -> str:
    """A collector's base URL gets OTLP's traces path, as ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    path = urlsplit(endpoint).path
    return endpoint if path.rstrip("/") else endpoint.rstrip("/") + "/v1/traces"


class Tracing:
    def __init__(self, endpoint: str, service: str, exporter: SpanExporter | None = None) -> None:
        resource = Resource.create({"service.name": service, "service.version": __version__})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=traces_url(endpoint)))
        )
        self.tracer = self.provider.get_tracer("lingyun.gateway", __version__)

    def start(self, headers: Mapping[str, str], name: str) -> Trace:
        parent = W3C.extract(headers)  # an invalid or missing traceparent: a new trace
        root = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        return Trace(self.tracer, root)

    def shutdown(self) -> None:
        self.provider.shutdown()


class Trace:
    """The spans of one request: the root and the stages open now."""

    __slots__ = ("done", "open", "root", "tracer", "under")

    def __init__(self, tracer: trace.Tracer, root: Span) -> None:
        self.tracer, self.root = tracer, root
        self.under = trace.set_span_in_context(root)
        self.open: dict[str, Span] = {}
        self.done = False

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Span]:
        span = self.tracer.start_span(name, context=self.under)
        try:
            yield span
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    def begin(self, name: str) -> dict[str, str]:
        self.finish(name)  # a retry on another replica closes the previous attempt's span
        span = self.open[name] = self.tracer.start_span(
            name, context=self.under, kind=SpanKind.CLIENT
        )
        carrier: dict[str, str] = {}
        W3C.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def finish(self, name: str) -> None:
        span = self.open.pop(name, None)
        if span is not None:
            span.end()

    def end(self, status: int | None) -> None:
        if self.done:
            return
        self.done = True
        for name in list(self.open):
            self.finish(name)
        if status is not None:
            self.root.set_attribute("http.response.status_code", status)
            if status >= 500:
                self.root.set_status(Status(StatusCode.ERROR))
        self.root.end()

    def annotate(self, **attributes: str | int) -> None:
        self.root.set_attributes(attributes)


def _failed(span: Span, exc: Exception) -> None:
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        span.set_attribute("error.type", code)
