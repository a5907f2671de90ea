"""A client's mistake is a 4xx in OpenAI's shape, never a 500; the server keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import Served

MSG = [{"role": "user", "content": "hi"}]


def _post(
    served: Served, body: Any, key: str | None = "own", raw: bytes | None = None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {served.key if key == 'own' else key}"
    return httpx.post(
        f"{served.server.base_url}/v1/chat/completions",
        headers=headers,
        content=raw if raw is not None else None,
        json=body if raw is None else None,
        timeout=30,
    )


CASES = [
    pytest.param(b'{"model": "sim", "messages": [', 400, None, "invalid_json", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, None, None, id="not-an-object"),
    pytest.param({"model": "sim", "messages": "hi"}, 400, "messages", None, id="messages-wrong-type"),
    pytest.param({"model": "sim", "messages": []}, 400, "messages", None, id="empty-messages"),
    pytest.param({"messages": MSG}, 400, "model", "missing_required_parameter", id="no-model"),
    pytest.param({"model": 3, "messages": MSG}, 400, "model", None, id="model-wrong-type"),
    pytest.param({"model": "sim", "messages": MSG, "max_tokens": -5}, 400, "max_tokens", None, id="negative-max-tokens"),
    pytest.param({"model": "sim", "messages": MSG, "max_tokens": "ten"}, 400, "max_tokens", None, id="max-tokens-string"),
    pytest.param({"model": "sim", "messages": MSG, "temperature": 9}, 400, "temperature", None, id="temperature-range"),
    pytest.param({"model": "sim", "messages": MSG, "n": 1000}, 400, "n", None, id="n-too-large"),
    pytest.param({"model": "sim", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", None, id="bad-role"),
    pytest.param({"model": "sim", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None, id="too-many-stops"),
    pytest.param({"model": "no-such-model", "messages": MSG}, 404, "model", "model_not_found", id="unknown-model"),
    pytest.param({"model": "tiny-chat", "messages": MSG, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, 400, "tools", None, id="tools-unsupported-by-engine"),
    pytest.param({"model": "all-MiniLM-L6-v2", "messages": MSG}, 400, "model", None, id="chat-on-embedding-model"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "param", "code"), CASES)
def test_client_mistakes(
    served: Served, body: Any, status: int, param: str | None, code: str | None
) -> None:
    resp = _post(served, body, raw=body if isinstance(body, bytes) else None)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    # OpenAI's four fields, and the request id (observability) that the header carries too.
    assert set(err) == {"message", "type", "param", "code", "request_id"}
    assert err["request_id"] == resp.headers["x-request-id"]
    assert err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    if code is not None:
        assert err["code"] == code


def test_body_over_the_limit_is_413(served: Served) -> None:
    huge = [{"role": "user", "content": "x" * (300 * 1024)}]
    resp = _post(served, {"model": "sim", "messages": huge})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "key", [pytest.param(None, id="missing"), pytest.param("sk-ly-not-a-real-key", id="unknown")]
)
def test_bad_keys_are_401(served: Served, key: str | None) -> None:
    resp = _post(served, {"model": "sim", "messages": MSG}, key=key)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    models = httpx.get(f"{served.server.base_url}/v1/models", timeout=10)
    assert models.status_code == 401


def test_openai_client_sees_typed_errors(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        served.client.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        served.server.client("sk-ly-wrong", max_retries=0).models.list()
    # after all of the above, the server still serves
    ok = served.client.chat.completions.create(model="sim", messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    assert ok.choices[0].message.content


def test_embedding_input_errors(served: Served) -> None:
    for bad, param in [("", "input"), ([], "input"), (None, "input")]:
        resp = httpx.post(
            f"{served.server.base_url}/v1/embeddings",
            headers={"authorization": f"Bearer {served.key}"},
            json={"model": "all-MiniLM-L6-v2", "input": bad},
            timeout=30,
        )
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["param"] == param
    resp = httpx.post(
        f"{served.server.base_url}/v1/embeddings",
        headers={"authorization": f"Bearer {served.key}"},
        json={"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "hex"},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "encoding_format"
