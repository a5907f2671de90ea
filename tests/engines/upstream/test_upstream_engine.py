"""``OpenAICompatibleEngine.upstream``: presets, regions, keys from the environment, mistakes."""

from __future__ import annotations

from typing import Any

import pytest

from lingyun.config import DeploymentConfig
from lingyun.engines.registry import ENGINES, UpstreamEngine, UpstreamSpec
from lingyun.engines.upstream import PRESETS, OpenAICompatibleEngine
from lingyun.engines.upstream.openai import GenericDialect

ENV = {p.api_key_env: f"key-for-{p.name}" for p in PRESETS.values()}


def deployment(**fields: Any) -> DeploymentConfig:
    return DeploymentConfig(name="m", engine="openai-compatible", **fields)


def spec(environ: dict[str, str] | None = None, **fields: Any) -> UpstreamSpec:
    engine = OpenAICompatibleEngine(ENV if environ is None else environ)
    return engine.upstream(deployment(**fields))


def test_registered_as_an_upstream_engine() -> None:
    engine = ENGINES["openai-compatible"]
    assert isinstance(engine, UpstreamEngine)
    assert isinstance(engine, OpenAICompatibleEngine)


# fmt: off
PRESET_URLS = [
    pytest.param("dashscope", None, "https://dashscope.aliyuncs.com/compatible-mode/v1", id="dashscope"),
    pytest.param("dashscope", "intl", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", id="dashscope-intl"),
    pytest.param("dashscope", "Singapore", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", id="dashscope-alias-any-case"),
    pytest.param("ark", None, "https://ark.cn-beijing.volces.com/api/v3", id="ark"),
    pytest.param("modelarts", None, "https://api.modelarts-maas.com/v1", id="modelarts"),
    pytest.param("hunyuan", None, "https://api.hunyuan.cloud.tencent.com/v1", id="hunyuan"),
    pytest.param("qianfan", None, "https://qianfan.baidubce.com/v2", id="qianfan"),
    pytest.param("openai", None, "https://api.openai.com/v1", id="openai"),
]
# fmt: on


@pytest.mark.parametrize(("provider", "region", "url"), PRESET_URLS)
def test_presets_pick_their_regional_base_url(provider: str, region: str | None, url: str) -> None:
    s = spec(provider=provider, region=region, model="x")
    assert s.base_url == url
    assert s.headers == {"Authorization": f"Bearer key-for-{provider}"}
    assert s.dialect is PRESETS[provider].dialect
    assert s.model_id == "x"


def test_ark_endpoint_id_is_sent_as_the_model() -> None:
    assert spec(provider="ark", model=" ep-20240611104225-abcde ").model_id == (
        "ep-20240611104225-abcde"
    )


def test_base_url_overrides_the_preset_but_keeps_its_dialect_and_key() -> None:
    s = spec(provider="qianfan", base_url="http://127.0.0.1:9/v2/", model="ernie-4.0-8k")
    assert s.base_url == "http://127.0.0.1:9/v2"
    assert s.dialect is PRESETS["qianfan"].dialect
    assert s.headers == {"Authorization": "Bearer key-for-qianfan"}


def test_api_key_env_names_another_variable() -> None:
    s = spec(
        {"LINGYUN_UPSTREAM_TEAM_B": "sk-b"},
        provider="dashscope",
        api_key_env="LINGYUN_UPSTREAM_TEAM_B",
        model="q",
    )
    assert s.headers == {"Authorization": "Bearer sk-b"}


def test_keys_are_read_when_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = OpenAICompatibleEngine()  # os.environ, as the registry's instance
    dep = deployment(provider="hunyuan", model="hunyuan-lite")
    monkeypatch.setenv("HUNYUAN_API_KEY", "first")
    assert engine.upstream(dep).headers["Authorization"] == "Bearer first"
    monkeypatch.setenv("HUNYUAN_API_KEY", "rotated")
    assert engine.upstream(dep).headers["Authorization"] == "Bearer rotated"


def test_bare_base_url_needs_no_key_and_defaults_the_model_to_the_name() -> None:
    s = spec({}, base_url="http://gpu-node-1:8000/v1")
    assert s.headers == {}
    assert s.model_id == "m"
    assert isinstance(s.dialect, GenericDialect)
    assert "gpu-node-1:8000" in s.dialect.display_name


def test_bare_base_url_may_still_use_a_key() -> None:
    s = spec(
        {"LINGYUN_UPSTREAM_VLLM": "t"},
        base_url="http://gpu:8000/v1",
        api_key_env="LINGYUN_UPSTREAM_VLLM",
        model="q",
    )
    assert s.headers == {"Authorization": "Bearer t"}


# fmt: off
MISTAKES = [
    pytest.param({}, {"provider": "dashscope", "model": "q"}, "set the environment variable DASHSCOPE_API_KEY", id="missing-preset-key"),
    pytest.param({"ARK_API_KEY": "  "}, {"provider": "ark", "model": "ep-1"}, "ARK_API_KEY", id="blank-key"),
    pytest.param({}, {"provider": "openai", "model": "g", "api_key_env": "LINGYUN_UPSTREAM_MINE"}, "set the environment variable LINGYUN_UPSTREAM_MINE", id="missing-named-key"),
    pytest.param({}, {"base_url": "http://h/v1", "api_key_env": "LINGYUN_UPSTREAM_MINE"}, "LINGYUN_UPSTREAM_MINE", id="bare-url-named-key-missing"),
    pytest.param(ENV, {"provider": "azure", "model": "g"}, "unknown provider 'azure'", id="unknown-provider"),
    pytest.param(ENV, {"provider": "dashscope", "region": "mars", "model": "q"}, "no region 'mars'", id="unknown-region"),
    pytest.param(ENV, {"provider": "ark"}, "ep-", id="preset-without-model"),
    pytest.param(ENV, {}, "needs provider: (one of", id="neither-provider-nor-url"),
]
# fmt: on


@pytest.mark.parametrize(("environ", "fields", "needle"), MISTAKES)
def test_configuration_mistakes_say_what_to_change(
    environ: dict[str, str], fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ValueError, match=r"^deployment 'm'") as info:
        spec(environ, **fields)
    assert needle in str(info.value)
