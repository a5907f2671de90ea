"""Thin handlers over ``lingyun.batch.service.BatchService``; the key decides the owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lingyun.api.openai.batches.models import BatchCreateRequest
from lingyun.batch import wire
from lingyun.batch.service import BatchService, metadata_of, owner_of
from lingyun.gateway.pipeline import Gateway
from lingyun.tenancy.service import KeyInfo

router = APIRouter(prefix="/v1", tags=["batches"])


async def _key(request: Request) -> KeyInfo:
    gateway: Gateway = request.app.state.gateway
    return await gateway.authenticator.authenticate(request.headers.get("authorization"))


def _service(request: Request) -> BatchService:
    service: BatchService = request.app.state.batches
    return service


@router.post("/batches")
async def create_batch(body: BatchCreateRequest, request: Request) -> dict[str, Any]:
    key = await _key(request)
    expires = body.output_expires_after
    row = await _service(request).create(
        key,
        input_file_id=body.input_file_id,
        endpoint=body.endpoint,
        completion_window=body.completion_window,
        metadata=metadata_of(body.metadata),
        output_expires_after_s=expires.seconds if expires is not None else None,
    )
    return wire.batch_object(row)


@router.get("/batches")
async def list_batches(
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    key = await _key(request)
    rows, has_more = await _service(request).list(owner_of(key), after=after, limit=limit)
    return wire.page([wire.batch_object(r) for r in rows], has_more)


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request) -> dict[str, Any]:
    key = await _key(request)
    return wire.batch_object(await _service(request).get(owner_of(key), batch_id))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
    key = await _key(request)
    return wire.batch_object(await _service(request).cancel(owner_of(key), batch_id))
