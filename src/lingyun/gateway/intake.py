"""What a request is before the stages run: its endpoint, its bounded body, its context."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request

from lingyun.errors import RequestTooLargeError
from lingyun.gateway.context import RequestContext
from lingyun.protocol.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: type[BaseModel]


CHAT = Endpoint("chat.completions", ChatCompletionRequest)
COMPLETIONS = Endpoint("completions", CompletionRequest)
EMBEDDINGS = Endpoint("embeddings", EmbeddingRequest)
RERANK = Endpoint("rerank", RerankRequest)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing one over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"Request body is larger than the limit of {limit} bytes.")


def context_for(endpoint: Endpoint, parsed: BaseModel, body_bytes: int) -> RequestContext:
    ctx = _context_of(endpoint, parsed)
    ctx.body_bytes = body_bytes
    return ctx


def _context_of(endpoint: Endpoint, parsed: BaseModel) -> RequestContext:
    body = parsed.model_dump(exclude_unset=True)
    body["model"] = parsed.model  # type: ignore[attr-defined]
    if isinstance(parsed, ChatCompletionRequest | CompletionRequest):
        parsed.stop_list()  # validates the count
        return RequestContext(
            endpoint=endpoint.name,
            body=body,
            stream=parsed.stream,
            client_wants_usage=parsed.wants_usage_chunk(),
            client_continuous_usage=parsed.wants_continuous_usage(),
            max_output_tokens=parsed.output_limit(),
            choices=parsed.n,
        )
    if isinstance(parsed, EmbeddingRequest):
        parsed.inputs()  # validates emptiness
    if isinstance(parsed, RerankRequest):
        parsed.texts()
    return RequestContext(
        endpoint=endpoint.name,
        body=body,
        stream=False,
        client_wants_usage=False,
        client_continuous_usage=False,
        max_output_tokens=0,
    )
