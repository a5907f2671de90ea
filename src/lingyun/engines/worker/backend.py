"""What a worker backend is: the protocols the HTTP layer drives, and the registry by name.

A backend generates text (:class:`GenerationBackend`), embeds text (:class:`EmbeddingBackend`),
or both (the simulator). The HTTP layer owns everything that is the same for every engine:
request validation, ``n``, stop strings, SSE framing, usage and client disconnects. A backend
only turns one prompt into a stream of :class:`Delta` for one choice, and must stop its work
when that stream is closed (the HTTP layer closes it on disconnect or on a stop string).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lingyun.protocol.wire import ChatMessage

# Backends by name, as "module:factory"; imported only when chosen, so torch stays lazy.
BACKENDS: dict[str, str] = {
    "transformers": "lingyun.engines.worker.transformers_backend:create",
    "embeddings": "lingyun.engines.worker.embeddings_backend:create",
    "simulator": "lingyun.engines.worker.simulator_backend:create",
}

# Request parameters an engine may support; a backend that does not lists none of them and
# the HTTP layer answers 400 ``unsupported_parameter`` when a request sets one.
OPTIONAL_FEATURES = frozenset(
    {"tools", "response_format", "logprobs", "penalties", "echo", "suffix", "logit_bias", "best_of"}
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt, as the backend will see it; ``num_tokens`` is what usage reports.

    ``cached_tokens`` is how many leading tokens a prefix cache already held (reported as
    ``usage.prompt_tokens_details.cached_tokens``); None for a backend without one."""

    text: str | None
    token_ids: list[int] | None
    num_tokens: int
    cached_tokens: int | None = None
    # The token sequence a stand-in prefix cache keys on (the simulator's), if any.
    cache_tokens: tuple[str, ...] | None = None
    # A partial assistant reply to continue rather than answer afresh (vLLM's
    # ``continue_final_message``): the backend generates what follows it, as an
    # uninterrupted run would have (exactly, for greedy decoding). ``num_tokens`` counts it.
    continues: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-choice sampling; ``index`` lets deterministic backends vary between choices."""

    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # The LoRA adapter to generate with (one of the backend's ``adapters``); None: the base.
    adapter: str | None = None


@dataclass(slots=True)
class Delta:
    """New text of one choice and how many tokens produced it; the last one has a reason."""

    text: str
    tokens: int
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: Sequence[Sequence[float]]
    prompt_tokens: int


@runtime_checkable
class Backend(Protocol):
    """Common to all backends."""

    name: str
    features: frozenset[str]

    def health(self) -> dict[str, Any]:
        """Extra fields for ``GET /health`` (e.g. active sequences), cheap to compute."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class GenerationBackend(Backend, Protocol):
    def chat_prompt(self, messages: list[ChatMessage]) -> Prompt:
        """Render chat messages (the model's chat template) and count their tokens."""
        ...

    def completion_prompt(self, prompt: str | list[int]) -> Prompt: ...

    def continued(self, prompt: Prompt, reply: str) -> Prompt:
        """``prompt`` (the conversation before the reply) with ``reply`` to continue."""
        ...

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        """Stream one choice; closing the iterator must stop the work at the next token."""
        ...


@runtime_checkable
class EmbeddingBackend(Backend, Protocol):
    async def embed(
        self, inputs: list[str] | list[list[int]], dimensions: int | None
    ) -> Embeddings: ...


BackendFactory = Callable[[str | None, dict[str, Any]], Backend]


def create_backend(name: str, model: str | None, args: dict[str, Any]) -> Backend:
    """Build (and load: this may take minutes) the backend called ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"Unknown worker backend {name!r}; choose one of {sorted(BACKENDS)}.")
    module_name, _, attr = BACKENDS[name].partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module_name), attr)
    return factory(model, args)


def arg(args: dict[str, Any], key: str, kind: type[Any], default: Any) -> Any:
    """Read one backend argument, with a ValueError that says what to change."""
    value = args.get(key, default)
    if value is None or isinstance(value, kind):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"Backend argument {key!r} must be {kind.__name__}, got {value!r}.")
