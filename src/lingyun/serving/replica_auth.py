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

import base64
import functools
import hashlib
import os
import secrets
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from lingyun.engines.base import ProcessSpec

# 256 bits: guessing is not an attack.
_SECRET_BYTES = 32


def new_secret() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


def auth_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# Several gateways on one database share replicas only as a group that shares this key: the
# owner publishes each replica's secret in the registry sealed with it (Fernet: encrypted and
# authenticated). Without it a gateway runs its own replicas and publishes nothing (see
# ``serving/factory.py``); a gateway with another key cannot open a sealed secret, and does
# not route to that replica.
CLUSTER_SECRET_ENV = "LINGYUN_CLUSTER_SECRET"


def cluster_secret() -> str | None:
    return os.environ.get(CLUSTER_SECRET_ENV) or None


def _fernet() -> Fernet | None:
    key = cluster_secret()
    return None if key is None else _fernet_of(key)


@functools.lru_cache(maxsize=4)
def _fernet_of(key: str) -> Fernet:
    """Derived once per key: followers unseal every published row on every heartbeat."""
    digest = hashlib.sha256(b"lingyun replica secrets\0" + key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str | None) -> str | None:
    """The secret as the registry may hold it (None without a cluster secret)."""
    fernet = _fernet()
    if secret is None or fernet is None:
        return None
    return fernet.encrypt(secret.encode()).decode("ascii")


def unseal(sealed: str | None) -> str | None:
    """The secret ``seal`` sealed; None if there is none or it was sealed with another key."""
    fernet = _fernet()
    if not sealed or fernet is None:
        return None
    try:
        return fernet.decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        return None


def secret_of(headers: dict[str, str]) -> str | None:
    """The secret in headers made by ``auth_headers`` (None for an unauthenticated peer)."""
    value = headers.get("Authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def secret_env(spec: ProcessSpec, secret: str) -> dict[str, str]:
    """The process environment for ``spec`` with the secret set where its engine reads it."""
    return {**spec.env, **dict.fromkeys(spec.secret_env, secret)}
