"""The simulator's stand-in prefix cache: block hits, LRU bounds, prefill cost, usage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lingyun.engines.worker import simulator_backend
from lingyun.engines.worker.backend import SamplingParams
from lingyun.engines.worker.prefix_cache import PrefixCache, block_hashes
from lingyun.engines.worker.simulator_backend import SimulatorBackend
from lingyun.protocol.wire import ChatMessage
from tests.engines.worker_process import WorkerProcess


def _tokens(n: int, tag: str = "t") -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def test_repeated_prompt_hits_its_full_blocks() -> None:
    cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
    prompt = _tokens(10)
    assert cache.admit(prompt) == 0
    assert cache.admit(prompt) == 8  # two full blocks; the partial third is never cached


def test_hit_stops_at_the_first_different_block() -> None:
    cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
    cache.admit(_tokens(12))
    changed = _tokens(12)
    changed[5] = "other"
    assert cache.admit(changed) == 4


def test_same_block_after_a_different_prefix_is_a_miss() -> None:
    """Hashes chain: a block is only reused after the same whole prefix."""
    a = ["a", "b", "c", "d", "x", "y", "z", "w"]
    b = ["q", "r", "s", "t", "x", "y", "z", "w"]
    assert block_hashes(a, 4)[1] != block_hashes(b, 4)[1]
    cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
    cache.admit(a)
    assert cache.admit([*b, "tail"]) == 0


def test_whole_prompt_cached_still_computes_its_last_token() -> None:
    cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
    cache.admit(_tokens(8))
    assert cache.admit(_tokens(8)) == 7


def test_lru_evicts_the_least_recently_used_prefix() -> None:
    cache = PrefixCache(capacity_tokens=8, block_tokens=4)  # two blocks
    a, b = _tokens(5, "a"), _tokens(5, "b")
    cache.admit(a)
    cache.admit(b)
    assert cache.admit(a) == 4  # touched: b is now the oldest
    cache.admit(_tokens(5, "c"))  # evicts b
    assert len(cache) == 2
    assert cache.admit(a) == 4
    assert cache.admit(b) == 0


def test_zero_capacity_is_no_cache() -> None:
    cache = PrefixCache(capacity_tokens=0)
    assert not cache.enabled
    cache.admit(_tokens(64))
    assert cache.admit(_tokens(64)) == 0 and len(cache) == 0


def test_chat_prompt_reports_cached_tokens_only_with_a_cache() -> None:
    msgs = [
        ChatMessage(role="system", content="word " * 100),
        ChatMessage(role="user", content="hi"),
    ]
    plain = SimulatorBackend({})
    assert plain.chat_prompt(msgs).cached_tokens is None
    cached = SimulatorBackend({"prefix_cache_tokens": 4096})
    first = cached.chat_prompt(msgs)
    second = cached.chat_prompt(msgs)
    assert first.num_tokens == plain.chat_prompt(msgs).num_tokens  # counting unchanged
    assert first.cached_tokens == 0
    assert second.cached_tokens is not None and second.cached_tokens >= first.num_tokens - 16


def test_next_turn_reuses_the_cached_reply() -> None:
    backend = SimulatorBackend({"prefix_cache_tokens": 8192})
    msgs = [
        ChatMessage(role="system", content="word " * 100),
        ChatMessage(role="user", content="hi"),
    ]

    async def reply(prompt_msgs: list[ChatMessage]) -> tuple[int, str]:
        prompt = backend.chat_prompt(prompt_msgs)
        parts = [d.text async for d in backend.generate(prompt, SamplingParams(max_tokens=40))]
        return prompt.cached_tokens or 0, "".join(parts)

    _, text = asyncio.run(reply(msgs))
    follow_up = [*msgs, ChatMessage(role="assistant", content=text),
                 ChatMessage(role="user", content="more")]  # fmt: skip
    cached, _ = asyncio.run(reply(follow_up))
    first_turn = backend.chat_prompt(msgs).num_tokens
    assert cached >= first_turn + 40 - 16  # the reply's full blocks were cached too


def _sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(simulator_backend.asyncio, "sleep", sleep)
    return slept


def test_ttft_is_base_plus_cost_of_uncached_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    slept = _sleeps(monkeypatch)
    backend = SimulatorBackend(
        {"ttft_ms": 10, "prefix_cache_tokens": 4096, "prefill_ms_per_token": 2}
    )
    msgs = [
        ChatMessage(role="system", content="word " * 100),
        ChatMessage(role="user", content="hi"),
    ]

    async def first_token() -> None:
        prompt = backend.chat_prompt(msgs)
        gen = backend.generate(prompt, SamplingParams(max_tokens=1))
        async for _ in gen:
            pass
        slept.append(-float(prompt.cached_tokens or 0))  # marker: the hit of this prompt

    asyncio.run(first_token())
    asyncio.run(first_token())
    n = backend.chat_prompt(msgs).num_tokens
    cold_base, cold_prefill, cold_hit, warm_base, warm_prefill, warm_hit = slept
    assert cold_base == warm_base == pytest.approx(0.010)
    assert cold_hit == 0 and cold_prefill == pytest.approx(n * 0.002)
    assert warm_prefill == pytest.approx((n + warm_hit) * 0.002)
    assert warm_prefill < cold_prefill / 5


@pytest.mark.parametrize(
    ("slots", "order"),
    [
        pytest.param(1, ["start", "end", "start", "end"], id="one-slot-queues"),
        pytest.param(2, ["start", "start", "end", "end"], id="two-slots-overlap"),
    ],
)
def test_prefills_queue_on_their_slots(
    monkeypatch: pytest.MonkeyPatch, slots: int, order: list[str]
) -> None:
    events: list[str] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        events.append("start")
        await real_sleep(0)
        await real_sleep(0)
        events.append("end")

    monkeypatch.setattr(simulator_backend.asyncio, "sleep", sleep)

    async def run() -> None:
        backend = SimulatorBackend({"prefill_ms_per_token": 1, "prefill_slots": slots})
        prompts = [backend.completion_prompt(f"prompt {i} " * 20) for i in range(2)]
        gens = [backend.generate(p, SamplingParams(max_tokens=1)) for p in prompts]
        await asyncio.gather(*(anext(g) for g in gens))
        for g in gens:
            await g.aclose()

    asyncio.run(run())
    assert events == order


def test_max_running_makes_later_sequences_wait() -> None:
    async def run() -> list[int]:
        backend = SimulatorBackend({"max_running": 1})
        first = backend.generate(backend.completion_prompt("a"), SamplingParams(max_tokens=2))
        second = backend.generate(backend.completion_prompt("b"), SamplingParams(max_tokens=2))
        await anext(first)  # holds the only running slot
        pending = asyncio.ensure_future(anext(second))
        await asyncio.sleep(0)  # let it reach the slot queue
        seen = [backend.waiting, backend.active]
        await first.aclose()  # frees the slot
        await pending
        seen += [backend.waiting, backend.active]
        await second.aclose()
        return seen

    assert asyncio.run(run()) == [1, 2, 0, 1]


def test_bad_arguments_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        SimulatorBackend({"prefix_cache_tokens": -1})
    with pytest.raises(ValueError, match="prefill_slots"):
        SimulatorBackend({"prefill_slots": 0})
    with pytest.raises(ValueError, match="max_running"):
        SimulatorBackend({"max_running": -1})


@pytest.mark.slow
def test_worker_reports_cached_tokens_in_usage(tmp_path: Path) -> None:
    args = {"prefix_cache_tokens": 8192, "prefill_ms_per_token": 0.01}
    worker = WorkerProcess("simulator", "sim", args=json.dumps(args)).start(tmp_path)
    try:
        worker.wait_ready()
        messages: Any = [
            {"role": "system", "content": "You are a helpful assistant. " * 50},
            {"role": "user", "content": "hello"},
        ]
        client = worker.client()
        first = client.chat.completions.create(model="sim", messages=messages)
        second = client.chat.completions.create(model="sim", messages=messages, stream=True,
                                                stream_options={"include_usage": True})  # fmt: skip
        usage = [c.usage for c in second if c.usage is not None][-1]
        assert first.usage is not None and first.usage.prompt_tokens_details is not None
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        assert usage.prompt_tokens_details is not None
        cached = usage.prompt_tokens_details.cached_tokens
        assert cached is not None and usage.prompt_tokens - 16 <= cached < usage.prompt_tokens
        stats = worker.health()["prefix_cache"]
        assert stats["hit_tokens"] == cached
    finally:
        worker.stop()
