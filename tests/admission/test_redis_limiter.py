"""The Lua limiter against a real Redis: exact under concurrency, shared between processes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from lingyun.admission.limits import Charge, LimitRule, headers_for
from lingyun.admission.redis_limiter import RedisLimiter
from lingyun.errors import ServiceUnavailableError
from tests.support.databases import REDIS_URL

pytestmark = pytest.mark.anyio

Factory = Callable[[], RedisLimiter]


@pytest.fixture
async def limiters(anyio_backend: str) -> AsyncIterator[Factory]:
    """Limiters on separate connections, as separate gateway processes would have."""
    made: list[RedisLimiter] = []
    prefix = f"lingyun:test:{secrets.token_hex(4)}"

    def make() -> RedisLimiter:
        made.append(RedisLimiter(REDIS_URL, lease_s=30, prefix=prefix))
        return made[-1]

    yield make
    for limiter in made:
        keys = [k async for k in limiter.client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await limiter.client.delete(*keys)
        await limiter.close()


def rule(**limits: int | None) -> LimitRule:
    return LimitRule("key", "key_1", "ten_1", **limits)  # type: ignore[arg-type]


def charge(i: int, *rules: LimitRule, tokens: int = 10) -> Charge:
    return Charge(f"req_{i}", "ten_1", rules, tokens)


async def test_exact_under_concurrency_across_two_limiters(limiters: Factory) -> None:
    one, two = limiters(), limiters()
    r = rule(rpm=60, burst=0)
    outcomes = await asyncio.gather(
        *((one if i % 2 else two).acquire(charge(i, r)) for i in range(200))
    )
    assert sum(o.refusal is None for o in outcomes) == 60
    refused = next(o for o in outcomes if o.refusal is not None)
    assert refused.refusal is not None and refused.refusal.dimension == "requests"
    assert 59.0 < refused.refusal.retry_after_s <= 60.0
    assert refused.states[0].requests_remaining == 0


async def test_per_second_bucket(limiters: Factory) -> None:
    limiter = limiters()
    r = rule(rpm=60, burst=3)
    outcomes = [await limiter.acquire(charge(i, r)) for i in range(6)]
    assert [o.refusal is None for o in outcomes] == [True] * 3 + [False] * 3
    refusal = outcomes[3].refusal
    assert refusal is not None and refusal.dimension == "requests_per_second"
    assert 0 < refusal.retry_after_s <= 1.0


async def test_tokens_reserved_then_corrected(limiters: Factory) -> None:
    limiter = limiters()
    r = rule(tpm=100)
    first = charge(1, r, tokens=80)
    assert (await limiter.acquire(first)).refusal is None
    refused = await limiter.acquire(charge(2, r, tokens=30))
    assert refused.refusal is not None and refused.refusal.dimension == "tokens"
    assert 59.0 < refused.refusal.retry_after_s <= 60.0
    await limiter.release(first, used_tokens=20)
    again = await limiter.acquire(charge(3, r, tokens=30))
    assert again.refusal is None
    assert again.states[0].tokens_remaining == 50


async def test_concurrency_and_all_or_nothing(limiters: Factory) -> None:
    limiter = limiters()
    slots = rule(concurrency=1)
    counted = LimitRule("tenant", "ten_1", "ten_1", rpm=100, burst=0)
    a, b = charge(1, counted, slots), charge(2, counted, slots)
    assert (await limiter.acquire(a)).refusal is None
    refused = await limiter.acquire(b)
    assert refused.refusal is not None and refused.refusal.dimension == "concurrency"
    assert refused.states[0].requests_remaining == 99  # nothing charged on refusal
    await limiter.release(a, 0)
    admitted = await limiter.acquire(b)
    assert admitted.refusal is None
    assert headers_for(b, admitted)["x-ratelimit-remaining-requests"] == "98"


async def test_redis_down_fails_closed_by_default() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            await limiter.acquire(charge(1, rule(rpm=100)))
        assert caught.value.code == "rate_limiter_unavailable"
        assert caught.value.headers["Retry-After"] == "1"
        await limiter.release(charge(1, rule(rpm=100)), 0)  # a failed release is dropped
    finally:
        await limiter.close()


async def test_redis_down_fails_open_when_so_configured() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", fail_open=True)
    try:
        outcome = await limiter.acquire(charge(1, rule(rpm=0, burst=0)))
        assert outcome.refusal is None
    finally:
        await limiter.close()
