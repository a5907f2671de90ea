"""An upstream that sends its headers and a few tokens, then stalls forever.

The gateway's per-read idle timeout (``upstream_timeout_s``) ends the stream: the client gets
what was sent and then a clean error event, well before its own timeout, and the request is
recorded with the tokens that reached the client.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer
from tests.support.standins import running

MSG = [{"role": "user", "content": "hello"}]
IDLE_TIMEOUT_S = 2.0
SENT = ["one ", "two ", "three"]


def stalling_upstream(stop: asyncio.Event | None = None) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for i, text in enumerate(SENT):
                chunk = {
                    "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                }  # fmt: skip
                if i == 0:
                    chunk["choices"][0]["delta"]["role"] = "assistant"  # type: ignore[index]
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(3600)  # headers and tokens sent; then nothing, ever

        return StreamingResponse(body(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def stalled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    with running(stalling_upstream()) as root:
        data_dir = tmp_path_factory.mktemp("stall")
        server = LingyunServer(
            data_dir=data_dir,
            database_url=fresh_sqlite(data_dir),
            models=[
                {
                    "name": "stally",
                    "engine": "openai-compatible",
                    "base_url": f"{root}/v1",
                    "model": "m",
                }
            ],
            extra_config={"upstream_timeout_s": IDLE_TIMEOUT_S},
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_a_stall_after_headers_ends_with_a_clean_error_and_a_fair_charge(
    stalled: LingyunServer,
) -> None:
    client = stalled.client(stalled.create_key("stall"), max_retries=0, timeout=60)
    got: list[str] = []
    started = time.monotonic()
    stream = client.chat.completions.with_raw_response.create(
        model="stally",
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = stream.headers["x-request-id"]
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    waited = time.monotonic() - started
    assert not isinstance(caught.value, openai.APITimeoutError)  # the gateway told it
    assert "stopped mid-stream" in caught.value.message
    assert got == SENT
    assert waited < 60  # ended by the gateway's idle timeout, not by the client's own
    row = _usage_row(stalled.data_dir / "lingyun.db", request_id)
    assert row["completion_tokens"] == len(SENT)  # charged for what it received
    assert row["status_code"] >= 500 and row["usage_source"] == "estimated"


def _usage_row(db: Path, request_id: str) -> dict[str, object]:
    """The request's usage row, once the writer (a batch behind the response) has it."""
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is not None:
            return dict(row)
        assert time.monotonic() < deadline, f"no usage row for {request_id}"
        time.sleep(0.1)
