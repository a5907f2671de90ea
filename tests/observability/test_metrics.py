"""/metrics counts exactly the traffic sent through a real server, and Prometheus reads it."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from lingyun.observability.snapshot import quantile
from tests.observability.support import Samples, migrate, scrape, value, wait_for
from tests.support.databases import fresh_sqlite
from tests.support.provision import new_key, set_limits
from tests.support.server import LINGYUN, LingyunServer, free_port

pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "hello there"}]
OK_UNARY, OK_STREAM, NOT_FOUND, RPM = 4, 3, 3, 2
LIMITED_TRIES = 5


KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data = tmp_path_factory.mktemp("metrics")
    srv = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[
            {"name": "sim", "engine": "simulator", "args": {"output_tokens": 4}},
            {
                "name": "sim-slow",
                "engine": "simulator",
                "args": {"itl_ms": 50, "output_tokens": 200},
            },
            {"name": "sim-victim", "engine": "simulator"},
        ],
        extra_config={"replica_metrics_interval_s": 0.3},
    )
    # Keys and the rate limit exist before the server starts: it reads them at its start.
    migrate(srv)
    KEYS["secret"], _ = new_key(srv, "metrics-tenant")
    KEYS["limited"], limited_id = new_key(srv, "limited-tenant")
    set_limits(srv, key=limited_id, rpm=RPM, burst=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _status(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except openai.APIStatusError as err:
        return err.status_code
    return 200


def _traffic(server: LingyunServer) -> dict[str, int]:
    client = server.client(KEYS["secret"], max_retries=0)
    for _ in range(OK_UNARY):
        client.chat.completions.create(model="sim", messages=MSG)  # type: ignore[arg-type]
    for _ in range(OK_STREAM):
        chunks = client.chat.completions.create(
            model="sim",
            messages=MSG,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
        assert chunks.response.status_code == 200
        list(chunks)
    for _ in range(NOT_FOUND):
        call = lambda: client.chat.completions.create(model="no-such-model", messages=MSG)  # type: ignore[arg-type]  # noqa: E731
        assert _status(call) == 404
    failed = lambda: client.chat.completions.create(  # noqa: E731
        model="sim",
        messages=MSG,
        extra_body={"sim_fail_after": 0},  # type: ignore[arg-type]
    )
    assert _status(failed) == 502
    limited_client = server.client(KEYS["limited"], max_retries=0)
    statuses = []
    for _ in range(LIMITED_TRIES):
        statuses.append(
            _status(lambda: limited_client.chat.completions.create(model="sim", messages=MSG))  # type: ignore[arg-type]
        )
    # A stream the client abandons after its first chunk.
    stream = client.chat.completions.create(model="sim-slow", messages=MSG, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    stream.close()
    return {"limited_ok": statuses.count(200), "limited_429": statuses.count(429)}


def test_counters_and_histograms_match_the_traffic(server: LingyunServer) -> None:
    seen = _traffic(server)
    assert seen["limited_429"] == LIMITED_TRIES - RPM and seen["limited_ok"] == RPM

    def settled() -> Samples | None:
        s = scrape(server.base_url)
        return s if value(s, "lingyun_requests_total", status="499") == 1 else None

    s = wait_for(settled, what="the cancelled stream to be counted")
    ok = OK_UNARY + OK_STREAM + RPM
    req = "lingyun_requests_total"
    assert value(s, req, model="sim", endpoint="chat.completions", status="200", code="") == ok
    assert value(s, req, model="unknown", status="404", code="model_not_found") == NOT_FOUND
    assert (
        value(s, req, model="sim", status="429", code="rate_limit_exceeded") == LIMITED_TRIES - RPM
    )
    assert value(s, req, model="sim", status="502", code="upstream_error") == 1
    assert value(s, req, model="sim-slow", status="499", code="client_disconnected") == 1
    assert value(s, req) == ok + NOT_FOUND + (LIMITED_TRIES - RPM) + 1 + 1
    # The request log (default: bare JSON lines on stderr, here serve.log): one per request.
    log = server.data_dir / "serve.log"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"ts"')]
    assert len(lines) == value(s, req)
    assert sorted(x["end"] for x in lines).count("refused") == NOT_FOUND + LIMITED_TRIES - RPM
    # 4 output tokens per successful simulator answer.
    assert value(s, "lingyun_completion_tokens_total", model="sim") == 4 * ok
    assert value(s, "lingyun_prompt_tokens_total", model="sim") > 0
    assert value(s, "lingyun_time_to_first_token_seconds_count", model="sim") == OK_STREAM
    # Gaps between streamed events: the role chunk, 4 tokens, the finish chunk -> 5 per stream.
    assert value(s, "lingyun_inter_token_latency_seconds_count", model="sim") == OK_STREAM * 5
    assert value(s, "lingyun_time_to_first_token_seconds_count", model="sim-slow") == 1
    # Every attempt that reached a deployment has a duration: successes, 429s, the 502.
    assert value(s, "lingyun_request_duration_seconds_count", model="sim") == ok + 3 + 1
    assert value(s, "lingyun_refusals_total", reason="rate_limit") == LIMITED_TRIES - RPM
    assert value(s, "lingyun_refusals_total", reason="access") == NOT_FOUND
    assert (
        value(s, "lingyun_upstream_errors_total", provider="simulator", code="upstream_error") == 1
    )
    assert value(s, "lingyun_requests_in_flight", deployment="sim") == 0
    assert value(s, "lingyun_requests_queued", deployment="sim") == 0
    assert value(s, "lingyun_replicas", deployment="sim", state="healthy") == 1


def test_unauthenticated_requests_are_counted(server: LingyunServer) -> None:
    before = value(scrape(server.base_url), "lingyun_requests_total", status="401")
    bad = server.client("sk-ly-nope", max_retries=0)
    assert _status(lambda: bad.embeddings.create(model="sim", input="x")) == 401
    after = scrape(server.base_url)
    assert value(after, "lingyun_requests_total", model="unknown", endpoint="embeddings",
                 status="401", code="invalid_api_key") == before + 1  # fmt: skip
    assert value(after, "lingyun_refusals_total", reason="auth") >= 1


def test_engine_signals_and_a_killed_replica(server: LingyunServer) -> None:
    s = wait_for(
        lambda: (
            (x := scrape(server.base_url))
            and (
                "lingyun_replica_requests_running",
                frozenset({("deployment", "sim"), ("replica", "sim-0")}),
            )
            in x
            and x
        ),
        what="the replica's own metrics",
    )
    assert value(s, "lingyun_replica_requests_waiting", deployment="sim", replica="sim-0") == 0
    victim = next(d for d in server.health()["deployments"] if d["name"] == "sim-victim")
    pid = victim["replica_states"][0]["pid"]
    assert value(s, "lingyun_replica_restarts_total", deployment="sim-victim") == 0
    os.kill(pid, signal.SIGKILL)
    s = wait_for(
        lambda: (
            (x := scrape(server.base_url))
            and value(x, "lingyun_replica_restarts_total", deployment="sim-victim") == 1
            and value(x, "lingyun_replica_up", deployment="sim-victim") == 1
            and x
        ),
        timeout_s=60,
        what="the killed replica to restart",
    )
    assert value(s, "lingyun_replicas", deployment="sim-victim", state="healthy") == 1


def test_a_real_prometheus_scrapes_lingyun(server: LingyunServer, tmp_path: Path) -> None:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "lingyun", "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        expected = value(
            scrape(server.base_url), "lingyun_requests_total", model="sim", status="200"
        )
        assert expected > 0

        def query(promql: str) -> float | None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql})
                result = resp.json()["data"]["result"]
            except (httpx.HTTPError, KeyError, json.JSONDecodeError):
                return None
            return float(result[0]["value"][1]) if result else None

        got = wait_for(
            lambda: query('sum(lingyun_requests_total{model="sim",status="200"})'),
            timeout_s=60,
            what="Prometheus to scrape Lingyun",
        )
        assert got == expected
        # Send more, and the rate Prometheus computes over the new samples turns positive.
        secret, _ = new_key(server, "prom-tenant")
        client = server.client(secret, max_retries=0)
        for _ in range(5):
            client.chat.completions.create(model="sim", messages=MSG)  # type: ignore[arg-type]
        wait_for(
            lambda: query('sum(lingyun_requests_total{model="sim",status="200"})') == expected + 5,
            timeout_s=60,
            what="Prometheus to see five more",
        )
        rate = query('sum(rate(lingyun_requests_total{model="sim",status="200"}[1m]))')
        assert rate is not None and rate > 0
        up = query('up{job="lingyun"}')
        assert up == 1.0
        # Every query of the Grafana dashboard is valid PromQL, and names series we export.
        for expr in dashboard_queries():
            resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr})
            assert resp.json()["status"] == "success", (expr, resp.text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_lingyun_top_reports_the_traffic_just_sent(server: LingyunServer) -> None:
    before = scrape(server.base_url)
    client = server.client(KEYS["secret"], max_retries=0)
    for _ in range(3):
        list(client.chat.completions.create(model="sim", messages=MSG, stream=True))  # type: ignore[arg-type]
    top = [*LINGYUN, "top", "--url", server.base_url, "--once", "--interval", "0.2"]
    out = subprocess.run([*top, "--json"], capture_output=True, text=True, timeout=60, check=True)
    doc = json.loads(out.stdout)
    sim = next(m for m in doc["models"] if m["model"] == "sim")
    assert sim["requests"] == value(before, "lingyun_requests_total", model="sim") + 3
    assert (
        sim["completion_tokens"]
        == value(before, "lingyun_completion_tokens_total", model="sim") + 12
    )
    assert sim["errors"] == value(before, "lingyun_requests_total", model="sim") - value(
        before, "lingyun_requests_total", model="sim", status="200"
    )
    assert sim["ttft_p50_s"] is not None and sim["ttft_p95_s"] >= sim["ttft_p50_s"]
    assert (sim["replicas_up"], sim["replicas"], sim["in_flight"], sim["queued"]) == (1, 1, 0, 0)
    assert {m["model"] for m in doc["models"]} == {"sim", "sim-slow", "sim-victim"}
    wide = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(top, capture_output=True, text=True, timeout=60, check=True, env=wide)
    assert "sim-victim" in table.stdout and "TTFT" in table.stdout


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        pytest.param(0.5, [(0.1, 0.0), (0.2, 10.0), (math.inf, 10.0)], 0.15, id="inside-a-bucket"),
        pytest.param(0.95, [(0.1, 5.0), (0.5, 5.0), (math.inf, 10.0)], 0.5, id="in-the-inf-bucket"),
        pytest.param(0.5, [(0.1, 0.0), (math.inf, 0.0)], None, id="empty"),
    ],
)
def test_quantile_interpolates_like_promql(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    got = quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    return [e.replace("$__rate_interval", "1m").replace("$model", ".*") for e in exprs]


def test_the_dashboard_names_only_exported_metrics(server: LingyunServer) -> None:
    text = httpx.get(f"{server.base_url}/metrics").text
    families = set(re.findall(r"^# TYPE (\S+)", text, flags=re.M))  # with or without samples
    suffix = re.compile(r"_(total|bucket|count|sum)$")
    used = {
        suffix.sub("", m) for e in dashboard_queries() for m in re.findall(r"lingyun_[a-z_]+", e)
    }
    assert used and used <= {suffix.sub("", f) for f in families}, used - families
