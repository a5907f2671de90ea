"""A change made by another process (the ``lingyun`` CLI) reaches a running ``lingyun
serve`` through the change feed: prices, deployments, grants and rate-limit rules, on
SQLite and PostgreSQL. Each test waits on the state it expects (a deadline to fail by, no
timing assert)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.support.server import LingyunServer

MSG = [{"role": "user", "content": "hi"}]
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LingyunServer, openai.OpenAI]]:
    srv = LingyunServer(
        data_dir=tmp_path_factory.mktemp("feed"),
        database_url=module_database_url,  # its own: these tests set a list price
        models=[{"name": "sim", "engine": "simulator", "args": {"output_tokens": 2}}],
    )
    srv.start(timeout_s=120)
    try:
        key = srv.create_key("feedco")
        with srv.client(key, max_retries=0) as client:
            yield srv, client
    finally:
        srv.stop()


def _status(client: openai.OpenAI, model: str = "sim") -> int | str:
    """200, the refusal's status, or its code where the status is shared (429)."""
    try:
        client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.code if exc.status_code == 429 and exc.code else exc.status_code
    return 200


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never saw {what}")
        time.sleep(0.1)


def test_a_rate_limit_rule_applies_and_clears(server: tuple[LingyunServer, openai.OpenAI]) -> None:
    srv, client = server
    assert _status(client) == 200
    srv.cli("limits", "set", "--tenant", "feedco", "--model", "sim", "--rpm", "1")
    try:
        _until(lambda: _status(client) == "rate_limit_exceeded", "the rpm=1 rule")
    finally:
        srv.cli("limits", "clear", "--tenant", "feedco")
    _until(lambda: _status(client) == 200, "the rule cleared")


def test_a_grant_applies_and_goes(server: tuple[LingyunServer, openai.OpenAI]) -> None:
    srv, client = server
    assert _status(client) == 200
    srv.cli("models", "grant", "other-model", "--tenant", "feedco")  # now only that one
    try:
        _until(lambda: _status(client) in (403, 404), "the grant")
    finally:
        srv.cli("models", "revoke", "other-model", "--tenant", "feedco", check=False)
    _until(lambda: _status(client) == 200, "the grant revoked")


def test_a_price_applies(server: tuple[LingyunServer, openai.OpenAI]) -> None:
    """A list price on an unpriced model: a tenant without balance is refused."""
    srv, client = server
    assert _status(client) == 200
    srv.cli("prices", "set", "sim", "--input", "100", "--output", "100")
    _until(lambda: _status(client) == "insufficient_quota", "the price")


def test_a_deployment_appears_and_goes(server: tuple[LingyunServer, openai.OpenAI]) -> None:
    srv, client = server
    srv.cli("deploy", "sim-fed", "--engine", "simulator", "--arg", "output_tokens=1")
    srv.wait_healthy(["sim-fed"], timeout_s=60)
    srv.cli("undeploy", "sim-fed")
    _until(lambda: "sim-fed" not in {m.id for m in client.models.list()}, "the undeploy")
