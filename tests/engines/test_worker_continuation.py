"""``continue_final_message`` on our worker (transformers on the greedy tiny model, and the
simulator): a reply cut after any chunk and continued equals the uninterrupted reply, and
the tokens counted on the two sides add up to the uninterrupted count."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.engines.worker_process import WorkerProcess

MESSAGES: list[Any] = [{"role": "user", "content": "你好，请介绍一下凌云云平台。"}]


def _stream(
    w: WorkerProcess, model: str, messages: list[Any], **extra: Any
) -> tuple[list[str], Any]:
    chunks = list(
        w.client().chat.completions.create(
            model=model, messages=messages, temperature=0, max_tokens=40, stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
            **extra,
        )
    )  # fmt: skip
    # each content chunk with the completion tokens counted through it
    pieces = [(c.choices[0].delta.content, c.usage) for c in chunks if c.choices]
    texts = [p for p, _ in pieces if p]
    return texts, (chunks[-1].usage, [u.completion_tokens for p, u in pieces if p])


def _continued(w: WorkerProcess, model: str, reply: str, max_tokens: int) -> tuple[str, Any]:
    out = w.client().chat.completions.create(
        model=model, temperature=0, max_tokens=max_tokens,
        messages=[*MESSAGES, {"role": "assistant", "content": reply}],
        extra_body={"continue_final_message": True, "add_generation_prompt": False},
    )  # fmt: skip
    return out.choices[0].message.content or "", out.usage


def _check_every_cut(w: WorkerProcess, model: str) -> None:
    texts, (usage, counted) = _stream(w, model, MESSAGES)
    full = "".join(texts)
    assert len(texts) > 6, texts
    for cut in (1, 3, len(texts) // 2, len(texts) - 1):
        reply = "".join(texts[:cut])
        rest, cont = _continued(w, model, reply, 40 - counted[cut - 1])
        assert reply + rest == full, (cut, reply, rest)
        # the client had counted[cut - 1] tokens; the continuation adds the rest
        assert counted[cut - 1] + cont.completion_tokens == usage.completion_tokens, cut
    # a reply that ends inside a token's text (a stop-string tail held back): the rest of
    # that token comes first, and the token, counted where it was made, is not counted again
    cut = next(i for i in range(2, len(texts)) if len(texts[i]) > 1)
    reply = "".join(texts[:cut]) + texts[cut][:1]
    rest, cont = _continued(w, model, reply, 40 - counted[cut])
    assert reply + rest == full, (cut, reply, rest)
    assert counted[cut] + cont.completion_tokens == usage.completion_tokens


def test_transformers_continues_exactly(tf_worker: WorkerProcess) -> None:
    _check_every_cut(tf_worker, "tiny-chat")


def test_simulator_continues_exactly(sim_worker: WorkerProcess) -> None:
    _check_every_cut(sim_worker, "sim-model")


def test_continue_final_message_needs_an_assistant_reply(sim_worker: WorkerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        sim_worker.client().chat.completions.create(
            model="sim-model", messages=MESSAGES,
            extra_body={"continue_final_message": True, "add_generation_prompt": False},
        )  # fmt: skip
    assert err.value.param == "messages"
