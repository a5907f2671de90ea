"""The simulator: a stand-in for a GPU engine in load tests, with no model at all.

It streams deterministic text (cycling words chosen by a hash of the prompt: the same request
gives the same text) at a configured pace, and counts tokens deterministically, so the
gateway's queueing, routing, relaying and metering can be driven at thousands of requests per
second on a laptop. It also serves embeddings (hash vectors) so benchmarks can use one worker.

Arguments (``--args`` JSON): ``ttft_ms`` (0) delay before the first token, ``itl_ms`` (0)
delay between tokens, ``output_tokens`` (16) length when a request sets no limit (ending with
finish_reason "stop"; a request's max_tokens ends with "length"), ``dim`` (64) embedding size.

A stand-in prefix cache (``prefix_cache.py``): ``prefix_cache_tokens`` (0: no cache, the
default) bounds an LRU of prompt blocks of ``prefix_block_tokens`` (16) tokens;
``prefill_ms_per_token`` (0) is the cost of each prompt token not found there, so
TTFT = ``ttft_ms`` + ``prefill_ms_per_token`` x uncached prompt tokens, and usage reports the
hit as ``prompt_tokens_details.cached_tokens``. Prefill is compute-bound on a real GPU, so
``prefill_slots`` (1) prefills run at a time per replica and the rest queue: a replica that
gets too much of the traffic shows it in its TTFT, as a hot spot does. ``max_running`` (0:
unbounded) caps the sequences a replica runs at once, as an engine's batch and KV cache do;
the rest wait, and ``/health`` reports them as ``waiting``.

Extra request fields for tests: ``sim_fail_after`` (abort with a server error after that many
tokens), ``sim_crash_after`` (``os._exit(1)`` after that many tokens: a dying replica),
``sim_stall_after`` (stop producing after that many tokens, as a hung engine does),
``sim_ttft_ms`` / ``sim_itl_ms`` (override the pace for one request).

``continue_final_message`` (vLLM's option, as the gateway's mid-stream failover sends it):
the reply resumes after the text's tokens that the final assistant message already holds,
so a continued stream equals an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any

from lingyun.engines.worker.backend import Delta, Embeddings, Prompt, SamplingParams, arg
from lingyun.engines.worker.prefix_cache import DEFAULT_BLOCK_TOKENS, PrefixCache
from lingyun.errors import InvalidRequestError, LingyunError
from lingyun.protocol.wire import ChatMessage

logger = logging.getLogger(__name__)

_TEXT = """the cloud serves models to many tenants and meters every token while the gateway
routes each request to a healthy replica 凌云 模型 token stream latency batch queue fair
budget ledger price usage reply answer model engine worker"""
_WORDS = tuple(_TEXT.split())
# Precomputed token texts: the first token has no leading space.
_FIRST = tuple(_WORDS)
_NEXT = tuple(" " + w for w in _WORDS)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]")


STALL_S = 300.0


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: ASCII words, and every other character."""
    return len(_TOKEN_RE.findall(text))


