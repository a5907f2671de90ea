"""Priority bands of the capacity queue: interactive before batch, fair within each band."""

from __future__ import annotations

import asyncio

import pytest

from lingyun.admission.capacity import FairQueue
from lingyun.gateway.context import RequestContext
from tests.admission.test_vtc import Replicas, request

pytestmark = pytest.mark.anyio


def batch(tenant: str) -> RequestContext:
    ctx = request(tenant)
    ctx.lane = "batch"
    return ctx


async def _order(
    queue: FairQueue, holder: RequestContext, waiting: list[RequestContext]
) -> list[str]:
    order: list[str] = []

    async def one(ctx: RequestContext) -> None:
        await queue.acquire(ctx)
        order.append(f"{ctx.lane}:{ctx.key.tenant_id if ctx.key else ''}")
        await asyncio.sleep(0.005)
        queue.release(ctx)

    tasks = []
    for ctx in waiting:
        tasks.append(asyncio.create_task(one(ctx)))
        await asyncio.sleep(0.002)  # arrival order is the list's
    queue.release(holder)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    return order


async def test_interactive_waiters_go_before_batch_waiters_that_came_first() -> None:
    queue = FairQueue(Replicas(1), poll_s=0.05)
    holder = request("x")
    await queue.acquire(holder)
    waiting = [batch("a"), batch("a"), request("b"), batch("c"), request("d")]
    order = await _order(queue, holder, waiting)
    assert order[:2] == ["interactive:b", "interactive:d"]
    assert sorted(order[2:]) == ["batch:a", "batch:a", "batch:c"]


async def test_batch_is_fair_between_tenants_within_its_band() -> None:
    queue = FairQueue(Replicas(1), poll_s=0.05)
    holder = batch("a")
    await queue.acquire(holder)
    waiting = [batch("a"), batch("a"), batch("a"), batch("b")]
    order = await _order(queue, holder, waiting)
    # b is not made to wait behind all of a's backlog
    assert order.index("batch:b") <= 1


async def test_batch_takes_a_free_slot_only_when_nobody_waits() -> None:
    queue = FairQueue(Replicas(2), poll_s=0.05)
    first, second = request("a"), request("a")
    await queue.acquire(first)
    await queue.acquire(second)  # full
    waiter = asyncio.create_task(queue.acquire(request("b")))
    await asyncio.sleep(0.01)
    late_batch = asyncio.create_task(queue.acquire(batch("c")))
    await asyncio.sleep(0.01)
    queue.release(first)  # the one free slot goes to the interactive waiter
    await asyncio.wait_for(waiter, 1)
    assert not late_batch.done()
    queue.release(second)
    await asyncio.wait_for(late_batch, 1)
    idle = FairQueue(Replicas(1))
    await asyncio.wait_for(idle.acquire(batch("z")), 1)  # an idle deployment: at once


async def test_batch_waiters_outlast_the_interactive_queue_timeout() -> None:
    queue = FairQueue(Replicas(1), poll_s=0.02, timeout_s=0.05)
    holder = request("a")
    await queue.acquire(holder)
    waiting = asyncio.create_task(queue.acquire(batch("b")))
    await asyncio.sleep(0.2)  # four interactive timeouts
    assert not waiting.done()
    queue.release(holder)
    await asyncio.wait_for(waiting, 1)


async def test_wait_for_room_returns_when_a_slot_frees_and_nobody_waits() -> None:
    queue = FairQueue(Replicas(1), poll_s=0.05)
    holder = request("a")
    await queue.acquire(holder)
    room = asyncio.create_task(queue.wait_for_room("sim", "line-1"))
    second = asyncio.create_task(queue.wait_for_room("sim", "line-2"))
    await asyncio.sleep(0.02)
    assert not room.done()
    queue.release(holder)
    await asyncio.wait_for(room, 1)
    await asyncio.sleep(0.1)
    assert not second.done()  # the one free slot is promised to line-1
    queue.forget_room("sim", "line-1")
    await asyncio.wait_for(second, 1)
    await asyncio.wait_for(FairQueue(Replicas(None)).wait_for_room("sim", "x"), 1)
