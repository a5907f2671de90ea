"""Channel choice and the breaker, unit-level: a mock transport in place of the relay."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from lingyun.config import ChannelConfig, DeploymentConfig
from lingyun.engines.upstream.engine import OpenAICompatibleEngine
from lingyun.errors import InvalidRequestError, LingyunError, ServiceUnavailableError, UpstreamError
from lingyun.gateway.context import RequestContext
from lingyun.serving.channels import ChannelRegistry, ChannelSet, ChannelState
from lingyun.serving.channels.breaker import Breaker, BreakerSettings
from lingyun.serving.replica import Replica

pytestmark = pytest.mark.anyio

ENV = {"LINGYUN_UPSTREAM_A": "sk-a", "LINGYUN_UPSTREAM_B": "sk-b", "LINGYUN_UPSTREAM_C": "sk-c"}


def _dep(*channels: dict[str, object], breaker: dict[str, float] | None = None) -> DeploymentConfig:
    return DeploymentConfig(
        name="qwen-plus",
        engine="openai-compatible",
        channels=[ChannelConfig.model_validate(c) for c in channels],
        breaker=breaker or {},
    )


def _registry(dep: DeploymentConfig, seed: int = 7) -> tuple[ChannelRegistry, ChannelSet]:
    reg = ChannelRegistry(OpenAICompatibleEngine(ENV), rng=random.Random(seed))
    reg.apply([dep])
    found = reg.get(dep.name)
    assert found is not None
    return reg, found


class _Holder:
    def __init__(self) -> None:
        self.replica: Replica | None = None
        self.taken: list[str] = []

    def take_replica(self, replica: Replica) -> None:
        self.replica = replica
        self.taken.append(replica.replica_id.split("/")[1])

    def drop_replica(self) -> None:
        self.replica = None


def _ctx() -> RequestContext:
    return RequestContext(
        endpoint="chat.completions", body={}, stream=False, client_wants_usage=False,
        max_output_tokens=16,
    )  # fmt: skip


Transport = Callable[[str], LingyunError | None]


def _call(holder: _Holder, transport: Transport) -> Callable[[RequestContext], Awaitable[str]]:
    async def call(ctx: RequestContext) -> str:
        assert holder.replica is not None
        name = holder.replica.replica_id.split("/")[1]
        err = transport(name)
        if err is not None:
            raise err
        return name

    return call


AUTH = UpstreamError("refused our key", code="upstream_auth_failed")
A = {"name": "a", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "LINGYUN_UPSTREAM_A"}
B = {"name": "b", "base_url": "http://127.0.0.1:2/v1", "api_key_env": "LINGYUN_UPSTREAM_B"}
C = {"name": "c", "base_url": "http://127.0.0.1:3/v1", "api_key_env": "LINGYUN_UPSTREAM_C"}


async def test_weights_split_a_thousand_requests_within_ten_percent() -> None:
    _, chans = _registry(_dep(A | {"weight": 3}, B | {"weight": 1}, C | {"priority": 1}))
    holder = _Holder()
    served = Counter([await chans.call(_ctx(), holder, _call(holder, lambda _: None))
                      for _ in range(1000)])  # fmt: skip
    assert served["c"] == 0  # tier 1 only when tier 0 is unusable
    assert abs(served["a"] / 1000 - 0.75) < 0.1 * 0.75
    assert abs(served["b"] / 1000 - 0.25) < 0.1 * 0.25


async def test_auth_refusal_opens_at_once_and_the_request_moves_on() -> None:
    _, chans = _registry(_dep(A, B))
    holder = _Holder()
    broken = {"a"}
    answers = [
        await chans.call(_ctx(), holder, _call(holder, lambda n: AUTH if n in broken else None))
        for _ in range(50)
    ]
    assert set(answers) == {"b"}  # zero client errors
    channel_a = chans.get("a")
    assert channel_a is not None and channel_a.state is ChannelState.OPEN
    assert holder.taken.count("a") == 1  # opened within one request, never picked again


async def test_open_channel_is_never_tried_on_retry() -> None:
    # a is open; b fails with a 500 -> the retry must go to c, never to a.
    _, chans = _registry(_dep(A, B, C))
    channel_a = chans.get("a")
    assert channel_a is not None
    channel_a.breaker.failure(AUTH)
    holder = _Holder()
    for _ in range(100):
        holder.taken.clear()
        fail_b: Transport = lambda n: UpstreamError("boom") if n == "b" else None  # noqa: E731
        assert await chans.call(_ctx(), holder, _call(holder, fail_b)) == "c"
        assert "a" not in holder.taken


async def test_all_channels_failing_answers_the_last_error() -> None:
    _, chans = _registry(_dep(A, B))
    holder = _Holder()
    with pytest.raises(UpstreamError):
        await chans.call(_ctx(), holder, _call(holder, lambda _: UpstreamError("boom")))
    assert sorted(holder.taken) == ["a", "b"]


async def test_client_mistakes_are_not_retried_and_do_not_count_against_a_channel() -> None:
    _, chans = _registry(_dep(A, B, breaker={"min_requests": 1, "error_rate": 0.0}))
    holder = _Holder()
    with pytest.raises(InvalidRequestError):
        await chans.call(_ctx(), holder, _call(holder, lambda _: InvalidRequestError("bad")))
    assert len(holder.taken) == 1
    assert all(c.state is ChannelState.CLOSED for c in chans.channels)


async def test_rpm_skips_a_full_channel() -> None:
    _, chans = _registry(_dep(A | {"rpm": 2}, B | {"priority": 1}))
    holder = _Holder()
    got = [await chans.call(_ctx(), holder, _call(holder, lambda _: None)) for _ in range(4)]
    assert got == ["a", "a", "b", "b"]


async def test_missing_key_leaves_the_channel_listed_but_unpicked() -> None:
    dep = _dep(A, B | {"api_key_env": "LINGYUN_UPSTREAM_UNSET"})
    _, chans = _registry(dep)
    channel_b = chans.get("b")
    assert channel_b is not None and channel_b.replica is None
    assert channel_b.error is not None and "LINGYUN_UPSTREAM_UNSET" in channel_b.error
    assert {chans.pick().name for _ in range(20)} == {"a"}


async def test_nothing_usable_is_a_503() -> None:
    _, chans = _registry(_dep(A))
    channel_a = chans.get("a")
    assert channel_a is not None
    channel_a.breaker.disable("test")
    with pytest.raises(ServiceUnavailableError, match="disabled"):
        chans.pick()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_error_rate_opens_then_probe_closes() -> None:
    clock = _Clock()
    moves: list[str] = []
    settings = BreakerSettings(error_rate=0.2, window=20, min_requests=10, cooldown_s=5)
    breaker = Breaker(settings, lambda t: moves.append(t.new.value), clock)
    err = UpstreamError("boom")
    for i in range(9):  # 3 of 9: the window is not yet full enough to judge
        breaker.failure(err) if i % 3 == 0 else breaker.success()
    assert breaker.state is ChannelState.CLOSED
    breaker.failure(err)  # 4 of 10 = 40% > 20%
    assert breaker.state is ChannelState.OPEN
    assert not breaker.probe_due()
    clock.now += 5
    assert breaker.probe_due()
    breaker.begin_probe()
    breaker.probe_result(False, "still down")
    assert breaker.state is ChannelState.OPEN
    clock.now += 5
    assert not breaker.probe_due()  # cooldown doubled
    clock.now += 5
    breaker.begin_probe()
    breaker.probe_result(True)
    assert breaker.state is ChannelState.CLOSED
    assert breaker.error_rate() == (0.0, 0)
    assert moves == ["open", "half_open", "open", "half_open", "closed"]


def test_one_stray_error_does_not_open() -> None:
    breaker = Breaker(BreakerSettings(), lambda t: None)
    breaker.failure(UpstreamError("boom"))
    assert breaker.state is ChannelState.CLOSED


def test_reload_keeps_breaker_state_of_unchanged_channels() -> None:
    reg, chans = _registry(_dep(A, B))
    channel_a = chans.get("a")
    assert channel_a is not None
    channel_a.breaker.failure(AUTH)
    reg.apply([_dep(A, B | {"weight": 2})])
    again = reg.find("qwen-plus", "a")
    assert again is channel_a and again.state is ChannelState.OPEN
    assert reg.find("qwen-plus", "b") is not chans.get("b")


def test_unknown_breaker_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown breaker setting"):
        BreakerSettings.from_mapping({"eror_rate": 0.5})
