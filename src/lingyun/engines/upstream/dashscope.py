"""Alibaba Cloud Model Studio (DashScope, 百炼) in its OpenAI-compatible mode.

Error codes: https://help.aliyun.com/zh/model-studio/developer-reference/error-code (and the
international page alibabacloud.com/help/en/model-studio/developer-reference/error-code). The
compatible mode answers ``{"error": {"code", "message", "type", "param"}, "request_id"}`` and
uses snake_case codes (``invalid_api_key``, ``data_inspection_failed``, ``limit_requests``)
where the native API uses CamelCase ones (``InvalidApiKey``, ``DataInspectionFailed``,
``Throttling.RateQuota``); both are listed because gateways in front of it pass either.
Output moderation can strike mid-stream, so ``data_inspection_failed`` also arrives in-band.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class DashScopeDialect(ProviderDialect):
    name = "dashscope"
    display_name = "Alibaba Cloud Model Studio (DashScope)"
    codes: ClassVar[dict[str, Fault]] = {
        "InvalidApiKey": Fault.AUTH,
        "invalid_api_key": Fault.AUTH,
        "AccessDenied": Fault.PERMISSION,  # also AccessDenied.Unpurchased
        "Model.AccessDenied": Fault.PERMISSION,
        "Arrearage": Fault.BILLING,  # 400 in their table, but the account is in arrears
        "insufficient_quota": Fault.BILLING,
        "DataInspectionFailed": Fault.CONTENT,
        "data_inspection_failed": Fault.CONTENT,
        "InternalError.Algo.DataInspectionFailed": Fault.CONTENT,
        "Throttling": Fault.RATE_LIMIT,  # Throttling.RateQuota, .BurstRate, .AllocationQuota
        "limit_requests": Fault.RATE_LIMIT,
        "ModelNotFound": Fault.MODEL,
        "model_not_found": Fault.MODEL,
        "RequestTimeOut": Fault.TIMEOUT,
        "InternalError": Fault.SERVER,
        "SystemError": Fault.SERVER,
    }
