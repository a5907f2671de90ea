"""Traces, optional and off by default: one span per pipeline stage, exported by OTLP/HTTP.

The request path calls ``start`` (the root span of a request, joined to the client's W3C
``traceparent`` when it sent one), ``stage`` (a stage span around a block), ``begin`` (the
relay span, whose ``traceparent`` goes to the replica or cloud) and ``end``. With traces off
(no ``--otlp-endpoint``) ``start`` answers None, every other call is a test of that None, and
OpenTelemetry is never imported: the hot path pays nothing.

Spans of one request (children of the root, in order)::

    chat.completions                 the root, kind SERVER, from the client's traceparent
      authenticate resolve admit queue route relay settle

A fallback to another model adds its own resolve..settle under the same root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingyun.observability.otel import Trace, Tracing

_TRACING: Tracing | None = None
_NULL: AbstractContextManager[None] = contextlib.nullcontext()


def configure(endpoint: str | None, service: str = "lingyun") -> None:
    """Export to ``endpoint`` (an OTLP/HTTP collector's base URL or its /v1/traces), or off."""
    global _TRACING
    shutdown()
    if endpoint:
        try:
            from lingyun.observability.otel import Tracing
        except ImportError as exc:
            raise ValueError(
                f"--otlp-endpoint needs OpenTelemetry ({exc.name} is missing): "
                "pip install 'lingyun[otel]'"
            ) from None
        _TRACING = Tracing(endpoint, service)


def shutdown() -> None:
    """Flush what is queued and stop exporting (the lifespan's stop)."""
    global _TRACING
    if _TRACING is not None:
        _TRACING.shutdown()
        _TRACING = None


def start(headers: Mapping[str, str], name: str) -> Trace | None:
    return None if _TRACING is None else _TRACING.start(headers, name)


def stage(trace: Trace | None, name: str) -> AbstractContextManager[object]:
    return _NULL if trace is None else trace.stage(name)


def begin(trace: Trace | None, name: str) -> dict[str, str]:
    """Open the span ``name`` until ``finish``; answers the headers that carry it onward."""
    return {} if trace is None else trace.begin(name)


def finish(trace: Trace | None, name: str) -> None:
    if trace is not None:
        trace.finish(name)


def end(trace: Trace | None, status: int | None = None) -> None:
    if trace is not None:
        trace.end(status)
