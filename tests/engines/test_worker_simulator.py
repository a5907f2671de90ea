"""The worker's OpenAI surface, on the simulator backend (cheap, deterministic)."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.engines.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

MODEL = "sim-model"
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about the cloud, 请简短回答。"}]


def _chat(w: WorkerProcess, **kwargs: Any) -> Any:
    return w.client().chat.completions.create(model=MODEL, messages=MESSAGES, **kwargs)


def test_health_and_models(sim_worker: WorkerProcess) -> None:
    health = sim_worker.health()
    assert health["status"] == "ok"
    assert health["backend"] == "simulator"
    models = sim_worker.client().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_non_stream_is_deterministic_with_usage(sim_worker: WorkerProcess) -> None:
    first = _chat(sim_worker)
    second = _chat(sim_worker)
    assert first.object == "chat.completion"
    assert first.id.startswith("chatcmpl-")
    choice = first.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == second.choices[0].message.content
    assert choice.finish_reason == "stop"  # no max_tokens: the natural end after output_tokens
    assert first.usage is not None
    assert first.usage.completion_tokens == 16
    assert first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + 16


def test_chat_stream_matches_non_stream(sim_worker: WorkerProcess) -> None:
    expected = _chat(sim_worker, max_tokens=7)
    chunks = list(
        _chat(sim_worker, max_tokens=7, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and expected.usage is not None
    assert last.usage.model_dump() == expected.usage.model_dump()


def test_stream_without_usage_option_has_no_usage_chunk(sim_worker: WorkerProcess) -> None:
    chunks = list(_chat(sim_worker, max_tokens=3, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_max_tokens_gives_length(sim_worker: WorkerProcess) -> None:
    out = _chat(sim_worker, max_completion_tokens=5)
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 5


def test_n_choices(sim_worker: WorkerProcess) -> None:
    out = _chat(sim_worker, n=2, max_tokens=4)
    assert [c.index for c in out.choices] == [0, 1]
    assert out.usage is not None and out.usage.completion_tokens == 8
    chunks = list(
        _chat(sim_worker, n=2, max_tokens=4, stream=True, stream_options={"include_usage": True})
    )
    texts = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == {c.index: c.message.content for c in out.choices}


def test_stop_string_cuts_text(sim_worker: WorkerProcess) -> None:
    full = _chat(sim_worker).choices[0].message.content
    assert full is not None
    words = full.split(" ")
    stop = " " + words[3]
    expected = full[: full.index(stop)]
    out = _chat(sim_worker, stop=[stop, "never-appears"])
    assert out.choices[0].message.content == expected
    assert out.choices[0].finish_reason == "stop"
    chunks = list(_chat(sim_worker, stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions(sim_worker: WorkerProcess) -> None:
    client = sim_worker.client()
    out = client.completions.create(model=MODEL, prompt=["one", "two"], max_tokens=3)
    assert out.object == "text_completion"
    assert [c.index for c in out.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in out.choices)
    assert out.usage is not None and out.usage.completion_tokens == 6
    stream = client.completions.create(
        model=MODEL, prompt="one", max_tokens=3, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == out.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
            id="tools",
        ),
        pytest.param({"response_format": {"type": "json_object"}}, "response_format", id="json"),
        pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"logit_bias": {"1": 5}}, "logit_bias", id="logit-bias"),
        pytest.param({"presence_penalty": 0.5}, "presence_penalty", id="penalty"),
    ],
)
def test_unsupported_parameters_are_400(
    sim_worker: WorkerProcess, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _chat(sim_worker, **kwargs)
    body: Any = info.value.body
    assert body["param"] == param
    assert body["code"] == "unsupported_parameter"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": MODEL, "messages": []}, "messages", id="no-messages"),
        pytest.param({"model": MODEL, "messages": MESSAGES, "n": 0}, "n", id="n-zero"),
        pytest.param({"messages": MESSAGES}, "model", id="no-model"),
    ],
)
def test_client_mistakes_are_400(
    sim_worker: WorkerProcess, body: dict[str, Any], param: str
) -> None:
    r = httpx.post(sim_worker.base_url + "/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    r = httpx.post(sim_worker.base_url + "/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400


def test_unknown_model_is_404(sim_worker: WorkerProcess) -> None:
    with pytest.raises(openai.NotFoundError):
        sim_worker.client().chat.completions.create(model="other", messages=MESSAGES)


def test_failure_after_first_byte_is_an_sse_error(sim_worker: WorkerProcess) -> None:
    stream = _chat(sim_worker, stream=True, extra_body={"sim_fail_after": 2})
    seen: list[str] = []
    with stream, pytest.raises(openai.APIError, match="Simulated engine failure"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert len([s for s in seen if s]) == 2


def test_failure_before_first_byte_and_non_stream_is_500(sim_worker: WorkerProcess) -> None:
    with pytest.raises(openai.InternalServerError):
        _chat(sim_worker, extra_body={"sim_fail_after": 3})
    with pytest.raises(openai.InternalServerError):
        list(_chat(sim_worker, stream=True, extra_body={"sim_fail_after": 0}))


def test_stream_disconnect_stops_generation(sim_worker: WorkerProcess) -> None:
    sim_worker.wait_idle()
    stream = _chat(sim_worker, stream=True, max_tokens=500, extra_body={"sim_itl_ms": 20})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    assert sim_worker.health()["active"] == 1
    stream.close()
    stopped = sim_worker.wait_idle(timeout=3.0)
    time.sleep(0.2)
    assert sim_worker.health()["generated_tokens"] == stopped["generated_tokens"]


def test_non_stream_disconnect_stops_generation(sim_worker: WorkerProcess) -> None:
    sim_worker.wait_idle()
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 500, "sim_itl_ms": 20}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim_worker.base_url + "/v1/chat/completions", json=body, timeout=0.3)
    health = sim_worker.wait_idle(timeout=3.0)
    assert health["active"] == 0


def test_crash_kills_the_replica(spawn_worker: Any) -> None:
    w: WorkerProcess = spawn_worker("simulator", MODEL)
    stream = w.client(timeout=5).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, extra_body={"sim_crash_after": 2}
    )
    with stream, pytest.raises((openai.APIError, httpx.TransportError)):
        for _ in stream:
            pass
    assert w.proc is not None
    assert w.proc.wait(timeout=5) == 1


def test_embeddings_float_and_base64(sim_worker: WorkerProcess) -> None:
    out = sim_worker.client().embeddings.create(
        model=MODEL, input=["a", "b"], encoding_format="float"
    )
    assert [d.index for d in out.data] == [0, 1]
    assert len(out.data[0].embedding) == 64
    raw = httpx.post(
        sim_worker.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": ["a", "b"], "encoding_format": "base64"},
    ).json()
    for item, ref in zip(raw["data"], out.data, strict=True):
        vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert np.allclose(vec, ref.embedding, atol=1e-6)
    short = sim_worker.client().embeddings.create(model=MODEL, input="a", dimensions=8)
    assert len(short.data[0].embedding) == 8
