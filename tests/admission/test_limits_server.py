"""Rate limits and the capacity queue on a real ``lingyun serve``, with the official client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import openai
import pytest

from tests.admission.conftest import RULE_REFRESH_WAIT_S, new_key, set_limits
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data = tmp_path_factory.mktemp("limits")
    srv = LingyunServer(
        data_dir=data,
        database_url=fresh_sqlite(data),
        models=[
            {"name": "sim", "engine": "simulator", "args": {"output_tokens": 4}},
            {
                "name": "sim-one",
                "engine": "simulator",
                "max_inflight": 1,
                "queue_timeout_s": 0.3,
                "args": {"ttft_ms": 1500},
            },
        ],
        # Metering stays on (the default): rate limits run before billing in one chain.
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def async_client(server: LingyunServer, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0)


async def _one(client: openai.AsyncOpenAI, model: str = "sim") -> tuple[int, dict[str, str]]:
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        return raw.status_code, dict(raw.headers)
    except openai.APIStatusError as err:
        return err.status_code, dict(err.response.headers)


def test_200_concurrent_against_60_rpm_admit_exactly_60(server: LingyunServer) -> None:
    secret, key_id = new_key(server, "rpm-tenant")
    set_limits(server, key=key_id, rpm=60, burst=0)
    time.sleep(RULE_REFRESH_WAIT_S)

    async def burst() -> list[tuple[int, dict[str, str]]]:
        async with async_client(server, secret) as client:
            return await asyncio.gather(*(_one(client) for _ in range(200)))

    results = asyncio.run(burst())
    admitted = [h for status, h in results if status == 200]
    refused = [h for status, h in results if status == 429]
    assert (len(admitted), len(refused)) == (60, 140)
    # Each admission saw the window one fuller: remaining counts down 59..0 exactly once.
    remaining = sorted(int(h["x-ratelimit-remaining-requests"]) for h in admitted)
    assert remaining == list(range(60))
    for h in admitted + refused:
        assert h["x-ratelimit-limit-requests"] == "60"
        assert h["x-ratelimit-reset-requests"].endswith("s")
    for h in refused:
        assert h["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(h["retry-after"]) <= 60


def test_refusal_is_openai_shaped(server: LingyunServer) -> None:
    secret, key_id = new_key(server, "shape-tenant")
    set_limits(server, key=key_id, rpm=1, burst=0)
    time.sleep(RULE_REFRESH_WAIT_S)
    client = server.client(secret, max_retries=0)
    client.chat.completions.create(model="sim", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES)  # type: ignore[arg-type]
    err = caught.value
    assert err.code == "rate_limit_exceeded"
    assert "1 requests per minute" in err.message
    assert int(err.response.headers["retry-after"]) >= 59
    assert err.response.headers["x-request-id"]


def test_tokens_are_reserved_and_corrected_per_model(server: LingyunServer) -> None:
    secret, _ = new_key(server, "tpm-tenant")
    set_limits(server, tenant="tpm-tenant", model="sim", tpm=2000)
    time.sleep(RULE_REFRESH_WAIT_S)
    client = server.client(secret, max_retries=0)

    def remaining(model: str = "sim", **extra: int) -> tuple[int, dict[str, str]]:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=MESSAGES,
            **extra,  # type: ignore[arg-type]
        )
        return int(raw.headers.get("x-ratelimit-remaining-tokens", -1)), dict(raw.headers)

    first, headers = remaining()
    assert headers["x-ratelimit-limit-tokens"] == "2000"
    # The prompt estimate plus the default output reservation (no max_tokens).
    assert 256 < 2000 - first < 320
    second, _ = remaining()
    # The first request's reservation came back down to its real usage (4 output tokens).
    assert 4 < first - second < 40
    # max_tokens is reserved in full (the second request's default reservation of 256 has
    # meanwhile come down to its ~20 real tokens).
    third, _ = remaining(max_tokens=1000)
    assert 744 < second - third < 800
    for too_big in (1800, 3000):  # no room now / never
        with pytest.raises(openai.RateLimitError) as caught:
            remaining(max_tokens=too_big)
        left = int(caught.value.response.headers["x-ratelimit-remaining-tokens"])
        assert third - 10 < left < third + 60
    assert remaining("sim-one")[0] == -1  # another model: this rule does not apply


def test_cli_set_list_clear(server: LingyunServer) -> None:
    new_key(server, "cli-tenant", project="web")
    # --project needs its --tenant
    refused = server.cli("limits", "set", "--project", "web", "--rpm", "1", check=False)
    assert refused.returncode == 1 and "--tenant" in refused.stderr
    server.cli("limits", "set", "--project", "web", "--tenant", "cli-tenant", "--rpm", "10")
    rule = server.cli_json(
        "limits", "set", "--project", "web", "--tenant", "cli-tenant", "--concurrency", "2"
    )
    assert (rule["scope"], rule["rpm"], rule["concurrency"]) == ("project", 10, 2)
    listed = server.cli_json("limits", "list", "--tenant", "cli-tenant")
    assert [(r["scope"], r["rpm"], r["model"]) for r in listed] == [("project", 10, None)]
    cleared = server.cli_json("limits", "clear", "--project", "web", "--tenant", "cli-tenant")
    assert cleared == {"removed": 1}


def test_a_full_deployment_queues_then_answers_503(server: LingyunServer) -> None:
    secret, _ = new_key(server, "queue-tenant")

    async def two() -> list[tuple[int, dict[str, str]]]:
        async with async_client(server, secret) as client:
            first = asyncio.create_task(_one(client, "sim-one"))
            await asyncio.sleep(0.3)
            second = await _one(client, "sim-one")
            return [await first, second]

    (first, _), (second, headers) = asyncio.run(two())
    assert (first, second) == (200, 503)
    assert headers["retry-after"] == "1"
