"""``/v1/batches`` through the official client against a real server."""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import openai
import pytest

from tests.batch.conftest import BatchServer, chat_line, jsonl, read_lines, wait_batch
from tests.support.cli_fork import run_cli


def _upload(server: BatchServer, lines: list[dict[str, object]]) -> str:
    return server.client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id


def test_a_500_line_mixed_batch_completes_with_every_custom_id_once(
    batch_server: BatchServer,
) -> None:
    lines: list[dict[str, object]] = []
    bad: dict[str, int] = {}  # custom_id -> line number of lines that must fail
    for i in range(500):
        cid = f"req-{i}"
        if i % 50 == 7:
            lines.append(chat_line(cid, messages="not a list"))  # the endpoint refuses it
            bad[cid] = i + 1
        elif i % 50 == 13:
            lines.append(chat_line(cid, sim_fail_after=0))  # the engine fails
            bad[cid] = i + 1
        else:
            lines.append(chat_line(cid, model="sim" if i % 2 else "sim-b", max_tokens=1 + i % 7))
    client = batch_server.client
    batch = client.batches.create(
        input_file_id=_upload(batch_server, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "mixed"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "mixed"}
    done = wait_batch(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (500, 500 - len(bad), len(bad))
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    out = read_lines(client, done.output_file_id)
    err = read_lines(client, done.error_file_id)
    seen = collections.Counter(r["custom_id"] for r in out + err)
    assert set(seen) == {f"req-{i}" for i in range(500)} and set(seen.values()) == {1}
    assert {r["custom_id"]: r["error"]["line"] for r in err} == bad
    for r in err:
        assert r["error"]["message"].startswith(f"Line {bad[r['custom_id']]}:")
    prompt = completion = 0
    for r in out:
        assert r["response"]["status_code"] == 200 and r["error"] is None
        body = r["response"]["body"]
        assert body["object"] == "chat.completion"
        i = int(r["custom_id"].split("-")[1])
        assert body["usage"]["completion_tokens"] <= 1 + i % 7
        assert r["response"]["request_id"] == f"{batch.id}-{i + 1}"
        prompt += body["usage"]["prompt_tokens"]
        completion += body["usage"]["completion_tokens"]
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (prompt, completion)
    assert done.usage.total_tokens == prompt + completion


@pytest.mark.parametrize(
    ("line", "code", "param"),
    [
        pytest.param(chat_line("dup"), "duplicate_custom_id", "custom_id", id="duplicate"),
        pytest.param(
            {**chat_line("x"), "url": "/v1/embeddings"},
            "mismatched_endpoint",
            "url",
            id="other-endpoint",
        ),
        pytest.param(
            chat_line("y", model="no-such-model"),
            "model_not_found",
            "body.model",
            id="unknown-model",
        ),
    ],
)
def test_bad_lines_fail_validation_with_their_line_number(
    batch_server: BatchServer, line: dict[str, object], code: str, param: str
) -> None:
    lines = [chat_line("dup"), chat_line("ok"), line]
    client = batch_server.client
    batch = client.batches.create(
        input_file_id=_upload(batch_server, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_batch(client, batch.id)
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None and done.errors.data is not None
    assert [(e.code, e.line, e.param) for e in done.errors.data] == [(code, 3, param)]
    assert done.output_file_id is None and done.in_progress_at is None


def test_cancel_keeps_partial_results(batch_server: BatchServer) -> None:
    lines = [chat_line(f"c{i}", model="sim-slow", max_tokens=5) for i in range(200)]
    client = batch_server.client
    batch = client.batches.create(
        input_file_id=_upload(batch_server, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    wait_batch(client, batch.id, {"in_progress"})
    while (client.batches.retrieve(batch.id).request_counts or _none()).completed < 4:
        pass
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_batch(client, batch.id)
    assert done.status == "cancelled" and done.cancelling_at and done.cancelled_at
    out = read_lines(client, done.output_file_id)
    assert done.request_counts is not None
    assert 4 <= len(out) == done.request_counts.completed < 200
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def _none() -> object:
    class Zero:
        completed = 0

    return Zero()


def test_expired_lines_get_batch_expired(batch_server: BatchServer) -> None:
    lines = [chat_line(f"e{i}", model="sim-slow", max_tokens=10) for i in range(300)]
    client = batch_server.client
    batch = client.batches.create(
        input_file_id=_upload(batch_server, lines),
        endpoint="/v1/chat/completions",
        completion_window="3s",  # type: ignore[arg-type]
    )
    done = wait_batch(client, batch.id)
    assert done.status == "expired" and done.expired_at is not None
    out = read_lines(client, done.output_file_id)
    err = read_lines(client, done.error_file_id)
    assert len(out) + len(err) == 300 and err
    assert {r["error"]["code"] for r in err} == {"batch_expired"}
    assert len({r["custom_id"] for r in out + err}) == 300


def test_list_pages_with_after_and_has_more(batch_server: BatchServer) -> None:
    client = batch_server.other_client("lister")
    fid = client.files.create(file=("l.jsonl", jsonl([chat_line("a")])), purpose="batch").id
    ids = [
        client.batches.create(
            input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    rest = client.batches.list(limit=10, after=first.data[-1].id)
    assert [b.id for b in rest.data] == ids[::-1][2:] and not rest.has_more
    assert [b.id for b in client.batches.list(limit=2).iter_pages().__next__().data]
    everything = [b.id for b in client.batches.list(limit=2)]  # the client follows the cursor
    assert everything == ids[::-1]
    with pytest.raises(openai.NotFoundError):
        batch_server.client.batches.retrieve(ids[0])


def test_cli_create_wait_list_show_download(batch_server: BatchServer, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([chat_line(f"cli{i}", max_tokens=2) for i in range(20)]))
    server = batch_server.server
    env = {**os.environ, "LINGYUN_BASE_URL": server.base_url, "LINGYUN_API_KEY": batch_server.key}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_cli(["batches", *args], env=env, timeout=120)
        done.check_returncode()
        return done

    created = json.loads(
        cli("create", str(src), "--endpoint", "/v1/chat/completions", "--wait", "--json").stdout
    )
    assert created["status"] == "completed" and created["request_counts"]["completed"] == 20
    assert created["id"] in cli("list").stdout
    assert json.loads(cli("show", created["id"]).stdout)["id"] == created["id"]
    cli("download", created["id"], "--out", str(tmp_path / "out"))
    got = (tmp_path / "out" / f"{created['id']}_output.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in got) == sorted(f"cli{i}" for i in range(20))
    bad = run_cli(["batches", "show", "batch_nope"], env=env)
    assert bad.returncode == 1 and "404" in bad.stderr
