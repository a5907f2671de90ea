"""Text generation over a backend, the same for every engine: validation of the sampling
parameters, ``n`` choices, stop strings, usage counting, and the two response forms.

Each choice is one backend stream. Stop strings are matched here, on text, so a stop that
spans tokens is found and the text before it is never sent; the matcher holds back a tail
that might still become a stop string. When a choice stops, its backend stream is closed,
which the backend turns into "stop generating".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from lingyun.engines.worker.backend import Delta, GenerationBackend, Prompt, SamplingParams
from lingyun.errors import UnsupportedParameterError
from lingyun.protocol.wire import ChatCompletionRequest, CompletionRequest

logger = logging.getLogger(__name__)

Event = tuple[int, Delta]


def _unsupported(param: str, what: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(f"This model does not support {what}.", param=param)


def check_features(
    req: ChatCompletionRequest | CompletionRequest, features: frozenset[str]
) -> None:
    """400 for parameters the backend cannot honour, rather than silently ignoring them."""
    if isinstance(req, ChatCompletionRequest):
        if req.tools and "tools" not in features:
            raise _unsupported("tools", "tools (function calling)")
        if req.tool_choice not in (None, "none") and "tools" not in features:
            raise _unsupported("tool_choice", "tool_choice")
        fmt = (req.response_format or {}).get("type", "text")
        if fmt != "text" and "response_format" not in features:
            raise _unsupported("response_format", f"response_format {fmt!r}")
        if req.logprobs and "logprobs" not in features:
            raise _unsupported("logprobs", "logprobs")
        if req.top_logprobs and "logprobs" not in features:
            raise _unsupported("top_logprobs", "top_logprobs")
    else:
        if req.logprobs is not None and "logprobs" not in features:
            raise _unsupported("logprobs", "logprobs")
        if req.echo and "echo" not in features:
            raise _unsupported("echo", "echo")
        if req.suffix and "suffix" not in features:
            raise _unsupported("suffix", "suffix")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) and "penalties" not in features:
            raise _unsupported(name, name)
    extra = req.model_extra or {}
    if extra.get("logit_bias") and "logit_bias" not in features:
        raise _unsupported("logit_bias", "logit_bias")
    if (extra.get("best_of") or 1) != 1 and "best_of" not in features:
        raise _unsupported("best_of", "best_of")


def sampling_params(
    req: ChatCompletionRequest | CompletionRequest, index: int, extra: dict[str, Any]
) -> SamplingParams:
    temperature = 1.0 if req.temperature is None else req.temperature
    seed = None if req.seed is None else req.seed + index
    return SamplingParams(
        max_tokens=req.output_limit(),
        temperature=temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=seed,
        index=index,
        extra=extra,
    )


class StopMatcher:
    """Cuts text at the first stop string, holding back tails that may start one."""

    __slots__ = ("_held", "_stops")

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return the text safe to send, and whether a stop string was hit."""
        buf = self._held + text
        hit = min((p for p in (buf.find(s) for s in self._stops) if p >= 0), default=-1)
        if hit >= 0:
            self._held = ""
            return buf[:hit], True
        keep = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


async def _with_stops(stream: AsyncIterator[Delta], stops: list[str]) -> AsyncIterator[Delta]:
    matcher = StopMatcher(stops)
    try:
        async for d in stream:
            text, hit = matcher.feed(d.text)
            if hit:
                yield Delta(text, d.tokens, "stop")
                return
            if d.finish_reason is not None:
                yield Delta(text + matcher.flush(), d.tokens, d.finish_reason)
                return
            yield Delta(text, d.tokens)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _single(stream: AsyncIterator[Delta], index: int) -> AsyncIterator[Event]:
    try:
        async for d in stream:
            yield index, d
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _merge(streams: list[tuple[int, AsyncIterator[Delta]]]) -> AsyncIterator[Event]:
    """Interleave several choices as their deltas come; cancelled together."""
    queue: asyncio.Queue[tuple[int, Delta | Exception | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Delta]) -> None:
        try:
            async for d in stream:
                queue.put_nowait((index, d))
            queue.put_nowait((index, None))
        except Exception as exc:
            queue.put_nowait((index, exc))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    tasks = [asyncio.create_task(pump(i, s)) for i, s in streams]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for t in tasks:
            t.cancel()


@dataclass
class Run:
    """All choices of one request, as one event stream, plus what usage needs."""

    events: AsyncIterator[Event]
    indices: list[int]
    prompt_tokens: int
    completion_tokens: int = 0
    finished: dict[int, str] = field(default_factory=dict)
    # Prompt tokens a prefix cache held; None when the backend has no cache to report.
    cached_tokens: int | None = None

    def usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage


def start_run(
    backend: GenerationBackend,
    req: ChatCompletionRequest | CompletionRequest,
    prompts: list[Prompt],
    extra: dict[str, Any],
    adapter: str | None = None,
) -> Run:
    """Start ``n`` choices per prompt (choice index = prompt * n + i, as OpenAI numbers them)."""
    stops = req.stop_list()
    streams: list[tuple[int, AsyncIterator[Delta]]] = []
    for p, prompt in enumerate(prompts):
        for i in range(req.n):
            index = p * req.n + i
            params = sampling_params(req, index, extra)
            if adapter is not None:
                params = replace(params, adapter=adapter)
            stream = backend.generate(prompt, params)
            streams.append((index, _with_stops(stream, stops) if stops else stream))
    # OpenAI counts a prompt once however many choices it has.
    prompt_tokens = sum(p.num_tokens for p in prompts)
    cached = [p.cached_tokens for p in prompts if p.cached_tokens is not None]
    events = _single(streams[0][1], streams[0][0]) if len(streams) == 1 else _merge(streams)
    return Run(
        events,
        [i for i, _ in streams],
        prompt_tokens,
        cached_tokens=sum(cached) if cached else None,
    )


async def collect(run: Run) -> dict[int, str]:
    """Drain a run for a non-streamed answer: the text of each choice."""
    parts: dict[int, list[str]] = {i: [] for i in run.indices}
    async for index, d in run.events:
        parts[index].append(d.text)
        run.completion_tokens += d.tokens
        if d.finish_reason is not None:
            run.finished[index] = d.finish_reason
    return {i: "".join(p) for i, p in parts.items()}
