"""`lingyun deploy` against a running server: the model appears, serves, and goes away."""

from __future__ import annotations

import time

import openai

from tests.integration.conftest import Served

MSG = [{"role": "user", "content": "hello"}]


def _ids(served: Served) -> set[str]:
    return {m.id for m in served.client.models.list()}


def test_deploy_and_undeploy_while_serving(served: Served) -> None:
    served.server.cli("deploy", "sim-late", "--engine", "simulator", "--arg", "output_tokens=3")
    listed = served.server.cli_json("models", "list")
    assert any(d["name"] == "sim-late" for d in listed)
    served.server.wait_healthy(["sim-late"], timeout_s=60)
    resp = served.client.chat.completions.create(model="sim-late", messages=MSG)  # type: ignore[arg-type]
    assert resp.usage is not None and resp.usage.completion_tokens == 3

    served.server.cli("undeploy", "sim-late")
    deadline = time.monotonic() + 30
    while "sim-late" in _ids(served) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "sim-late" not in _ids(served)
    try:
        served.client.chat.completions.create(model="sim-late", messages=MSG)  # type: ignore[arg-type]
        raise AssertionError("an undeployed model still answered")
    except openai.NotFoundError as exc:
        assert exc.code == "model_not_found"


def test_deploy_rejects_bad_declarations(served: Served) -> None:
    bad = served.server.cli("deploy", "x", "--engine", "warp-drive", check=False)
    assert bad.returncode == 1 and "unknown engine" in bad.stderr
    # Told about the config file, the CLI refuses to shadow one of its models...
    clash = served.server.cli(
        "deploy",
        "sim",
        "--engine",
        "simulator",
        "--config",
        str(served.server.config_path),
        check=False,
    )
    assert clash.returncode == 1 and "config file" in clash.stderr
    # ...and without it, the server ignores the shadowing entry and keeps serving its own.
    served.server.cli("deploy", "sim", "--engine", "simulator", "--arg", "output_tokens=1")
    # A witness stored after it: once the witness serves, the server has read the stored
    # deployments since the shadowing entry was written (a state, not a poll interval).
    served.server.cli("deploy", "sim-witness", "--engine", "simulator")
    try:
        served.server.wait_healthy(["sim-witness"], timeout_s=60)
        (sim,) = [d for d in served.server.health()["deployments"] if d["name"] == "sim"]
        assert sim["replicas"] == 2  # the config file's two, not the stored one
        resp = served.client.chat.completions.create(model="sim", messages=MSG)  # type: ignore[arg-type]
        # The config's simulator answers 16 tokens when unbounded; the shadow would answer 1.
        assert resp.usage is not None and resp.usage.completion_tokens == 16
    finally:
        served.server.cli("undeploy", "sim")
        served.server.cli("undeploy", "sim-witness")
