"""``/admin/v1`` operations: deployments and replicas (deploy, undeploy), the request log
and the daily series behind the console's charts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.console import ROOT, Console
from tests.support.tenancy import login, ok

pytestmark = pytest.mark.postgres


def _until(check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def test_deploy_and_undeploy_a_simulator(console: Console) -> None:
    server = console.server
    with login(server.base_url, ROOT) as root, login(server.base_url, "member@acme.example") as m:
        body = {"name": "sim-api", "engine": "simulator"}
        assert m.post("/deployments", json=body).status_code == 403
        assert m.get("/deployments").status_code == 403
        ok(root.post("/deployments", json=body), 202)

        def healthy() -> bool:
            deps = {d["name"]: d for d in ok(root.get("/deployments"))["data"]}
            return "sim-api" in deps and deps["sim-api"]["healthy_replicas"] == 1

        _until(healthy)
        deps = {d["name"]: d for d in ok(root.get("/deployments"))["data"]}
        assert deps["sim-api"]["stored"] and not deps["sim"]["stored"]
        assert deps["sim-api"]["replica_states"][0]["state"] == "healthy"
        client = server.client(server.create_key("acme"), max_retries=0)
        msgs: Any = [{"role": "user", "content": "hi"}]
        assert client.chat.completions.create(model="sim-api", messages=msgs, max_tokens=2)
        assert root.delete("/deployments/sim-api").status_code == 204
        assert root.delete("/deployments/sim-api").status_code == 404
        _until(lambda: "sim-api" not in {d["name"] for d in ok(root.get("/deployments"))["data"]})
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="sim-api", messages=msgs, max_tokens=2)
        assert root.post("/deployments", json={"name": "x", "engine": "nope"}).status_code == 400


def test_request_log_and_series(console: Console) -> None:
    server, acme = console.server, console.tenants["acme"]
    client = server.client(server.create_key("acme"), max_retries=0)
    for i in range(4):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": f"secret prompt {i}"}], max_tokens=3
        )
    with login(server.base_url, "viewer@acme.example") as viewer:
        rows = _until(lambda: len(ok(viewer.get(f"/tenants/{acme}/requests",
                                                params={"model": "sim"}))["data"]) >= 4
                      and ok(viewer.get(f"/tenants/{acme}/requests",
                                        params={"model": "sim"}))["data"])  # fmt: skip
        assert all(r["status_code"] == 200 and r["ended"] == "completed" for r in rows)
        assert all(r["completion_tokens"] == 3 for r in rows)
        text = viewer.get(f"/tenants/{acme}/requests").text
        assert "secret prompt" not in text
        # the series reads the ledger, where settlements are folded a moment after the
        # usage rows: wait for that state too
        series = _until(lambda: (d := ok(viewer.get(f"/tenants/{acme}/series",
                                                      params={"days": 7}))["data"])[-1]
                        ["requests"] >= 4 and d)  # fmt: skip
        assert len(series) == 7 and series[-1]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
        assert series[-1]["requests"] >= 4 and all(p["requests"] == 0 for p in series[:-1])
        globex = console.tenants["globex"]
        assert viewer.get(f"/tenants/{globex}/requests").status_code == 404
        assert viewer.get(f"/tenants/{globex}/series").status_code == 404


def test_provider_mix_and_free_only_for_platform_admins(console: Console) -> None:
    server, acme = console.server, console.tenants["acme"]
    with login(server.base_url, ROOT) as root, login(server.base_url, "member@acme.example") as m:
        key = ok(root.post(f"/projects/{console.projects['acme']}/keys", json={}), 201)["key"]
        with server.client(key, max_retries=0) as client:
            client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": "mix"}], max_tokens=3
            )
        mix = _until(lambda: (rows := ok(root.get("/provider-mix"))["data"])[0]["tokens"] > 0
                     and rows)  # fmt: skip
        assert [r["place"] for r in mix[:2]] == ["self-hosted", "dashscope"]
        assert mix[0]["token_share"] > 0 and mix[1]["tokens"] == 0  # (no cloud deployed here)
        assert sum(r["token_share"] for r in mix) == pytest.approx(1, abs=1e-5)
        assert m.get("/provider-mix").status_code == 403
        assert ok(root.patch(f"/tenants/{acme}", json={"free_only": True}))["id"] == acme
        assert ok(root.get(f"/tenants/{acme}/balance"))["free_only"] is True
        assert m.patch(f"/tenants/{acme}", json={"free_only": False}).status_code == 403
        ok(root.patch(f"/tenants/{acme}", json={"free_only": False}))
        assert ok(root.get(f"/tenants/{acme}/balance"))["free_only"] is False
