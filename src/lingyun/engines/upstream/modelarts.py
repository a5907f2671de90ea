"""Huawei Cloud ModelArts Studio MaaS, ``https://api.modelarts-maas.com/v1`` (and ``/v2``).

Error codes: https://support.huaweicloud.com/usermanual-maas-modelarts/maas-modelarts-0080.html.
The MaaS gateway answers ``{"error_code": "ModelArts.81xxx", "error_msg": ...}``, Huawei's API
gateway ``{"error_code": "APIG.0203", "error_msg": "Backend timeout"}``, and the model server
behind it vLLM's ``{"object": "error", "message", "type", "code": 400}``. Their table puts
moderation (81011) under 403 and an exhausted free quota (81005) under 401, so the code, not
the status, decides.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class ModelArtsDialect(ProviderDialect):
    name = "modelarts"
    display_name = "Huawei Cloud ModelArts MaaS"
    codes: ClassVar[dict[str, Fault]] = {
        "ModelArts.81001": Fault.BAD_REQUEST,  # body not parseable / model empty
        "ModelArts.81002": Fault.AUTH,  # Authorization header missing or not Bearer
        "ModelArts.81003": Fault.AUTH,  # API key could not be parsed
        "ModelArts.81004": Fault.PERMISSION,  # built-in service not enabled
        "ModelArts.81005": Fault.BILLING,  # free quota used up
        "ModelArts.81006": Fault.BILLING,  # resource frozen
        "ModelArts.81009": Fault.MODEL,
        "ModelArts.81011": Fault.CONTENT,  # "May contain sensitive ..." (input/output check)
        "ModelArts.81101": Fault.RATE_LIMIT,  # RPM
        "ModelArts.81103": Fault.RATE_LIMIT,  # TPM
        "APIG.0203": Fault.TIMEOUT,  # "Backend timeout"
        "BadRequestError": Fault.BAD_REQUEST,  # vLLM's type, from the model server
    }
