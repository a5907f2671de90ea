"""The router and the autoscaler read engines' own load signals, scraped from replicas that
export vLLM's metric names. The replicas here are stand-ins: local HTTP servers that answer
``/metrics`` with the exposition a vLLM server writes (``vllm:num_requests_waiting``,
``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc``), as vLLM itself cannot run here."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest

from lingyun.config import DeploymentConfig
from lingyun.gateway.route import RouterChain
from lingyun.gateway.routing.load import EngineLoad
from lingyun.observability.replica_signals import ReplicaScraper
from lingyun.serving.autoscale import Autoscaler, EngineReading, ScalingTimings
from lingyun.serving.replica import Replica
from tests.gateway.test_routing import SYSTEM, _conversation, _ctx, _dep

pytestmark = pytest.mark.anyio

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="qwen"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="qwen"}} {waiting}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="qwen"}} {kv}
"""


class VllmMetricsStandIn:
    """A stand-in for a vLLM server's ``/metrics``: serves whatever load it is told."""

    def __init__(self) -> None:
        self.running, self.waiting, self.kv = 0, 0, 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = VLLM_METRICS.format(
                    running=stand_in.running, waiting=stand_in.waiting, kv=stand_in.kv
                ).encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def engines() -> Iterator[list[VllmMetricsStandIn]]:
    stand_ins = [VllmMetricsStandIn() for _ in range(2)]
    yield stand_ins
    for s in stand_ins:
        s.close()


def _replicas(engines: list[VllmMetricsStandIn]) -> list[Replica]:
    return [Replica("d", f"d-{i}", e.base_url, "qwen", healthy=True)
            for i, e in enumerate(engines)]  # fmt: skip


async def _scraped(replicas: list[Replica]) -> ReplicaScraper:
    """The scraper's first pass over ``replicas`` (it then sleeps for an hour)."""
    scraper = ReplicaScraper(lambda: replicas, interval_s=3600)
    scraper.start()
    try:
        with anyio.fail_after(10):
            # the scraper sets no event; poll its state (bounded by the deadline above)
            while len(scraper.latest) < len(replicas):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await scraper.stop()
    return scraper


@pytest.mark.parametrize("routing", ["least-inflight", "prefix", "session"])
async def test_router_avoids_the_replica_whose_engine_is_backed_up(
    engines: list[VllmMetricsStandIn], routing: str
) -> None:
    replicas = _replicas(engines)
    replicas[1].inflight = 2  # busier as far as this gateway knows
    engines[0].running, engines[0].waiting, engines[0].kv = 4, 12, 0.97  # other gateways' load
    engines[1].running, engines[1].waiting, engines[1].kv = 2, 0, 0.2
    scraper = await _scraped(replicas)
    assert scraper.of("d") and {s["waiting"] for s in scraper.of("d")} == {12.0, 0.0}
    load = EngineLoad(scraper.signals)
    dep = _dep(routing)
    ctx = _ctx(dep, _conversation(1, SYSTEM), session="s1")
    assert RouterChain(load=load).route(ctx, replicas) is replicas[1]
    # Without signals, the same router counts only its own requests in flight.
    assert RouterChain().route(ctx, replicas) is replicas[0]


async def test_stale_signals_are_ignored(engines: list[VllmMetricsStandIn]) -> None:
    replicas = _replicas(engines)
    engines[0].waiting = 50
    scraper = await _scraped(replicas)
    fresh, stale = EngineLoad(scraper.signals), EngineLoad(scraper.signals, max_age_s=-1)
    assert fresh(replicas[0]) == 50 and stale(replicas[0]) == 0


def _scaler(**targets: float) -> Autoscaler:
    dep = DeploymentConfig(name="d", engine="vllm", replicas=2, max_replicas=8, **targets)
    return Autoscaler(dep, ScalingTimings(up_delay_s=0, down_delay_s=0), now=0.0)


async def test_autoscaler_targets_the_engines_queue_and_kv_cache(
    engines: list[VllmMetricsStandIn],
) -> None:
    replicas = _replicas(engines)
    engines[0].waiting, engines[1].waiting = 9, 3  # 6 waiting per replica on average
    engines[0].kv, engines[1].kv = 0.9, 0.5
    reading = EngineReading.of((await _scraped(replicas)).of("d"))
    assert (reading.replicas, reading.waiting, reading.kv_usage) == (2, 6.0, pytest.approx(0.7))
    # 2 replicas x 6 waiting / 4 per replica -> 3; 2 x 0.7 / 0.35 -> 4; in flight alone -> 1
    assert _scaler(target_queue=4).decide(1.0, 0, reading) == 3
    assert _scaler(target_kv_usage=0.35).decide(1.0, 0, reading) == 4
    assert _scaler(target_queue=4, target_kv_usage=0.35).decide(1.0, 0, reading) == 4
    assert _scaler(target_inflight=4).decide(1.0, 4, reading) == 1
    # No engine reports (a scrape failed): the engine targets ask for nothing.
    assert _scaler(target_queue=4).decide(1.0, 0, EngineReading()) == 2
