"""The worker's FastAPI app: OpenAI's HTTP API over one loaded backend.

``GET /health`` answers 200 only when the backend is loaded; the CLI loads the model before
the port listens, so "not listening" means "still loading". Errors before the first streamed
byte are JSON with a status (the gateway may retry them on another replica); after it they are
an SSE ``data: {"error": ...}`` event and the stream ends without ``[DONE]``.

A client that goes away stops its generation: while streaming, Starlette cancels the response
(ASGI spec < 2.4 listens for ``http.disconnect``); before the first byte and for non-streamed
answers we race the work against ``http.disconnect`` ourselves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lingyun.engines.worker import continuation, sse
from lingyun.engines.worker.auth import RequireSecret
from lingyun.engines.worker.backend import (
    Backend,
    EmbeddingBackend,
    GenerationBackend,
    Prompt,
)
from lingyun.engines.worker.generate import Event, Run, check_features, collect, start_run
from lingyun.engines.worker.metrics import CONTENT_TYPE, exposition
from lingyun.engines.worker.rerank import rerank
from lingyun.engines.worker.usage_log import UsageLog
from lingyun.errors import InvalidRequestError, LingyunError, NotFoundError
from lingyun.protocol.errors import install_error_handlers
from lingyun.protocol.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    parse_request,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client disconnected before we answered."""


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientGone
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Let the cancellation finish, so a generator it was driving can be closed next.
            await asyncio.wait((task,))


def _so_far(
    req: ChatCompletionRequest | CompletionRequest, run: Run
) -> Callable[[], dict[str, Any]] | None:
    return run.usage if req.wants_continuous_usage() else None


