"""Per-replica secrets: the gateway is the only caller a replica answers.

Each start of a replica process gets a fresh random secret from its supervisor. It reaches
the engine through the environment (``ProcessSpec.secret_env`` names the variables: our
worker's ``LINGYUN_REPLICA_SECRET``, vLLM's ``VLLM_API_KEY``, llama.cpp's ``API_KEY``), never
argv, which any local user can read in ``/proc/*/cmdline`` and which the replica log header
records. The gateway keeps it in ``Replica.headers``, so the relay and the health probes send
``Authorization: Bearer <secret>``; nothing logs those headers. A restarted replica gets a new
secret, so one leaked from a dead process opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingyun.engines.base import ProcessSpec

# 256 bits: guessing is not an attack.
_SECRET_BYTES = 32


def new_secret() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


def auth_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# Several gateways on one database share replicas: the owner publishes each replica's secret
# in the registry sealed with this key, which every gateway of the group is given; without
# it nothing is published and only the owner can reach its replicas.
CLUSTER_SECRET_ENV = "LINGYUN_CLUSTER_SECRET"


def _keystream(nonce: bytes, n: int) -> bytes:
    key = os.environ.get(CLUSTER_SECRET_ENV, "").encode()
    out = b""
    counter = 0
    while len(out) < n:
        out += hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:n]


def seal(secret: str | None) -> str | None:
    """The secret as the registry may hold it (None without a cluster secret)."""
    if secret is None or not os.environ.get(CLUSTER_SECRET_ENV):
        return None
    raw, nonce = secret.encode(), secrets.token_bytes(16)
    body = bytes(a ^ b for a, b in zip(raw, _keystream(nonce, len(raw)), strict=True))
    return f"{nonce.hex()}:{body.hex()}"


def unseal(sealed: str | None) -> str | None:
    if not sealed or not os.environ.get(CLUSTER_SECRET_ENV) or ":" not in sealed:
        return None
    nonce_hex, body_hex = sealed.split(":", 1)
    try:
        nonce, body = bytes.fromhex(nonce_hex), bytes.fromhex(body_hex)
    except ValueError:
        return None
    raw = bytes(a ^ b for a, b in zip(body, _keystream(nonce, len(body)), strict=True))
    return raw.decode("utf-8", "replace")


def secret_of(headers: dict[str, str]) -> str | None:
    """The secret in headers made by ``auth_headers`` (None for an unauthenticated peer)."""
    value = headers.get("Authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def secret_env(spec: ProcessSpec, secret: str) -> dict[str, str]:
    """The process environment for ``spec`` with the secret set where its engine reads it."""
    return {**spec.env, **dict.fromkeys(spec.secret_env, secret)}
