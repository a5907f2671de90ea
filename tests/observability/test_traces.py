"""Traces: a span per pipeline stage, exported by OTLP/HTTP to a stand-in collector, joined to
the client's W3C traceparent and carried on to the replica; with traces off, no SDK."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.observability.collector import Collector, ReceivedSpan, running_collector
from tests.observability.support import migrate, wait_for
from tests.support.databases import fresh_sqlite
from tests.support.provision import new_key
from tests.support.server import LingyunServer

STAGES = ["authenticate", "resolve", "admit", "queue", "route", "relay", "settle"]
SERVER, CLIENT = 2, 3  # OTLP's SpanKind numbers


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LingyunServer, Collector]]:
    data = tmp_path_factory.mktemp("traces")
    with running_collector() as (collector, url):
        srv = LingyunServer(
            data_dir=data,
            database_url=fresh_sqlite(data),
            models=[
                {
                    "name": "sim",
                    "engine": "simulator",
                    "args": {"output_tokens": 3, "usage_log": str(data / "engine.jsonl")},
                }
            ],
            serve_args=["--otlp-endpoint", url],
            env={"OTEL_BSP_SCHEDULE_DELAY": "100"},  # export within 0.1 s, not the SDK's 5 s
        )
        migrate(srv)
        srv.env["KEY"] = new_key(srv, "trace-tenant")[0]
        srv.start()
        try:
            yield srv, collector
        finally:
            srv.stop()


def _engine_record(srv: LingyunServer, rid: str) -> dict[str, Any] | None:
    path = srv.data_dir / "engine.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return next((r for x in lines if (r := json.loads(x))["request_id"] == rid), None)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_stage_spans_join_the_clients_trace_and_reach_the_replica(
    traced: tuple[LingyunServer, Collector], stream: bool
) -> None:
    srv, collector = traced
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    rid = f"traced-{secrets.token_hex(4)}"
    client = srv.client(srv.env["KEY"], max_retries=0)
    headers = {"traceparent": f"00-{trace_id}-{client_span}-01", "x-request-id": rid}
    answer = client.chat.completions.create(
        model="sim",
        messages=[{"role": "user", "content": "hi"}],
        stream=stream,
        extra_headers=headers,
    )
    if stream:
        assert len(list(answer)) >= 3  # type: ignore[arg-type]

    def complete() -> list[ReceivedSpan] | None:
        spans = collector.of_trace(trace_id)
        return spans if {s.name for s in spans} >= {"chat.completions", *STAGES} else None

    spans = wait_for(complete, what="the request's spans at the collector")
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    (root,) = [s for s in spans if s.name == "chat.completions"]
    assert root.parent_span_id == client_span and root.kind == SERVER
    assert root.service == "lingyun" and root.attributes["http.response.status_code"] == 200
    by_name = {s.name: s for s in spans if s.name != "chat.completions"}
    assert sorted(by_name) == sorted(STAGES) and len(spans) == 1 + len(STAGES)
    assert {s.parent_span_id for s in by_name.values()} == {root.span_id}
    relay = by_name["relay"]
    assert relay.kind == CLIENT
    record = wait_for(lambda: _engine_record(srv, rid), what="the replica's record")
    assert record["traceparent"] == f"00-{trace_id}-{relay.span_id}-01"


@pytest.mark.slow
def test_a_request_without_traceparent_starts_its_own_trace(
    traced: tuple[LingyunServer, Collector],
) -> None:
    srv, collector = traced
    rid = f"fresh-{secrets.token_hex(4)}"
    client = srv.client(srv.env["KEY"], max_retries=0)
    client.completions.create(model="sim", prompt="x", extra_headers={"x-request-id": rid})
    record = wait_for(lambda: _engine_record(srv, rid), what="the replica's record")
    trace_id = record["traceparent"].split("-")[1]
    spans = wait_for(lambda: len(found := collector.of_trace(trace_id)) == 8 and found)
    (root,) = [s for s in spans if s.name == "completions"]
    assert root.parent_span_id == ""


def test_with_traces_off_the_sdk_is_never_imported() -> None:
    """(FastAPI imports the OpenTelemetry API by itself where it is installed; the SDK, the
    exporter and our spans module are ours to leave out.)"""
    code = (
        "import sys\n"
        "from lingyun.app import create_app\n"
        "from lingyun.config import Settings\n"
        "from lingyun.observability import tracing\n"
        "create_app(Settings())\n"
        "tracing.configure(None)\n"
        "assert tracing.start({'traceparent': 'x'}, 'chat.completions') is None\n"
        "ours = ('opentelemetry.sdk', 'opentelemetry.exporter', 'lingyun.observability.otel')\n"
        "print(sorted(m for m in sys.modules if m.startswith(ours)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_refused_request_ends_its_trace_at_the_failing_stage(
    traced: tuple[LingyunServer, Collector],
) -> None:
    srv, collector = traced
    trace_id = secrets.token_hex(16)
    client = srv.client(srv.env["KEY"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
    spans = wait_for(lambda: len(found := collector.of_trace(trace_id)) == 4 and found)
    assert sorted(s.name for s in spans) == [
        "authenticate",
        "chat.completions",
        "resolve",
        "settle",
    ]
    (root,) = [s for s in spans if s.name == "chat.completions"]
    assert root.attributes["http.response.status_code"] == 404
    (resolve,) = [s for s in spans if s.name == "resolve"]
    assert resolve.attributes["error.type"] == "model_not_found"
