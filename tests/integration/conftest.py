"""One real ``lingyun serve`` per database backend, shared by the integration tests.

The server runs every engine the data plane offers on this machine: the tiny Qwen2 model
(transformers), the packaged sentence-embedding model, and simulator replicas (the stand-in
for GPU engines).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.support.server import LingyunServer


@dataclass
class Served:
    server: LingyunServer
    key: str
    client: openai.OpenAI


def data_plane_models(tiny_model_dir: Path, engine_log: Path) -> list[dict[str, object]]:
    return [
        {"name": "tiny-chat", "engine": "transformers", "model": str(tiny_model_dir),
         "args": {"device": "cpu"}},
        {"name": "all-MiniLM-L6-v2", "engine": "embeddings", "model": "all-MiniLM-L6-v2"},
        {"name": "sim", "engine": "simulator", "replicas": 2},
        # max_inflight: its slots are counted in /health, where a test sees a request held.
        {"name": "sim-slow", "engine": "simulator", "max_inflight": 64,
         "args": {"ttft_ms": 20, "itl_ms": 20, "usage_log": str(engine_log)}},
        {"name": "sim-crash", "engine": "simulator", "args": {"itl_ms": 10}},
    ]  # fmt: skip


@pytest.fixture(scope="session")
def served(
    database_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("lingyun")
    server = LingyunServer(
        data_dir=data_dir,
        database_url=database_url,
        models=data_plane_models(tiny_model_dir, data_dir / "sim-slow-usage.jsonl"),
        extra_config={"max_body_bytes": 256 * 1024},
    )
    server.start(timeout_s=180)
    try:
        key = server.create_key("acme")
        with server.client(key, max_retries=0) as client:  # closed: no socket left to GC
            yield Served(server, key, client)
    finally:
        server.stop()
