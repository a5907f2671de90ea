"""OpenAI itself (https://platform.openai.com/docs/guides/error-codes).

OpenAI sends 429 both for rate limits (``rate_limit_exceeded``) and for an exhausted account
(``insufficient_quota``); only the first should look like a rate limit to our clients.
"""

from __future__ import annotations

from typing import ClassVar

from lingyun.engines.upstream.base import Fault, ProviderDialect


class OpenAIDialect(ProviderDialect):
    name = "openai"
    display_name = "OpenAI"
    codes: ClassVar[dict[str, Fault]] = {
        "invalid_api_key": Fault.AUTH,
        "invalid_organization": Fault.AUTH,
        "insufficient_quota": Fault.BILLING,
        "billing_hard_limit_reached": Fault.BILLING,
        "rate_limit_exceeded": Fault.RATE_LIMIT,
        "model_not_found": Fault.MODEL,
        "content_filter": Fault.CONTENT,
        "content_policy_violation": Fault.CONTENT,
        "context_length_exceeded": Fault.CONTEXT,
        "server_error": Fault.SERVER,
    }


class GenericDialect(ProviderDialect):
    """Any OpenAI-compatible server named by a bare ``base_url`` (vLLM, SGLang, a proxy).

    Same codes as OpenAI, since such servers imitate it; the display name is the server's
    address so messages still say who answered.
    """

    name = "openai-compatible"
    codes: ClassVar[dict[str, Fault]] = OpenAIDialect.codes