def _extra_fields(req: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    return dict(req.model_extra or {})


class Worker:
    """Request handling bound to one backend and one served model name."""

    def __init__(
        self, backend: Backend, served_model_name: str, usage_log: str | None = None
    ) -> None:
        self.backend = backend
        self.usage_log = UsageLog(usage_log) if usage_log else None
        self.model = served_model_name
        self.created = int(time.time())
        self.gen = backend if isinstance(backend, GenerationBackend) else None
        self.emb = backend if isinstance(backend, EmbeddingBackend) else None

    def _adapters(self) -> set[str]:
        names: Any = getattr(self.backend, "adapters", None) or {}
        return set(names)

    def _check_model(self, model: str) -> str | None:
        """The LoRA adapter ``model`` names (None: the base model); 404 if neither."""
        if model == self.model:
            return None
        if model in self._adapters():
            return model
        raise NotFoundError(
            f"The model '{model}' does not exist; this worker serves '{self.model}'.",
            param="model",
        )

    def _generator(self, endpoint: str) -> GenerationBackend:
        if self.gen is None:
            raise InvalidRequestError(
                f"The model '{self.model}' is an embedding model and does not support "
                f"{endpoint}; use /v1/embeddings.",
                param="model",
                code="model_not_supported",
            )
        return self.gen

    async def chat(self, request: Request) -> Response:
        req = parse_request(ChatCompletionRequest, await request.body())
        adapter = self._check_model(req.model)
        gen = self._generator("/v1/chat/completions")
        check_features(req, gen.features)
        prompt = continuation.chat_prompt(gen, req)  # continue_final_message, too
        run = start_run(gen, req, [prompt], _extra_fields(req), adapter=adapter)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        name = adapter or self.model
        if req.stream:
            enc = sse.ChatChunkEncoder(
                rid, int(time.time()), name, req.wants_usage_chunk(), _so_far(req, run)
            )
            return await self._stream(request, run, enc, req.wants_usage_chunk())
        texts = await self._collect(request, run)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": texts[i], "refusal": None},
                "logprobs": None,
                "finish_reason": run.finished.get(i, "stop"),
            }
            for i in run.indices
        ]
        return JSONResponse(self._body(rid, "chat.completion", choices, run, name))

    async def completions(self, request: Request) -> Response:
        req = parse_request(CompletionRequest, await request.body())
        adapter = self._check_model(req.model)
        gen = self._generator("/v1/completions")
        check_features(req, gen.features)
        prompts: list[Prompt] = [gen.completion_prompt(p) for p in req.prompts()]
        run = start_run(gen, req, prompts, _extra_fields(req), adapter=adapter)
        rid = f"cmpl-{uuid.uuid4().hex}"
        name = adapter or self.model
        if req.stream:
            enc = sse.CompletionChunkEncoder(
                rid, int(time.time()), name, req.wants_usage_chunk(), _so_far(req, run)
            )
            return await self._stream(request, run, enc, req.wants_usage_chunk())
        texts = await self._collect(request, run)
        choices = [
            {
                "index": i,
                "text": texts[i],
                "logprobs": None,
                "finish_reason": run.finished.get(i, "stop"),
            }
            for i in run.indices
        ]
        return JSONResponse(self._body(rid, "text_completion", choices, run, name))

    async def _collect(self, request: Request, run: Run) -> dict[int, str]:
        outcome = "cancelled"
        try:
            texts = await until_disconnect(request, collect(run))
            outcome = "served"
            return texts
        except LingyunError:
            outcome = "failed"
            raise
        finally:
            self._log(request, run, outcome)

    def _log(self, request: Request, run: Run, outcome: str) -> None:
        if self.usage_log is not None:
            self.usage_log.write(request.headers, run.usage(), outcome)

    def _body(
        self, rid: str, obj: str, choices: list[dict[str, Any]], run: Run, model: str
    ) -> dict[str, Any]:
        return {
            "id": rid,
            "object": obj,
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
            "usage": run.usage(),
        }

    async def _stream(
        self, request: Request, run: Run, enc: sse.ChunkEncoder, include_usage: bool
    ) -> Response:
        # Wait for the first delta before sending headers, so early failures get a status.
        events = run.events
        try:
            first = await until_disconnect(request, anext(events, None))
        except BaseException:
            await events.aclose()  # type: ignore[attr-defined]
            raise
        body = _sse_body(run, enc, first, include_usage, lambda o: self._log(request, run, o))
        return _ClosingStreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def embeddings(self, request: Request) -> Response:
        req = parse_request(EmbeddingRequest, await request.body())
        self._check_model(req.model)
        if self.emb is None:
            raise InvalidRequestError(
                f"The model '{self.model}' is a generative model and does not support "
                "/v1/embeddings.",
                param="model",
                code="model_not_supported",
            )
        result = await until_disconnect(request, self.emb.embed(req.inputs(), req.dimensions))
        data: list[dict[str, Any]] = []
        for i, vec in enumerate(result.vectors):
            value: Any
            if req.encoding_format == "base64":
                value = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
            else:
                value = [float(x) for x in vec]
            data.append({"object": "embedding", "index": i, "embedding": value})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": self.model,
                "usage": {
                    "prompt_tokens": result.prompt_tokens,
                    "total_tokens": result.prompt_tokens,
                },
            }
        )

    async def rerank(self, request: Request) -> Response:
        req = parse_request(RerankRequest, await request.body())
        self._check_model(req.model)
        if self.emb is None:
            msg = f"The model '{self.model}' is a generative model; it cannot /v1/rerank."
            raise InvalidRequestError(msg, param="model", code="model_not_supported")
        return JSONResponse(await until_disconnect(request, rerank(self.emb, req, self.model)))

    def models(self) -> dict[str, Any]:
        card = {"id": self.model, "object": "model", "created": self.created, "owned_by": "lingyun"}
        cards = [card] + [
            {**card, "id": name, "parent": self.model} for name in sorted(self._adapters())
        ]
        return {"object": "list", "data": cards}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model,
            "backend": self.backend.name,
            **self.backend.health(),
        }


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body generator however the response ends.

    On a client disconnect Starlette cancels the task sending the body; if that happened
    during a send, the generator would be left suspended and only closed by the garbage
    collector. Closing it here stops the generation at once.
    """

    def __init__(self, content: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._body = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._body.aclose()


async def _sse_body(
    run: Run,
    enc: sse.ChunkEncoder,
    first: Event | None,
    include_usage: bool,
    on_end: Callable[[str], None],
) -> AsyncGenerator[bytes, None]:
    events = run.events
    outcome = "cancelled"  # unless it reaches its end or fails
    try:
        for index in run.indices:
            head = enc.start(index)
            if head is not None:
                yield head
        pending = first
        while pending is not None:
            index, d = pending
            run.completion_tokens += d.tokens
            if d.text:
                yield enc.text(index, d.text)
            if d.finish_reason is not None:
                run.finished[index] = d.finish_reason
                yield enc.finish(index, d.finish_reason)
            pending = await anext(events, None)
        for index in run.indices:
            if index not in run.finished:  # a backend ended without a reason
                yield enc.finish(index, "stop")
        outcome = "served"
        if include_usage:
            yield enc.usage(run.usage())
        yield sse.DONE
    except LingyunError as exc:
        outcome = "failed"
        logger.warning("stream failed after its first byte: %s", exc.message)
        yield sse.error_event(exc)
    except Exception:
        outcome = "failed"
        logger.exception("stream failed after its first byte")
        yield sse.error_event(LingyunError("The server had an error while generating."))
    finally:
        on_end(outcome)
        await events.aclose()  # type: ignore[attr-defined]


def create_app(
    backend: Backend,
    served_model_name: str,
    usage_log: str | None = None,
    secret: str | None = None,
) -> FastAPI:
    """The app for one loaded backend; the backend is closed when the app shuts down.
    With ``secret``, every request must carry ``Authorization: Bearer <secret>``."""
    worker = Worker(backend, served_model_name, usage_log)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = FastAPI(
        title="Lingyun worker",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # per-request env reads
    )
    install_error_handlers(app)
    if secret is not None:
        app.add_middleware(RequireSecret, secret=secret)

    def route(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientGone:
                return Response(status_code=CLIENT_CLOSED)

        return endpoint

    posts = {
        "/v1/chat/completions": worker.chat,
        "/v1/completions": worker.completions,
        "/v1/embeddings": worker.embeddings,
        "/v1/rerank": worker.rerank,
    }
    for path, handler in posts.items():
        app.add_api_route(path, route(handler), methods=["POST"], response_model=None)
    app.add_api_route("/v1/models", worker.models, methods=["GET"], response_model=None)
    app.add_api_route("/health", worker.health, methods=["GET"], response_model=None)

    def metrics() -> Response:  # load signals in vLLM's names (engines/worker/metrics.py)
        return Response(exposition(backend, served_model_name), media_type=CONTENT_TYPE)

    app.add_api_route("/metrics", metrics, methods=["GET"], response_model=None)
    app.state.worker = worker
    return app
