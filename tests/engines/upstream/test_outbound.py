"""Which upstream URLs and key variables a deployment may name (``outbound.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lingyun.config import DeploymentConfig, describe
from lingyun.engines.upstream.outbound import check_base_url, redact_url


def dep(**fields: Any) -> DeploymentConfig:
    return DeploymentConfig(name="m", engine="openai-compatible", model="x", **fields)


# fmt: off
REFUSED = [
    pytest.param({"base_url": "gpu-node-1:8000/v1"}, "must be an http(s) URL", id="no-scheme"),
    pytest.param({"base_url": "ftp://h/v1"}, "must be an http(s) URL", id="ftp"),
    pytest.param({"base_url": "http:///v1"}, "must be an http(s) URL", id="no-host"),
    pytest.param({"base_url": "https://u:s3cret-pw@h/v1"}, "must not carry credentials", id="userinfo"),
    pytest.param({"base_url": "https://tok3n-only@h/v1"}, "must not carry credentials", id="user-only"),
    pytest.param({"base_url": "https://h/v1?key=s3cret-pw"}, "query or a fragment", id="query"),
    pytest.param({"base_url": "http://h:99999/v1"}, "invalid port", id="bad-port"),
    pytest.param({"api_key_env": "AWS_SECRET_ACCESS_KEY"}, "is not allowed", id="foreign-env"),
    pytest.param({"api_key_env": "LINGYUN_UPSTREAM_"}, "is not allowed", id="bare-prefix"),
    pytest.param({"api_key_env": "LINGYUN_DATABASE_URL"}, "is not allowed", id="own-setting"),
]
# fmt: on


@pytest.mark.parametrize(("fields", "needle"), REFUSED)
def test_refused_at_load_with_what_to_change(fields: dict[str, str], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        dep(**fields)
    text = describe(info.value)
    assert "deployment 'm'" in text and needle in text, text
    assert "s3cret-pw" not in text and "tok3n-only" not in text


@pytest.mark.parametrize(
    "name", ["LINGYUN_UPSTREAM_TEAM_B", "DASHSCOPE_API_KEY", "OPENAI_API_KEY", "ARK_API_KEY"]
)
def test_allowed_key_variables(name: str) -> None:
    assert dep(base_url="http://h/v1", api_key_env=name).api_key_env == name


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        pytest.param("api.example.com", True, id="listed-name"),
        pytest.param("API.Example.com.", True, id="case-and-dot"),
        pytest.param("10.1.2.3", True, id="in-cidr"),
        pytest.param("10.2.0.1", False, id="outside-cidr"),
        pytest.param("169.254.169.254", False, id="metadata"),
        pytest.param("evil.example.com", False, id="other-name"),
    ],
)
def test_allow_list_of_hosts_and_cidrs(host: str, allowed: bool) -> None:
    environ = {"LINGYUN_OUTBOUND_ALLOW": "api.example.com, 10.1.0.0/16"}
    url = f"http://{host}/v1"
    if allowed:
        assert check_base_url(url, environ) == url
    else:
        with pytest.raises(ValueError, match="is not in LINGYUN_OUTBOUND_ALLOW"):
            check_base_url(url, environ)


def test_the_allow_list_applies_when_a_deployment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINGYUN_OUTBOUND_ALLOW", "127.0.0.1")
    assert dep(base_url="http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(ValidationError, match="not in LINGYUN_OUTBOUND_ALLOW"):
        dep(base_url="http://internal.corp:9/v1")


def test_redaction_keeps_only_what_an_operator_needs() -> None:
    assert redact_url("https://u:pw@h.example:8443/v1?k=pw#f") == "https://h.example:8443/v1"
    assert redact_url("http://[::1]:9/v1") == "http://[::1]:9/v1"
