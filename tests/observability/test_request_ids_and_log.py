"""Request ids end to end and the JSON request log, on a real server; prompts never stored."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lingyun.observability.request_id import CURRENT, client_id, install_log_context
from tests.observability.support import migrate, wait_for
from tests.support.databases import fresh_sqlite
from tests.support.provision import new_key
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow

KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data = tmp_path_factory.mktemp("reqlog")
    srv = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[
            {
                "name": "sim",
                "engine": "simulator",
                "args": {"output_tokens": 3, "usage_log": str(data / "engine-usage.jsonl")},
            },
            {"name": "sim-embed", "engine": "simulator"},
        ],
        extra_config={"request_log": "requests.jsonl"},
    )
    migrate(srv)
    KEYS["secret"], KEYS["key_id"] = new_key(srv, "log-tenant")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _log_lines(server: LingyunServer) -> list[dict[str, Any]]:
    path = server.data_dir / "requests.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _line_for(server: LingyunServer, **match: Any) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next(
            (x for x in _log_lines(server) if all(x.get(k) == v for k, v in match.items())), None
        )

    return wait_for(find, what=f"a request log line with {match}")


def _chat(server: LingyunServer, headers: dict[str, str], **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEYS['secret']}", **headers},
        json={"model": "sim", "messages": [{"role": "user", "content": "hi"}], **body},
        timeout=30,
    )


def test_client_request_id_comes_back_is_logged_and_reaches_the_replica(
    server: LingyunServer,
) -> None:
    rid = f"trace-{secrets.token_hex(6)}"
    resp = _chat(server, {"X-Request-ID": rid})
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == rid
    line = _line_for(server, client_request_id=rid)
    assert line["request_id"].startswith("req_")  # ours: the ledger's unique key
    assert (line["tenant_id"], line["key_id"]) == (line["tenant_id"], KEYS["key_id"])
    assert line["deployment"] == "sim" and line["replica"] == "sim-0"
    assert line["provider"] == "simulator" and line["status"] == 200 and line["end"] == "completed"
    assert line["completion_tokens"] == 3 and line["usage_source"] == "engine"
    assert line["duration_ms"] > 0 and line["queue_ms"] is not None
    engine_log = server.data_dir / "engine-usage.jsonl"

    def at_replica() -> dict[str, Any] | None:
        lines = engine_log.read_text().splitlines() if engine_log.exists() else []
        return next((r for x in lines if (r := json.loads(x))["request_id"] == rid), None)

    record = wait_for(at_replica, what="the replica to log the request id")
    assert record["outcome"] == "served" and record["completion_tokens"] == 3


def test_a_stream_carries_the_id_and_logs_its_ttft(server: LingyunServer) -> None:
    rid = f"stream-{secrets.token_hex(6)}"
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEYS['secret']}", "x-request-id": rid},
        json={"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        timeout=30,
    ) as resp:
        assert resp.headers["x-request-id"] == rid
        body = b"".join(resp.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    line = _line_for(server, client_request_id=rid)
    assert line["stream"] is True and line["ttft_ms"] is not None and line["end"] == "completed"


def test_errors_carry_the_id_in_header_and_body(server: LingyunServer) -> None:
    rid = f"err-{secrets.token_hex(6)}"
    resp = _chat(server, {"x-request-id": rid}, model="no-such-model")
    assert resp.status_code == 404
    assert resp.headers["x-request-id"] == rid
    assert resp.json()["error"]["request_id"] == rid
    assert resp.json()["error"]["code"] == "model_not_found"
    line = _line_for(server, client_request_id=rid)
    assert line["status"] == 404 and line["end"] == "refused" and line["deployment"] is None
    # Before the pipeline knows the key: still an id, in the header and the body.
    bad = httpx.post(
        f"{server.base_url}/v1/embeddings",
        headers={"authorization": "Bearer sk-ly-wrong", "x-request-id": rid},
        json={"model": "sim", "input": "x"},
    )
    assert bad.status_code == 401
    assert bad.headers["x-request-id"] == rid == bad.json()["error"]["request_id"]
    # Routes outside the pipeline too.
    missing = httpx.get(f"{server.base_url}/no/such/path")
    assert missing.status_code == 404
    assert missing.headers["x-request-id"].startswith("req_")
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("x" * 129, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_client_id_is_replaced(server: LingyunServer, sent: str) -> None:
    resp = _chat(server, {"x-request-id": sent})
    assert resp.status_code == 200
    assert resp.headers["x-request-id"].startswith("req_")
    assert resp.headers["x-request-id"] != sent


def test_without_a_client_id_ours_is_used_everywhere(server: LingyunServer) -> None:
    resp = _chat(server, {})
    rid = resp.headers["x-request-id"]
    assert rid.startswith("req_")
    line = _line_for(server, request_id=rid)
    assert line["client_request_id"] is None


def test_a_canary_prompt_is_stored_nowhere(server: LingyunServer) -> None:
    canary = f"CANARY-{secrets.token_hex(8)}"
    client = server.client(KEYS["secret"], max_retries=0)
    msgs = [{"role": "user", "content": f"secret words {canary}"}]
    client.chat.completions.create(model="sim", messages=msgs)  # type: ignore[arg-type]
    list(client.chat.completions.create(model="sim", messages=msgs, stream=True))  # type: ignore[arg-type]
    client.completions.create(model="sim", prompt=canary)
    client.embeddings.create(model="sim-embed", input=[canary])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such", messages=msgs)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):  # a refused body is not logged either
        client.chat.completions.create(model="sim", messages=msgs, temperature=9)  # type: ignore[arg-type]
    # Wait until all six are in the request log (and so in usage rows and metrics).
    wait_for(lambda: len(_log_lines(server)) >= 5 and _log_lines(server), what="log lines")
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert canary not in metrics
    needle = canary.encode()
    found = [
        p for p in Path(server.data_dir).rglob("*") if p.is_file() and needle in p.read_bytes()
    ]
    assert found == []


def test_log_records_carry_the_current_request_id() -> None:
    install_log_context()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("tests.observability.context")
    log.addHandler(handler := Keep())
    try:
        token = CURRENT.set("trace-42")
        log.warning("inside")
        CURRENT.reset(token)
        log.warning("outside")
    finally:
        log.removeHandler(handler)
    assert [getattr(r, "request_id", None) for r in records] == ["trace-42", "-"]
    assert client_id(b"ok-id_1.2:3") == "ok-id_1.2:3" and client_id(b"bad id") is None
