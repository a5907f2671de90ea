"""Volcano Engine Ark (火山方舟; BytePlus ModelArk abroad), base URL ``.../api/v3``.

Error codes: https://www.volcengine.com/docs/82379/1299023 (and docs.byteplus.com ModelArk
1299023). Bodies are ``{"error": {"code", "message", "param", "type"}}`` where ``type`` is
the HTTP reason (``Unauthorized``, ``TooManyRequests``) and ``code`` is dotted
(``RateLimitExceeded.EndpointRPMExceeded``), so prefixes carry the meaning. ``model`` is an
inference endpoint id (``ep-...``) or, where the account allows it, a model id; a wrong one
answers 404 ``InvalidEndpointOrModel.NotFound``.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class ArkDialect(ProviderDialect):
    name = "ark"
    display_name = "Volcano Engine Ark"
    codes: ClassVar[dict[str, Fault]] = {
        "AuthenticationError": Fault.AUTH,
        "AccessDenied": Fault.PERMISSION,
        "OperationDenied": Fault.PERMISSION,  # e.g. OperationDenied.ServiceNotOpen
        "ModelNotOpen": Fault.PERMISSION,
        "InvalidEndpointOrModel.ModelIDAccessDisabled": Fault.PERMISSION,
        "AccountOverdueError": Fault.BILLING,
        "SetLimitExceeded": Fault.BILLING,  # the account's "safe experience" spending cap
        "InvalidEndpointOrModel": Fault.MODEL,
        "InvalidEndpoint.ClosedEndpoint": Fault.UNAVAILABLE,
        "SensitiveContentDetected": Fault.CONTENT,
        "InputTextSensitiveContentDetected": Fault.CONTENT,
        "InputImageSensitiveContentDetected": Fault.CONTENT,
        "OutputTextSensitiveContentDetected": Fault.CONTENT,
        "OutputImageSensitiveContentDetected": Fault.CONTENT,
        "RateLimitExceeded": Fault.RATE_LIMIT,  # .EndpointRPMExceeded, .EndpointTPMExceeded
        "QuotaExceeded": Fault.RATE_LIMIT,
        "ServerOverloaded": Fault.RATE_LIMIT,  # 429 in their table; let fallbacks take it
        "InternalServiceError": Fault.SERVER,
        "MissingParameter": Fault.BAD_REQUEST,
        "InvalidParameter": Fault.BAD_REQUEST,
    }
