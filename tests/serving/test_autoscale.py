"""The autoscaler's arithmetic (``serving/autoscale.py``), driven with explicit times."""

from __future__ import annotations

import pytest

from lingyun.serving.autoscale import Autoscaler, ScalingTimings
from tests.serving.supervisor_standins import make_dep

T = ScalingTimings(tick_s=0.1, up_delay_s=1.0, down_delay_s=5.0)


def scaler(**fields: object) -> Autoscaler:
    return Autoscaler(make_dep("m", **fields), T, now=0.0)


@pytest.mark.parametrize(
    ("fields", "start"),
    [
        pytest.param({"replicas": 3}, 3, id="fixed-count"),
        pytest.param({"replicas": 1, "min_replicas": 2, "max_replicas": 4}, 2, id="raised-to-min"),
        pytest.param({"replicas": 5, "max_replicas": 3}, 3, id="capped-at-max"),
        pytest.param({"replicas": 1, "min_replicas": 0}, 1, id="zero-min-starts-warm"),
        pytest.param({"replicas": 0, "min_replicas": 0, "max_replicas": 2}, 0, id="starts-at-zero"),
    ],
)
def test_starting_count(fields: dict[str, object], start: int) -> None:
    assert scaler(**fields).desired == start


def test_min_above_max_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        scaler(min_replicas=3, max_replicas=2)


def test_fixed_deployment_never_moves() -> None:
    s = scaler(replicas=2)
    assert [s.decide(t, load) for t, load in [(1, 50), (10, 50), (100, 0), (1000, 0)]] == [2] * 4


def test_scale_up_after_the_up_delay_and_down_after_the_down_delay() -> None:
    s = scaler(min_replicas=1, max_replicas=4, target_inflight=2)
    assert s.decide(0.5, 7) == 1  # wants 4, not for long enough yet
    assert s.decide(1.6, 7) == 4
    assert s.decide(2.0, 100) == 4  # capped at max
    assert s.decide(3.0, 1) == 4  # wants 1: waits the down delay
    assert s.decide(7.9, 1) == 4
    assert s.decide(8.1, 1) == 1
    assert s.decide(100.0, 0) == 1  # min 1: never to zero


def test_a_short_burst_does_not_scale_up() -> None:
    s = scaler(min_replicas=1, max_replicas=4, target_inflight=2)
    assert s.decide(0.0, 8) == 1
    assert s.decide(0.5, 0) == 1  # the burst is over: the up clock restarts
    assert s.decide(1.2, 8) == 1
    assert s.decide(2.3, 8) == 4


def test_scale_to_zero_when_idle_and_activate_brings_one_back() -> None:
    s = scaler(replicas=1, min_replicas=0, max_replicas=2, idle_timeout_s=10)
    assert s.decide(5.0, 0) == 1
    assert s.decide(9.0, 1) == 1  # a request: the idle clock restarts
    assert s.decide(18.0, 0) == 1
    assert s.decide(19.5, 0) == 0
    assert s.decide(30.0, 0) == 0
    assert s.activate(31.0) == 1  # the activator: at once, no delay
    assert s.decide(35.0, 0) == 1  # and not straight back to zero


def test_load_at_zero_wakes_the_deployment() -> None:
    s = scaler(replicas=0, min_replicas=0, max_replicas=2, target_inflight=1)
    assert s.decide(1.0, 0) == 0
    assert s.decide(2.0, 1) == 1  # e.g. a follower gateway's waiting request
