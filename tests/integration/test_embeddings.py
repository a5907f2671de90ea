"""Embeddings through the gateway on the real packaged sentence-embedding model."""

from __future__ import annotations

import base64
import math
import struct

from tests.integration.conftest import Served


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_related_sentences_score_higher(served: Served) -> None:
    resp = served.client.embeddings.create(
        model="all-MiniLM-L6-v2",
        input=[
            "The cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Quarterly revenue grew by eight percent.",
        ],
    )
    vecs = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
    assert len(vecs) == 3 and len(vecs[0]) == 384
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2]) + 0.2
    assert resp.usage.prompt_tokens > 0
    assert resp.model == "all-MiniLM-L6-v2"


def test_base64_matches_float(served: Served) -> None:
    text = "Lingyun serves embeddings."
    floats = served.client.embeddings.create(model="all-MiniLM-L6-v2", input=text).data[0]
    raw = served.client.with_raw_response.embeddings.create(
        model="all-MiniLM-L6-v2", input=text, encoding_format="base64"
    ).http_response.json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert len(decoded) == len(floats.embedding)
    assert max(abs(a - b) for a, b in zip(decoded, floats.embedding, strict=True)) < 1e-6
