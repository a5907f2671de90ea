"""Several gateways without a shared index: with ``placement: consistent-hash`` each places a
new prompt on the replica its leading blocks hash to, so gateways that never talk agree on
where a conversation lives; with the default (least loaded) they do not."""

from __future__ import annotations

import pytest

from lingyun.config import RoutingOptions
from lingyun.gateway.route import RouterChain
from lingyun.serving.replica import Replica
from tests.gateway.test_routing import _conversation, _ctx, _dep, _replicas, _route

SYSTEMS = [f"System prompt {i}: you answer questions about product line {i}. " * 12
           for i in range(12)]  # fmt: skip


def _gateway() -> tuple[RouterChain, list[Replica]]:
    """A gateway: its own router and its own view (objects, in-flight counts) of 4 replicas."""
    return RouterChain(), _replicas(4)


@pytest.mark.parametrize(
    ("placement", "agree"),
    [
        pytest.param("consistent-hash", True, id="consistent-hash"),
        pytest.param("least-loaded", False, id="least-loaded"),
    ],
)
def test_two_gateways_place_conversations_alike(placement: str, agree: bool) -> None:
    dep = _dep("prefix", routing_options=RoutingOptions(placement=placement))
    (router_a, view_a), (router_b, view_b) = _gateway(), _gateway()
    first = [_route(router_a, _ctx(dep, _conversation(1, s)), view_a).replica_id for s in SYSTEMS]
    # Gateway B sees the follow-up turns, in another order, with its own in-flight counts.
    follow = {s: _route(router_b, _ctx(dep, _conversation(2, s)), view_b).replica_id
              for s in reversed(SYSTEMS)}  # fmt: skip
    same = [follow[s] == r for s, r in zip(SYSTEMS, first, strict=True)]
    assert all(same) if agree else not all(same)
    assert len(set(first)) > 1  # prompts spread over the replicas


def test_hashed_placement_still_skips_a_hot_spot() -> None:
    options = RoutingOptions(placement="consistent-hash", imbalance_abs=2)
    dep = _dep("prefix", routing_options=options)
    router, view = _gateway()
    home = router.route(_ctx(dep, _conversation(1, SYSTEMS[0])), view)
    home.inflight = 10
    other = router.route(_ctx(dep, _conversation(1, SYSTEMS[0], tag="new")), view)
    assert other is not home
