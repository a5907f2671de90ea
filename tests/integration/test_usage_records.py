"""Every finished request leaves one usage row: served, refused, failed or cancelled."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from sqlalchemy import select

from lingyun.store.db import Database
from lingyun.store.models import UsageRecord
from tests.integration.conftest import Served

MSG = [{"role": "user", "content": "one two three four"}]


def _row(served: Served, request_id: str, timeout_s: float = 5.0) -> UsageRecord:
    async def fetch() -> UsageRecord | None:
        db = Database(served.server.database_url)
        try:
            async with db.session() as s:
                return await s.scalar(
                    select(UsageRecord).where(UsageRecord.request_id == request_id)
                )
        finally:
            await db.close()

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = asyncio.run(fetch())
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no usage row for {request_id}")


def _headers(served: Served) -> dict[str, Any]:
    return {"authorization": f"Bearer {served.key}"}


def test_served_request_row_matches_reported_usage(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model="sim",
        messages=MSG,
        max_tokens=7,  # type: ignore[arg-type]
    )
    body = raw.parse()
    row = _row(served, raw.headers["x-request-id"])
    assert body.usage is not None
    assert (row.prompt_tokens, row.completion_tokens) == (
        body.usage.prompt_tokens,
        body.usage.completion_tokens,
    )
    assert row.status_code == 200 and row.usage_source == "engine"
    assert row.model == "sim" and row.endpoint == "chat.completions" and not row.stream
    assert row.key_id.startswith("key_") and row.tenant_id.startswith("ten_")


def test_streamed_request_row_and_no_prompt_text_stored(served: Served) -> None:
    secret = "my-secret-prompt-text-42"
    with httpx.stream(
        "POST",
        f"{served.server.base_url}/v1/chat/completions",
        headers=_headers(served),
        json={"model": "sim", "messages": [{"role": "user", "content": secret}], "max_tokens": 5,
              "stream": True},
        timeout=30,
    ) as resp:  # fmt: skip
        request_id = resp.headers["x-request-id"]
        text = "".join(resp.iter_text())
    assert text.endswith("data: [DONE]\n\n")
    row = _row(served, request_id)
    assert row.stream and row.completion_tokens == 5 and row.status_code == 200
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    assert secret not in repr({c.name: getattr(row, c.name) for c in UsageRecord.__table__.columns})


def test_client_disconnect_cancels_and_is_recorded(served: Served) -> None:
    with httpx.stream(
        "POST",
        f"{served.server.base_url}/v1/chat/completions",
        headers=_headers(served),
        json={"model": "sim-slow", "messages": MSG, "max_tokens": 400, "stream": True},
        timeout=30,
    ) as resp:
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()
        for _ in range(6):
            next(lines)
    # leaving the block closes the connection mid-stream
    row = _row(served, request_id)
    assert row.status_code == 499 and row.error_code == "client_disconnected"
    assert 0 < row.completion_tokens < 400
    # the engine stopped too: its own log shows the request cancelled long before 400 tokens
    log = served.server.data_dir / "sim-slow-usage.jsonl"
    deadline = time.monotonic() + 5
    record = None
    while record is None and time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        record = next((json.loads(x) for x in lines if request_id in x), None)
        time.sleep(0.05)
    assert record is not None, "the engine never ended the request"
    assert record["outcome"] == "cancelled" and record["completion_tokens"] < 50


def test_refused_request_has_a_row_without_tokens(served: Served) -> None:
    resp = httpx.post(
        f"{served.server.base_url}/v1/chat/completions",
        headers=_headers(served),
        json={"model": "missing-model", "messages": MSG},
        timeout=10,
    )
    assert resp.status_code == 404
    row = _row(served, resp.headers["x-request-id"])
    assert (row.status_code, row.error_code, row.prompt_tokens) == (404, "model_not_found", 0)
