"""LoRA adapters on the transformers worker: PEFT adapters of the tiny Qwen2, served by name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engines.worker_process import WorkerProcess
from tests.support.lora import build_lora_adapter, peft_greedy

pytestmark = pytest.mark.slow

MSG: list[Any] = [{"role": "user", "content": "Hello, how are you today?"}]
TOKENS = 24


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lora")
    return {name: build_lora_adapter(tiny_model_dir, root / name, seed=i + 1)
            for i, name in enumerate(("style-a", "style-b", "style-c"))}  # fmt: skip


@pytest.fixture(scope="module")
def lora_worker(
    tiny_model_dir: Path, adapters: dict[str, Path], worker_log_dir: Path
) -> Iterator[WorkerProcess]:
    args = {"device": "cpu", "max_loras": 2,
            "adapters": {n: str(p) for n, p in adapters.items()}}  # fmt: skip
    w = WorkerProcess("transformers", "tiny-chat", model=str(tiny_model_dir), args=json.dumps(args))
    w.start(worker_log_dir)
    yield w.wait_ready()
    w.stop()


def _answer(w: WorkerProcess, model: str, stream: bool = False) -> str:
    client = w.client()
    if stream:
        chunks = client.chat.completions.create(
            model=model, messages=MSG, temperature=0, max_tokens=TOKENS, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    out = client.chat.completions.create(
        model=model, messages=MSG, temperature=0, max_tokens=TOKENS
    )
    assert out.model == model
    return out.choices[0].message.content or ""


def test_adapter_answers_differently_and_exactly_as_peft(
    lora_worker: WorkerProcess, tiny_model_dir: Path, adapters: dict[str, Path]
) -> None:
    base = _answer(lora_worker, "tiny-chat")
    tuned = _answer(lora_worker, "style-a")
    assert base != tuned
    assert base == peft_greedy(tiny_model_dir, None, MSG, TOKENS)
    assert tuned == peft_greedy(tiny_model_dir, adapters["style-a"], MSG, TOKENS)
    assert _answer(lora_worker, "style-a", stream=True) == tuned
    assert _answer(lora_worker, "tiny-chat") == base  # the base is untouched by the adapter


def test_adapters_are_listed_loaded_on_first_use_and_lru_bounded(
    lora_worker: WorkerProcess, tiny_model_dir: Path, adapters: dict[str, Path]
) -> None:
    models = lora_worker.client().models.list()
    assert {m.id for m in models.data} == {"tiny-chat", "style-a", "style-b", "style-c"}
    answers = {name: _answer(lora_worker, name) for name in ("style-a", "style-b", "style-c")}
    health = httpx.get(f"{lora_worker.base_url}/health").json()
    assert len(health["adapters_loaded"]) == 2  # max_loras
    assert health["adapter_evictions"] >= 1
    # An evicted adapter loads again and answers as before.
    assert _answer(lora_worker, "style-a") == answers["style-a"]
    assert answers["style-b"] == peft_greedy(tiny_model_dir, adapters["style-b"], MSG, TOKENS)


def test_unknown_adapter_is_404(lora_worker: WorkerProcess) -> None:
    resp = httpx.post(
        f"{lora_worker.base_url}/v1/chat/completions",
        json={"model": "style-z", "messages": MSG},
    )
    assert resp.status_code == 404
