"""Two gateway processes sharing Redis and one PostgreSQL database share one limit.

Both gateways route to one simulator worker of ours (an ``openai-compatible`` deployment), so
neither starts replicas of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admission.conftest import RULE_REFRESH_WAIT_S, new_key, set_limits, sim_worker
from tests.support.databases import REDIS_URL, fresh_postgres
from tests.support.server import LingyunServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LIMIT = 100


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[LingyunServer, LingyunServer]]:
    with fresh_postgres() as url, sim_worker(tmp_path / "worker", output_tokens=2) as worker:
        servers = tuple(
            LingyunServer(
                data_dir=tmp_path / name,
                database_url=url,
                models=[worker.deployment()],
                extra_config={"redis_url": REDIS_URL, "metering": False, "instance_name": name},
            )
            for name in ("gw1", "gw2")
        )
        try:
            for server in servers:  # one at a time: both migrate the database at start
                server.start()
            yield servers[0], servers[1]
        finally:
            for server in servers:
                server.stop()


def test_two_gateways_admit_the_limit_together(
    gateways: tuple[LingyunServer, LingyunServer],
) -> None:
    one, two = gateways
    secret, key_id = new_key(one, "shared")
    set_limits(one, key=key_id, rpm=LIMIT, burst=0)
    time.sleep(RULE_REFRESH_WAIT_S)

    async def fire() -> list[httpx.Response]:
        body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            return await asyncio.gather(
                *(
                    http.post(f"{gw.base_url}/v1/chat/completions", json=body, headers=headers)
                    for _ in range(150)
                    for gw in (one, two)
                )
            )

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    admitted = statuses.count(200)
    assert statuses.count(429) == len(statuses) - admitted
    assert abs(admitted - LIMIT) <= 0.02 * LIMIT, admitted
    # Both gateways did admit some: the limit was shared, not split or doubled.
    by_gateway = {gw.port: 0 for gw in (one, two)}
    for r in responses:
        if r.status_code == 200:
            by_gateway[r.url.port or 0] += 1
    assert all(n > 0 for n in by_gateway.values()), by_gateway
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(LIMIT - admitted, LIMIT))
