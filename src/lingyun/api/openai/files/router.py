"""Thin handlers over ``lingyun.batch.files.FileStore``; the key decides the owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from lingyun.batch import wire
from lingyun.batch.files import FileStore, Owner
from lingyun.errors import InvalidRequestError
from lingyun.gateway.pipeline import Gateway

router = APIRouter(prefix="/v1", tags=["files"])


async def _owner(request: Request) -> Owner:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    return Owner(key.tenant_id, key.project_id)


def _store(request: Request) -> FileStore:
    store: FileStore = request.app.state.files
    return store


@router.post("/files")
async def create_file(request: Request) -> dict[str, Any]:
    owner = await _owner(request)
    store = _store(request)
    limit = store.limits.max_bytes  # the whole body is bounded by api/body_limit.py
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequestError("Upload the file as multipart/form-data.", param="file")
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError("Missing the `file` part.", param="file")
        if not isinstance(purpose, str):
            raise InvalidRequestError("Missing `purpose`; use purpose=batch.", param="purpose")
        data = await upload.read(limit + 1)
        row = await store.create(owner, upload.filename or "upload.jsonl", purpose, data)
    return wire.file_object(row)


@router.get("/files")
async def list_files(
    request: Request,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
) -> dict[str, Any]:
    owner = await _owner(request)
    rows = await _store(request).list(owner, purpose=purpose, after=after, limit=limit + 1)
    data = [wire.file_object(r) for r in rows[:limit]]
    return wire.page(data, len(rows) > limit)


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, request: Request) -> dict[str, Any]:
    owner = await _owner(request)
    return wire.file_object(await _store(request).get(owner, file_id))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request) -> Response:
    owner = await _owner(request)
    data = await _store(request).content(owner, file_id)
    return Response(data, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    owner = await _owner(request)
    row = await _store(request).delete(owner, file_id)
    return {"id": row.id, "object": "file", "deleted": True}
