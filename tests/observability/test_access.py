"""Who may read /metrics: a token on the serve port, anyone on the separate ops port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data = tmp_path_factory.mktemp("access")
    srv = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[{"name": "sim", "engine": "simulator"}],
        extra_config={"metrics_token": "scrape-me", "metrics_port": free_port()},
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _ops_port(server: LingyunServer) -> int:
    import yaml

    return int(yaml.safe_load(server.config_path.read_text())["metrics_port"])


def test_serve_port_needs_the_metrics_token(server: LingyunServer) -> None:
    url = f"{server.base_url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url, headers={"authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "lingyun_build_info" in ok.text
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def test_the_ops_port_answers_without_credentials(server: LingyunServer) -> None:
    base = f"http://127.0.0.1:{_ops_port(server)}"
    resp = httpx.get(f"{base}/metrics")
    assert resp.status_code == 200 and "lingyun_requests_in_flight" in resp.text
    assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
    assert httpx.get(f"{base}/v1/models").status_code == 404  # nothing else lives there


SCRIPT = """
import sys
from lingyun.observability import metrics
metrics.REQUESTS.labels("m", "chat.completions", "200", "").inc(int(sys.argv[1]))
metrics.QUEUED.labels("m").set(0)
"""


def test_several_workers_sum_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in ("2", "5"):  # two "workers", each counting its own
        subprocess.run([sys.executable, "-c", SCRIPT, n], env=env, check=True, timeout=60)
    render = "from lingyun.observability import metrics; print(metrics.render().decode())"
    out = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, timeout=60, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("lingyun_requests_total{"))
    assert float(line.rsplit(" ", 1)[1]) == 7.0
