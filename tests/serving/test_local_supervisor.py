"""LocalSupervisor against STAND-IN replica processes (``standin_replica.py``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from lingyun.serving.local import LocalSupervisor
from lingyun.serving.supervisor import ReplicaState, ReplicaStatus
from tests.serving.supervisor_standins import (
    BrokenConfigEngine,
    FakeUpstreamEngine,
    StandInEngine,
    make_dep,
    pid_alive,
)

pytestmark = pytest.mark.anyio
Make = Callable[..., LocalSupervisor]
HERE = Path(__file__).parent


def only(sup: LocalSupervisor, name: str) -> ReplicaStatus:
    [deployment] = [d for d in sup.status() if d.name == name]
    [replica] = deployment.replicas
    return replica


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if predicate():
                return
            await anyio.sleep(0.01)


async def test_healthy_only_once_health_answers_200(supervisor: Make, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    sup = supervisor({"standin": StandInEngine(flags=["--ready-file", str(ready)])})
    await sup.start([make_dep("m", max_inflight=7)])
    [replica] = sup.replicas("m")
    assert replica.max_inflight == 7
    assert not replica.healthy

    # The process is up and /health answers 503 ("loading"): still not routable.
    async with httpx.AsyncClient(trust_env=False) as client:
        await until(lambda: replica.base_url != "")
        with anyio.fail_after(10):
            while True:
                try:
                    r = await client.get(replica.base_url.removesuffix("/v1") + "/health")
                    break
                except httpx.TransportError:
                    await anyio.sleep(0.02)
        assert r.status_code == 503
        await anyio.sleep(0.3)  # several startup probes
        assert not replica.healthy
        assert only(sup, "m").state is ReplicaState.STARTING

        ready.touch()
        assert await sup.wait_ready("m", 5.0)
        assert only(sup, "m").state is ReplicaState.HEALTHY
        models = (await client.get(f"{replica.base_url}/models")).json()
    assert models["data"][0]["id"] == replica.model_id == "m"
    log = (tmp_path / "data" / "logs" / "m-0.log").read_text()
    assert "stand-in replica" in log


async def test_killed_child_is_unroutable_at_once_then_restarted(supervisor: Make) -> None:
    # Probes every 60 s: only watching the process can notice the death in time.
    sup = supervisor({"standin": StandInEngine()}, interval_s=60.0)
    await sup.start([make_dep("m")])
    assert await sup.wait_ready("m", 10.0)
    [replica] = sup.replicas("m")
    old_pid = only(sup, "m").pid
    assert old_pid is not None

    os.kill(old_pid, signal.SIGKILL)
    await until(lambda: not replica.healthy, timeout_s=0.5)
    assert only(sup, "m").last_exit_code in (None, -signal.SIGKILL)

    assert await sup.wait_ready("m", 10.0)
    assert sup.replicas("m")[0] is replica  # same object the router holds
    status = only(sup, "m")
    assert status.restarts == 1
    assert status.last_exit_code == -signal.SIGKILL
    assert status.pid not in (None, old_pid)


async def test_backoff_doubles_for_a_crashing_child_up_to_the_cap(
    supervisor: Make, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    engine = StandInEngine(flags=["--exit-after", "0", "--starts-file", str(starts)])
    sup = supervisor({"standin": engine}, backoff_initial_s=0.05, backoff_max_s=0.4)
    await sup.start([make_dep("m")])
    seen: list[float] = []
    with anyio.fail_after(15):
        while only(sup, "m").restarts < 6:
            backoff = only(sup, "m").backoff_s
            if backoff and (not seen or seen[-1] != backoff):
                seen.append(backoff)
            await anyio.sleep(0.005)
    assert seen[:4] == [0.05, 0.1, 0.2, 0.4]
    assert max(seen) == 0.4
    times = [float(line.split()[1]) for line in starts.read_text().splitlines()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.4], strict=False):
        assert gap >= expected


async def test_backoff_resets_after_a_healthy_stretch(supervisor: Make) -> None:
    # Each life: healthy ~0.1 s after start, exits at 0.8 s, so healthy for >= 0.2 s.
    engine = StandInEngine(flags=["--exit-after", "0.8"])
    sup = supervisor({"standin": engine}, backoff_initial_s=0.05, backoff_reset_after_s=0.2)
    await sup.start([make_dep("m")])
    await until(lambda: only(sup, "m").restarts >= 2, timeout_s=15)
    assert only(sup, "m").backoff_s == 0.05


async def test_never_ready_replica_is_restarted(supervisor: Make, tmp_path: Path) -> None:
    never = tmp_path / "never"
    engine = StandInEngine(flags=["--ready-file", str(never)], ready_timeout_s=0.3)
    sup = supervisor({"standin": engine})
    await sup.start([make_dep("m")])
    await until(lambda: only(sup, "m").restarts >= 1)
    assert "not healthy within" in (only(sup, "m").last_error or "")
    assert not sup.replicas("m")[0].healthy


async def test_stop_leaves_no_child_alive(supervisor: Make, tmp_path: Path) -> None:
    engines: dict[str, Any] = {
        "standin": StandInEngine(),
        "stubborn": StandInEngine(name="stubborn", flags=["--ignore-term"]),
    }
    sup = supervisor(engines, stop_grace_s=0.3)
    await sup.start([make_dep("a", replicas=2), make_dep("b", engine="stubborn")])
    assert await sup.wait_ready("a", 10.0, min_healthy=2)
    assert await sup.wait_ready("b", 10.0)
    pids = [r.pid for d in sup.status() for r in d.replicas]
    replicas = [*sup.replicas("a"), *sup.replicas("b")]
    assert all(pid is not None and pid_alive(pid) for pid in pids)

    await sup.stop()
    assert not any(pid_alive(pid) for pid in pids if pid is not None)
    assert not any(r.healthy for r in replicas)
    assert sup.replicas("a") == ()
    # Graceful first (SIGTERM), SIGKILL only for the one that ignored it.
    logs = tmp_path / "data" / "logs"
    assert "got SIGTERM" in (logs / "a-1.log").read_text()
    assert "got SIGTERM" not in (logs / "b-0.log").read_text()


async def test_sigkill_of_the_parent_leaves_no_orphans(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    parent = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "standin_gateway.py"), str(tmp_path / "data"), str(pids_file)
    )
    try:
        with anyio.fail_after(15):
            while not pids_file.exists():
                assert parent.returncode is None, "stand-in gateway exited early"
                await anyio.sleep(0.02)
        children: list[int] = json.loads(pids_file.read_text())
        assert len(children) == 2
        assert all(pid_alive(pid) for pid in children)

        parent.kill()
        await parent.wait()
        await until(lambda: not any(pid_alive(pid) for pid in children), timeout_s=5)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_upstream_without_api_key_has_no_replica_and_others_still_run(
    supervisor: Make,
) -> None:
    engines: dict[str, Any] = {
        "standin": StandInEngine(),
        "fake-upstream": FakeUpstreamEngine(error="set DASHSCOPE_API_KEY"),
    }
    sup = supervisor(engines)
    await sup.start([make_dep("cloud", engine="fake-upstream"), make_dep("local")])
    assert sup.replicas("cloud") == ()
    [cloud] = [d for d in sup.status() if d.name == "cloud"]
    assert cloud.error == "set DASHSCOPE_API_KEY"
    assert cloud.healthy_replicas == 0
    assert await sup.wait_ready("local", 10.0)


async def test_upstream_deployment_is_one_healthy_replica(supervisor: Make) -> None:
    sup = supervisor({"fake-upstream": FakeUpstreamEngine()})
    await sup.start([make_dep("cloud", engine="fake-upstream", model="qwen-max", max_inflight=3)])
    [replica] = sup.replicas("cloud")
    assert replica.healthy
    assert (replica.base_url, replica.model_id) == ("https://example.invalid/v1", "qwen-max")
    assert replica.headers == {"Authorization": "Bearer sk-test"}
    assert replica.max_inflight == 3


async def test_config_error_fails_the_replica_without_retrying(supervisor: Make) -> None:
    sup = supervisor({"broken": BrokenConfigEngine(), "standin": StandInEngine()})
    await sup.start([make_dep("bad", engine="broken"), make_dep("unknown", engine="nope")])
    await until(lambda: only(sup, "bad").state is ReplicaState.FAILED)
    await anyio.sleep(0.3)
    assert only(sup, "bad").restarts == 0
    assert "needs `model`" in (only(sup, "bad").last_error or "")
    [unknown] = [d for d in sup.status() if d.name == "unknown"]
    assert unknown.error == "unknown engine 'nope'"


async def test_missing_executable_is_retried_with_backoff(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine(argv0="/nonexistent/python")})
    await sup.start([make_dep("m")])
    await until(lambda: only(sup, "m").restarts >= 2)
    assert "cannot run /nonexistent/python" in (only(sup, "m").last_error or "")


async def test_apply_adds_removes_and_restarts_changed(supervisor: Make) -> None:
    sup = supervisor({"standin": StandInEngine()})
    await sup.start([make_dep("a")])
    assert await sup.wait_ready("a", 10.0)
    [a] = sup.replicas("a")

    await sup.apply([make_dep("a"), make_dep("b")])
    assert sup.replicas("a")[0] is a  # unchanged: left alone
    assert await sup.wait_ready("b", 10.0)
    b_pid = only(sup, "b").pid
    assert b_pid is not None

    await sup.apply([make_dep("a", replicas=2)])  # b removed, a changed
    assert not pid_alive(b_pid)
    assert sup.replicas("b") == ()
    assert not a.healthy
    assert await sup.wait_ready("a", 10.0, min_healthy=2)
    assert [r.replica_id for r in sup.replicas("a")] == ["a-0", "a-1"]

    with pytest.raises(ValueError, match="declared twice"):
        await sup.apply([make_dep("a"), make_dep("a")])


async def test_log_file_names_are_safe_for_slashes(supervisor: Make, tmp_path: Path) -> None:
    sup = supervisor({"standin": StandInEngine()})
    await sup.start([make_dep("Qwen/Qwen2.5:7b")])
    assert await sup.wait_ready("Qwen/Qwen2.5:7b", 10.0)
    assert (tmp_path / "data" / "logs" / "Qwen_Qwen2.5_7b-0.log").exists()
