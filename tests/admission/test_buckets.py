"""The in-process limiter: exact windows, per-second smoothing, corrections, all-or-nothing."""

from __future__ import annotations

import asyncio

import pytest

from lingyun.admission.buckets import LocalLimiter, SlidingWindow, TokenBucket
from lingyun.admission.limits import Charge, LimitRule, format_reset, headers_for

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rule(**limits: int | None) -> LimitRule:
    return LimitRule("key", "key_1", "ten_1", **limits)  # type: ignore[arg-type]


def charge(i: int, *rules: LimitRule, tokens: int = 10) -> Charge:
    return Charge(f"req_{i}", "ten_1", rules, tokens)


def test_sliding_window_is_exact_and_corrects() -> None:
    w = SlidingWindow(60)
    for i in range(3):
        w.add(f"r{i}", 10, now=float(i))
    assert w.used(2.0) == 30
    assert w.wait_for(15, limit=40, now=2.0) == pytest.approx(58.0)  # r0 must leave first
    w.adjust("r1", 2)
    assert w.used(2.0) == 22
    assert w.used(60.0) == 12  # r0 left at exactly 60 s
    assert w.reset_after(60.0) == pytest.approx(2.0)
    w.adjust("r0", 99)  # already gone: no effect
    assert w.used(60.0) == 12


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, capacity=3, now=0.0)
    b.take(3)
    assert b.wait_for(1, now=0.0) == pytest.approx(0.5)
    assert b.wait_for(1, now=0.5) == 0.0
    assert b.wait_for(5, now=100.0) == pytest.approx(1.0)  # capped at capacity


async def test_burst_zero_admits_exactly_the_minute_allowance_at_once() -> None:
    limiter = LocalLimiter(Clock())
    r = rule(rpm=60, burst=0)
    outcomes = await asyncio.gather(*(limiter.acquire(charge(i, r)) for i in range(200)))
    assert sum(o.refusal is None for o in outcomes) == 60
    refused = next(o for o in outcomes if o.refusal is not None)
    assert refused.refusal is not None and refused.refusal.dimension == "requests"
    assert refused.refusal.retry_after_s == pytest.approx(60.0)


async def test_default_burst_smooths_to_rpm_over_60_per_second() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    r = rule(rpm=120)  # 2 per second, bucket of 2
    first = [await limiter.acquire(charge(i, r)) for i in range(5)]
    assert [o.refusal is None for o in first] == [True, True, False, False, False]
    assert first[2].refusal is not None
    assert first[2].refusal.dimension == "requests_per_second"
    assert first[2].refusal.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    assert (await limiter.acquire(charge(10, r))).refusal is None


async def test_explicit_burst_sets_the_bucket_size() -> None:
    limiter = LocalLimiter(Clock())
    r = rule(rpm=60, burst=5)
    outcomes = [await limiter.acquire(charge(i, r)) for i in range(10)]
    assert sum(o.refusal is None for o in outcomes) == 5


async def test_tokens_are_reserved_then_corrected() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    r = rule(tpm=100)
    first = charge(1, r, tokens=80)
    assert (await limiter.acquire(first)).refusal is None
    refused = await limiter.acquire(charge(2, r, tokens=30))
    assert refused.refusal is not None and refused.refusal.dimension == "tokens"
    await limiter.release(first, used_tokens=20)  # the real usage was much smaller
    again = await limiter.acquire(charge(3, r, tokens=30))
    assert again.refusal is None
    assert again.states[0].tokens_remaining == 50
    too_big = await limiter.acquire(charge(4, r, tokens=101))
    assert too_big.refusal is not None and too_big.refusal.retry_after_s == 60.0


async def test_concurrency_counts_requests_in_flight() -> None:
    limiter = LocalLimiter(Clock())
    r = rule(concurrency=2)
    a, b, c = charge(1, r), charge(2, r), charge(3, r)
    assert (await limiter.acquire(a)).refusal is None
    assert (await limiter.acquire(b)).refusal is None
    refused = await limiter.acquire(c)
    assert refused.refusal is not None and refused.refusal.dimension == "concurrency"
    await limiter.release(a, 0)
    assert (await limiter.acquire(c)).refusal is None


async def test_a_refusal_charges_no_rule() -> None:
    limiter = LocalLimiter(Clock())
    roomy, tight = rule(rpm=100, burst=0), LimitRule("tenant", "ten_1", "ten_1", rpm=1, burst=0)
    assert (await limiter.acquire(charge(1, roomy, tight))).refusal is None
    refused = await limiter.acquire(charge(2, roomy, tight))
    assert refused.refusal is not None and refused.refusal.rule is tight
    assert refused.states[0].requests_remaining == 99  # the roomy rule was not charged


async def test_headers_report_the_tightest_rule() -> None:
    limiter = LocalLimiter(Clock())
    key_rule = rule(rpm=10, tpm=1000, burst=0)
    tenant_rule = LimitRule("tenant", "ten_1", "ten_1", rpm=5, tpm=5000, burst=0)
    c = charge(1, key_rule, tenant_rule, tokens=100)
    headers = headers_for(c, await limiter.acquire(c))
    assert headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "1m0s",
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(0.02, "20ms", id="ms"),
        pytest.param(1.5, "1.5s", id="seconds"),
        pytest.param(360, "6m0s", id="minutes"),
    ],
)
def test_reset_durations_use_openai_style(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text
