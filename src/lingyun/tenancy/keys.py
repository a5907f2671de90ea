"""API key secrets: generated once, shown once, stored as a SHA-256 hash.

Keys carry 256 bits of randomness, so a fast hash is safe (nothing to brute-force) and lets
the gateway look a key up by its hash in one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-ly-"
DISPLAY_CHARS = 12


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The non-secret start of a key, for lists and audit logs."""
    return secret[:DISPLAY_CHARS]
