"""Security tests that try each door of a real ``lingyun serve`` from outside.

Each test is the attack itself: a direct call to a replica's port, an upstream that
redirects the gateway to an internal URL, a deployment that names a secret it should not
get, and a search of every process's argv and every log for the secrets the test planted.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tests.support import replicas
from tests.support.cli_fork import run_cli
from tests.support.databases import fresh_sqlite
from tests.support.server import LINGYUN, LingyunServer
from tests.support.standins import running

MSG = [{"role": "user", "content": "hello"}]
INTERNAL_MARKER = "INTERNAL-ONLY-BODY-7f3a"
UPSTREAM_KEY = "sk-planted-upstream-key-5d41402abc4b2a76"


@dataclass
class Upstreams:
    """A redirecting upstream, the internal URL it points at, and an upstream wanting a key."""

    internal_hits: int = 0
    keyed_auth: list[str] = field(default_factory=list)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip


def upstream_app(state: Upstreams) -> FastAPI:
    app = FastAPI()

    @app.api_route("/internal/{rest:path}", methods=["GET", "POST"])
    async def internal(rest: str) -> JSONResponse:
        state.internal_hits += 1
        return JSONResponse(_completion(INTERNAL_MARKER))

    @app.post("/r{code}/v1/chat/completions")
    async def redirect(code: int, request: Request) -> RedirectResponse:
        target = f"{request.base_url}internal/v1/chat/completions"
        return RedirectResponse(target, status_code=code)

    @app.post("/keyed/v1/chat/completions")
    async def keyed(request: Request) -> JSONResponse:
        state.keyed_auth.append(request.headers.get("authorization", ""))
        return JSONResponse(_completion("keyed ok"))

    return app


@dataclass
class Doors:
    server: LingyunServer
    client: openai.OpenAI
    upstreams: Upstreams


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    state = Upstreams()
    with running(upstream_app(state)) as root:
        data_dir = tmp_path_factory.mktemp("doors")
        server = LingyunServer(
            data_dir=data_dir,
            database_url=fresh_sqlite(data_dir),
            models=[
                {"name": "sim", "engine": "simulator", "args": {"ttft_ms": 1, "itl_ms": 1}},
                {
                    "name": "redirect-302",
                    "engine": "openai-compatible",
                    "base_url": f"{root}/r302/v1",
                    "model": "m",
                },
                {
                    "name": "redirect-307",
                    "engine": "openai-compatible",
                    "base_url": f"{root}/r307/v1",
                    "model": "m",
                },
                {
                    "name": "keyed",
                    "engine": "openai-compatible",
                    "base_url": f"{root}/keyed/v1",
                    "api_key_env": "LINGYUN_UPSTREAM_DOORS",
                    "model": "m",
                },
            ],
            env={"LINGYUN_UPSTREAM_DOORS": UPSTREAM_KEY},
        )
        server.start()
        try:
            key = server.create_key("doors")
            yield Doors(server, server.client(key, max_retries=0), state)
        finally:
            server.stop()


def _replica_pids(server: LingyunServer, name: str) -> list[int]:
    [dep] = [d for d in server.health()["deployments"] if d["name"] == name]
    pids = [r["pid"] for r in dep["replica_states"] if r["pid"]]
    assert pids, dep
    return pids


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-secret"),
        pytest.param({"Authorization": "Bearer guessed"}, id="wrong-secret"),
        pytest.param({"Authorization": "Basic c2ltOnNpbQ=="}, id="other-scheme"),
    ],
)
def test_a_direct_request_to_a_replica_without_its_secret_is_refused(
    doors: Doors, headers: dict[str, str]
) -> None:
    [pid] = _replica_pids(doors.server, "sim")
    port = replicas.listen_port(pid)
    base = f"http://127.0.0.1:{port}"
    chat = httpx.post(
        f"{base}/v1/chat/completions", json={"model": "sim", "messages": MSG}, headers=headers
    )
    assert chat.status_code == 401, chat.text
    for path in ("/v1/models", "/health"):
        assert httpx.get(base + path, headers=headers).status_code == 401, path
    # The gateway, which holds the secret, still gets through.
    resp = doors.client.chat.completions.create(model="sim", messages=MSG)  # type: ignore[arg-type]
    assert resp.choices[0].message.content


def test_a_local_replica_listens_on_loopback_only(doors: Doors) -> None:
    [pid] = _replica_pids(doors.server, "sim")
    argv = replicas.cmdline(pid)
    assert argv[argv.index("--host") + 1] == "127.0.0.1", argv


def test_no_planted_secret_appears_in_any_cmdline_or_log(doors: Doors) -> None:
    # Use both secrets first, so that anything that would log them has had its chance.
    assert doors.client.chat.completions.create(model="keyed", messages=MSG)  # type: ignore[arg-type]
    assert doors.upstreams.keyed_auth[-1] == f"Bearer {UPSTREAM_KEY}"
    doors.client.chat.completions.create(model="sim", messages=MSG)  # type: ignore[arg-type]
    [pid] = _replica_pids(doors.server, "sim")
    # The worker takes its secret out of its own environment once read; its parent (the
    # gateway) handed it over there, which is the only place it may be: read the replica
    # with the gateway's eyes instead, through a direct call that the secret must open.
    secret = _replica_secret(doors, pid)
    planted = {"replica secret": secret, "upstream key": UPSTREAM_KEY}
    for what, value in planted.items():
        in_argv = [p for p, raw in replicas.all_cmdlines() if value.encode() in raw]
        assert not in_argv, f"{what} in the argv of pids {in_argv}"
        in_logs = replicas.files_containing(value, [doors.server.data_dir])
        assert not in_logs, f"{what} in {in_logs}"


def _replica_secret(doors: Doors, pid: int) -> str:
    """The secret the supervisor gave the replica, as it was set in the child's initial
    environment (``/proc/PID/environ`` keeps what exec() received)."""
    secret = replicas.environ(pid).get("LINGYUN_REPLICA_SECRET", "")
    assert len(secret) >= 32
    port = replicas.listen_port(pid)
    ok = httpx.get(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {secret}"}
    )
    assert ok.status_code == 200, ok.text
    return secret


@pytest.mark.parametrize("model", ["redirect-302", "redirect-307"])
def test_a_redirecting_upstream_is_not_followed(doors: Doors, model: str) -> None:
    before = doors.upstreams.internal_hits
    with pytest.raises(openai.APIStatusError) as caught:
        doors.client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert INTERNAL_MARKER not in caught.value.response.text
    assert doors.upstreams.internal_hits == before
    with pytest.raises(openai.APIStatusError):
        stream = doors.client.chat.completions.create(
            model=model,
            messages=MSG,  # type: ignore[arg-type]
            stream=True,
        )
        for _ in stream:
            pass
    assert doors.upstreams.internal_hits == before


def _serve_exits(tmp_path: Path, models: list[dict[str, Any]], env: dict[str, str]) -> str:
    """Start ``lingyun serve`` with ``models``; it must exit by itself: its output."""
    config = tmp_path / "lingyun.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    argv = [*LINGYUN, "serve", "--port", "0", "--config", str(config),
            "--data-dir", str(tmp_path), "--database-url", fresh_sqlite(tmp_path)]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    assert result.returncode != 0, f"served for {time.monotonic() - started:.1f}s"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        pytest.param({"api_key_env": "LINGYUN_TEST_DATABASE_PASSWORD"},
                     "api_key_env 'LINGYUN_TEST_DATABASE_PASSWORD' is not allowed",
                     id="foreign-variable"),
        pytest.param({"api_key_env": "HOME"}, "api_key_env 'HOME' is not allowed", id="home"),
        pytest.param({"base_url": "http://admin:hunter2@127.0.0.1:9/v1"},
                     "must not carry credentials", id="userinfo"),
        pytest.param({"base_url": "file:///etc/passwd"}, "must be an http(s) URL", id="file"),
    ],
)  # fmt: skip
def test_a_deployment_reaching_for_secrets_is_refused_at_load(
    tmp_path: Path, deployment: dict[str, str], message: str
) -> None:
    model = {"name": "evil", "engine": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
             "model": "m", **deployment}  # fmt: skip
    out = _serve_exits(tmp_path, [model], {"LINGYUN_TEST_DATABASE_PASSWORD": "pw-123456"})
    assert message in out, out
    assert "hunter2" not in out and "pw-123456" not in out


def test_lingyun_deploy_refuses_a_foreign_variable(tmp_path: Path) -> None:
    result = run_cli(
        ["deploy", "evil", "--engine", "openai-compatible",
         "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "PGPASSWORD",
         "--data-dir", str(tmp_path), "--database-url", fresh_sqlite(tmp_path)],
    )  # fmt: skip
    assert result.returncode != 0
    assert "api_key_env 'PGPASSWORD' is not allowed" in result.stdout + result.stderr
