"""The ``/v1`` surface: thin handlers that hand each request to the gateway pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from lingyun.gateway.intake import CHAT, COMPLETIONS, EMBEDDINGS, RERANK
from lingyun.gateway.pipeline import Gateway
from lingyun.protocol.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)

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
            {"id": name, "object": "model", "created": created, "owned_by": "lingyun"}
            for name in gateway.catalog.visible_names(key)
        ],
    }


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    key = await gateway.authenticator.authenticate(request.headers.get("authorization"))
    gateway.catalog.resolve(key, model)
    created = int(request.app.state.started_at)
    name = gateway.catalog.canonical(model)
    return {"id": name, "object": "model", "created": created, "owned_by": "lingyun"}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI requestBody for a route that reads its body itself (the gateway parses it
    after authenticating), with the model's ``$defs`` inlined so the schema stands alone."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


@router.post("/chat/completions", openapi_extra=_body(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    return await _gateway(request).handle(request, CHAT)


@router.post("/completions", openapi_extra=_body(CompletionRequest))
async def completions(request: Request) -> Response:
    return await _gateway(request).handle(request, COMPLETIONS)


@router.post("/embeddings", openapi_extra=_body(EmbeddingRequest))
async def embeddings(request: Request) -> Response:
    return await _gateway(request).handle(request, EMBEDDINGS)


@router.post("/rerank", openapi_extra=_body(RerankRequest))
async def rerank(request: Request) -> Response:
    """Cohere/Jina-shaped reranking, passed through to engines that have it."""
    return await _gateway(request).handle(request, RERANK)
