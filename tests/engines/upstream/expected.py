"""What each stand-in error should become, shared by the unit and the live tests.

``STANDIN_CASES`` rows: (provider, stand-in error kind, expected class, expected code).
"""

from __future__ import annotations

from lingyun.errors import (
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)

AUTH = (UpstreamError, "upstream_auth_failed")
PERMISSION = (UpstreamError, "upstream_permission_denied")
BILLING = (UpstreamError, "upstream_quota_exhausted")
MODEL = (UpstreamError, "upstream_model_not_found")
SERVER = (UpstreamError, "upstream_error")
RATE = (RateLimitError, "rate_limit_exceeded")
CONTENT = (InvalidRequestError, "content_filter")
CONTEXT = (InvalidRequestError, "context_length_exceeded")
TIMEOUT = (UpstreamTimeoutError, "upstream_timeout")
UNAVAILABLE = (ServiceUnavailableError, "service_unavailable")

# (provider, stand-in error kind, expected class, expected code; None = provider's code kept out)
STANDIN_CASES = [
    ("dashscope", "auth", *AUTH),
    ("dashscope", "model", *MODEL),
    ("dashscope", "bad_request", InvalidRequestError, None),
    ("dashscope", "rate_limit", *RATE),
    ("dashscope", "content", *CONTENT),
    ("dashscope", "arrears", *BILLING),
    ("dashscope", "server", *SERVER),
    ("ark", "auth", *AUTH),
    ("ark", "model", *MODEL),
    ("ark", "bad_request", InvalidRequestError, None),
    ("ark", "rate_limit", *RATE),
    ("ark", "content", *CONTENT),
    ("ark", "overdue", *BILLING),
    ("ark", "server", *SERVER),
    ("modelarts", "no_header", *AUTH),
    ("modelarts", "auth", *AUTH),
    ("modelarts", "model", *MODEL),
    ("modelarts", "bad_request", InvalidRequestError, None),
    ("modelarts", "rate_limit", *RATE),
    ("modelarts", "content", *CONTENT),
    ("modelarts", "free_quota", *BILLING),
    ("modelarts", "timeout", *TIMEOUT),
    ("hunyuan", "auth", *AUTH),
    ("hunyuan", "model", *MODEL),
    ("hunyuan", "bad_request", InvalidRequestError, None),
    ("hunyuan", "rate_limit", *RATE),
    ("hunyuan", "server", *SERVER),
    ("qianfan", "auth", *AUTH),
    ("qianfan", "model", *MODEL),
    ("qianfan", "bad_request", InvalidRequestError, None),
    ("qianfan", "rate_limit", *RATE),
    ("qianfan", "too_long", *CONTEXT),
    ("qianfan", "inband_qps", *RATE),
    ("qianfan", "inband_rpm", *RATE),
    ("qianfan", "inband_daily", *BILLING),
    ("qianfan", "inband_token", *AUTH),
    ("qianfan", "inband_internal", *SERVER),
    ("openai", "auth", *AUTH),
    ("openai", "model", *MODEL),
    ("openai", "bad_request", InvalidRequestError, None),
    ("openai", "rate_limit", *RATE),
    ("openai", "quota", *BILLING),
    ("openai", "context", *CONTEXT),
]
