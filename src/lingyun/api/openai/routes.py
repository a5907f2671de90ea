"""The ``/v1`` surface: thin handlers that hand each request to the gateway pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from lingyun.gateway.pipeline import CHAT, COMPLETIONS, EMBEDDINGS, Gateway

router = APIRouter(prefix="/v1", tags=["openai"])


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    created = int(request.app.state.started_at)
    return {
        "object": "list",
        "data": [
            {"id": dep.name, "object": "model", "created": created, "owned_by": "lingyun"}
            for dep in gateway.catalog.visible(key)
        ],
    }


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    dep = gateway.catalog.resolve(key, model)
    created = int(request.app.state.started_at)
    return {"id": dep.name, "object": "model", "created": created, "owned_by": "lingyun"}


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _gateway(request).handle(request, CHAT)


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _gateway(request).handle(request, COMPLETIONS)


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _gateway(request).handle(request, EMBEDDINGS)
