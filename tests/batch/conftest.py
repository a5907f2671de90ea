"""A real ``lingyun serve`` with simulator models, and helpers to build batch input files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.support.provision import new_key
from tests.support.server import LingyunServer

TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class BatchServer:
    server: LingyunServer
    key: str
    client: openai.OpenAI

    def other_client(self, tenant: str) -> openai.OpenAI:
        secret, _ = new_key(self.server, tenant)
        return self.server.client(secret, max_retries=0)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(custom_id: str, model: str = "sim", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
    }


def wait_batch(
    client: openai.OpenAI, batch_id: str, states: set[str] = TERMINAL, timeout_s: float = 240.0
) -> Any:
    """Poll until the batch reaches one of ``states`` (a wait on a state, bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in states:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch still {batch.status}: {batch}")
        time.sleep(0.2)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def batch_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatchServer]:
    server = LingyunServer(
        data_dir=tmp_path_factory.mktemp("lingyun-batch"),
        database_url=database_url,
        models=[
            {"name": "sim", "engine": "simulator", "replicas": 2, "max_inflight": 8},
            {"name": "sim-b", "engine": "simulator", "args": {"itl_ms": 1}},
            {"name": "sim-slow", "engine": "simulator", "args": {"itl_ms": 40}, "max_inflight": 4},
        ],
        extra_config={"batch_max_lines": 1000, "batch_max_file_bytes": 1024 * 1024},
    )
    server.start()
    try:
        secret, _ = new_key(server, "acme")
        yield BatchServer(server, secret, server.client(secret, max_retries=0))
    finally:
        server.stop()
