"""Presets for the public AI clouds: where each one's OpenAI-compatible mode lives.

A preset saves the operator from looking up base URLs and env-var names, and binds the
provider's ``Dialect``. ``PRESETS`` is the registry, keyed by the ``provider:`` value of a
deployment; adding a cloud means one entry here and one small dialect module.

Sources (checked with the search tool; re-check when a provider moves):

* dashscope: the Beijing URL and ``DASHSCOPE_API_KEY`` from Alibaba Cloud's own answers and
  samples; the Singapore (``dashscope-intl``) URL is from memory, not seen in our corpus.
* ark: volcengine.com/docs/82379 (``ARK_API_KEY`` in their samples). The BytePlus ModelArk
  (international) URL is from memory, NOT verified: its docs page was not in our corpus.
* modelarts: support.huaweicloud.com MaaS "对话Chat/POST" (v1) and "MaaS标准API V2" (v2).
  Huawei documents no env-var name; ``MODELARTS_API_KEY`` is ours.
* hunyuan: cloud.tencent.com/document/product/1729/111007; ``HUNYUAN_API_KEY`` is the
  name used by common clients, Tencent's page does not fix one.
* qianfan: cloud.baidu.com/doc/qianfan-api (v2, Bearer API key); ``QIANFAN_API_KEY`` is ours.
* openai: platform.openai.com.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lingyun.engines.upstream.ark import ArkDialect
from lingyun.engines.upstream.base import ProviderDialect
from lingyun.engines.upstream.dashscope import DashScopeDialect
from lingyun.engines.upstream.hunyuan import HunyuanDialect
from lingyun.engines.upstream.modelarts import ModelArtsDialect
from lingyun.engines.upstream.openai import OpenAIDialect
from lingyun.engines.upstream.qianfan import QianfanDialect


@dataclass(frozen=True)
class ProviderPreset:
    """One public cloud: regional base URLs (each ending where ``/chat/completions`` goes)."""

    name: str
    display_name: str
    base_urls: dict[str, str]
    default_region: str
    api_key_env: str
    dialect: ProviderDialect
    # Other spellings operators use for a region ("intl", "singapore").
    region_aliases: dict[str, str] = field(default_factory=dict)
    # What ``model:`` means for this provider, for error messages.
    model_hint: str = "the provider's model id"

    def __post_init__(self) -> None:
        if self.default_region not in self.base_urls:
            raise ValueError(f"preset {self.name}: default region not among its base URLs")

    def base_url(self, region: str | None = None) -> str:
        """The base URL for ``region`` (None: the default region)."""
        if region is None:
            return self.base_urls[self.default_region]
        key = self.region_aliases.get(region.lower(), region.lower())
        if key not in self.base_urls:
            choices = sorted({*self.base_urls, *self.region_aliases})
            raise ValueError(
                f"provider {self.name!r} has no region {region!r}; choose one of {choices}, "
                "or set base_url"
            )
        return self.base_urls[key]


PRESETS: dict[str, ProviderPreset] = {
    p.name: p
    for p in (
        ProviderPreset(
            name="dashscope",
            display_name="Alibaba Cloud Model Studio (DashScope)",
            base_urls={
                "cn-beijing": "https://dashscope.aliyuncs.com/compatible-mode/v1",
                "ap-southeast-1": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            },
            default_region="cn-beijing",
            region_aliases={
                "cn": "cn-beijing",
                "intl": "ap-southeast-1",
                "singapore": "ap-southeast-1",
            },
            api_key_env="DASHSCOPE_API_KEY",
            dialect=DashScopeDialect(),
            model_hint="a Model Studio model name such as qwen-plus",
        ),
        ProviderPreset(
            name="ark",
            display_name="Volcano Engine Ark",
            base_urls={
                "cn-beijing": "https://ark.cn-beijing.volces.com/api/v3",
                # BytePlus ModelArk, the international edition of the same service.
                "ap-southeast-1": "https://ark.ap-southeast.bytepluses.com/api/v3",
            },
            default_region="cn-beijing",
            region_aliases={
                "cn": "cn-beijing",
                "intl": "ap-southeast-1",
                "byteplus": "ap-southeast-1",
            },
            api_key_env="ARK_API_KEY",
            dialect=ArkDialect(),
            model_hint="an inference endpoint id (ep-...) or a model id the account may call",
        ),
        ProviderPreset(
            name="modelarts",
            display_name="Huawei Cloud ModelArts MaaS",
            # The MaaS API is served for the cn-southwest-2 (Guiyang-1) models from one host.
            base_urls={"cn-southwest-2": "https://api.modelarts-maas.com/v1"},
            default_region="cn-southwest-2",
            region_aliases={"cn": "cn-southwest-2", "guiyang": "cn-southwest-2"},
            api_key_env="MODELARTS_API_KEY",
            dialect=ModelArtsDialect(),
            model_hint="the model name from the MaaS console's call instructions",
        ),
        ProviderPreset(
            name="hunyuan",
            display_name="Tencent Hunyuan",
            base_urls={"cn": "https://api.hunyuan.cloud.tencent.com/v1"},
            default_region="cn",
            api_key_env="HUNYUAN_API_KEY",
            dialect=HunyuanDialect(),
            model_hint="a Hunyuan model name such as hunyuan-turbos-latest",
        ),
        ProviderPreset(
            name="qianfan",
            display_name="Baidu Qianfan",
            base_urls={"cn": "https://qianfan.baidubce.com/v2"},
            default_region="cn",
            api_key_env="QIANFAN_API_KEY",
            dialect=QianfanDialect(),
            model_hint="a Qianfan model id such as ernie-4.0-8k",
        ),
        ProviderPreset(
            name="openai",
            display_name="OpenAI",
            base_urls={"global": "https://api.openai.com/v1"},
            default_region="global",
            api_key_env="OPENAI_API_KEY",
            dialect=OpenAIDialect(),
        ),
    )
}
