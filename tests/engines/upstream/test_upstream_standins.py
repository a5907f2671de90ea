"""Talk to each STAND-IN over a real local port with exactly what the engine resolves.

The URL, headers and model id come from ``OpenAICompatibleEngine().upstream(dep)`` with only
``base_url`` aimed at the stand-in, so a wrong path prefix, auth header or model id in a
preset fails here the way it would against the real cloud.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lingyun.config import DeploymentConfig
from lingyun.engines.registry import UpstreamSpec
from lingyun.engines.upstream import PRESETS, OpenAICompatibleEngine
from lingyun.errors import LingyunError
from tests.engines.upstream.expected import STANDIN_CASES
from tests.support.standins import REPLY, STANDIN_KEY, STANDINS, StandinSpec, build_app, running

pytestmark = pytest.mark.slow


@dataclass
class Live:
    standin: StandinSpec
    spec: UpstreamSpec
    client: httpx.Client

    def chat(self, content: str = "hi", **body: Any) -> httpx.Response:
        payload = {"model": self.spec.model_id, "messages": [{"role": "user", "content": content}]}
        return self.client.post(
            f"{self.spec.base_url}/chat/completions",
            json=payload | body,
            headers=self.spec.headers,
        )


@pytest.fixture(scope="module", params=sorted(STANDINS))
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    standin = STANDINS[request.param]
    preset = PRESETS[standin.name]
    with running(build_app(standin)) as root, httpx.Client(timeout=10) as client:
        dep = DeploymentConfig(
            name=f"{standin.name}-model",
            engine="openai-compatible",
            provider=standin.name,
            # Only the host is the stand-in's; the path prefix is the preset's own.
            base_url=root + httpx.URL(preset.base_url()).path,
            model=sorted(standin.models)[0],
        )
        spec = OpenAICompatibleEngine({preset.api_key_env: STANDIN_KEY}).upstream(dep)
        yield Live(standin, spec, client)


def _events(resp: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_chat(live: Live) -> None:
    resp = live.chat()
    assert resp.status_code == 200, resp.text
    payload = resp.json()
    assert live.spec.dialect.inband_error(payload) is None
    assert payload["choices"][0]["message"]["content"] == REPLY
    assert payload["usage"]["total_tokens"] == 9
    models = live.client.get(f"{live.spec.base_url}/models", headers=live.spec.headers).json()
    assert live.spec.model_id in {m["id"] for m in models["data"]}


def test_stream_with_usage_in_the_last_chunk(live: Live) -> None:
    resp = live.chat(stream=True, stream_options={"include_usage": True})
    assert resp.status_code == 200
    events = _events(resp)
    assert all(live.spec.dialect.inband_error(e) is None for e in events)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == REPLY
    assert [e.get("usage") for e in events[:-1]] == [None] * (len(events) - 1)
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == 4


def test_stream_without_usage_when_not_asked(live: Live) -> None:
    events = _events(live.chat(stream=True))
    assert not any("usage" in e for e in events)


def _provoke(live: Live, kind: str) -> httpx.Response:
    if kind == "auth":
        return live.client.post(
            f"{live.spec.base_url}/chat/completions",
            json={"model": live.spec.model_id, "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": "Bearer sk-wrong"},
        )
    if kind == "no_header":
        return live.client.post(f"{live.spec.base_url}/chat/completions", json={"model": "m"})
    if kind == "model":
        return live.client.post(
            f"{live.spec.base_url}/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
            headers=live.spec.headers,
        )
    if kind == "bad_request":
        return live.chat(messages=[])
    return live.chat(f"standin:{kind}")


def test_every_documented_error_maps(live: Live) -> None:
    """One round trip per error the stand-in knows, as the relay would translate it."""
    cases = [c for c in STANDIN_CASES if c[0] == live.standin.name]
    assert {c[1] for c in cases} == set(live.standin.errors)  # every error has a case
    for _, kind, cls, code in cases:
        resp = _provoke(live, kind)
        reply = live.standin.errors[kind]
        assert resp.status_code == reply.status, kind
        err: LingyunError | None
        if resp.status_code >= 400:
            err = live.spec.dialect.translate_error(resp.status_code, resp.content)
        else:
            err = live.spec.dialect.inband_error(resp.json())
        assert type(err) is cls, kind
        assert err is not None and err.code == code, kind


def test_ark_accepts_inference_endpoint_ids() -> None:
    app = build_app(STANDINS["ark"])
    with running(app) as root, httpx.Client(timeout=10) as client:
        dep = DeploymentConfig(
            name="doubao",
            engine="openai-compatible",
            provider="ark",
            base_url=root + "/api/v3",
            model="ep-20240611104225-abcde",
        )
        spec = OpenAICompatibleEngine({"ARK_API_KEY": STANDIN_KEY}).upstream(dep)
        body = {"model": spec.model_id, "messages": [{"role": "user", "content": "hi"}]}
        resp = client.post(f"{spec.base_url}/chat/completions", json=body, headers=spec.headers)
        assert resp.status_code == 200, resp.text


def test_dashscope_output_moderation_mid_stream() -> None:
    with running(build_app(STANDINS["dashscope"])) as root, httpx.Client(timeout=10) as client:
        dep = DeploymentConfig(
            name="qwen",
            engine="openai-compatible",
            provider="dashscope",
            base_url=root + "/compatible-mode/v1",
            model="qwen-plus",
        )
        spec = OpenAICompatibleEngine({"DASHSCOPE_API_KEY": STANDIN_KEY}).upstream(dep)
        body = {
            "model": spec.model_id,
            "stream": True,
            "messages": [{"role": "user", "content": "standin:content_stream"}],
        }
        resp = client.post(f"{spec.base_url}/chat/completions", json=body, headers=spec.headers)
        lines = [x[6:] for x in resp.text.splitlines() if x.startswith("data: ")]
        errors = [spec.dialect.inband_error(json.loads(x)) for x in lines]
        assert errors[0] is None  # content was already flowing
        assert errors[-1] is not None and errors[-1].code == "content_filter"