class SimulatorBackend:
    """Deterministic fake engine; see the module docstring."""

    name = "simulator"
    features: frozenset[str] = frozenset()

    def __init__(self, args: dict[str, Any]) -> None:
        self.ttft = float(arg(args, "ttft_ms", float, 0.0)) / 1000
        self.itl = float(arg(args, "itl_ms", float, 0.0)) / 1000
        self.output_tokens = int(arg(args, "output_tokens", int, 16))
        self.dim = int(arg(args, "dim", int, 64))
        if self.output_tokens < 1 or self.dim < 1 or self.ttft < 0 or self.itl < 0:
            raise ValueError("Simulator arguments must be positive (output_tokens, dim >= 1).")
        self.prefill_per_token = float(arg(args, "prefill_ms_per_token", float, 0.0)) / 1000
        slots = int(arg(args, "prefill_slots", int, 1))
        if self.prefill_per_token < 0 or slots < 1:
            raise ValueError("prefill_ms_per_token must be >= 0 and prefill_slots >= 1.")
        self.cache = PrefixCache(
            int(arg(args, "prefix_cache_tokens", int, 0)),
            int(arg(args, "prefix_block_tokens", int, DEFAULT_BLOCK_TOKENS)),
        )
        self._prefill = asyncio.Semaphore(slots)
        running = int(arg(args, "max_running", int, 0))
        if running < 0:
            raise ValueError("max_running must be >= 0 (0: unbounded).")
        self._running = asyncio.Semaphore(running) if running else None
        self.active = 0
        self.waiting = 0
        self.generated_tokens = 0
        self.started = 0  # sequences ever asked for: what reached this engine at all

    def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "active": self.active,
            "waiting": self.waiting,
            "generated_tokens": self.generated_tokens,
            "started": self.started,
        }
        if self.cache.enabled:
            info["prefix_cache"] = {
                "blocks": len(self.cache),
                "capacity_blocks": self.cache.capacity_blocks,
                "query_tokens": self.cache.queries,
                "hit_tokens": self.cache.hits,
            }
        return info

    async def aclose(self) -> None:
        return None

    def chat_prompt(self, messages: list[ChatMessage]) -> Prompt:
        text = "\n".join(f"{m.role}: {m.text()}" for m in messages)
        # The token sequence a ChatML-like template would give: 4 per message, 2 to end.
        tokens: list[str] = []
        for m in messages:
            tokens += ["<|im_start|>", m.role, "\n", *_TOKEN_RE.findall(m.text()), "<|im_end|>"]
        tokens += ["<|im_start|>", "assistant"]
        return self._cached(Prompt(text, None, len(tokens)), tokens, chat=True)

    def completion_prompt(self, prompt: str | list[int]) -> Prompt:
        if isinstance(prompt, str):
            tokens = _TOKEN_RE.findall(prompt)
            return self._cached(Prompt(prompt, None, len(tokens)), tokens)
        return self._cached(Prompt(None, list(prompt), len(prompt)), [str(t) for t in prompt])

    def continued(self, prompt: Prompt, reply: str) -> Prompt:
        """``prompt`` with ``reply`` to continue: generation resumes after the tokens of
        this prompt's text that spell it (``_resumed``), as an uninterrupted run goes on."""
        return replace(prompt, continues=reply, num_tokens=prompt.num_tokens + count_tokens(reply))

    @staticmethod
    def _resumed(reply: str, start: int) -> tuple[int, str]:
        """How many of the text's tokens ``reply`` holds, and the rest of one it ends inside
        (a stop-string tail the client did not get); a reply that leaves the text (not this
        simulator's) resumes after the part that matched."""
        i, rest = 0, reply
        while rest:
            token = (_NEXT if i else _FIRST)[(start + i) % len(_WORDS)]
            if rest.startswith(token):
                rest = rest[len(token) :]
            elif token.startswith(rest):
                return i + 1, token[len(rest) :]
            else:
                break
            i += 1
        return i, ""

    def _cached(self, prompt: Prompt, tokens: list[str], chat: bool = False) -> Prompt:
        """The prompt with its prefix-cache hit (the lookup also inserts its blocks); a chat
        prompt keeps its tokens, so that its reply is cached as the next turn will send it."""
        if not self.cache.enabled:
            return prompt
        cached = self.cache.admit(tokens)
        return replace(prompt, cached_tokens=cached, cache_tokens=tuple(tokens) if chat else None)

    async def _prefill_delay(self, prompt: Prompt) -> None:
        """Wait for a prefill slot, then compute the prompt tokens the cache did not hold."""
        uncached = prompt.num_tokens - (prompt.cached_tokens or 0)
        if self.prefill_per_token <= 0 or uncached <= 0:
            return
        async with self._queued(self._prefill):
            await asyncio.sleep(uncached * self.prefill_per_token)

    @contextlib.asynccontextmanager
    async def _queued(self, slots: asyncio.Semaphore | None) -> AsyncIterator[None]:
        """Hold one of ``slots`` (none: unbounded), counted as waiting until it is free."""
        if slots is None:
            yield
            return
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            slots.release()

    @staticmethod
    def _int_field(params: SamplingParams, key: str) -> int | None:
        value = params.extra.get(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise InvalidRequestError(f"{key} must be a non-negative number.", param=key)
        return int(value)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        ttft_ms = self._int_field(params, "sim_ttft_ms")
        itl_ms = self._int_field(params, "sim_itl_ms")
        ttft = self.ttft if ttft_ms is None else ttft_ms / 1000
        itl = self.itl if itl_ms is None else itl_ms / 1000
        limit = params.max_tokens or self.output_tokens
        self.started += 1
        self.active += 1
        try:
            async with (
                self._queued(self._running),
                contextlib.aclosing(self._run(prompt, params, limit, ttft, itl)) as run,
            ):
                async for delta in run:
                    yield delta
        finally:
            self.active -= 1

    async def _run(
        self, prompt: Prompt, params: SamplingParams, limit: int, ttft: float, itl: float
    ) -> AsyncGenerator[Delta, None]:
        """One sequence once it holds a running slot: wait, prefill, decode."""
        fail_after = self._int_field(params, "sim_fail_after")
        crash_after = self._int_field(params, "sim_crash_after")
        stall_after = self._int_field(params, "sim_stall_after")
        natural_end = "length" if params.max_tokens else "stop"
        key = prompt.text if prompt.text is not None else repr(prompt.token_ids)
        start = zlib.crc32(key.encode()) + 7 * params.index + (params.seed or 0)
        words = len(_WORDS)
        fresh = prompt.continues is None
        reply: list[str] | None = [] if self.cache.enabled and params.index == 0 else None
        if ttft:
            await asyncio.sleep(ttft)
        if params.index == 0:  # later choices of the same prompt find it prefilled
            await self._prefill_delay(prompt)
        skip, due = (0, "") if fresh else self._resumed(prompt.continues or "", start)
        if not params.max_tokens:  # the natural length counts the reply continued
            limit = max(limit - skip, 1)
        if due:
            yield Delta(due, 0)  # the straddled token was counted where it was generated
        for i in range(skip, skip + limit):
            if crash_after is not None and i >= crash_after:
                logger.warning("simulated crash after %d tokens", i)
                os._exit(1)
            if fail_after is not None and i >= fail_after:
                raise LingyunError(f"Simulated engine failure after {i} tokens.")
            if i and itl:
                await asyncio.sleep(itl)
            if stall_after is not None and i >= stall_after:
                await asyncio.sleep(STALL_S)  # until the client gives up
            self.generated_tokens += 1
            text = (_NEXT if i else _FIRST)[(start + i) % words]
            if reply is not None:
                reply.append(text)
            yield Delta(text, 1, natural_end if i == skip + limit - 1 else None)
        if reply is not None and fresh and prompt.cache_tokens is not None:
            # the reply as the next turn's prompt will hold it: after the role's newline
            self.cache.insert([*prompt.cache_tokens, "\n", *_TOKEN_RE.findall("".join(reply))])

    def _vector(self, item: str | list[int]) -> list[float]:
        seed = (item if isinstance(item, str) else repr(item)).encode()
        raw = b""
        counter = 0
        while len(raw) < self.dim:
            raw += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
            counter += 1
        vec = [b / 127.5 - 1.0 for b in raw[: self.dim]]
        norm = sum(x * x for x in vec) ** 0.5 or 1.0
        return [x / norm for x in vec]

    async def embed(
        self, inputs: list[str] | list[list[int]], dimensions: int | None
    ) -> Embeddings:
        if dimensions is not None and dimensions > self.dim:
            raise InvalidRequestError(
                f"dimensions must be at most {self.dim} for this model.", param="dimensions"
            )
        vectors = [self._vector(x) for x in inputs]
        if dimensions is not None and dimensions < self.dim:
            vectors = [_renorm(v[:dimensions]) for v in vectors]
        tokens = sum(count_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
        return Embeddings(vectors, tokens)


def _renorm(vec: list[float]) -> list[float]:
    norm = sum(x * x for x in vec) ** 0.5 or 1.0
    return [x / norm for x in vec]


def create(model: str | None, args: dict[str, Any]) -> SimulatorBackend:
    del model  # nothing to load: the simulator has no weights
    return SimulatorBackend(args)
