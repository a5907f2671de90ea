"""Every route is bounded: body sizes (declared or streamed), sign-in tries, and the control
plane's rate per client address, all answered in OpenAI's error shape.

The server runs with small limits (4 KiB for the control plane, 64 KiB elsewhere, 2 control
requests a second after a burst of 40) so the test sends little.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

CONTROL_BYTES, API_BYTES = 4096, 65536


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LingyunServer, str]]:
    data_dir = tmp_path_factory.mktemp("bounds")
    server = LingyunServer(
        data_dir=data_dir,
        database_url=fresh_sqlite(data_dir),
        models=[{"name": "sim", "engine": "simulator"}],
        extra_config={
            "admin_max_body_bytes": CONTROL_BYTES,
            "max_body_bytes": API_BYTES,
            "control_rate_per_s": 2,
            "control_burst": 40,
        },
    )
    server.start()
    try:
        yield server, server.create_key("bounds")
    finally:
        server.stop()


ROUTES = [
    pytest.param("/admin/v1/auth/login", CONTROL_BYTES, id="admin-login"),
    pytest.param("/admin/v1/tenants", CONTROL_BYTES, id="admin-route-before-auth"),
    pytest.param("/console/login", CONTROL_BYTES, id="console-login"),
    pytest.param("/v1/chat/completions", API_BYTES, id="chat"),
    pytest.param("/v1/files", None, id="files"),  # the Batch API's own (larger) limit
]


def _assert_413(resp: httpx.Response) -> None:
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")


@pytest.mark.parametrize(("path", "limit"), ROUTES)
def test_a_declared_oversized_body_is_413_unread(
    bounded: tuple[LingyunServer, str], path: str, limit: int | None
) -> None:
    server, _ = bounded
    declared = (limit or 10**12) + 1
    # Content-Length says more than the limit and nothing follows (no client library sends
    # that): answered without waiting for a byte of the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), raw
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")


@pytest.mark.parametrize(("path", "limit"), [p for p in ROUTES if p.values[1] is not None])
def test_a_streamed_body_is_cut_off_at_the_limit(
    bounded: tuple[LingyunServer, str], path: str, limit: int
) -> None:
    server, key = bounded
    kind = (
        "application/x-www-form-urlencoded" if path.startswith("/console") else "application/json"
    )
    headers = {"content-type": kind, "authorization": f"Bearer {key}"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it arrives
        for _ in range(limit // 1024 + 2):
            yield b"x" * 1024

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        resp = http.post(path, content=chunks(), headers=headers)
    _assert_413(resp)


def _login(http: httpx.Client, email: str) -> httpx.Response:
    return http.post("/admin/v1/auth/login", json={"email": email, "password": "wrong-password"})


def test_failed_sign_ins_are_limited_across_the_api_and_the_console(
    bounded: tuple[LingyunServer, str],
) -> None:
    with httpx.Client(base_url=bounded[0].base_url, timeout=30) as http:
        codes = [_login(http, "victim@example.com").status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
        refused = _login(http, "victim@example.com")
        assert refused.json()["error"]["code"] == "too_many_login_attempts"
        assert int(refused.headers["retry-after"]) > 0
        page = http.get("/console/login")
        csrf = page.cookies["ly_csrf"]
        form = {"email": "victim@example.com", "password": "x", "csrf": csrf}
        console = http.post("/console/login", data=form)
        assert console.status_code == 429  # one budget for both doors


def test_the_control_plane_is_rate_limited_per_address(
    bounded: tuple[LingyunServer, str],
) -> None:
    server, _ = bounded
    # From 127.0.0.2: its own bucket, so the other tests (from 127.0.0.1) keep theirs.
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.base_url, timeout=30, transport=other) as http:
        answers = [http.get("/admin/v1/auth/me") for _ in range(80)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {401, 429}  # each refused unauthenticated, until the limit
    first = next(a for a in answers if a.status_code == 429)
    body: dict[str, Any] = first.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and int(first.headers["retry-after"]) >= 1
    assert statuses.index(429) >= 40  # the burst was let through
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        assert http.get("/admin/v1/auth/me").status_code == 401  # another address: served
