"""Each provider's documented error bodies map to the right ``LingyunError``.

Pure unit tests: bodies in, errors out. The bodies are the stand-ins' tables (one source of
truth for "what the provider documents"), plus a few shapes only the dialects need to know.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lingyun.engines.upstream import PRESETS, ProviderDialect
from lingyun.engines.upstream.openai import GenericDialect
from lingyun.errors import (
    InvalidRequestError,
    LingyunError,
    RateLimitError,
)
from tests.engines.upstream.expected import (
    AUTH,
    BILLING,
    CONTENT,
    PERMISSION,
    RATE,
    SERVER,
    STANDIN_CASES,
    TIMEOUT,
    UNAVAILABLE,
)
from tests.support.standins import STANDINS


def _dialect(provider: str) -> ProviderDialect:
    return PRESETS[provider].dialect


@pytest.mark.parametrize(
    ("provider", "kind", "cls", "code"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in STANDIN_CASES],
)
def test_documented_error_bodies(
    provider: str, kind: str, cls: type[LingyunError], code: str | None
) -> None:
    reply = STANDINS[provider].errors[kind]
    dialect = _dialect(provider)
    if reply.status < 300:
        err = dialect.inband_error(reply.body)
    else:
        err = dialect.translate_error(reply.status, json.dumps(reply.body).encode())
    assert type(err) is cls
    assert err is not None and err.code == code
    assert dialect.display_name in err.message  # says who answered


# fmt: off
QIANFAN_INBAND = [
    pytest.param({"error_code": 18, "error_msg": "Open api qps request limit reached"}, *RATE, id="v1-18-qps"),
    pytest.param({"error_code": 4, "error_msg": "Open api request limit reached"}, *RATE, id="v1-4-cluster"),
    pytest.param({"code": 336501, "msg": "Rate limit reached for RPM"}, *RATE, id="336501-rpm"),
    pytest.param({"error_code": 336502, "error_msg": "Rate limit reached for TPM"}, *RATE, id="336502-tpm"),
    pytest.param({"error_code": 17, "error_msg": "Open api daily request limit reached"}, *BILLING, id="v1-17-daily"),
    pytest.param({"error_code": 110, "error_msg": "Access token invalid or no longer valid"}, *AUTH, id="v1-110-token"),
    pytest.param({"error_code": 14, "error_msg": "IAM Certification failed"}, *AUTH, id="v1-14-iam"),
    pytest.param({"error_code": 6, "error_msg": "No permission to access data"}, *PERMISSION, id="v1-6-perm"),
    pytest.param({"error_code": 336003, "error_msg": "parameter check failed"}, InvalidRequestError, None, id="336003-param"),
    pytest.param({"error_code": 2, "error_msg": "Service temporarily unavailable"}, *UNAVAILABLE, id="v1-2-unavailable"),
    pytest.param({"error_code": 336000, "error_msg": "Internal error"}, *SERVER, id="336000-internal"),
    pytest.param({"error_code": 999999, "error_msg": "never heard of it"}, *SERVER, id="unknown-code-in-200"),
]


@pytest.mark.parametrize(("payload", "cls", "code"), QIANFAN_INBAND)
def test_qianfan_errors_inside_http_200(
    payload: dict[str, Any], cls: type[LingyunError], code: str | None
) -> None:
    err = _dialect("qianfan").inband_error(payload)
    assert type(err) is cls
    assert err is not None and err.code == code
    assert "Baidu Qianfan" in err.message


NOT_ERRORS = [
    pytest.param({"id": "c", "object": "chat.completion.chunk", "choices": [{"delta": {}}]}, id="chunk"),
    pytest.param({"id": "c", "choices": [], "usage": {"prompt_tokens": 1}}, id="usage-chunk"),
    pytest.param({"object": "list", "data": [{"embedding": [0.1]}]}, id="embeddings"),
    pytest.param({"error_code": 0, "error_msg": "", "result": "ok"}, id="qianfan-code-0"),
    pytest.param({"code": 0, "msg": "success"}, id="code-0"),
]
# fmt: on


@pytest.mark.parametrize("provider", sorted(PRESETS))
@pytest.mark.parametrize("payload", NOT_ERRORS)
def test_ordinary_payloads_are_not_errors(provider: str, payload: dict[str, Any]) -> None:
    assert _dialect(provider).inband_error(payload) is None


# fmt: off
STREAM_ERRORS = [
    pytest.param("dashscope", STANDINS["dashscope"].stream_errors["content_stream"], *CONTENT, id="dashscope-output-moderation"),
    pytest.param("modelarts", {"object": "error", "message": "boom", "type": "InternalServerError", "code": 500}, *SERVER, id="modelarts-vllm-error-chunk"),
    pytest.param("ark", {"error": {"code": "OutputTextSensitiveContentDetected", "message": "m", "type": "BadRequest"}}, *CONTENT, id="ark-output-moderation"),
]
# fmt: on


@pytest.mark.parametrize(("dialect", "payload", "cls", "code"), STREAM_ERRORS)
def test_errors_inside_streams(
    dialect: str, payload: dict[str, Any], cls: type[LingyunError], code: str
) -> None:
    err = _dialect(dialect).inband_error(payload)
    assert type(err) is cls
    assert err is not None and err.code == code


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        pytest.param(401, b'{"error": "Unauthorized"}', *AUTH, id="vllm-401-string-error"),
        pytest.param(502, b"<html>Bad Gateway</html>", *SERVER, id="html-502"),
        pytest.param(503, b"", *UNAVAILABLE, id="empty-503"),
        pytest.param(504, b"upstream timed out", *TIMEOUT, id="text-504"),
        pytest.param(429, b"{}", *RATE, id="bare-429"),
        pytest.param(422, b'{"detail": "bad"}', InvalidRequestError, None, id="fastapi-422"),
    ],
)
def test_unknown_shapes_fall_back_to_http_status(
    status: int, body: bytes, cls: type[LingyunError], code: str | None
) -> None:
    err = GenericDialect("the upstream server gpu-node-1:8000").translate_error(status, body)
    assert type(err) is cls
    assert err.code == code
    assert "gpu-node-1:8000" in err.message


def test_dotted_codes_fall_back_to_their_prefix() -> None:
    body = {"error": {"code": "Throttling.AllocationQuota", "message": "m", "type": "x"}}
    err = _dialect("dashscope").translate_error(400, json.dumps(body).encode())
    assert isinstance(err, RateLimitError)  # the code decides, not the status


def test_codes_match_case_insensitively() -> None:
    body = {"error": {"code": "DATAINSPECTIONFAILED", "message": "m"}}
    err = _dialect("dashscope").translate_error(400, json.dumps(body).encode())
    assert err.code == "content_filter"


def test_credential_failures_blame_the_operator_and_do_not_echo_upstream_text() -> None:
    body = STANDINS["openai"].errors["auth"].body
    err = _dialect("openai").translate_error(401, json.dumps(body).encode())
    assert err.status_code == 502
    assert "sk-stand" not in err.message  # upstream text can echo part of our key
    assert "not with your request or API key" in err.message


def test_upstream_request_id_reaches_the_message() -> None:
    body = STANDINS["dashscope"].errors["rate_limit"].body
    err = _dialect("dashscope").translate_error(429, json.dumps(body).encode())
    assert "standin-req-42" in err.message


def test_auth_header_is_bearer() -> None:
    for preset in PRESETS.values():
        assert preset.dialect.auth_headers("k") == {"Authorization": "Bearer k"}
