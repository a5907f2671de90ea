"""STAND-IN servers for the public AI clouds' OpenAI-compatible modes. Not the real services.

Each stand-in is a small FastAPI app that imitates what one provider *documents*: its path
prefix, its auth header check, its model-id rule, usage only in the last stream chunk when
``stream_options.include_usage`` is asked, and its own error bodies (sources in each
provider's dialect module under ``lingyun/engines/upstream``). Tests aim a preset at one by
setting ``base_url``, so the code under test is exactly what production runs.

Errors that need no trick happen for real: a wrong key, a wrong model id, an empty
``messages``. The rest are asked for by a last user message ``standin:<kind>``, where kind
is a key of the provider's ``errors`` table (``rate_limit``, ``content``, ``inband_qps`` ...);
that works through the gateway too, since the relay forwards the client's body.

Where a provider's documentation gave no sample body (Hunyuan's codes), the body below is
illustrative and says so.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

STANDIN_KEY = "sk-standin-0123456789"
REPLY = "Hello from the stand-in."
RID = "standin-req-42"


@dataclass(frozen=True)
class Reply:
    """A canned error: HTTP status and JSON body (status 200 for in-band errors)."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class StandinSpec:
    """One provider's documented protocol, as far as the stand-in imitates it."""

    name: str
    prefixes: tuple[str, ...]
    models: frozenset[str]
    # Key kinds: "auth" (wrong key), "model" (unknown model), "bad_request" (empty messages),
    # and any further kinds a test asks for with ``standin:<kind>``.
    errors: dict[str, Reply]
    # Extra accepted model ids, e.g. Ark inference endpoint ids.
    model_pattern: re.Pattern[str] | None = None
    # Kinds that fail *during* a stream, after some content was sent, as a data chunk.
    stream_errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def knows(self, model: str) -> bool:
        return model in self.models or bool(self.model_pattern and self.model_pattern.match(model))


