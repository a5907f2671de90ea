"""What observability costs per request: CPU time of its hooks, without a network in the way.

Runs the request-id middleware around a trivial ASGI app, ``queued`` and ``observe`` (metrics
and a JSON request log line to a file) over synthetic finished requests, streamed with 16
events, and prints CPU microseconds per request with everything on and with metrics and the
log off. Then the tracing calls the pipeline makes per request (a root, seven stage spans),
with traces off (no ``--otlp-endpoint``: what every request pays) and on (the SDK, spans
batched to an exporter that drops them). Compare with the gateway's whole CPU per request
in benchmarks/results/METERING.md. Run: ``python -m benchmarks.observability`` (seconds).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from lingyun.config import DeploymentConfig
from lingyun.gateway.context import RequestContext, Usage
from lingyun.observability import hooks, tracing
from lingyun.observability.request_id import RequestIdMiddleware
from lingyun.observability.request_log import RequestLog
from lingyun.serving.replica import Replica
from lingyun.tenancy.service import KeyInfo

N = 20_000
EVENTS = 16
DEP = DeploymentConfig(name="sim", engine="simulator")
REPLICA = Replica("sim", "sim-0", "http://127.0.0.1:1/v1", "sim")


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["state"]["observed"] = True  # as hooks.bind does for requests the pipeline sees
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(_: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request"}


def _key() -> KeyInfo:
    return KeyInfo("key_1", "ten_1", "acme", "prj_1", "default", None)


async def _one(middleware: RequestIdMiddleware, key: KeyInfo) -> None:
    scope = {"type": "http", "path": "/v1/chat/completions", "headers": [], "state": {}}
    await middleware(scope, _receive, _send)
    ctx = RequestContext(
        endpoint="chat.completions", body={}, stream=True, client_wants_usage=False,
        max_output_tokens=16,
    )  # fmt: skip
    ctx.key, ctx.model, ctx.deployment, ctx.replica = key, "sim", DEP, REPLICA
    await hooks.queued(ctx, asyncio.sleep(0))
    for _ in range(EVENTS):
        for hook in ctx.token_hooks:
            hook(1)
    ctx.first_byte_at = time.perf_counter()
    ctx.usage = Usage(prompt_tokens=20, completion_tokens=EVENTS, reported=True)
    hooks.observe(ctx)


async def _run(on: bool, log_dir: Path) -> float:
    log = RequestLog.open(str(log_dir / "requests.jsonl"), log_dir) if on else None
    hooks.configure(metrics_on=on, log=log)
    middleware = RequestIdMiddleware(_app)
    key = _key()
    for _ in range(1000):
        await _one(middleware, key)
    start = time.process_time()
    for _ in range(N):
        await _one(middleware, key)
    return (time.process_time() - start) / N * 1e6


STAGES = ("resolve", "admit", "queue", "route")


def _traced_request(headers: dict[str, str]) -> None:
    """The tracing calls of one streamed request, in the pipeline's order."""
    trace = tracing.start(headers, "chat.completions")
    with tracing.stage(trace, "authenticate"):
        pass
    for name in STAGES:
        with tracing.stage(trace, name):
            pass
    tracing.begin(trace, "relay")
    tracing.finish(trace, "relay")
    with tracing.stage(trace, "settle"):
        pass
    tracing.end(trace, 200)


def _tracing_cost(on: bool) -> float:
    """CPU microseconds of the tracing calls per request."""
    if on:
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from lingyun.observability import otel

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        logging.getLogger("opentelemetry").setLevel(logging.ERROR)  # its full queue drops spans
        tracing._TRACING = otel.Tracing("http://127.0.0.1:1", "bench", exporter=Drop())
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    try:
        for _ in range(1000):
            _traced_request(headers)
        start = time.process_time()
        for _ in range(N):
            _traced_request(headers)
        return (time.process_time() - start) / N * 1e6
    finally:
        tracing.shutdown()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        off = asyncio.run(_run(False, Path(tmp)))
        on = asyncio.run(_run(True, Path(tmp)))
    print(f"CPU per request, {EVENTS} streamed events: on {on:.1f} us, off {off:.1f} us, "
          f"observability adds {on - off:.1f} us")  # fmt: skip
    t_off, t_on = _tracing_cost(False), _tracing_cost(True)
    print(f"tracing calls per request (8 spans): off {t_off:.2f} us, on {t_on:.1f} us")


if __name__ == "__main__":
    main()
