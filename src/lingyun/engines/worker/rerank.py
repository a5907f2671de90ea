"""``/v1/rerank`` on the embeddings worker: documents ordered by cosine similarity to the query.

No cross-encoder ships in a registry package we can use offline, so the packaged embedding
model scores: each document's cosine similarity with the query, in [-1, 1]. That is a
bi-encoder's relevance, weaker than a cross-encoder's, and the answer says so in
``meta.scoring``. The shape is Cohere's and Jina's (also vLLM's): ``results`` best first,
each with the document's ``index`` in the request and ``relevance_score``; usage counts the
query and document tokens that were embedded (what is metered).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from lingyun.engines.worker.backend import EmbeddingBackend
from lingyun.protocol.wire import RerankRequest

SCORING = "cosine similarity of embedding-model vectors (a bi-encoder, not a cross-encoder)"


async def rerank(backend: EmbeddingBackend, req: RerankRequest, model: str) -> dict[str, Any]:
    docs = req.texts()
    result = await backend.embed([req.query, *docs], None)
    vectors = np.asarray(result.vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    scores = unit[1:] @ unit[0]
    order = sorted(range(len(docs)), key=lambda i: -float(scores[i]))
    if req.top_n is not None:
        order = order[: req.top_n]
    results: list[dict[str, Any]] = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if req.return_documents:
            item["document"] = {"text": docs[i]}
        results.append(item)
    tokens = result.prompt_tokens
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "object": "rerank",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "meta": {"scoring": SCORING, "billed_units": {"input_tokens": tokens}},
    }
