"""Wire models of the OpenAI API, shared by the API, the gateway (validation) and our workers.

Requests allow unknown fields (``extra="allow"``) so engine-specific parameters pass through to
engines that understand them; the fields named here are the ones Lingyun checks itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lingyun.errors import InvalidRequestError

MAX_N = 16
# Bounds on numbers a client chooses: no model has a context past 2**20 tokens, and an
# unbounded count would make the reservation (price x bound) arbitrarily large. A
# deployment's own bound (``max_output_tokens``) is checked by the gateway after resolve.
MAX_OUTPUT_TOKENS = 1 << 20
MAX_DIMENSIONS = 1 << 16
T = TypeVar("T", bound=BaseModel)
MAX_STOP = 4
# The model name is stored with each usage row; PostgreSQL text cannot hold NUL, and one
# unstorable row would block the usage writer's batch, so NUL is refused here.
ModelName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Open):
    include_usage: bool = False
    # vLLM's extension: usage so far on every chunk, so a cut-off stream is still metered.
    continuous_usage_stats: bool = False


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, content parts of type ``text`` joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class _Sampling(_Open):
    model: ModelName
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = Field(default=None, max_length=256)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > MAX_STOP:
            raise InvalidRequestError(f"At most {MAX_STOP} stop sequences.", param="stop")
        return [s for s in stops if s]

    def wants_continuous_usage(self) -> bool:
        return bool(
            self.stream and self.stream_options and self.stream_options.continuous_usage_stats
        )

    def wants_usage_chunk(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def output_limit(self) -> int | None:
        """``max_completion_tokens`` supersedes the deprecated ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1, le=MAX_OUTPUT_TOKENS)
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def output_limit(self) -> int | None:
        return self.max_tokens

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompt as a batch: strings, or token-id lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise InvalidRequestError("prompt must not be empty.", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [cast(list[int], list(p))]
        return cast(list[str] | list[list[int]], list(p))


class EmbeddingRequest(_Open):
    model: ModelName
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    user: str | None = Field(default=None, max_length=256)

    def inputs(self) -> list[str] | list[list[int]]:
        i = self.input
        if isinstance(i, str):
            items: list[Any] = [i]
        elif i and all(isinstance(x, int) for x in i):
            items = [list(i)]
        else:
            items = list(i)
        if not items or any(len(x) == 0 for x in items):
            raise InvalidRequestError("input must not be empty.", param="input")
        return items


class RerankDocument(_Open):
    text: str


class RerankRequest(_Open):
    """``/v1/rerank`` in the Cohere/Jina shape (also vLLM's and DashScope gte-rerank's)."""

    model: ModelName
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=1000)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = True

    def texts(self) -> list[str]:
        texts = [d if isinstance(d, str) else d.text for d in self.documents]
        if any(not t.strip() for t in texts) or not self.query.strip():
            raise InvalidRequestError("query and documents must not be empty.", param="documents")
        return texts


def _param(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "list[dict[str,any]]"):
            break  # union branch names say nothing to a client
        else:
            out += f".{part}" if out else str(part)
    return out or None


def parse_request(model: type[T], body: bytes) -> T:
    """Validate a request body, turning pydantic's errors into one OpenAI-shaped 400."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidRequestError(
                "We could not parse the JSON body of your request.", code="invalid_json"
            ) from None
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidRequestError("The request body must be a JSON object.") from None
        param = _param(tuple(first["loc"]))
        message = f"Invalid value for '{param}': {first['msg']}." if param else first["msg"]
        code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
        raise InvalidRequestError(message, param=param, code=code) from None
