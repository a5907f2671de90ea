"""``/v1/rerank`` through the gateway, served by the embeddings worker on the packaged model."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import LingyunServer
from tests.support.tenancy import poll

pytestmark = pytest.mark.slow

MODEL = "all-MiniLM-L6-v2"
QUERY = "Where can my cat sleep?"
DOCS: list[Any] = [
    "Quarterly revenue grew by eight percent.",
    "A kitten is resting on a soft rug.",
    {"text": "The central bank raised interest rates again."},
    "Cats like to nap in warm, quiet places such as a basket.",
]


@pytest.fixture(scope="module")
def server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LingyunServer]:
    srv = LingyunServer(
        data_dir=Path(tmp_path_factory.mktemp("rerank")),
        database_url=module_database_url,
        models=[{"name": MODEL, "engine": "embeddings", "model": MODEL}],
    )
    srv.start(timeout_s=180)
    try:
        srv.cli("prices", "set", MODEL, "--input", "3", "--output", "0")
        yield srv
    finally:
        srv.stop()


def _rerank(server: LingyunServer, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/rerank",
        json={"model": MODEL, "query": QUERY, "documents": DOCS, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_related_passages_rank_above_unrelated_in_cohere_jina_shape(server: LingyunServer) -> None:
    key = server.create_key("rerank-a")
    server.cli("topup", "--tenant", "rerank-a", "--amount", "10")
    resp = _rerank(server, key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL
    results = body["results"]
    assert [r["index"] for r in results][:2] in ([1, 3], [3, 1])  # the two about cats
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert min(scores[:2]) > max(scores[2:]) + 0.1
    assert results[0]["document"]["text"] == (DOCS[results[0]["index"]])
    assert "cosine" in body["meta"]["scoring"]
    assert body["usage"]["total_tokens"] > 0

    top = _rerank(server, key, top_n=1, return_documents=False).json()["results"]
    assert len(top) == 1 and "document" not in top[0] and top[0]["index"] == results[0]["index"]


def test_rerank_is_metered(server: LingyunServer) -> None:
    key = server.create_key("rerank-b")
    server.cli("topup", "--tenant", "rerank-b", "--amount", "10")
    tokens = _rerank(server, key).json()["usage"]["total_tokens"]

    def line() -> dict[str, Any]:
        rows = server.cli_json("usage", "--tenant", "rerank-b")
        return next((r for r in rows if r["model"] == MODEL), {})

    poll(lambda: line().get("requests", 0) == 1, timeout_s=30)
    got = line()
    assert got["prompt_tokens"] == tokens
    assert Decimal(str(got["amount"])) == Decimal(tokens) * 3 / 1_000_000


def test_bad_rerank_requests_are_400(server: LingyunServer) -> None:
    key = server.create_key("rerank-a")
    assert _rerank(server, key, documents=[]).status_code == 400
    assert _rerank(server, key, query="").status_code == 400
