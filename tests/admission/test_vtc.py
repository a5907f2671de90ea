"""Schedulers and the capacity queue, without servers: order, lifting, weights, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lingyun.admission.capacity import FairQueue
from lingyun.admission.vtc import FcfsScheduler, VtcScheduler
from lingyun.config import DeploymentConfig
from lingyun.errors import ServiceUnavailableError
from lingyun.gateway.context import RequestContext, Usage
from lingyun.serving.replica import Replica
from lingyun.tenancy.service import KeyInfo

pytestmark = pytest.mark.anyio

DEP = DeploymentConfig(name="sim", engine="simulator", max_inflight=2)


class Replicas:
    def __init__(self, *slots: int | None) -> None:
        self.list = [
            Replica("sim", f"sim-{i}", "http://x/v1", "sim", healthy=True, max_inflight=n)
            for i, n in enumerate(slots)
        ]

    def replicas(self, deployment: str) -> Sequence[Replica]:
        return self.list


def key(tenant: str, weight: float = 1.0) -> KeyInfo:
    return KeyInfo(f"key_{tenant}", tenant, tenant, f"prj_{tenant}", "default", None, weight)


def request(tenant: str, weight: float = 1.0, dep: DeploymentConfig = DEP) -> RequestContext:
    ctx = RequestContext(
        endpoint="chat.completions",
        body={"messages": []},
        stream=True,
        client_wants_usage=False,
        client_continuous_usage=False,
        max_output_tokens=16,
        body_bytes=400,
    )
    ctx.key, ctx.deployment, ctx.model = key(tenant, weight), dep, dep.name
    return ctx


def test_vtc_serves_the_smallest_counter_and_lifts_newcomers() -> None:
    s: VtcScheduler[str] = VtcScheduler()
    s.charge("a", 1.0, 500)  # a was served a lot while nobody waited
    s.push("a", "a1")
    s.push("a", "a2")
    s.push("b", "b1")  # b arrives idle: lifted to a's counter, no credit for idling
    assert s.counters["b"] == 500
    assert s.pop() == ("a", "a1")  # tie: the earlier request
    s.charge("a", 1.0, 10)
    assert s.pop() == ("b", "b1")
    assert s.pop() == ("a", "a2")
    assert s.pop() is None


def test_vtc_weights_give_proportional_shares() -> None:
    s: VtcScheduler[int] = VtcScheduler()
    for i in range(300):
        s.push("heavy", i)
        s.push("light", i)
    served = {"heavy": 0, "light": 0}
    for _ in range(300):
        picked = s.pop()
        assert picked is not None
        tenant = picked[0]
        served[tenant] += 1
        s.charge(tenant, 2.0 if tenant == "heavy" else 1.0, 100)
    assert served["heavy"] == pytest.approx(2 * served["light"], abs=2)


def test_fcfs_keeps_arrival_order() -> None:
    s: FcfsScheduler[str] = FcfsScheduler()
    for item in ("a1", "a2", "b1"):
        s.push(item[0], item)
    s.discard("a", "a2")
    assert [s.pop(), s.pop(), s.pop()] == [("a", "a1"), ("b", "b1"), None]


async def test_requests_wait_for_a_slot_and_time_out() -> None:
    queue = FairQueue(Replicas(1, 1), timeout_s=0.2, poll_s=0.05)
    first, second, third = request("a"), request("a"), request("a")
    await queue.acquire(first)
    await queue.acquire(second)
    with pytest.raises(ServiceUnavailableError) as caught:
        await queue.acquire(third)
    assert caught.value.headers["Retry-After"] == "1"
    waiting = asyncio.create_task(queue.acquire(request("a")))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    queue.release(first)
    await asyncio.wait_for(waiting, 1)


async def test_unbounded_or_unhealthy_replicas_are_not_queued() -> None:
    unbounded = FairQueue(Replicas(1, None))
    for _ in range(5):
        await unbounded.acquire(request("a"))
    down = Replicas(1)
    down.list[0].healthy = False
    for _ in range(5):
        await FairQueue(down).acquire(request("a"))


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    queue = FairQueue(Replicas(1), poll_s=0.05)
    holder = request("a")
    await queue.acquire(holder)
    gone = asyncio.create_task(queue.acquire(request("b")))
    await asyncio.sleep(0.01)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    queue.release(holder)
    await asyncio.wait_for(queue.acquire(request("c")), 1)  # the slot is free again


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        # b is lifted to a's counter (no credit for idling), so it goes right after a's next one.
        pytest.param("vtc", ["a", "b", "a", "a"], id="vtc-interleaves-the-light-tenant"),
        pytest.param("fcfs", ["a", "a", "a", "b"], id="fcfs-serves-in-arrival-order"),
    ],
)
async def test_who_goes_next(scheduler: str, expected: list[str]) -> None:
    queue = FairQueue(Replicas(1), scheduler=scheduler, poll_s=0.05)
    running = request("a")
    await queue.acquire(running)
    for hook in running.token_hooks:
        hook(50)  # tenant a's tokens stream while its later requests queue
    order: list[str] = []

    async def one(ctx: RequestContext) -> None:
        await queue.acquire(ctx)
        assert ctx.key is not None
        order.append(ctx.key.tenant_id)
        await asyncio.sleep(0.01)
        queue.release(ctx)

    tasks = []
    for tenant in ("a", "a", "a", "b"):
        tasks.append(asyncio.create_task(one(request(tenant))))
        await asyncio.sleep(0.005)
    queue.release(running)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == expected


async def test_release_corrects_the_estimate_with_reported_usage() -> None:
    queue = FairQueue(Replicas(1), input_weight=1.0, output_weight=2.0)
    ctx = request("a", weight=2.0)
    await queue.acquire(ctx)
    lane = queue.lane("sim")
    assert isinstance(lane.scheduler, VtcScheduler)
    assert lane.scheduler.counters["a"] == 50  # 400 bytes ~ 100 tokens, weight 2
    ctx.token_hooks[0](3)
    ctx.usage = Usage(prompt_tokens=20, completion_tokens=5, reported=True)
    queue.release(ctx)
    assert lane.scheduler.counters["a"] == pytest.approx((20 + 2 * 5) / 2)
