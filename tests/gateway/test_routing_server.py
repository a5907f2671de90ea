"""Routing through a real ``lingyun serve`` over simulator replicas with a prefix cache: the
cached tokens that usage reports show which replica (warm or cold) served a request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow

SIM_ARGS = {"prefix_cache_tokens": 100_000, "prefill_ms_per_token": 0.01, "itl_ms": 1}
SYSTEM = "You are the assistant of a cloud company; answer in one sentence. " * 30
DEPLOYMENTS = {"sim-plain": "least-inflight", "sim-prefix": "prefix", "sim-session": "session"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    tmp = Path(tmp_path_factory.mktemp("routing"))
    srv = LingyunServer(
        data_dir=tmp,
        database_url=f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}",
        models=[
            {
                "name": name,
                "engine": "simulator",
                "replicas": 2,
                "routing": routing,
                "args": SIM_ARGS,
            }
            for name, routing in DEPLOYMENTS.items()
        ],
    )
    srv.start()
    try:
        deadline = time.monotonic() + 120
        while not all(d["healthy_replicas"] == 2 for d in srv.health()["deployments"]):
            assert time.monotonic() < deadline, srv.health()
            time.sleep(0.2)
        yield srv
    finally:
        srv.stop()


def _conversation(turns: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for t in range(turns):
        msgs += [{"role": "user", "content": f"question {t} about the cloud"}]
        if t < turns - 1:
            msgs += [{"role": "assistant", "content": f"answer {t} about the cloud"}]
    return msgs


def _cached(usage: Any) -> int:
    details = usage.prompt_tokens_details
    return int(details.cached_tokens or 0) if details is not None else 0


@pytest.mark.parametrize(
    ("model", "stays_warm"),
    [
        pytest.param("sim-prefix", True, id="prefix"),
        pytest.param("sim-session", True, id="session"),
        pytest.param("sim-plain", False, id="least-inflight"),
    ],
)
def test_follow_up_lands_on_the_warm_replica_though_it_is_busier(
    server: LingyunServer, model: str, stays_warm: bool
) -> None:
    client = server.client(server.create_key(f"t-{model}"), max_retries=0)
    session = {"X-Session-ID": f"chat-{model}"}
    first = client.chat.completions.create(
        model=model,
        messages=_conversation(1),
        extra_headers=session,  # type: ignore[arg-type]
    )
    assert first.usage is not None and _cached(first.usage) == 0  # both replicas were cold
    # Keep the warm replica busy with a stalled stream of the same conversation, so the
    # other replica is the less loaded one.
    held = client.chat.completions.create(
        model=model, messages=_conversation(1), stream=True, extra_headers=session,  # type: ignore[arg-type]
        extra_body={"sim_stall_after": 1},
    )  # fmt: skip
    try:
        next(iter(held))  # the first chunk: it is in flight
        follow_up = client.chat.completions.create(
            model=model,
            messages=_conversation(2),
            extra_headers=session,  # type: ignore[arg-type]
        )
    finally:
        held.close()
    assert follow_up.usage is not None
    hit = _cached(follow_up.usage)
    if stays_warm:
        assert hit >= first.usage.prompt_tokens - 16  # the whole first turn was reused
    else:
        assert hit == 0  # least-inflight sent it to the cold replica
    client.close()
