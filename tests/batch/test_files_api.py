"""``/v1/files`` through the official client: upload, list, retrieve, content, delete."""

from __future__ import annotations

import io

import openai
import pytest

from tests.batch.conftest import BatchServer, chat_line, jsonl


def test_upload_list_retrieve_content_delete(batch_server: BatchServer) -> None:
    client = batch_server.client
    data = jsonl([chat_line(f"r{i}") for i in range(3)])
    created = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert created.id.startswith("file_") and created.bytes == len(data)
    assert created.filename == "in.jsonl" and created.purpose == "batch"
    assert client.files.retrieve(created.id).id == created.id
    assert created.id in [f.id for f in client.files.list()]
    assert client.files.content(created.id).content == data
    assert client.files.delete(created.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_another_tenant_gets_404(batch_server: BatchServer) -> None:
    data = jsonl([chat_line("only")])
    created = batch_server.client.files.create(file=("a.jsonl", data), purpose="batch")
    other = batch_server.other_client("rival")
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(created.id)
    assert created.id not in [f.id for f in other.files.list()]
    assert batch_server.client.files.retrieve(created.id).id == created.id


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        pytest.param(
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {}}\nnot json\n',
            400,
            "Line 2",
            id="bad-json-line",
        ),
        pytest.param(
            jsonl([{"custom_id": "a", "method": "GET", "url": "/x", "body": {}}]),
            400,
            "Line 1 needs `method` POST",
            id="wrong-method",
        ),
        pytest.param(
            jsonl([{"method": "POST", "url": "/x", "body": {}}]),
            400,
            "Line 1 needs a `custom_id`",
            id="no-custom-id",
        ),
        pytest.param(b"\n\n", 400, "no lines", id="empty"),
        pytest.param(
            jsonl([chat_line(f"r{i}") for i in range(1001)]),
            400,
            "limit is 1000",
            id="too-many-lines",
        ),
        pytest.param(b"x" * (1024 * 1024 + 1), 413, "limit", id="too-large"),
    ],
)
def test_bad_uploads_are_refused_with_the_line(
    batch_server: BatchServer, content: bytes, status: int, needle: str
) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        batch_server.client.files.create(file=("bad.jsonl", content), purpose="batch")
    assert info.value.status_code == status
    assert needle in info.value.message


def test_purpose_must_be_batch(batch_server: BatchServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        batch_server.client.files.create(
            file=("x.jsonl", jsonl([chat_line("a")])), purpose="fine-tune"
        )
    assert info.value.code == "invalid_purpose"
