"""Upstream channels through a real gateway: two local STAND-IN upstreams per model.

``qwen-plus`` has channels ``a`` and ``b``; ``a`` starts refusing our key (401) mid-run.
``flaky`` has ``c`` and ``d``; ``c`` answers 500 to 3 requests in 10, then recovers.
The client (official SDK, no retries of its own) must see no error at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from tests.support.server import LingyunServer
from tests.support.standins import OPENAI, REPLY, STANDIN_KEY, build_app, running
from tests.support.tenancy import _create_root, login, poll

MSG = [{"role": "user", "content": "hello"}]
BREAKER = {"error_rate": 0.2, "window": 20, "min_requests": 10, "cooldown_s": 0.3}


@dataclass
class Switch:
    """What one stand-in does now; counts the gateway's traffic (probes carry no request id)."""

    mode: str = "ok"  # ok | auth | flaky (3 in 10 answer 500) | down (all answer 500)
    traffic: int = 0
    probes: int = 0
    seen: int = 0


def _switched(switch: Switch) -> Any:
    app = build_app(OPENAI)

    @app.middleware("http")
    async def gate(request: Request, call_next: Any) -> Response:
        if not request.url.path.endswith("/chat/completions"):
            return await call_next(request)  # type: ignore[no-any-return]
        if "x-request-id" in request.headers:
            switch.traffic += 1
        else:
            switch.probes += 1
        switch.seen += 1
        if switch.mode == "auth":
            reply = OPENAI.errors["auth"]
            return JSONResponse(reply.body, status_code=reply.status)
        if switch.mode == "down" or (switch.mode == "flaky" and switch.seen % 10 in (1, 4, 7)):
            body = {"error": {"message": "boom", "type": "server_error", "code": None}}
            return JSONResponse(body, status_code=500)
        return await call_next(request)  # type: ignore[no-any-return]

    return app


@dataclass
class Cloud:
    server: LingyunServer
    client: openai.OpenAI
    admin: httpx.Client
    switches: dict[str, Switch]

    def channel(self, deployment: str, name: str) -> dict[str, Any]:
        resp = self.admin.get(f"/channels/{deployment}/{name}")
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def ask(self, model: str, stream: bool = False) -> None:
        if stream:
            chunks = list(self.client.chat.completions.create(model=model, messages=MSG,  # type: ignore[arg-type]
                                                              stream=True))  # fmt: skip
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
            return
        resp = self.client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
        assert resp.choices[0].message.content == REPLY


