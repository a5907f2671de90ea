"""Baidu AI Cloud Qianfan (千帆) v2, ``https://qianfan.baidubce.com/v2``: OpenAI-compatible.

Two error vocabularies reach us and this dialect reads both:

* v2 codes, with HTTP status, ``{"error": {"code", "message", "type"}, "id"}``
  (https://cloud.baidu.com/doc/qianfan-api/s/Om9b4yj3w): ``malformed_json``,
  ``invalid_model``, ``tokens_too_long``, ``rpm_rate_limit_exceeded`` ...
* the v1 numeric codes (https://cloud.baidu.com/doc/WENXINWORKSHOP/s/tlmyncueh), which Baidu
  signals *inside an HTTP 200*: ``{"error_code": 18, "error_msg": "Open api qps request limit
  reached"}``, or ``{"code": 336501, "msg": "Rate limit reached for RPM"}`` on the
  rate-limit page (https://cloud.baidu.com/doc/WENXINWORKSHOP/s/hlzic283e). That is why the
  relay must run ``inband_error`` on every 2xx body: a "successful" reply may be a refusal.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class QianfanDialect(ProviderDialect):
    name = "qianfan"
    display_name = "Baidu Qianfan"
    codes: ClassVar[dict[str, Fault]] = {
        # v1 numeric codes
        "1": Fault.SERVER,  # Unknown error
        "2": Fault.UNAVAILABLE,  # Service temporarily unavailable
        "3": Fault.SERVER,  # Unsupported openapi method: our URL is wrong
        "4": Fault.RATE_LIMIT,  # Open api request limit reached (cluster-wide)
        "6": Fault.PERMISSION,  # No permission to access data
        "13": Fault.AUTH,  # Get service token failed
        "14": Fault.AUTH,  # IAM Certification failed
        "15": Fault.AUTH,  # app not exists or create failed
        "17": Fault.BILLING,  # Open api daily request limit reached (unpaid / in arrears)
        "18": Fault.RATE_LIMIT,  # Open api qps request limit reached
        "19": Fault.BILLING,  # Open api total request limit reached
        "100": Fault.AUTH,  # Invalid parameter (the access token)
        "110": Fault.AUTH,  # Access token invalid or no longer valid
        "111": Fault.AUTH,  # Access token expired
        "336000": Fault.SERVER,  # Internal error
        "336001": Fault.BAD_REQUEST,  # Invalid Argument
        "336002": Fault.BAD_REQUEST,  # Invalid JSON
        "336003": Fault.BAD_REQUEST,  # parameter check failed
        "336100": Fault.UNAVAILABLE,  # try again later
        "336501": Fault.RATE_LIMIT,  # Rate limit reached for RPM
        "336502": Fault.RATE_LIMIT,  # Rate limit reached for TPM
        # v2 codes
        "malformed_json": Fault.BAD_REQUEST,
        "invalid_model": Fault.MODEL,
        "invalid_messages": Fault.BAD_REQUEST,
        "invalid_argument": Fault.BAD_REQUEST,
        "characters_too_long": Fault.CONTEXT,
        "tokens_too_long": Fault.CONTEXT,
        "access_denied": Fault.PERMISSION,
        "invalid_iam_token": Fault.AUTH,
        "rate_limit_exceeded": Fault.RATE_LIMIT,
        "rpm_rate_limit_exceeded": Fault.RATE_LIMIT,
        "tpm_rate_limit_exceeded": Fault.RATE_LIMIT,
        "qps_rate_limit_exceeded": Fault.RATE_LIMIT,
    }
