"""Priority bands on a real ``lingyun serve`` under saturation, with the official client: one
request slot, held by a slow stream; keys of every priority queue up behind it (batch
first, interactive last); once the slot frees, they are served interactive, standard, batch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lingyun.store.db import Database
from lingyun.store.models import ApiKey
from lingyun.tenancy.service import TenancyService
from tests.admission.conftest import new_key
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data = tmp_path_factory.mktemp("priorities")
    srv = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[
            {
                "name": "sim-one",
                "engine": "simulator",
                "max_inflight": 1,
                "queue_timeout_s": 120,
            }
        ],
        extra_config={"metering": False},
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _key(server: LingyunServer, tenant: str, priority: str) -> str:
    secret, key_id = new_key(server, tenant)

    async def work() -> None:
        db = Database(server.database_url)
        try:
            await TenancyService(db).set_priority(ApiKey, key_id, priority)
        finally:
            await db.close()

    asyncio.run(work())
    return secret


def _queued(server: LingyunServer) -> int:
    return int(server.health()["queue"]["queued_total"])


def _until(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_bands_order_service_under_saturation(server: LingyunServer) -> None:
    keys = {p: _key(server, f"t-{p}", p) for p in ("batch", "standard", "interactive")}
    holder = server.client(_key(server, "t-holder", "standard")).chat.completions.create(
        model="sim-one", messages=MESSAGES, stream=True, max_tokens=1000,
        extra_body={"sim_itl_ms": 200},
    )  # fmt: skip
    next(iter(holder))  # the slot is taken, for the 200 s this stream would last
    served: list[str] = []
    threads = []
    for priority, secret in keys.items():  # lowest priority first: arrival order is not rank
        before = _queued(server)

        def call(p: str = priority, s: str = secret) -> None:
            reply = server.client(s).chat.completions.create(
                model="sim-one", messages=MESSAGES, max_tokens=3
            )
            assert reply.choices[0].message.content
            served.append(p)

        threads.append(threading.Thread(target=call))
        threads[-1].start()
        _until(lambda b=before: _queued(server) > b)  # waiting in the queue before the next
    holder.close()  # the client goes away: its slot frees, and the queue serves the bands
    for t in threads:
        t.join(timeout=120)
    assert served == ["interactive", "standard", "batch"]
