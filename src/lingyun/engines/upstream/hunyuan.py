"""Tencent Hunyuan's OpenAI-compatible endpoint, ``https://api.hunyuan.cloud.tencent.com/v1``.

Documented at https://cloud.tencent.com/document/product/1729/111007 (cited by Higress's
ai-proxy); that page's error-code table was not in our search corpus, so this dialect maps by
HTTP status. What we could verify (an OpenManus issue quoting a real reply) is the shape:
``{"error": {"id", "message", "type": "invalid_request_error", "param", "code": "1001"}}``
with numeric-string codes. Add codes here when their meaning is confirmed.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class HunyuanDialect(ProviderDialect):
    name = "hunyuan"
    display_name = "Tencent Hunyuan"
    codes: ClassVar[dict[str, Fault]] = {}
