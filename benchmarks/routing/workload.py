"""The routing benchmark's clients: multi-turn sessions over long shared system prompts, and a
skewed stream where one system prompt carries most of the traffic.

Closed loop: each client sends a streaming chat request, reads it to the end (TTFT is the
first content chunk; usage, asked for, gives prompt and cached tokens), and sends the next.
A session client keeps a conversation going for ``turns`` turns with an ``X-Session-ID``,
appending each reply, then starts a new session on a random system prompt. The skewed stream
sends ``hot_share`` of its requests with the one long hot system prompt, the rest with short
prompts of their own. Only requests
sent and finished inside the measurement window count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

VOCAB = tuple(
    f"{a}{b}"
    for a in ("cloud", "token", "model", "queue", "price", "batch", "cache", "route")
    for b in ("er", "ing", "s", "ed", "ly", "ion", "al", "ive", "ness", "ment", "ful", "ous")
)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def system_prompts(count: int, length: int, seed: int) -> list[str]:
    """``count`` distinct system prompts of ``length`` simulator tokens (one per word)."""
    rng = random.Random(seed)
    return [f"System prompt {i}: " + words(rng, length) for i in range(count)]


@dataclass
class Stats:
    ttft_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0
    # sampled through the window: per replica (sequences running + waiting), and waiting
    replica_load: list[list[int]] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    begin: float
    end: float

    def holds(self, sent: float, done: float) -> bool:
        return self.begin <= sent and done < self.end


async def _one(
    http: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> tuple[float | None, str, dict[str, Any] | None]:
    """(TTFT, reply text, usage) of one streamed request; TTFT None on an error."""
    sent = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return None, "", None
        async for line in resp.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("error"):
                return None, "", None
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if ttft is None:
                        ttft = time.perf_counter() - sent
                    parts.append(text)
            if chunk.get("usage"):
                usage = chunk["usage"]
    return ttft, "".join(parts), usage


def _record(stats: Stats, ttft: float, usage: dict[str, Any] | None, latency: float) -> None:
    stats.ttft_s.append(ttft)
    stats.latency_s.append(latency)
    if usage is not None:
        stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        stats.output_tokens += int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        stats.cached_tokens += int(details.get("cached_tokens") or 0)


@dataclass(frozen=True)
class Load:
    """What the clients send; ``hot_share`` > 0 makes the skewed workload."""

    model: str
    key: str
    prompts: list[str]
    clients: int
    turns: int
    user_words: int
    max_tokens: int
    hot_share: float = 0.0
    seed: int = 1


async def run_load(
    base_url: str, load: Load, warmup_s: float, window_s: float, replica_urls: list[str]
) -> Stats:
    stats = Stats()
    start = time.perf_counter()
    window = Window(start + warmup_s, start + warmup_s + window_s)
    headers = {"authorization": f"Bearer {load.key}"}

    async def client(http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(load.seed * 1000 + n)
        while time.perf_counter() < window.end:
            if load.hot_share and rng.random() < load.hot_share:
                system = load.prompts[0]
            elif load.hot_share:  # the rest: short prompts, each its own
                system = words(rng, 20)
            else:
                system = rng.choice(load.prompts)
            messages: list[dict[str, str]] = [{"role": "system", "content": system}]
            session = {**headers, "x-session-id": uuid.uuid4().hex}
            for _ in range(load.turns):
                messages.append({"role": "user", "content": words(rng, load.user_words)})
                body = {"model": load.model, "messages": messages, "stream": True,
                        "max_tokens": load.max_tokens,
                        "stream_options": {"include_usage": True}}  # fmt: skip
                sent = time.perf_counter()
                try:
                    ttft, reply, usage = await _one(http, body, session)
                except httpx.HTTPError:
                    ttft, reply, usage = None, "", None
                done = time.perf_counter()
                if ttft is None:
                    stats.errors += 1
                    break
                if window.holds(sent, done):
                    _record(stats, ttft, usage, done - sent)
                messages.append({"role": "assistant", "content": reply})
                if done >= window.end:
                    return

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=300, limits=limits, trust_env=False
    ) as http:
        tasks = [asyncio.create_task(client(http, n)) for n in range(load.clients)]
        tasks.append(asyncio.create_task(_probe(http, replica_urls, window, stats)))
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        for task in tasks:  # requests still running are cut off: they are outside the window
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return stats


async def _probe(http: httpx.AsyncClient, urls: list[str], window: Window, stats: Stats) -> None:
    """Sample every replica's sequences (running and waiting) a few times a second."""
    await asyncio.sleep(max(0.0, window.begin - time.perf_counter()))
    while time.perf_counter() < window.end:
        sample = []
        for url in urls:
            health = (await http.get(url, timeout=5)).json()
            sample.append(int(health.get("active", 0)))
        stats.replica_load.append(sample)
        await asyncio.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(stats: Stats, window_s: float) -> dict[str, Any]:
    ttft_ms = [x * 1000 for x in stats.ttft_s]
    return {
        "requests": len(stats.ttft_s),
        "errors": stats.errors,
        "requests_per_s": round(len(stats.ttft_s) / window_s, 2),
        "output_tokens_per_s": round(stats.output_tokens / window_s, 1),
        "ttft_p50_ms": round(percentile(ttft_ms, 50), 1),
        "ttft_p99_ms": round(percentile(ttft_ms, 99), 1),
        "latency_p50_ms": round(percentile([x * 1000 for x in stats.latency_s], 50), 1),
        "cache_hit_ratio": round(stats.cached_tokens / stats.prompt_tokens, 3)
        if stats.prompt_tokens
        else 0.0,
        "replica_load_spread_mean": round(
            sum(max(s) - min(s) for s in stats.replica_load) / len(stats.replica_load), 2
        )
        if stats.replica_load
        else None,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
    }
