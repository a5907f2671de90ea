"""The one object a request carries through the pipeline stages."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.gateway.reply import ReplyLog
    from lingyun.observability.otel import Trace
    from lingyun.observability.transcript import Transcript
    from lingyun.serving.replica import Replica
    from lingyun.tenancy.service import KeyInfo


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # True once an engine reported usage; otherwise the counts are our own estimate.
    reported: bool = False


@dataclass
class RequestContext:
    endpoint: str  # "chat.completions" | "completions" | "embeddings"
    body: dict[str, Any]
    stream: bool
    # Did the client ask for the final usage chunk? (We always ask the engine for it.)
    client_wants_usage: bool
    # Upper bound on output tokens, for admission's worst case; None = engine default.
    max_output_tokens: int | None
    # Did the client ask for usage on every chunk (vLLM's continuous_usage_stats)?
    client_continuous_usage: bool = False
    # Size of the request body: an upper bound on its prompt tokens.
    body_bytes: int = 0
    # Choices asked for (n): the output bound is per choice.
    choices: int = 1
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    key: KeyInfo | None = None
    # The client's X-Session-ID header, for session-affinity routing.
    session_id: str | None = None
    model: str = ""
    deployment: DeploymentConfig | None = None
    # The LoRA adapter the replica is asked for instead of its base model (resolve.py).
    adapter: str | None = None
    replica: Replica | None = None
    usage: Usage = field(default_factory=Usage)
    first_byte_at: float | None = None
    # Headers every stage may add to the client's response (rate-limit state, for one).
    response_headers: dict[str, str] = field(default_factory=dict)
    status_code: int = 200
    error_code: str | None = None
    # Set once a stream reached its end ([DONE] or an error event) rather than being cut off.
    stream_ended: bool = False
    # The billing reservation, when metering is on (lingyun.metering.holds.Hold).
    hold: object | None = None
    # Content pieces streamed so far: the fallback count when an engine reports no usage.
    streamed_pieces: int = 0
    # Called with the number of output tokens each time content streams (the fair queue
    # charges its tenant's virtual counter as tokens flow, not only at the end).
    token_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # observability: the client's own X-Request-ID (validated), and timings for the log.
    client_request_id: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    # Mid-stream failover (gateway/resume.py): the reply as the client got it, when it may
    # continue on a sibling, and the edit that makes a continuation's chunks read as the
    # first stream's.
    reply: ReplyLog | None = None
    stitch: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    # Priority band: "interactive" (the API) or "batch" (a Batch API line, run in spare
    # capacity and priced at the model's batch multiplier).
    lane: str = "interactive"
    # The request's spans when traces are on (observability/tracing.py), else None.
    trace: Trace | None = None
    # Prompt and completion text, only for a project with prompt logging on (else None).
    transcript: Transcript | None = None

    def retarget(self, model: str, attempt: int) -> RequestContext:
        """A fresh context for the same request sent to a fallback model: its own id (so
        its own reservation and ledger entry), the same key, body and start time."""
        return RequestContext(
            endpoint=self.endpoint,
            body={**self.body, "model": model},
            stream=self.stream,
            client_wants_usage=self.client_wants_usage,
            max_output_tokens=self.max_output_tokens,
            client_continuous_usage=self.client_continuous_usage,
            body_bytes=self.body_bytes,
            choices=self.choices,
            request_id=f"{self.request_id.split('.')[0]}.{attempt}",
            started=self.started,
            key=self.key,
            session_id=self.session_id,
            model=model,
            client_request_id=self.client_request_id,
            lane=self.lane,
            trace=self.trace,
        )

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def ttft_ms(self) -> float | None:
        if self.first_byte_at is None:
            return None
        return (self.first_byte_at - self.started) * 1000
