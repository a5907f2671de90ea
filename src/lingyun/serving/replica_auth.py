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


def secret_of(headers: dict[str, str]) -> str | None:
    """The secret in headers made by ``auth_headers`` (None for an unauthenticated peer)."""
    value = headers.get("Authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def secret_env(spec: ProcessSpec, secret: str) -> dict[str, str]:
    """The process environment for ``spec`` with the secret set where its engine reads it."""
    return {**spec.env, **dict.fromkeys(spec.secret_env, secret)}
