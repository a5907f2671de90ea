"""Routing policies over real Replica objects and request contexts: prefix affinity, session
affinity, the load guard, restarts and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from lingyun.config import DeploymentConfig, RoutingOptions
from lingyun.gateway.context import RequestContext
from lingyun.gateway.route import RouterChain, routing_request
from lingyun.gateway.routing.index import PrefixIndex
from lingyun.gateway.routing.policies import PrefixPolicy
from lingyun.gateway.routing.prompt import block_hashes, canonical_prompt, seed_of
from lingyun.serving.replica import Replica
from lingyun.tenancy.service import KeyInfo

SYSTEM = "You are the support assistant of a cloud company. Answer briefly. " * 20


def _replicas(n: int = 4) -> list[Replica]:
    return [Replica("d", f"d-{i}", f"http://127.0.0.1:{9000 + i}/v1", "d", healthy=True)
            for i in range(n)]  # fmt: skip


def _dep(routing: str, **extra: Any) -> DeploymentConfig:
    return DeploymentConfig(name="d", engine="simulator", routing=routing, **extra)


def _key(tenant: str) -> KeyInfo:
    return KeyInfo(key_id=f"k-{tenant}", tenant_id=tenant, tenant_name=tenant,
                   project_id="p", project_name="default", expires_at=None)  # fmt: skip


def _ctx(dep: DeploymentConfig, messages: list[dict[str, Any]], tenant: str = "acme",
         session: str | None = None, user: str | None = None) -> RequestContext:  # fmt: skip
    body: dict[str, Any] = {"model": dep.name, "messages": messages}
    if user is not None:
        body["user"] = user
    ctx = RequestContext(endpoint="chat.completions", body=body, stream=False,
                         client_wants_usage=False, max_output_tokens=None)  # fmt: skip
    ctx.key, ctx.model, ctx.deployment, ctx.session_id = _key(tenant), dep.name, dep, session
    return ctx


def _conversation(turns: int, system: str = SYSTEM, tag: str = "") -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for t in range(turns):
        msgs.append({"role": "user", "content": f"question {tag} {t} " * 10})
        if t < turns - 1:
            msgs.append({"role": "assistant", "content": f"answer {tag} {t} " * 10})
    return msgs


def _route(router: RouterChain, ctx: RequestContext, replicas: list[Replica]) -> Replica:
    """Route and count the request in flight, as the pipeline does."""
    replica = router.route(ctx, replicas)
    replica.inflight += 1
    return replica


# --- prompts and hashes ---


def test_canonical_prompt_ignores_key_order_and_includes_tools() -> None:
    a = {"messages": [{"role": "user", "content": "hi"}]}
    b = {"messages": [{"content": "hi", "role": "user"}]}
    tools = {**a, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert canonical_prompt("chat.completions", a) == canonical_prompt("chat.completions", b)
    assert canonical_prompt("chat.completions", tools) != canonical_prompt("chat.completions", a)
    assert canonical_prompt("completions", {"prompt": "abc"}) == b"abc"
    assert canonical_prompt("embeddings", {"input": "abc"}) == b""


def test_a_follow_up_turn_extends_the_previous_turns_blocks() -> None:
    first = block_hashes(canonical_prompt("chat.completions", {"messages": _conversation(1)}),
                         64, "m")  # fmt: skip
    second = block_hashes(canonical_prompt("chat.completions", {"messages": _conversation(3)}),
                          64, "m")  # fmt: skip
    assert len(second) > len(first) > 10
    assert second[: len(first)] == first


def test_tenants_get_different_chains_unless_shared() -> None:
    prompt = canonical_prompt("chat.completions", {"messages": _conversation(1)})
    a = block_hashes(prompt, 64, seed_of("d", "tenant-a", shared=False))
    b = block_hashes(prompt, 64, seed_of("d", "tenant-b", shared=False))
    assert not set(a) & set(b)
    shared_a = block_hashes(prompt, 64, seed_of("d", "tenant-a", shared=True))
    assert shared_a == block_hashes(prompt, 64, seed_of("d", "tenant-b", shared=True))


# --- the index ---


def test_index_is_lru_bounded_per_replica() -> None:
    index = PrefixIndex(capacity_blocks=3)
    index.insert("r", [b"a", b"b", b"c"])
    index.insert("r", [b"a", b"d"])  # touches a; evicts b, the oldest
    assert index.blocks_of("r") == 3
    assert index.match([b"a", b"b"], ["r"]) == {"r": 1}
    assert index.match([b"a", b"d"], ["r"]) == {"r": 2}


def test_replica_restart_drops_its_entries() -> None:
    replicas = _replicas(2)
    dep = _dep("prefix")
    router = RouterChain()
    first = _route(router, _ctx(dep, _conversation(1)), replicas)
    policy = router.policy(dep)
    assert isinstance(policy, PrefixPolicy)
    assert policy.index.blocks_of(first.replica_id) > 0
    # The replica dies and its supervisor starts it again (generation bump), as a new,
    # cold engine; it is now also the busier one.
    first.generation += 1
    other = next(r for r in replicas if r is not first)
    first.inflight, other.inflight = 1, 0
    again = router.route(_ctx(dep, _conversation(2)), replicas)
    assert policy.index.blocks_of(first.replica_id) == 0
    assert again is other  # nothing pulls the follow-up to the restarted replica any more


# --- prefix affinity ---


def test_prefix_follow_up_turns_stay_on_the_replica_holding_the_conversation() -> None:
    replicas = _replicas()
    dep = _dep("prefix")
    router = RouterChain()
    home = _route(router, _ctx(dep, _conversation(1, tag="s1")), replicas)
    for turns in range(2, 6):
        # home is the busiest replica (the others are idle), which least-inflight would
        # avoid; the conversation's blocks keep the follow-ups there
        assert _route(router, _ctx(dep, _conversation(turns, tag="s1")), replicas) is home
    assert home.inflight == 5


def test_two_tenants_with_the_same_system_prompt_do_not_share_blocks() -> None:
    replicas = _replicas()
    dep = _dep("prefix")
    router = RouterChain()
    a_home = _route(router, _ctx(dep, _conversation(1), tenant="a"), replicas)
    b_home = _route(router, _ctx(dep, _conversation(1), tenant="b"), replicas)
    assert b_home is not a_home  # b went to the least loaded: a's blocks mean nothing to it
    policy = router.policy(dep)
    assert isinstance(policy, PrefixPolicy)
    a_hashes = routing_request(_ctx(dep, _conversation(1), tenant="a"), dep).hashes
    b_hashes = routing_request(_ctx(dep, _conversation(1), tenant="b"), dep).hashes
    assert policy.index.match(a_hashes, [a_home.replica_id])[a_home.replica_id] == len(a_hashes)
    assert policy.index.match(b_hashes, [a_home.replica_id])[a_home.replica_id] == 0


def test_a_deployment_may_let_tenants_share_prefixes() -> None:
    replicas = _replicas()
    dep = _dep("prefix", share_prefix_cache=True)
    router = RouterChain()
    a_home = _route(router, _ctx(dep, _conversation(1), tenant="a"), replicas)
    assert _route(router, _ctx(dep, _conversation(1, tag="b"), tenant="b"), replicas) is a_home


@pytest.mark.parametrize(
    ("guard", "spills"),
    [pytest.param(True, True, id="guarded"), pytest.param(False, False, id="unguarded")],
)
def test_load_guard_spills_a_hot_prefix(guard: bool, spills: bool) -> None:
    replicas = _replicas()
    options = RoutingOptions(load_guard=guard, imbalance_abs=3, imbalance_ratio=1.5)
    dep = _dep("prefix", routing_options=options)
    router = RouterChain()
    chosen = [_route(router, _ctx(dep, _conversation(1, tag=str(i))), replicas) for i in range(8)]
    hot = chosen[0]
    # Every request shares the system prompt: affinity would put all on one replica.
    if spills:
        assert max(r.inflight for r in replicas) - min(r.inflight for r in replicas) <= 4
        assert len(set(map(id, chosen))) > 1
    else:
        assert hot.inflight == 8


def test_a_request_without_a_prompt_goes_to_the_least_loaded() -> None:
    replicas = _replicas(2)
    replicas[0].inflight = 2
    dep = _dep("prefix")
    ctx = _ctx(dep, [])
    ctx.endpoint, ctx.body = "embeddings", {"model": "d", "input": "x"}
    assert RouterChain().route(ctx, replicas) is replicas[1]


# --- session affinity ---


@pytest.mark.parametrize(
    ("session", "user"),
    [pytest.param("chat-42", None, id="x-session-id"), pytest.param(None, "u-7", id="user")],
)
def test_session_affinity_holds_across_requests(session: str | None, user: str | None) -> None:
    replicas = _replicas()
    dep = _dep("session")
    router = RouterChain()
    home = _route(router, _ctx(dep, _conversation(1), session=session, user=user), replicas)
    for turns in range(2, 6):
        ctx = _ctx(dep, _conversation(turns, system=f"other {turns}"), session=session,
                   user=user)  # fmt: skip
        assert _route(router, ctx, replicas) is home
    # a different session of the same tenant is placed on the least loaded replica
    assert _route(router, _ctx(dep, _conversation(1), session="new", user="new"), replicas) \
        is not home  # fmt: skip


def test_sessions_are_per_tenant() -> None:
    replicas = _replicas()
    dep = _dep("session")
    router = RouterChain()
    a_home = _route(router, _ctx(dep, _conversation(1), tenant="a", session="s"), replicas)
    assert _route(router, _ctx(dep, _conversation(1), tenant="b", session="s"), replicas) \
        is not a_home  # fmt: skip


def test_session_moves_off_a_hot_spot_and_off_a_restarted_replica() -> None:
    replicas = _replicas(2)
    dep = _dep("session", routing_options=RoutingOptions(imbalance_abs=2))
    router = RouterChain()
    home = router.route(_ctx(dep, _conversation(1), session="s"), replicas)
    other = next(r for r in replicas if r is not home)
    home.inflight = 3  # over the guard: 3 - 0 > 2
    moved = router.route(_ctx(dep, _conversation(2), session="s"), replicas)
    assert moved is other
    home.inflight = 0
    assert router.route(_ctx(dep, _conversation(3), session="s"), replicas) is other  # sticks
    other.generation += 1  # restarted: the session's cache is gone
    other.inflight = 1
    assert router.route(_ctx(dep, _conversation(4), session="s"), replicas) is home


def test_unknown_routing_policy_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="routing"):
        DeploymentConfig(name="d", engine="simulator", routing="random")  # type: ignore[arg-type]


def test_unhealthy_replicas_are_never_chosen() -> None:
    replicas = _replicas(2)
    dep = _dep("session")
    router = RouterChain()
    home = router.route(_ctx(dep, _conversation(1), session="s"), replicas)
    home.healthy = False
    assert router.route(_ctx(dep, _conversation(2), session="s"), replicas) is not home
