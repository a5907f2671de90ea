"""The edges of a real server: what ``/health`` tells strangers, bounds on numbers a client
chooses, and one 404 for "unknown" and "not granted" on every path, fallbacks included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer
from tests.support.standins import running

MSG = [{"role": "user", "content": "hello"}]


def failing_upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def overloaded() -> JSONResponse:
        body = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
        return JSONResponse(body, status_code=503)

    return app


@dataclass
class Edges:
    server: LingyunServer
    client: openai.OpenAI


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edges]:
    with running(failing_upstream()) as root:
        data_dir = tmp_path_factory.mktemp("edges")
        server = LingyunServer(
            data_dir=data_dir,
            database_url=fresh_sqlite(data_dir),
            models=[
                {
                    "name": "bounded",
                    "engine": "simulator",
                    "max_output_tokens": 64,
                    "args": {"ttft_ms": 1, "itl_ms": 1},
                },
                {
                    "name": "flaky",
                    "engine": "openai-compatible",
                    "base_url": f"{root}/v1",
                    "model": "m",
                    "fallbacks": ["hidden-model"],
                },
                {"name": "hidden-model", "engine": "simulator"},
            ],
        )
        server.start()
        try:
            key = server.create_key("edges")
            for model in ("bounded", "flaky"):
                server.cli("models", "grant", model, "--tenant", "edges")
            client = server.client(key, max_retries=0)
            _wait_not_granted(client, "hidden-model")
            yield Edges(server, client)
        finally:
            server.stop()


def _wait_not_granted(client: openai.OpenAI, model: str) -> None:
    """Grants reach the gateway on its next refresh: wait for that state, not for a time."""
    deadline = time.monotonic() + 30
    while True:
        try:
            client.chat.completions.create(model=model, messages=MSG, max_tokens=1)  # type: ignore[arg-type]
        except openai.NotFoundError:
            return
        assert time.monotonic() < deadline, "the grant never reached the gateway"
        time.sleep(0.2)


def test_health_without_auth_says_only_up(edges: Edges) -> None:
    resp = httpx.get(f"{edges.server.base_url}/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer not-the-token"}, id="wrong-token"),
    ],
)
def test_health_details_need_an_operator(edges: Edges, headers: dict[str, str]) -> None:
    url = f"{edges.server.base_url}/health?details=1"
    resp = httpx.get(url, headers=headers)
    assert resp.status_code == 401
    assert "hidden-model" not in resp.text and "bounded" not in resp.text


def test_health_details_for_the_operators_token(edges: Edges) -> None:
    names = {d["name"] for d in edges.server.health()["deployments"]}
    assert names == {"bounded", "flaky", "hidden-model"}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        pytest.param({"max_tokens": 65}, "more than model `bounded` allows (64)", id="deployment"),
        pytest.param({"max_completion_tokens": 65}, "allows (64)", id="completion-tokens"),
        pytest.param({"max_tokens": 10**30}, "max_tokens", id="absurd"),
    ],
)
def test_max_tokens_is_bounded(edges: Edges, extra: dict[str, int], needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        edges.client.chat.completions.create(model="bounded", messages=MSG, **extra)  # type: ignore[arg-type]
    assert needle in caught.value.message
    assert edges.client.chat.completions.create(model="bounded", messages=MSG, max_tokens=64)  # type: ignore[arg-type]


def test_a_fallback_never_names_a_model_the_tenant_may_not_use(edges: Edges) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        edges.client.chat.completions.create(model="flaky", messages=MSG)  # type: ignore[arg-type]
    assert caught.value.status_code == 502  # the model it asked for failed, as it is
    assert "hidden-model" not in caught.value.response.text
    with pytest.raises(openai.NotFoundError) as unknown:
        edges.client.chat.completions.create(model="no-such-model", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError) as hidden:
        edges.client.chat.completions.create(model="hidden-model", messages=MSG)  # type: ignore[arg-type]
    assert unknown.value.code == hidden.value.code == "model_not_found"
    assert unknown.value.message.replace("no-such-model", "X") == hidden.value.message.replace(
        "hidden-model", "X"
    )
