"""Public-cloud presets through a real gateway, each aimed at its local STAND-IN server.

The stand-ins (tests/support/standins.py) imitate each provider's documented protocol; the
gateway runs exactly the production code path, with ``base_url`` pointing at them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from tests.support.server import LingyunServer
from tests.support.standins import REPLY, STANDIN_KEY, STANDINS, build_app, running

MSG = [{"role": "user", "content": "hello"}]
ARK_ENDPOINT = "ep-20261127123456-abcde"


@pytest.fixture(scope="module")
def cloud(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with ExitStack() as stack:
        roots = {name: stack.enter_context(running(build_app(STANDINS[name])))
                 for name in ("dashscope", "qianfan", "ark")}  # fmt: skip
        server = LingyunServer(
            data_dir=Path(tmp_path_factory.mktemp("cloud")),
            database_url=database_url,
            models=[
                {"name": "qwen-plus", "engine": "openai-compatible", "provider": "dashscope",
                 "base_url": roots["dashscope"] + "/compatible-mode/v1",
                 "api_key_env": "DASHSCOPE_API_KEY", "model": "qwen-plus"},
                {"name": "ernie", "engine": "openai-compatible", "provider": "qianfan",
                 "base_url": roots["qianfan"] + "/v2", "model": "ernie-4.0-8k"},
                {"name": "doubao", "engine": "openai-compatible", "provider": "ark",
                 "base_url": roots["ark"] + "/api/v3", "model": ARK_ENDPOINT},
                {"name": "wrong-key", "engine": "openai-compatible", "provider": "dashscope",
                 "base_url": roots["dashscope"] + "/compatible-mode/v1",
                 "api_key_env": "LINGYUN_UPSTREAM_WRONG_KEY", "model": "qwen-plus"},
                {"name": "no-key", "engine": "openai-compatible", "provider": "dashscope",
                 "api_key_env": "LINGYUN_UPSTREAM_TEST_UNSET_KEY", "model": "qwen-plus"},
            ],
            env={"DASHSCOPE_API_KEY": STANDIN_KEY, "QIANFAN_API_KEY": STANDIN_KEY,
                 "ARK_API_KEY": STANDIN_KEY, "LINGYUN_UPSTREAM_WRONG_KEY": "sk-not-the-right-one"},
        )  # fmt: skip
        server.start(wait_for=["qwen-plus", "ernie", "doubao", "wrong-key"])
        stack.callback(server.stop)
        yield server.client(server.create_key("cloudy"), max_retries=0)


@pytest.mark.parametrize("model", ["qwen-plus", "ernie", "doubao"])
def test_chat_through_each_preset(cloud: openai.OpenAI, model: str) -> None:
    resp = cloud.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    assert resp.choices[0].message.content == REPLY
    assert resp.model == model  # our name, not the upstream's id (an Ark endpoint id)
    assert resp.usage is not None and resp.usage.completion_tokens == 4


@pytest.mark.parametrize("model", ["qwen-plus", "ernie", "doubao"])
def test_stream_usage_is_requested_upstream_and_shown_only_when_asked(
    cloud: openai.OpenAI, model: str
) -> None:
    plain = list(cloud.chat.completions.create(model=model, messages=MSG, stream=True))  # type: ignore[arg-type]
    assert plain and all(c.usage is None for c in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == REPLY
    asked = list(
        cloud.chat.completions.create(
            model=model,
            messages=MSG,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert asked[-1].usage is not None and asked[-1].usage.total_tokens == 9


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_baidu_limit_inside_http_200_is_a_429(cloud: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        resp = cloud.chat.completions.create(
            model="ernie",
            messages=[{"role": "user", "content": "standin:inband_qps"}],
            stream=stream,
        )  # type: ignore[call-overload]
        if stream:
            list(resp)
    assert err.value.code == "rate_limit_exceeded"
    assert "Qianfan" in err.value.message


def test_moderation_refusal_is_a_400(cloud: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        cloud.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": "standin:content"}]
        )
    assert err.value.code == "content_filter"


def test_upstream_rate_limit_is_a_429(cloud: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        cloud.chat.completions.create(
            model="doubao", messages=[{"role": "user", "content": "standin:rate_limit"}]
        )


def test_operator_credential_problems_are_not_the_clients(cloud: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as wrong:
        cloud.chat.completions.create(model="wrong-key", messages=MSG)  # type: ignore[arg-type]
    assert wrong.value.status_code == 502 and wrong.value.code == "upstream_auth_failed"
    assert "sk-not-the-right-one" not in str(wrong.value.body)
    with pytest.raises(openai.APIStatusError) as missing:
        cloud.chat.completions.create(model="no-key", messages=MSG)  # type: ignore[arg-type]
    assert missing.value.status_code == 503