def _oai(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# fmt: off
# One entry per documented error; ruff format would spread these tables over 250 lines.
DASHSCOPE = StandinSpec(
    name="dashscope",
    prefixes=("/compatible-mode/v1",),
    models=frozenset({"qwen-plus", "qwen-turbo"}),
    errors={
        "auth": Reply(401, _oai("Incorrect API key provided. ", "invalid_request_error",
                                "invalid_api_key") | {"request_id": RID}),
        "model": Reply(404, _oai("The model `x` does not exist or you do not have access to it.",
                                 "invalid_request_error", "model_not_found")),
        "bad_request": Reply(400, _oai("<400> InternalError.Algo.InvalidParameter: Empty input",
                                       "invalid_request_error", "invalid_parameter_error")),
        "rate_limit": Reply(429, _oai("Requests rate limit exceeded, please try again later.",
                                      "limit_requests", "limit_requests") | {"request_id": RID}),
        "content": Reply(400, _oai("Input data may contain inappropriate content.",
                                   "data_inspection_failed", "data_inspection_failed")),
        "arrears": Reply(400, _oai("Access denied, please make sure your account is in good "
                                   "standing.", "Arrearage", "Arrearage")),
        "server": Reply(500, _oai("An internal error has occured, please try again later.",
                                  "internal_error", "InternalError")),
    },
    stream_errors={
        "content_stream": _oai("Output data may contain inappropriate content.",
                               "data_inspection_failed", "data_inspection_failed"),
    },
)


def _ark(status: int, type_: str, code: str, message: str) -> Reply:
    return Reply(status, _oai(f"{message} Request id: {RID}", type_, code, ""))


ARK = StandinSpec(
    name="ark",
    prefixes=("/api/v3",),
    models=frozenset({"doubao-seed-1-6-250615"}),
    # Inference endpoint ids look like ep-20240611104225-abcde.
    model_pattern=re.compile(r"^ep-\d{14}-[a-z0-9]{5}$"),
    errors={
        "auth": _ark(401, "Unauthorized", "AuthenticationError",
                     "The API key in the request is missing or invalid."),
        "model": _ark(404, "NotFound", "InvalidEndpointOrModel.NotFound",
                      "The model or endpoint does not exist or you do not have access to it."),
        "bad_request": _ark(400, "BadRequest", "MissingParameter",
                            "The request failed because it is missing one or multiple "
                            "required parameters."),
        "rate_limit": _ark(429, "TooManyRequests", "RateLimitExceeded.EndpointRPMExceeded",
                           "The Requests Per Minute (RPM) limit of the associated endpoint "
                           "for your account has been exceeded."),
        "content": _ark(400, "BadRequest", "SensitiveContentDetected",
                        "The request failed because the input text may contain sensitive "
                        "information."),
        "overdue": _ark(403, "Forbidden", "AccountOverdueError",
                        "The request failed because your account has an overdue balance."),
        "server": _ark(500, "InternalServerError", "InternalServiceError",
                       "The service encountered an unexpected internal error."),
    },
)


def _maas(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error_code": code, "error_msg": message})


MODELARTS = StandinSpec(
    name="modelarts",
    prefixes=("/v1", "/v2"),
    models=frozenset({"deepseek-v3.1", "qwen3-32b"}),
    errors={
        "no_header": _maas(400, "ModelArts.81002", "Failed to get the authorization header."),
        "auth": _maas(401, "ModelArts.81003", "Invalid authorization header."),
        "model": _maas(404, "ModelArts.81009", "Invalid model."),
        "bad_request": Reply(400, {"object": "error", "type": "BadRequestError", "param": None,
                                   "message": "[{'type': 'missing', 'loc': ('body', "
                                              "'messages'), 'msg': 'Field required'}]",
                                   "code": 400}),
        "rate_limit": _maas(429, "ModelArts.81101",
                            "Too many requests, exceeded rate limit is 10 times per minute."),
        "content": _maas(403, "ModelArts.81011",
                         "May contain sensitive information, please try again."),
        "free_quota": _maas(401, "ModelArts.81005", "The free quota has been used up."),
        "timeout": _maas(504, "APIG.0203", "Backend timeout"),
    },
)

HUNYUAN = StandinSpec(
    name="hunyuan",
    prefixes=("/v1",),
    models=frozenset({"hunyuan-turbos-latest", "hunyuan-lite"}),
    # Shape verified from a real reply quoted in FoundationAgents/OpenManus#894 (code "1001"
    # for a bad request). The auth, model, rate-limit and server codes are ILLUSTRATIVE:
    # Tencent's code table was not available to us, and the dialect maps them by HTTP status.
    errors={
        "auth": Reply(401, _oai("Invalid API key (illustrative).", "invalid_request_error",
                                "4001") | {"id": RID}),
        "model": Reply(404, _oai("Model not found (illustrative).", "invalid_request_error",
                                 "4004")),
        "bad_request": Reply(400, {"error": {
            "id": RID, "type": "invalid_request_error", "param": None, "code": "1001",
            "message": "messages 中 user(tool) 和 assistant 角色需交替出现 (一问一答)"}}),
        "rate_limit": Reply(429, _oai("Too many requests (illustrative).", "rate_limit_error",
                                      "2003")),
        "server": Reply(500, _oai("Internal error (illustrative).", "api_error", "5000")),
    },
)


def _qf(status: int, code: str, message: str, type_: str = "invalid_request_error") -> Reply:
    error = {"code": code, "message": message, "type": type_}
    return Reply(status, {"error": error, "id": "as-" + RID})


def _v1(body: dict[str, Any]) -> Reply:
    return Reply(200, body)  # Qianfan's v1 codes come inside an HTTP 200


QIANFAN = StandinSpec(
    name="qianfan",
    prefixes=("/v2",),
    models=frozenset({"ernie-4.0-8k", "ernie-speed-128k"}),
    errors={
        "auth": _qf(401, "invalid_iam_token", "IAM Certification failed"),
        "model": _qf(400, "invalid_model", "model is not exist or no permission"),
        "bad_request": _qf(400, "invalid_messages", "messages must not be empty"),
        "rate_limit": _qf(429, "rpm_rate_limit_exceeded", "Rate limit reached for RPM",
                          "rate_limit_exceeded"),
        "too_long": _qf(400, "tokens_too_long", "Prompt tokens too long"),
        "inband_qps": _v1({"error_code": 18, "error_msg": "Open api qps request limit reached"}),
        "inband_rpm": _v1({"code": 336501, "msg": "Rate limit reached for RPM"}),
        "inband_daily": _v1({"error_code": 17,
                             "error_msg": "Open api daily request limit reached"}),
        "inband_token": _v1({"error_code": 110,
                             "error_msg": "Access token invalid or no longer valid"}),
        "inband_internal": _v1({"error_code": 336000, "error_msg": "Internal error"}),
    },
)

OPENAI = StandinSpec(
    name="openai",
    prefixes=("/v1",),
    models=frozenset({"gpt-4o-mini"}),
    errors={
        "auth": Reply(401, _oai("Incorrect API key provided: sk-stand***6789.",
                                "invalid_request_error", "invalid_api_key")),
        "model": Reply(404, _oai("The model `x` does not exist or you do not have access to it.",
                                 "invalid_request_error", "model_not_found")),
        "bad_request": Reply(400, _oai("[] is too short - 'messages'", "invalid_request_error",
                                       None, "messages")),
        "rate_limit": Reply(429, _oai("Rate limit reached for requests.", "requests",
                                      "rate_limit_exceeded")),
        "quota": Reply(429, _oai("You exceeded your current quota.", "insufficient_quota",
                                 "insufficient_quota")),
        "context": Reply(400, _oai("This model's maximum context length is 128000 tokens.",
                                   "invalid_request_error", "context_length_exceeded",
                                   "messages")),
    },
)
# fmt: on

STANDINS: dict[str, StandinSpec] = {
    s.name: s for s in (DASHSCOPE, ARK, MODELARTS, HUNYUAN, QIANFAN, OPENAI)
}


def _completion(model: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + RID,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _chunks(model: str, usage: dict[str, int] | None, fail: dict[str, Any] | None) -> Iterator[str]:
    base = {"id": "chatcmpl-" + RID, "object": "chat.completion.chunk", "model": model}
    extra: dict[str, Any] = {"usage": None} if usage is not None else {}
    words = REPLY.split(" ")
    for i, word in enumerate(words):
        delta: dict[str, Any] = {"content": word if i == 0 else " " + word}
        if i == 0:
            delta["role"] = "assistant"
        yield _sse(
            base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} | extra
        )
        if fail is not None and i == 1:
            yield _sse(fail)
            return
    yield _sse(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]} | extra)
    if usage is not None:
        yield _sse(base | {"choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def build_app(spec: StandinSpec, api_key: str = STANDIN_KEY) -> FastAPI:
    """The STAND-IN app for ``spec``: ``POST {prefix}/chat/completions`` and ``GET .../models``."""
    app = FastAPI(title=f"STAND-IN {spec.name}")

    def refuse(kind: str) -> JSONResponse:
        reply = spec.errors[kind]
        return JSONResponse(reply.body, status_code=reply.status)

    async def chat(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return refuse("no_header" if "no_header" in spec.errors else "auth")
        if auth.removeprefix("Bearer ").strip() != api_key:
            return refuse("auth")
        body = await request.json()
        if not spec.knows(str(body.get("model", ""))):
            return refuse("model")
        messages = body.get("messages") or []
        if not messages:
            return refuse("bad_request")
        text = str(messages[-1].get("content", ""))
        kind = text.removeprefix("standin:") if text.startswith("standin:") else None
        if kind is not None and kind in spec.errors:
            return refuse(kind)
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        if not body.get("stream"):
            return JSONResponse(_completion(body["model"], usage))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        fail = spec.stream_errors.get(kind) if kind else None
        chunks = _chunks(body["model"], usage if wants_usage else None, fail)
        return StreamingResponse(chunks, media_type="text/event-stream")

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": spec.name} for m in sorted(spec.models)]
        return JSONResponse({"object": "list", "data": data})

    for prefix in spec.prefixes:
        app.add_api_route(f"{prefix}/chat/completions", chat, methods=["POST"])
        app.add_api_route(f"{prefix}/models", models, methods=["GET"])
    return app


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port in a thread; yield its root URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait(lambda: server.started, "stand-in did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait(ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(0.01)
