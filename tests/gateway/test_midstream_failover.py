"""Mid-stream failover through a real ``lingyun serve``: a replica ``kill -9``ed after N chunks
reached the client. With ``mid_stream_failover`` the stream continues on the sibling (the
transformers worker on the greedy tiny model, and the simulator): the client's text equals
an uninterrupted run's, one ledger entry charges the prompt once and every token received,
and the re-prefill is the platform's cost. Without it, today's SSE error event, and the
client pays for what it received."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from lingyun.config import DeploymentConfig
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry
from lingyun.store.models import UsageRecord
from tests.support.server import LingyunServer

MSG: list[Any] = [{"role": "user", "content": "你好，请介绍一下凌云云平台。"}]
KILL_AFTER = 5  # content chunks the client has when its replica dies
USAGE = {"include_usage": True}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[LingyunServer, str]]:
    tmp = tmp_path_factory.mktemp("midstream")
    server = LingyunServer(
        data_dir=tmp,
        database_url=f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}",
        models=[
            {"name": "sim-fo", "engine": "simulator", "replicas": 2, "mid_stream_failover": True},
            {"name": "sim-off", "engine": "simulator", "replicas": 2},
            {"name": "tiny-fo", "engine": "transformers", "model": str(tiny_model_dir),
             "replicas": 2, "args": {"device": "cpu"}, "mid_stream_failover": True},
        ],
    )  # fmt: skip
    key = server.create_key("resume")
    server.cli("prices", "set", "sim-fo", "--input", "1", "--output", "1000")
    server.cli("prices", "set", "sim-off", "--input", "1", "--output", "1000")
    server.cli("prices", "set", "tiny-fo", "--input", "1", "--output", "1000")
    server.cli("topup", "--tenant", "resume", "--amount", "100")
    server.start()
    try:
        yield server, key
    finally:
        server.stop()


def _all_healthy(server: LingyunServer, name: str) -> dict[str, Any]:
    """The deployment once both its replicas serve (the bound only stops a hang)."""
    deadline = time.monotonic() + 120
    while True:
        (dep,) = [d for d in server.health()["deployments"] if d["name"] == name]
        if dep["healthy_replicas"] == dep["replicas"]:
            return dep  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, dep
        time.sleep(0.1)


def _busy_replica(server: LingyunServer, name: str) -> dict[str, Any]:
    (dep,) = [d for d in server.health()["deployments"] if d["name"] == name]
    (busy,) = [r for r in dep["replica_states"] if r["inflight"]]
    return busy  # type: ignore[no-any-return]


def _yield_cpu(server: LingyunServer, name: str) -> None:
    """Lowest CPU priority for the deployment's replicas: on a busy machine a replica could
    otherwise run far ahead of the gateway and the client, and finish before the kill."""
    (dep,) = [d for d in server.health()["deployments"] if d["name"] == name]
    for r in dep["replica_states"]:
        os.setpriority(os.PRIO_PROCESS, r["pid"], 19)


def _stream(
    server: LingyunServer, key: str, model: str, kill: bool, **body: Any
) -> tuple[str, list[str], Any, Exception | None]:
    """Request id, content pieces received, the usage chunk, and the error that ended it;
    with ``kill``, the replica serving it is SIGKILLed once KILL_AFTER pieces arrived."""
    client = server.client(key, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MSG, stream=True, stream_options=USAGE, temperature=0, **body
    )
    pieces: list[str] = []
    usage, error = None, None
    victim = 0
    try:
        for chunk in raw.parse():
            if chunk.usage is not None:
                usage = chunk.usage
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                pieces.append(text)
                if kill and len(pieces) == 1:  # found early: the kill itself is one syscall
                    victim = _busy_replica(server, model)["pid"]
                if kill and len(pieces) == KILL_AFTER:
                    os.kill(victim, signal.SIGKILL)
    except openai.APIError as exc:
        error = exc
    finally:
        client.close()
    return raw.headers["x-request-id"], pieces, usage, error


def _rows(server: LingyunServer, rid: str) -> tuple[list[Any], list[Any]]:
    """The request's ledger entries and usage rows, once it has both (written in batches)."""

    async def read() -> tuple[list[Any], list[Any]]:
        db = Database(server.database_url)
        try:
            async with db.session() as s:
                entries = (
                    (await s.execute(select(LedgerEntry).where(LedgerEntry.entry_key == rid)))
                    .scalars()
                    .all()
                )
                usage = (
                    (await s.execute(select(UsageRecord).where(UsageRecord.request_id == rid)))
                    .scalars()
                    .all()
                )
                return list(entries), list(usage)
        finally:
            await db.close()

    deadline = time.monotonic() + 30
    while not all(found := asyncio.run(read())):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found


@pytest.mark.parametrize(
    ("model", "body"),
    [
        pytest.param("tiny-fo", {"max_tokens": 1500}, id="transformers-greedy"),
        pytest.param("sim-fo", {"max_tokens": 60, "extra_body": {"sim_itl_ms": 40}},
                     id="simulator"),
    ],
)  # fmt: skip
def test_killed_replica_continues_on_its_sibling(
    served: tuple[LingyunServer, str], model: str, body: dict[str, Any]
) -> None:
    server, key = served
    _all_healthy(server, model)
    _, whole, whole_usage, whole_error = _stream(server, key, model, kill=False, **body)
    assert whole_error is None and len(whole) > KILL_AFTER
    _yield_cpu(server, model)
    rid, got, usage, error = _stream(server, key, model, kill=True, **body)
    assert error is None, error  # one stream, no error event
    assert "".join(got) == "".join(whole)  # no duplicate or missing text
    (entry,), (row,) = _rows(server, rid)
    assert row.platform_prompt_tokens > whole_usage.prompt_tokens  # it did move: re-prefill
    # one ledger entry: the prompt once, and every completion token the client received
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        whole_usage.prompt_tokens,
        whole_usage.completion_tokens,
    )
    assert (
        (usage.prompt_tokens, usage.completion_tokens)
        == (
            row.prompt_tokens,
            row.completion_tokens,
        )
        == (entry.prompt_tokens, entry.completion_tokens)
    )
    if model == "sim-fo":  # one token per chunk: the client's own count
        assert entry.completion_tokens == len(got)
    log = (server.data_dir / "serve.log").read_text(errors="replace")
    assert f"{rid}: replica {model}" in log and "died mid-stream; continuing on" in log


def test_without_the_option_the_client_gets_an_error_and_pays_what_it_got(
    served: tuple[LingyunServer, str],
) -> None:
    server, key = served
    _all_healthy(server, "sim-off")
    _yield_cpu(server, "sim-off")
    body = {"max_tokens": 60, "extra_body": {"sim_itl_ms": 40}}
    rid, got, usage, error = _stream(server, key, "sim-off", kill=True, **body)
    assert isinstance(error, openai.APIError) and "backend" in error.message
    assert usage is None and len(got) >= KILL_AFTER
    (entry,), (row,) = _rows(server, rid)
    assert entry.completion_tokens == len(got) and row.platform_prompt_tokens == 0
    assert entry.prompt_tokens > 0 and entry.amount < 0


@pytest.mark.parametrize("engine", ["openai-compatible", "llamacpp"])
def test_engines_that_cannot_continue_exactly_refuse_the_option(engine: str) -> None:
    with pytest.raises(ValueError, match="mid_stream_failover needs an engine"):
        DeploymentConfig(name="x", engine=engine, mid_stream_failover=True)
