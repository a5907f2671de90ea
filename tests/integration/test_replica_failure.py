"""A replica dying mid-request: a clean error for the request in flight, service after restart."""

from __future__ import annotations

import os
import signal
import threading

import openai
import pytest

from tests.integration.conftest import Served
from tests.support.tenancy import poll

MSG = [{"role": "user", "content": "count for me"}]


def _replica_pid(served: Served, name: str) -> int:
    for dep in served.server.health()["deployments"]:
        if dep["name"] == name:
            pids = [r["pid"] for r in dep["replica_states"] if r["pid"]]
            assert pids, dep
            return int(pids[0])
    raise AssertionError(f"no deployment {name}")


def _active(served: Served, name: str) -> int:
    return int(served.server.health()["queue"]["deployments"][name]["active"])


def test_stream_gets_error_event_when_replica_dies(served: Served) -> None:
    stream = served.client.chat.completions.create(
        model="sim-crash", messages=MSG, max_tokens=50, stream=True,
        extra_body={"sim_crash_after": 3},
    )  # fmt: skip
    got: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert got, "the stream should have started before the replica died"
    assert "backend" in str(err.value.message)
    served.server.wait_healthy(["sim-crash"], timeout_s=60)
    after = served.client.chat.completions.create(model="sim-crash", messages=MSG, max_tokens=3)
    assert after.choices[0].message.content


def test_unary_request_fails_cleanly_on_sigkill_then_recovers(served: Served) -> None:
    pid = _replica_pid(served, "sim-slow")
    slow = served.server.client(served.key, max_retries=0, timeout=30)

    def kill_once_it_is_on_the_replica() -> None:
        # The request holds the deployment's slot: it reached the replica and has no answer.
        poll(lambda: _active(served, "sim-slow") == 1, timeout_s=30)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_it_is_on_the_replica)
    killer.start()
    with pytest.raises(openai.APIStatusError) as err:
        slow.chat.completions.create(model="sim-slow", messages=MSG, max_tokens=200)
    killer.join()
    # the replica died before answering and it has no sibling to retry on: try again shortly
    assert err.value.status_code == 503
    assert err.value.code == "service_unavailable"
    assert err.value.response.headers.get("retry-after") == "1"
    served.server.wait_healthy(["sim-slow"], timeout_s=60)
    assert _replica_pid(served, "sim-slow") != pid
    ok = served.client.chat.completions.create(model="sim-slow", messages=MSG, max_tokens=2)
    assert ok.choices[0].message.content
