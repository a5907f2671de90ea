"""Failover: retries on another replica before the first byte, fallback models on upstream
429/5xx, and a retry budget that bounds both."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import openai
import pytest

from lingyun.errors import (
    InsufficientQuotaError,
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from lingyun.gateway.context import RequestContext
from lingyun.gateway.failover import RetryBudget, falls_back
from lingyun.serving.replica import Replica
from tests.support.server import LingyunServer
from tests.support.standins import STANDIN_KEY, STANDINS, build_app, running

MSG = [{"role": "user", "content": "hello"}]


def _ctx(routed: bool) -> RequestContext:
    ctx = RequestContext(endpoint="chat.completions", body={}, stream=False,
                         client_wants_usage=False, max_output_tokens=None)  # fmt: skip
    if routed:
        ctx.replica = Replica("d", "d-0", "http://x/v1", "m")
    return ctx


@pytest.mark.parametrize(
    ("err", "routed", "moves"),
    [
        pytest.param(RateLimitError("upstream"), True, True, id="engine-429"),
        pytest.param(RateLimitError("ours"), False, False, id="own-rate-limit"),
        pytest.param(InsufficientQuotaError("broke"), True, False, id="no-money"),
        pytest.param(UpstreamError("boom"), True, True, id="engine-5xx"),
        pytest.param(ServiceUnavailableError("none"), False, True, id="no-replica"),
        pytest.param(InvalidRequestError("bad"), True, False, id="client-mistake"),
    ],
)
def test_what_falls_back(err: Exception, routed: bool, moves: bool) -> None:
    assert falls_back(err, _ctx(routed)) is moves  # type: ignore[arg-type]


def test_retry_budget_is_a_share_of_traffic() -> None:
    budget = RetryBudget(ratio=0.1, min_per_s=0.0)
    allowed = 0
    for _ in range(100):
        budget.deposit("d")
        allowed += budget.withdraw("d")
    assert 10 <= allowed <= 11  # the first, then one per ten requests, not one per request
    dry = RetryBudget(ratio=0.0, min_per_s=0.0)
    assert dry.withdraw("d") is True and dry.withdraw("d") is False


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    tmp = Path(tmp_path_factory.mktemp("failover"))
    with ExitStack() as stack:
        qianfan = stack.enter_context(running(build_app(STANDINS["qianfan"])))
        server = LingyunServer(
            data_dir=tmp,
            database_url=f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}",
            models=[
                {"name": "ernie", "engine": "openai-compatible", "provider": "qianfan",
                 "base_url": qianfan + "/v2", "model": "ernie-4.0-8k", "fallbacks": ["sim"]},
                {"name": "ernie-chain", "engine": "openai-compatible", "provider": "qianfan",
                 "base_url": qianfan + "/v2", "model": "ernie-4.0-8k",
                 "fallbacks": ["ernie-also-down", "sim"]},
                {"name": "ernie-also-down", "engine": "openai-compatible", "provider": "qianfan",
                 "base_url": qianfan + "/v2", "model": "ernie-4.0-8k"},
                {"name": "sim", "engine": "simulator", "replicas": 2, "args": {"itl_ms": 2}},
                # max_inflight makes the queue count what is in flight (health's "active").
                {"name": "sim-kill", "engine": "simulator", "replicas": 2, "max_inflight": 8},
            ],
            env={"QIANFAN_API_KEY": STANDIN_KEY},
            extra_config={"retry_budget_ratio": 0.1, "retry_budget_min_per_s": 0.0},
        )  # fmt: skip
        server.start()
        stack.callback(server.stop)
        yield server


def test_upstream_429_falls_back_to_the_next_model(failover: LingyunServer) -> None:
    client = failover.client(failover.create_key("fb"), max_retries=0)
    limited = [{"role": "user", "content": "standin:rate_limit"}]
    # (each deployment's budget starts with one move: enough for these two requests)
    resp = client.chat.completions.with_raw_response.create(model="ernie", messages=limited)  # type: ignore[arg-type]
    body = resp.parse()
    assert body.model == "sim"  # answered by the fallback, and says so
    assert resp.headers["x-request-id"].endswith(".1")
    chained = client.chat.completions.create(model="ernie-chain", messages=limited)  # type: ignore[arg-type]
    assert chained.model == "sim"  # down the whole chain
    client.close()


def test_fallbacks_are_bounded_by_the_retry_budget(failover: LingyunServer) -> None:
    client = failover.client(failover.create_key("storm"), max_retries=0)
    limited = [{"role": "user", "content": "standin:inband_qps"}]
    fell_back = refused = 0
    for _ in range(60):
        try:
            client.chat.completions.create(model="ernie", messages=limited)  # type: ignore[arg-type]
            fell_back += 1
        except openai.RateLimitError:
            refused += 1
    # a 10% budget: about one request in ten moves to the fallback, the rest get the 429
    assert 3 <= fell_back <= 8 and refused == 60 - fell_back
    client.close()


def _replica(server: LingyunServer, deployment: str, replica_id: str) -> dict[str, Any]:
    (dep,) = [d for d in server.health()["deployments"] if d["name"] == deployment]
    (state,) = [r for r in dep["replica_states"] if r["id"] == replica_id]
    return cast(dict[str, Any], state)


def test_replica_killed_mid_load_is_retried_elsewhere(failover: LingyunServer) -> None:
    key = failover.create_key("kill")
    (dep,) = [d for d in failover.health()["deployments"] if d["name"] == "sim-kill"]
    victim = dep["replica_states"][0]
    log = failover.data_dir / "serve.log"
    log_before = log.stat().st_size
    # Half the slots (2 x max_inflight): every request is on a replica at once, and the
    # survivor has room for the victim's.
    n = 8

    def active() -> int:
        return int(failover.health()["queue"]["deployments"]["sim-kill"]["active"])

    async def load() -> list[int]:
        async with openai.AsyncOpenAI(
            api_key=key, base_url=f"{failover.base_url}/v1", max_retries=0
        ) as client:

            async def one() -> int:
                try:
                    await client.chat.completions.create(
                        model="sim-kill", messages=MSG,  # type: ignore[arg-type]
                        extra_body={"sim_ttft_ms": 1500},  # still generating when the kill lands
                    )  # fmt: skip
                    return 200
                except openai.APIStatusError as exc:
                    return exc.status_code

            tasks = [asyncio.create_task(one()) for _ in range(n)]
            # Kill once every request holds a slot: about half are on the victim, none has
            # an answer yet. (The bound only stops a hang.)
            async with asyncio.timeout(60):
                while await asyncio.to_thread(active) < n:  # noqa: ASYNC110 (another process)
                    await asyncio.sleep(0.02)
            os.kill(victim["pid"], signal.SIGKILL)
            return list(await asyncio.gather(*tasks))

    codes = asyncio.run(load())
    assert codes == [200] * n, {c: codes.count(c) for c in set(codes)}
    # They all succeeded *because* the victim's were moved: the gateway says so.
    with log.open("rb") as f:
        f.seek(log_before)
        since = f.read().decode(errors="replace")
    assert f"replica {victim['id']} unreachable; retrying elsewhere" in since, since[-3000:]
    # The supervisor restarts the victim: wait for that state (the bound only stops a hang).
    deadline = time.monotonic() + 120
    while (state := _replica(failover, "sim-kill", victim["id"]))["restarts"] <= victim[
        "restarts"
    ] or state["state"] != "healthy":
        assert state["state"] != "failed" and time.monotonic() < deadline, state
        time.sleep(0.1)
