"""Incremental detokenization never splits a character and joins to the full decode."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from lingyun.engines.worker.detokenize import IncrementalDetokenizer
from lingyun.engines.worker.generate import StopMatcher


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _stream(tokenizer: Any, ids: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.add(i) for i in ids]
    deltas.append(detok.flush())
    return deltas


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("你好，世界！Hello, world.", id="mixed"),
        pytest.param("床前明月光，疑是地上霜。举头望明月，低头思故乡。", id="poem"),
        pytest.param("emoji 🚀 and rare 龘 characters", id="rare"),
    ],
)
def test_valid_text_streams_whole_characters(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in p for p in pieces), "the tokenizer should split some characters"
    deltas = _stream(tokenizer, ids)
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_random_tokens_join_to_full_decode(tokenizer: Any) -> None:
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 40))]
        expected = tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        assert "".join(_stream(tokenizer, ids)) == expected


@pytest.mark.parametrize(
    ("stops", "pieces", "sent", "hit"),
    [
        pytest.param(["END"], ["abc", "dE", "ND", "x"], ["abc", "d", ""], True, id="spanning"),
        pytest.param(["END"], ["abE", "x"], ["ab", "Ex"], False, id="false-start"),
        pytest.param(["o w", "wor"], ["hello world"], ["hell"], True, id="earliest"),
        pytest.param(["xyz"], ["a", "b"], ["a", "b"], False, id="no-match"),
    ],
)
def test_stop_matcher(stops: list[str], pieces: list[str], sent: list[str], hit: bool) -> None:
    matcher = StopMatcher(stops)
    out: list[str] = []
    stopped = False
    for p in pieces:
        text, stopped = matcher.feed(p)
        out.append(text)
        if stopped:
            break
    assert out == sent
    assert stopped is hit
