"""Redis killed under load, and started again: the shared rate limits behave as configured.

A real ``lingyun serve`` keeps its rate limits in a private ``redis-server`` (a limit of 40
requests a minute for the tenant). While Redis is away, ``rate_limits_without_redis:
closed`` (the default) refuses with a 503 ``rate_limiter_unavailable`` and Retry-After, and
``open`` admits without limits; either way, once Redis is back the limit holds again with
no restart: exactly 40 more admitted (Redis came back empty), then 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.databases import fresh_sqlite
from tests.support.fault_load import Load, steady, until
from tests.support.private_services import PrivateRedis, private_redis
from tests.support.server import LingyunServer

RPM = 40


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_limits_follow_the_setting_while_redis_is_away_and_recover(
    redis: PrivateRedis, tmp_path: Path, mode: str
) -> None:
    if not redis.answers():
        redis.start()
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_sqlite(tmp_path / "lingyun"),
        models=[{"name": "sim", "engine": "simulator"}],
        extra_config={"redis_url": redis.url, "rate_limits_without_redis": mode},
    )
    key = server.create_key("limited")
    server.cli("limits", "set", "--tenant", "limited", "--rpm", str(RPM), "--burst", "0")
    server.start()
    try:
        load, killed_at, restarted_at = asyncio.run(_kill_under_load(server, key, redis))
    finally:
        server.stop()

    # The limit held through Redis: all RPM admissions were made before the first 429, and
    # so before the kill (in "open" mode a request in flight at the kill may pass unlimited).
    before = [a for a in load.answers if a.started < killed_at]
    served_before = [a.status for a in before].count(200)
    assert served_before == RPM if mode == "closed" else served_before >= RPM
    assert 429 in {a.status for a in before}
    during = load.between(killed_at, restarted_at)
    after = [a for a in load.answers if a.started >= restarted_at]
    if mode == "closed":
        assert during and all(a.status == 503 for a in during), {a.status for a in during}
        for a in during:
            assert (a.code, a.error_type) == ("rate_limiter_unavailable", "server_error")
            assert a.retry_after == "1"
        # nothing was admitted while Redis was away; Redis came back empty: exactly RPM more
        admitted = [a for a in load.answers if a.started >= killed_at and a.status == 200]
        assert len(admitted) == RPM
    else:
        assert during and all(a.status == 200 for a in during), {a.status for a in during}
    assert any(a.status == 429 for a in after)  # limited again, without a restart
    assert {a.status for a in load.answers} <= {200, 429, 503}


async def _kill_under_load(
    server: LingyunServer, key: str, redis: PrivateRedis
) -> tuple[Load, float, float]:
    load, stop = Load(), asyncio.Event()
    client = openai.AsyncOpenAI(
        api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=60
    )
    async with client:
        runner = asyncio.create_task(steady(client, "sim", load, stop))
        try:
            await until(lambda: any(a.status == 429 for a in load.answers), "the limit reached")
            redis.kill()
            killed_at = time.monotonic()
            # the outage seen by clients: in "closed" mode refusals, in "open" answers
            await until(
                lambda: len(load.between(killed_at, float("inf"))) >= 20,
                "20 answers while Redis is away",
            )
            restarted_at = time.monotonic()  # from here on Redis may answer
            await asyncio.to_thread(redis.start)
            await until(
                lambda: any(a.status == 429 for a in load.answers if a.started >= restarted_at),
                "the limit reached again after Redis came back",
            )
        finally:
            stop.set()
            await runner
    return load, killed_at, restarted_at
