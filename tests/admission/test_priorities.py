"""Keys' priorities in the capacity queue under saturation: bands order service, tenants
stay fair within a band, a request passed by higher bands is shed with a 429 that says
why, and the virtual counters charge what the tenant pays (cached input at its price)."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest

from lingyun.admission.capacity import FairQueue
from lingyun.admission.vtc import VtcScheduler
from lingyun.errors import RateLimitError, ServiceUnavailableError
from lingyun.gateway.context import RequestContext, Usage
from lingyun.metering.holds import Hold
from lingyun.metering.pricing import UnitPrices
from tests.admission.test_vtc import Replicas, request

pytestmark = pytest.mark.anyio


def keyed(tenant: str, priority: str, n: int = 0) -> RequestContext:
    ctx = request(tenant)
    assert ctx.key is not None
    ctx.key = dataclasses.replace(ctx.key, priority=priority)
    ctx.request_id = f"{priority}:{tenant}:{n}"
    return ctx


async def _queue_in_order(
    queue: FairQueue, waiting: list[RequestContext]
) -> list[asyncio.Task[None]]:
    """Start each waiter once the one before it is queued: arrival order is the list's."""
    tasks = []
    for i, ctx in enumerate(waiting, start=1):
        tasks.append(asyncio.create_task(queue.acquire(ctx)))
        await asyncio.sleep(0)  # the task runs up to its first wait, in the queue by then
        assert queue.stats.queued == i
    return tasks


async def _served(
    queue: FairQueue, holder: RequestContext, waiting: list[RequestContext]
) -> list[str]:
    """Saturate one slot with ``holder``, queue ``waiting``, then let each run in turn."""
    tasks = dict(zip(await _queue_in_order(queue, waiting), waiting, strict=True))
    order: list[str] = []
    running = holder
    while tasks:
        queue.release(running)
        done, _ = await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "exactly one waiter gets the freed slot"
        running = tasks.pop(done.pop())
        order.append(running.request_id.rsplit(":", 1)[0])
    queue.release(running)
    return order


async def test_bands_order_service_under_saturation() -> None:
    queue = FairQueue(Replicas(1))
    holder = keyed("x", "batch")
    await queue.acquire(holder)
    waiting = [
        keyed("a", "batch", 1), keyed("b", "standard", 1), keyed("c", "interactive", 1),
        keyed("b", "standard", 2), keyed("a", "batch", 2), keyed("d", "interactive", 2),
    ]  # fmt: skip
    order = await _served(queue, holder, waiting)
    assert order == [
        "interactive:c", "interactive:d", "standard:b", "standard:b", "batch:a", "batch:a",
    ]  # fmt: skip


async def test_tenants_alternate_within_a_band() -> None:
    queue = FairQueue(Replicas(1))
    holder = keyed("x", "interactive")
    await queue.acquire(holder)
    waiting = [keyed("a", "interactive", i) for i in range(3)] + [keyed("b", "interactive", 9)]
    order = await _served(queue, holder, waiting)
    assert order.index("interactive:b") <= 1  # not behind all of a's backlog


@pytest.mark.parametrize(
    ("ahead", "error", "code"),
    [
        pytest.param("interactive", RateLimitError, "shed_for_priority", id="passed-by-higher"),
        pytest.param("standard", ServiceUnavailableError, "service_unavailable", id="own-band"),
    ],
)
async def test_a_request_passed_by_higher_bands_is_shed_with_429(
    ahead: str, error: type[Exception], code: str
) -> None:
    queue = FairQueue(Replicas(1), timeout_s=0.2)
    holder = keyed("x", "standard")
    await queue.acquire(holder)
    low, high = keyed("a", "standard", 1), keyed("b", ahead, 2)
    low_task, high_task = await _queue_in_order(queue, [low, high])
    if ahead == "interactive":
        queue.release(holder)  # the freed slot goes to the interactive request, ahead of low
        await asyncio.wait_for(high_task, 5)
    with pytest.raises(error) as raised:
        await asyncio.wait_for(low_task, 5)
    assert getattr(raised.value, "code", None) == code
    if ahead == "interactive":
        assert raised.value.status_code == 429  # type: ignore[attr-defined]
        assert "higher priority" in str(raised.value) and queue.stats.shed == 1
    else:
        high_task.cancel()


PRICES = UnitPrices("CNY", Decimal("2"), Decimal("0.5"), Decimal("8"), Decimal("8"))


def _priced(tenant: str) -> RequestContext:
    ctx = request(tenant)
    ctx.hold = Hold(request_id=ctx.request_id, tenant_id=tenant, project_id="p", key_id="k",
                    model="sim", period="2026-12", prices=PRICES, prompt_upper=400,
                    output_upper=16, prompt_estimate=100)  # fmt: skip
    return ctx


async def test_counters_charge_cached_input_at_its_price() -> None:
    queue = FairQueue(Replicas(2))
    cached, fresh = _priced("a"), _priced("b")
    for ctx in (cached, fresh):
        await queue.acquire(ctx)
        ctx.token_hooks[0](10)
    cached.usage = Usage(prompt_tokens=100, cached_tokens=80, completion_tokens=10, reported=True)
    fresh.usage = Usage(prompt_tokens=100, completion_tokens=10, reported=True)
    for ctx in (cached, fresh):
        queue.release(ctx)
    counters = queue.lane("sim").scheduler
    assert isinstance(counters, VtcScheduler)
    # what each pays, per million tokens: 20 x 2 + 80 x 0.5 + 10 x 8, and 100 x 2 + 10 x 8
    assert counters.counters == {"a": pytest.approx(160.0), "b": pytest.approx(280.0)}
