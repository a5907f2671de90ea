"""Replica secrets between gateways: sealed for the group that shares LINGYUN_CLUSTER_SECRET,
unreadable to anyone else; and a replica that refuses the gateway is the operator's fault.

Pure unit tests: the sealing, and how the replicas' dialect maps a refusal.
"""

from __future__ import annotations

import json

import pytest

from lingyun.engines.dialect import OPENAI_DIALECT
from lingyun.errors import UpstreamError
from lingyun.serving import replica_auth
from lingyun.serving.replica_auth import CLUSTER_SECRET_ENV


def test_sealed_secret_opens_only_with_the_same_cluster_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = replica_auth.new_secret()
    monkeypatch.setenv(CLUSTER_SECRET_ENV, "group-one")
    sealed = replica_auth.seal(secret)
    assert sealed is not None and secret not in sealed
    assert replica_auth.unseal(sealed) == secret
    assert replica_auth.seal(secret) != sealed  # a fresh IV each time

    monkeypatch.setenv(CLUSTER_SECRET_ENV, "group-two")
    assert replica_auth.unseal(sealed) is None  # another group: nothing, not garbage
    monkeypatch.delenv(CLUSTER_SECRET_ENV)
    assert replica_auth.unseal(sealed) is None
    assert replica_auth.seal(secret) is None  # no group: nothing is published


def test_a_tampered_seal_opens_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLUSTER_SECRET_ENV, "group-one")
    sealed = replica_auth.seal("s3cret")
    assert sealed is not None
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    assert replica_auth.unseal(flipped) is None
    assert replica_auth.unseal("not-a-token") is None


@pytest.mark.parametrize("status", [401, 403])
def test_a_replica_refusing_the_gateway_is_a_502_not_the_clients_401(status: int) -> None:
    body = json.dumps({"error": {"message": "bad key", "type": "invalid_request_error"}})
    err = OPENAI_DIALECT.translate_error(status, body.encode())
    assert isinstance(err, UpstreamError)
    assert (err.status_code, err.code) == (502, "upstream_auth_failed")
