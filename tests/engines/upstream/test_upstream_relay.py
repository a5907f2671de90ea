"""The gateway's relay driving STAND-INs through a replica built from ``UpstreamSpec``.

This is the seam the unit tests cannot see: the relay rewrites ``model``, forces
``include_usage`` and calls the dialect hooks; the stand-in answers as the provider would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lingyun.config import DeploymentConfig
from lingyun.engines.upstream import PRESETS, OpenAICompatibleEngine
from lingyun.errors import LingyunError, RateLimitError, UpstreamError
from lingyun.gateway.context import RequestContext
from lingyun.gateway.relay import Relay
from lingyun.serving.replica import Replica
from tests.support.standins import REPLY, STANDIN_KEY, STANDINS, build_app, running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def roots() -> Iterator[dict[str, str]]:
    with (
        running(build_app(STANDINS["dashscope"])) as dashscope,
        running(build_app(STANDINS["qianfan"])) as qianfan,
    ):
        yield {"dashscope": dashscope, "qianfan": qianfan}


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay(timeout_s=10)
    yield r
    await r.close()


def context(root: str, provider: str, model: str, content: str, **body: Any) -> RequestContext:
    preset = PRESETS[provider]
    dep = DeploymentConfig(
        name="public-name",
        engine="openai-compatible",
        provider=provider,
        base_url=root + "/" + preset.base_url().split("/", 3)[3],
        model=model,
    )
    spec = OpenAICompatibleEngine({preset.api_key_env: STANDIN_KEY}).upstream(dep)
    replica = Replica(
        deployment=dep.name,
        replica_id=f"{provider}-0",
        base_url=spec.base_url,
        model_id=spec.model_id,
        headers=spec.headers,
        dialect=spec.dialect,
        healthy=True,
    )
    stream = bool(body.get("stream"))
    ctx = RequestContext(
        endpoint="chat.completions",
        # The client's body names our public model; the relay swaps in the upstream's id.
        body={"model": "public-name", "messages": [{"role": "user", "content": content}]} | body,
        stream=stream,
        client_wants_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        max_output_tokens=None,
        model="public-name",
    )
    ctx.replica = replica
    return ctx


async def collect(relay: Relay, ctx: RequestContext) -> list[dict[str, Any]]:
    resp = await relay.open_stream(ctx)
    try:
        out = [e async for e in relay.events(ctx, resp)]
    finally:
        await resp.aclose()
    assert out[-1] == b"data: [DONE]\n\n" or b'"error"' in out[-1]
    return [json.loads(e[6:]) for e in out if e != b"data: [DONE]\n\n"]


async def test_unary_chat_through_the_relay(relay: Relay, roots: dict[str, str]) -> None:
    ctx = context(roots["dashscope"], "dashscope", "qwen-plus", "hi")
    payload = json.loads(await relay.unary(ctx))
    assert payload["choices"][0]["message"]["content"] == REPLY
    assert payload["model"] == "public-name"
    assert ctx.usage.reported and ctx.usage.completion_tokens == 4


async def test_stream_usage_is_metered_and_stripped(relay: Relay, roots: dict[str, str]) -> None:
    ctx = context(roots["dashscope"], "dashscope", "qwen-plus", "hi", stream=True)
    events = await collect(relay, ctx)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == REPLY
    assert all(e.get("usage") is None for e in events)  # the client did not ask
    assert ctx.usage.reported and ctx.usage.prompt_tokens == 5  # but we metered it


async def test_upstream_rate_limit_is_raised_before_the_first_byte(
    relay: Relay, roots: dict[str, str]
) -> None:
    ctx = context(roots["dashscope"], "dashscope", "qwen-plus", "standin:rate_limit", stream=True)
    with pytest.raises(RateLimitError, match="DashScope"):
        await relay.open_stream(ctx)


async def test_moderation_mid_stream_becomes_an_sse_error(
    relay: Relay, roots: dict[str, str]
) -> None:
    ctx = context(
        roots["dashscope"], "dashscope", "qwen-plus", "standin:content_stream", stream=True
    )
    events = await collect(relay, ctx)
    assert events[-1]["error"]["code"] == "content_filter"
    assert ctx.error_code == "content_filter"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        pytest.param("inband_qps", RateLimitError, id="error_code-18"),
        pytest.param("inband_rpm", RateLimitError, id="code-336501"),
        pytest.param("inband_token", UpstreamError, id="error_code-110"),
    ],
)
async def test_qianfan_refusal_inside_http_200_is_an_error(
    relay: Relay, roots: dict[str, str], kind: str, cls: type[LingyunError]
) -> None:
    ctx = context(roots["qianfan"], "qianfan", "ernie-4.0-8k", f"standin:{kind}")
    with pytest.raises(cls, match="Baidu Qianfan"):
        await relay.unary(ctx)


async def test_qianfan_refusal_inside_http_200_on_a_stream(
    relay: Relay, roots: dict[str, str]
) -> None:
    ctx = context(roots["qianfan"], "qianfan", "ernie-4.0-8k", "standin:inband_qps", stream=True)
    try:
        events = await collect(relay, ctx)
    except RateLimitError:
        return  # the fixed behaviour: raised before the first byte, so fallbacks can run
    assert events[-1]["error"]["code"] == "rate_limit_exceeded", events
