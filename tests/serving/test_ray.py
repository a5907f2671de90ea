"""Replicas on a Ray cluster, served through a real ``lingyun serve --ray-address``.

One two-node cluster (``ray_cluster.py``: a head with resource ``node_a``, a second node
with ``node_b``) and one gateway serve the whole module; every Ray process and every engine
process is checked gone at the end. About a minute on two cores.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from tests.serving.ray_cluster import RAY_ENV, RayCluster
from tests.support import replicas
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer
from tests.support.tenancy import poll

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "hello"}]
MODELS: list[dict[str, Any]] = [
    {"name": "sim", "engine": "simulator", "replicas": 2, "args": {"ttft_ms": 5, "itl_ms": 5}},
    {"name": "sim-b", "engine": "simulator", "resources": {"num_cpus": 0.5, "node_b": 1}},
    {"name": "sim-zero", "engine": "simulator", "replicas": 0, "min_replicas": 0,
     "max_replicas": 1, "idle_timeout_s": 3},
    {"name": "sim-auto", "engine": "simulator", "min_replicas": 1, "max_replicas": 2,
     "target_inflight": 2, "scale_up_delay_s": 0.5, "scale_down_delay_s": 2,
     "resources": {"num_cpus": 0.5}, "args": {"ttft_ms": 10, "itl_ms": 100}},
]  # fmt: skip


@dataclass
class RayServed:
    cluster: RayCluster
    server: LingyunServer
    client: openai.OpenAI
    engine_pids: set[int]

    def deployment(self, name: str) -> dict[str, Any]:
        [dep] = [d for d in self.server.health()["deployments"] if d["name"] == name]
        self.engine_pids.update(r["pid"] for r in dep["replica_states"] if r["pid"])
        return dep

    def wait(self, name: str, ok: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            dep = self.deployment(name)
            if ok(dep):
                return dep
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never got there: {dep}\n{self.server.log_tail()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServed]:
    cluster = RayCluster()
    data_dir: Path = tmp_path_factory.mktemp("ray-gateway")
    server = LingyunServer(
        data_dir=data_dir, database_url=fresh_sqlite(data_dir), models=MODELS, env=RAY_ENV
    )
    served: RayServed | None = None
    try:
        cluster.start()
        server.serve_args = ["--ray-address", cluster.address]
        server.start(wait_for=["sim", "sim-b", "sim-auto"], timeout_s=120)
        key = server.create_key("acme")
        served = RayServed(cluster, server, server.client(key, max_retries=0), set())
        yield served
    finally:
        server.stop()
        leftovers = cluster.stop()
        assert leftovers == [], f"Ray processes outlived the cluster: {leftovers}"
        if served is not None:
            alive = [p for p in served.engine_pids if psutil.pid_exists(p)]
            assert alive == [], f"engine processes outlived their actors: {alive}"


def chat(client: openai.OpenAI, model: str, **extra: Any) -> str:
    out = client.chat.completions.create(model=model, messages=MSG, max_tokens=4, **extra)
    return out.choices[0].message.content or ""


def test_two_replicas_on_ray_keep_serving_through_an_actor_kill(ray_served: RayServed) -> None:
    dep = ray_served.wait("sim", lambda d: d["healthy_replicas"] == 2)
    victim = dep["replica_states"][0]
    # The actor is the engine's parent; kill -9 it as a crashed node process would die.
    actor = psutil.Process(victim["pid"]).parent()
    assert actor is not None and "ray::ReplicaActor" in " ".join(actor.cmdline()), actor

    errors: list[BaseException] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                assert chat(ray_served.client, "sim")
                served[0] += 1
            except Exception as exc:
                errors.append(exc)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        poll(lambda: served[0] >= 5, timeout_s=60)  # load is flowing through both replicas
        os.kill(actor.pid, signal.SIGKILL)
        # Ray restarts the actor, the actor restarts the engine, the gateway routes to it again.
        ray_served.wait(
            "sim",
            lambda d: (
                d["healthy_replicas"] == 2 and any(r["restarts"] >= 1 for r in d["replica_states"])
            ),
        )
        after_restart = served[0]
        poll(lambda: served[0] >= after_restart + 10, timeout_s=60)  # and keeps flowing
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert errors == []
    assert served[0] > 10
    assert not psutil.pid_exists(victim["pid"])  # the old engine went with its actor


def test_a_ray_replica_refuses_a_direct_request_without_its_secret(
    ray_served: RayServed,
) -> None:
    # A Ray replica listens on its node's address, so anything on the cluster network can
    # reach it: the per-start secret is what keeps it the gateway's alone.
    dep = ray_served.wait("sim-b", lambda d: d["healthy_replicas"] == 1)
    pid = dep["replica_states"][0]["pid"]
    argv = replicas.cmdline(pid)
    base = f"http://{argv[argv.index('--host') + 1]}:{replicas.listen_port(pid)}"
    body = {"model": "sim-b", "messages": MSG}
    for headers in ({}, {"Authorization": "Bearer guessed"}):
        resp = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers)
        assert resp.status_code == 401, resp.text
    assert all(b"LINGYUN_REPLICA_SECRET" not in raw for _, raw in replicas.all_cmdlines())
    assert chat(ray_served.client, "sim-b")  # the gateway holds the secret


def test_replica_lands_on_the_node_with_its_resource(ray_served: RayServed) -> None:
    dep = ray_served.wait("sim-b", lambda d: d["healthy_replicas"] == 1)
    engine = psutil.Process(dep["replica_states"][0]["pid"])
    ancestors = {p.pid for p in engine.parents()}
    cluster = ray_served.cluster
    # engine <- actor worker <- the raylet of the node that holds `node_b`.
    assert cluster.worker_raylet in ancestors
    assert cluster.head_raylet not in ancestors
    assert chat(ray_served.client, "sim-b")


def test_scale_from_zero_on_first_request_and_back_to_zero(ray_served: RayServed) -> None:
    assert ray_served.deployment("sim-zero")["replicas"] == 0
    assert chat(ray_served.client, "sim-zero")  # held by the activator while a replica starts
    assert ray_served.deployment("sim-zero")["healthy_replicas"] == 1
    ray_served.wait("sim-zero", lambda d: d["replicas"] == 0, timeout_s=30)  # idle 3 s


def test_scale_up_under_load_and_down_when_idle(ray_served: RayServed) -> None:
    ray_served.wait("sim-auto", lambda d: d["replicas"] == 1 and d["healthy_replicas"] == 1)

    def slow(_: int) -> str:  # ~2 s each: six at once is three per replica, target two
        return chat(ray_served.client, "sim-auto", extra_body={"max_tokens": 20})

    with ThreadPoolExecutor(6) as pool:
        results = pool.map(slow, range(6))
        ray_served.wait("sim-auto", lambda d: d["healthy_replicas"] == 2, timeout_s=30)
        assert all(results)
    ray_served.wait("sim-auto", lambda d: d["replicas"] == 1, timeout_s=30)