@pytest.fixture(scope="module")
def cloud(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    switches = {name: Switch() for name in "abcd"}
    with ExitStack() as stack:
        roots = {n: stack.enter_context(running(_switched(s))) for n, s in switches.items()}

        def ch(name: str, **more: Any) -> dict[str, Any]:
            return {"name": name, "base_url": roots[name] + "/v1", "model": "gpt-4o-mini",
                    "api_key_env": f"LINGYUN_UPSTREAM_{name.upper()}", **more}  # fmt: skip

        server = LingyunServer(
            data_dir=Path(tmp_path_factory.mktemp("channels")),
            database_url=database_url,
            models=[
                {"name": "qwen-plus", "engine": "openai-compatible", "breaker": BREAKER,
                 "channels": [ch("a", weight=3), ch("b", weight=1)]},
                {"name": "flaky", "engine": "openai-compatible", "breaker": BREAKER,
                 "channels": [ch("c"), ch("d")]},
            ],
            env={f"LINGYUN_UPSTREAM_{n.upper()}": STANDIN_KEY for n in "abcd"},
        )  # fmt: skip
        server.start(wait_for=[])
        stack.callback(server.stop)
        _create_root(server, "root@example.com")
        admin = stack.enter_context(login(server.base_url, "root@example.com"))
        client = server.client(server.create_key("chan"), max_retries=0)
        yield Cloud(server, client, admin, switches)


def test_a_401_opens_its_channel_within_one_request_with_no_client_error(cloud: Cloud) -> None:
    a = cloud.switches["a"]
    for i in range(20):
        cloud.ask("qwen-plus", stream=i % 2 == 1)
    assert a.traffic > 0 and cloud.switches["b"].traffic > 0
    assert cloud.channel("qwen-plus", "a")["state"] == "closed"
    a.mode = "auth"
    before = a.traffic
    for i in range(40):
        cloud.ask("qwen-plus", stream=i % 2 == 1)  # raises on any client error
    state = cloud.channel("qwen-plus", "a")
    assert state["state"] in ("open", "half_open")
    assert "upstream_auth_failed" in state["last_error"]
    assert a.traffic - before == 1  # the first request after the change opened it
    # Probes keep failing: it stays out of traffic.
    poll(lambda: a.probes >= 2, timeout_s=20)
    for _ in range(10):
        cloud.ask("qwen-plus")
    assert a.traffic - before == 1
    a.mode = "ok"
    poll(lambda: cloud.channel("qwen-plus", "a")["state"] == "closed", timeout_s=30)


def test_error_rate_opens_probe_closes_and_open_is_never_retried(cloud: Cloud) -> None:
    c = cloud.switches["c"]
    c.mode = "flaky"
    for i in range(300):
        cloud.ask("flaky", stream=i % 3 == 0)  # c's failures move to d: no client error
        if cloud.channel("flaky", "c")["state"] != "closed":
            break
    state = cloud.channel("flaky", "c")
    assert state["state"] in ("open", "half_open"), state
    assert state["error_rate"] > 0.2
    # Open, and c down altogether (so its probes fail): neither first tries nor retries go
    # to c, though d now fails too and retries are wanted.
    c.mode = "down"
    cloud.switches["d"].mode = "flaky"
    opened_at = c.traffic
    errors = 0
    for _ in range(20):
        try:
            cloud.ask("flaky")
        except openai.APIStatusError:
            errors += 1  # d alone, failing, with nowhere left to go
    assert c.traffic == opened_at
    assert errors > 0  # d's own failures, which had nowhere else to go
    cloud.switches["d"].mode = "ok"
    # Recovery: c answers again; the prober closes it and traffic returns.
    c.mode = "ok"
    poll(lambda: cloud.channel("flaky", "c")["state"] == "closed", timeout_s=30)
    assert c.probes >= 1
    for _ in range(40):
        cloud.ask("flaky")
    assert c.traffic > opened_at


def test_transitions_are_in_the_audit_log(cloud: Cloud) -> None:
    def actions() -> list[tuple[str, str]]:
        resp = cloud.admin.get("/audit", params={"limit": 500})
        assert resp.status_code == 200, resp.text
        return [(e["action"], e["target_id"]) for e in resp.json()["data"]]

    poll(lambda: ("channel.closed", "flaky/c") in actions(), timeout_s=10)
    seen = actions()
    for action in ("channel.open", "channel.half_open", "channel.closed"):
        assert (action, "flaky/c") in seen
        assert (action, "qwen-plus/a") in seen


def test_cli_lists_disables_enables_and_tests_channels(cloud: Cloud) -> None:
    server = cloud.server
    conf = ("--config", str(server.config_path))
    poll(lambda: all(r["state"] == "closed" for r in server.cli_json("channels", "list", *conf)),
         timeout_s=20)  # fmt: skip
    listed = {
        f"{r['deployment']}/{r['channel']}": r for r in server.cli_json("channels", "list", *conf)
    }
    assert set(listed) == {"qwen-plus/a", "qwen-plus/b", "flaky/c", "flaky/d"}
    assert listed["qwen-plus/a"]["requests"] > 0 and listed["qwen-plus/a"]["weight"] == 3

    server.cli("channels", "disable", "qwen-plus", "a", *conf)
    poll(lambda: cloud.channel("qwen-plus", "a")["state"] == "disabled", timeout_s=10)
    before = cloud.switches["a"].traffic
    for _ in range(10):
        cloud.ask("qwen-plus")
    assert cloud.switches["a"].traffic == before
    server.cli("channels", "enable", "qwen-plus", "a", *conf)
    poll(lambda: cloud.channel("qwen-plus", "a")["state"] == "closed", timeout_s=10)

    assert server.cli_json("channels", "test", "qwen-plus", "b", *conf)["ok"] is True
    cloud.switches["b"].mode = "auth"
    failed = server.cli("channels", "test", "qwen-plus", "b", *conf, "--json", check=False)
    cloud.switches["b"].mode = "ok"
    assert failed.returncode == 1 and "upstream_auth_failed" in failed.stdout
    assert server.cli("channels", "disable", "qwen-plus", "zz", *conf, check=False).returncode == 1
    seen = {(e["action"], e["target_id"])
            for e in cloud.admin.get("/audit", params={"limit": 500}).json()["data"]}  # fmt: skip
    assert {("channel.disable", "qwen-plus/a"), ("channel.enable", "qwen-plus/a")} <= seen


def test_admin_api_disables_at_once(cloud: Cloud) -> None:
    resp = cloud.admin.post("/channels/flaky/d/disable")
    assert resp.status_code == 200 and resp.json()["state"] == "disabled"
    for _ in range(5):
        cloud.ask("flaky")  # all on c
    assert cloud.admin.post("/channels/flaky/d/enable").json()["state"] == "closed"
    listed = cloud.admin.get("/channels").json()["data"]
    assert {c["channel"] for c in listed} == {"a", "b", "c", "d"}
    assert cloud.admin.post("/channels/flaky/d/test").json()["ok"] is True
