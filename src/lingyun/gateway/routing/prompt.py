"""What prefix routing hashes: the canonical prompt of a request, cut into chained blocks.

The canonical prompt is the request as a chat template would lay it out, without knowing the
template: tools first (templates render them into the system turn), then every message in
order, each as one JSON line with sorted keys (so a client's key order does not matter, and
content parts, tool calls and names all count); for completions, the prompt itself. The
whole conversation is hashed, not just its first message: a follow-up turn extends its
predecessor byte for byte, so it matches all of it.

Blocks are ``block_bytes`` long and chained: block i's hash covers the seed and blocks 0..i,
so equal blocks after different prefixes never match (as engines' KV blocks do not). The seed
is the model and, unless the deployment shares its cache between tenants, the tenant: two
tenants with the same system prompt get different hashes and never learn about each other's
traffic from where it lands. Only full blocks are hashed (a partial tail is never cached).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

BlockHash = bytes


def canonical_prompt(endpoint: str, body: dict[str, Any]) -> bytes:
    """The request's prompt as bytes in template order; empty when there is none."""
    if endpoint == "chat.completions":
        parts: list[str] = []
        if body.get("tools"):
            parts.append(_dumps({"tools": body["tools"]}))
        parts.extend(_dumps(m) for m in body.get("messages") or ())
        return ("\n".join(parts) + "\n").encode() if parts else b""
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt.encode()
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            # several prompts: the first one routes the request
            return str(prompt[0]).encode()
        return _dumps(prompt).encode() if prompt else b""
    return b""


def head_bytes(endpoint: str, body: dict[str, Any], prompt: bytes) -> int:
    """How much of ``prompt`` is its head: tools and the first message, which every later
    turn of a chat repeats unchanged (lines are JSON, so a newline ends one); for
    completions, the whole prompt."""
    if endpoint != "chat.completions":
        return len(prompt)
    end = -1
    for _ in range(2 if body.get("tools") else 1):
        end = prompt.find(b"\n", end + 1)
        if end < 0:
            return len(prompt)
    return end + 1


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def block_hashes(prompt: bytes, block_bytes: int, seed: str) -> list[BlockHash]:
    """Chained hashes of the full ``block_bytes`` blocks of ``prompt``, seeded by ``seed``."""
    parent = hashlib.blake2b(seed.encode(), digest_size=16).digest()
    hashes: list[BlockHash] = []
    view = memoryview(prompt)
    for start in range(0, len(prompt) - block_bytes + 1, block_bytes):
        parent = hashlib.blake2b(view[start : start + block_bytes], digest_size=16,
                                 key=parent).digest()  # fmt: skip
        hashes.append(parent)
    return hashes


def seed_of(model: str, tenant_id: str | None, shared: bool) -> str:
    """The chain's seed: per model, and per tenant unless the deployment shares its cache."""
    return model if shared or tenant_id is None else f"{model}\x00{tenant_id}"
