"""Chat completions through the gateway, with the official openai client."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Served

PROMPT = [{"role": "user", "content": "你好，世界! Tell me about 云计算 and tokens."}]


def test_models_list_shows_every_deployment(served: Served) -> None:
    ids = {m.id for m in served.client.models.list()}
    assert {"tiny-chat", "all-MiniLM-L6-v2", "sim", "sim-slow", "sim-crash"} <= ids
    assert served.client.models.retrieve("tiny-chat").id == "tiny-chat"


def test_chat_non_streaming_reports_real_usage(served: Served) -> None:
    resp = served.client.chat.completions.create(
        model="tiny-chat", messages=PROMPT, max_tokens=12, temperature=0
    )
    assert resp.model == "tiny-chat"  # the served name, never the local path
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 10
    assert 0 < resp.usage.completion_tokens <= 12
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_streamed_pieces_join_to_the_non_streamed_text(served: Served) -> None:
    """Greedy decoding: streaming must detokenize without splitting multi-byte characters."""
    whole = served.client.chat.completions.create(
        model="tiny-chat", messages=PROMPT, max_tokens=40, temperature=0
    )
    text = whole.choices[0].message.content or ""
    stream = served.client.chat.completions.create(
        model="tiny-chat", messages=PROMPT, max_tokens=40, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    pieces: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    # A piece boundary inside a UTF-8 character would add replacement characters here.
    assert "".join(pieces) == text
    assert any(ord(ch) > 0x7F for ch in text), "the model should emit multi-byte text"
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_usage_chunk_only_when_asked(served: Served) -> None:
    chunks = list(
        served.client.chat.completions.create(
            model="sim", messages=PROMPT, max_tokens=4, stream=True
        )
    )
    assert chunks and all(c.choices for c in chunks), "usage-only chunk leaked to the client"
    assert all(c.usage is None for c in chunks)
    with_usage = list(
        served.client.chat.completions.create(
            model="sim",
            messages=PROMPT,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_n_and_stop(served: Served, stream: bool) -> None:
    kwargs = {"model": "sim", "messages": PROMPT, "max_tokens": 8, "n": 2}
    if not stream:
        resp = served.client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        assert sorted(c.index for c in resp.choices) == [0, 1]
        first = resp.choices[0].message.content
    else:
        texts: dict[int, str] = {}
        for chunk in served.client.chat.completions.create(**kwargs, stream=True):  # type: ignore[call-overload]
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
        assert sorted(texts) == [0, 1]
        first = texts[0]
    words = first.split()
    assert len(words) >= 3
    stopped = served.client.chat.completions.create(
        model="sim", messages=PROMPT, max_tokens=8, stop=[words[2]]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert words[2] not in (stopped.choices[0].message.content or "")


def test_max_completion_tokens_and_sampling_params(served: Served) -> None:
    resp = served.client.chat.completions.create(
        model="tiny-chat", messages=PROMPT, max_completion_tokens=5, temperature=0.7,
        top_p=0.9, seed=7,
    )  # fmt: skip
    assert resp.usage is not None and resp.usage.completion_tokens <= 5
    again = served.client.chat.completions.create(
        model="tiny-chat", messages=PROMPT, max_completion_tokens=5, temperature=0.7,
        top_p=0.9, seed=7,
    )  # fmt: skip
    assert again.choices[0].message.content == resp.choices[0].message.content


def test_completions_stream_and_unary(served: Served) -> None:
    resp = served.client.completions.create(model="tiny-chat", prompt="Hello 世界", max_tokens=6)
    assert resp.object == "text_completion" and resp.model == "tiny-chat"
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    chunks = list(
        served.client.completions.create(
            model="sim",
            prompt="Hello",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
