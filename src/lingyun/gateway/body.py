"""Reading a request body within a size limit: a body over it is refused before it is
read whole (a declared Content-Length first, then the bytes as they come)."""

from __future__ import annotations

from starlette.requests import Request

from lingyun.errors import RequestTooLargeError


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
